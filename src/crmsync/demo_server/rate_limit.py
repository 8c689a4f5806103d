"""The demo CRM's rate limit: one token bucket for the whole server, as many CRMs have.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; each API request
takes one, and a request that finds none is answered ``429`` with ``Retry-After``: the whole
seconds until a token is free, rounded up (so that a client that waits that long finds one).
A rejected request takes no token, as with most gateways. This is the limit crmsync's pacing
is measured against, so the bucket reads a clock it is given: tests drive it with a fake one.

With ``headers`` the server also tells every API response how close its client is to the limit,
in the common forms ``X-RateLimit-*`` (``"x"``) and the IETF draft's ``RateLimit-*``
(``"ietf"``), or both: ``Limit`` is the burst (the most requests accepted at once),
``Remaining`` the whole tokens left, and ``Reset`` the whole seconds (rounded up) until the
bucket is full again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

HEADER_STYLES = {
    "x": ("X-RateLimit-",),
    "ietf": ("RateLimit-",),
    "both": ("X-RateLimit-", "RateLimit-"),
}
"""``headers`` names the forms a bucket announces itself in; ``None`` sends none."""


@dataclass(frozen=True)
class Admission:
    """The bucket's answer to one request, and its state right after it."""

    allowed: bool
    retry_after: int
    """Whole seconds until a token is free (0 while one is); sent on a 429."""
    headers: dict[str, str]
    """The rate-limit headers this answer carries (none unless the bucket sends them)."""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; starts full."""

    def __init__(
        self,
        rate: float,
        burst: int,
        headers: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be more than 0 requests a second")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if headers is not None and headers not in HEADER_STYLES:
            raise ValueError(f"headers must be one of {', '.join(HEADER_STYLES)}, or None")
        self.rate = rate
        self.burst = burst
        self.header_prefixes = HEADER_STYLES[headers] if headers else ()
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def admit(self) -> Admission:
        """Takes a token if there is one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            allowed = self._tokens >= 1
            if allowed:
                self._tokens -= 1
            retry_after = 0 if self._tokens >= 1 else math.ceil((1 - self._tokens) / self.rate)
            return Admission(allowed, retry_after, self._headers())

    def _headers(self) -> dict[str, str]:
        values = {
            "Limit": str(self.burst),
            "Remaining": str(math.floor(self._tokens)),
            "Reset": str(math.ceil((self.burst - self._tokens) / self.rate)),
        }
        return {
            prefix + name: value
            for prefix in self.header_prefixes
            for name, value in values.items()
        }
