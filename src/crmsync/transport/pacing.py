"""One request rate for a whole run, learnt from the CRM, so that requests wait before they are
sent instead of after a 429.

A CRM's rate limit is per account, usually a token bucket: it takes a burst, then so many
requests a second, and refuses the rest with ``429`` and ``Retry-After`` in whole seconds.
Sending as fast as possible and backing off on each 429 wastes a request per refusal and,
worse, sleeps whole seconds while the bucket refills in fractions of one. The `Pacer` instead
keeps its own model of the CRM's bucket — a rate and a burst, learnt as the run goes — and
starts a request only when that model holds a token:

- Until the CRM shows a limit, nothing is paced: a CRM that never refuses and sends no
  headers is read as fast as without a pacer.
- The first 429 (or, with headers, a ``Remaining`` less the requests still open at or under a
  fifth of ``Limit``) starts pacing at a little under what the CRM admitted over the last
  seconds (with headers: ``(Limit - Remaining) / Reset``, what it refills by the reset), at
  least 1 request a second.
- Probing: each admitted request raises the rate, by 70% a second until the first refusal or
  measurement after pacing began (the first rate is a rough guess), 1% a second after it
  (AIMD's additive increase, in case the CRM allows more than it did).
- A 429 of a request sent after the rate last fell lowers it to 90% (AIMD's decrease); those
  sent earlier, already in flight, say nothing new. A deeper cut would idle longer while the
  probe climbs back (simulated at 20 req/s: 85% left 1.2% of the bound unused, 90% 0.4%, for three
  more 429s in 850 requests).
- With headers the rate is also measured: the change in ``Remaining`` plus the requests sent
  meanwhile, over at least 3 s, is the CRM's refill, and the rate is set to 97% of it. A full
  bucket refills nothing, so a span that starts with it full measures nothing; the probe goes
  on until it drains.
  ``Limit`` is the CRM's burst (the model holds that many tokens, so that time spent under the
  rate is caught up at once), and ``Remaining`` less the requests still open (which the CRM
  may or may not have counted yet) is the model's tokens: what may start at once. So the
  model follows the CRM's own bucket both ways, and the rate's 3% margin costs nothing while
  the CRM's bucket holds tokens.
- ``Retry-After`` is whole seconds, rounded up, so the CRM's own wait may be up to a second
  shorter: the refused request waits all of it (the retry policy), every other request one
  second less (up to ``max_pause``); the lowered rate spaces the rest.
- A user's ``max_requests_per_second`` is a hard ceiling on top: requests never start closer
  than its interval, whatever was learnt.

Headers read (names case-insensitive; the first of each found wins):
``X-RateLimit-Limit``/``RateLimit-Limit``, ``X-RateLimit-Remaining``/``RateLimit-Remaining``
and ``X-RateLimit-Reset``/``RateLimit-Reset``, each a number (of an IETF draft's list, such as
``RateLimit-Limit: 100, 100;w=60``, the first); ``Reset`` as delta-seconds or, when over
10^9, as Unix epoch seconds (GitHub's form). ``Retry-After`` as delta-seconds or an HTTP date.
The combined ``RateLimit: limit=...`` field of later IETF drafts is not read.

The pacer is not locked itself: `crmsync.transport.http_policy.RequestBudget` calls it under its
lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

WINDOW_SECONDS = 10.0
"""The admitted requests a new rate is learnt from: those of the last this many seconds."""
DECREASE = 0.9
"""A 429 lowers the rate to this share of what the CRM admitted (AIMD's decrease)."""
MEASURE_SECONDS = 3.0
"""The span over which the refill is measured from ``Remaining``: long enough that its
rounding to whole requests costs no more than a third of one a second."""
MEASURED_SHARE = 0.97
"""The rate is set this far under the refill measured from the headers."""
LOW_REMAINING = 0.2
"""``Remaining`` at or under this share of ``Limit`` is a warning."""
PROBE_PER_SECOND = 0.01
"""The share by which the rate rises per second of pacing without a refusal."""
FAST_PROBE_PER_SECOND = 0.7
"""The same until the first refusal or measurement after pacing began: the rate first learnt
may be far under the limit."""
MIN_RATE = 0.05
"""A floor: one request every 20 s, whatever the CRM says."""
FIRST_RATE = 1.0
"""The least rate pacing starts at: a refusal that comes before many admissions (a single
429, say) tells little about the rate, and a start too slow would be slow to probe up from."""
EPOCH_RESET = 1e9
"""A ``Reset`` above this is a Unix time (2001-09-09 onwards), not a number of seconds."""
_PREFIXES = ("X-RateLimit-", "RateLimit-")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` (delta-seconds or an HTTP date) as seconds from ``now`` (Unix time),
    never below 0; None if absent or unreadable. The one place crmsync reads it."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; one that says "-0000" is not read
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class LimitHeaders:
    """What a response's rate-limit headers say; each None when not sent."""

    limit: float | None
    remaining: float | None
    reset: float | None
    """Seconds from now until the CRM's bucket or window is full again."""


def limit_headers(headers: Mapping[str, str], now: float | None = None) -> LimitHeaders:
    """The ``X-RateLimit-*``/``RateLimit-*`` headers of a response (``now``: Unix time)."""
    limit, remaining, reset = (_number(headers, name) for name in ("Limit", "Remaining", "Reset"))
    if reset is not None and reset > EPOCH_RESET:
        reset = reset - (time.time() if now is None else now)
    return LimitHeaders(limit, remaining, None if reset is None else max(0.0, reset))


def _number(headers: Mapping[str, str], name: str) -> float | None:
    for prefix in _PREFIXES:
        value = headers.get(prefix + name)
        if value is not None:
            first = value.split(",")[0].split(";")[0].strip()
            try:
                number = float(first)
            except ValueError:
                continue
            if 0 <= number < math.inf:
                return number
    return None


@dataclass(frozen=True)
class Ticket:
    """A request the pacer let start: when, and how many had started before it."""

    started: float
    number: int


class Pacer:
    """The run's request rate: when the next request may start, and what the CRM taught it.

    Figures for the run ledger: `rate` (learnt requests a second, None while not pacing),
    `waited_seconds` (time a request was ready but held back by the pacer or a pause) and
    `throttled` (429s seen).
    """

    def __init__(
        self,
        ceiling: float = 0.0,
        max_pause: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate: float | None = None
        self.throttled = 0
        self.waited_seconds = 0.0
        self._interval = 1.0 / ceiling if ceiling > 0 else 0.0
        self._max_pause = max_pause
        self._clock = clock
        self._burst = 1.0
        self._tokens = 0.0
        self._refilled = 0.0
        self._next_ceiling_start = 0.0
        self._paused_until = 0.0
        self._lowered_after = 0
        self._first_start: float | None = None
        self._started = 0
        self._admitted: deque[float] = deque()
        self._held_since: float | None = None
        self._probe = FAST_PROBE_PER_SECOND
        self._anchor: tuple[Ticket, float] | None = None

    def delay(self) -> float:
        """Seconds until the next request may start (0: now)."""
        now = self._clock()
        wait = max(self._paused_until, self._next_ceiling_start) - now
        if self.rate is not None:
            self._refill(now)
            if self._tokens < 1:
                wait = max(wait, (1 - self._tokens) / self.rate)
        return max(0.0, wait)

    @property
    def limited(self) -> bool:
        """Whether requests are scarce: a ceiling is set, a rate was learnt, or one is being
        held back right now."""
        return bool(self._interval) or self.rate is not None or self._held_since is not None

    @property
    def holding(self) -> bool:
        """Whether a request ready to go is being held back for the CRM's limit right now."""
        return self._held_since is not None

    def hold(self, held: bool) -> None:
        """A ready request waits for `delay` (True) or starts (False): the wait clock."""
        now = self._clock()
        if held and self._held_since is None:
            self._held_since = now
        elif not held and self._held_since is not None:
            self.waited_seconds += now - self._held_since
            self._held_since = None

    def start(self) -> Ticket:
        """Books a request starting now (`delay` was 0), for `learn` to place its answer."""
        now = self._clock()
        if self._first_start is None:
            self._first_start = now
        if self._interval:
            self._next_ceiling_start = max(now, self._next_ceiling_start) + self._interval
        if self.rate is not None:
            self._refill(now)
            self._tokens -= 1
        self._started += 1
        return Ticket(now, self._started)

    def learn(
        self, ticket: Ticket, status: int, headers: Mapping[str, str], still_open: int = 0
    ) -> None:
        """What the answer to the request of ``ticket`` says about the limit, with
        ``still_open`` other requests started and not answered yet."""
        now = self._clock()
        info = limit_headers(headers)
        if info.limit is not None and info.limit >= 1:
            self._burst = info.limit
        fresh = ticket.number > self._lowered_after  # sent after the rate last fell
        if status == 429:
            self.throttled += 1
            self._anchor = None
            # Whole seconds, rounded up: the CRM's own wait may be up to one second shorter.
            pause = (retry_after_seconds(headers.get("Retry-After")) or 0.0) - 1
            pause = max(0.0, min(self._max_pause, pause))
            self._paused_until = max(self._paused_until, now + pause)
            self._refill(now)
            self._tokens = min(self._tokens, 0.0)
            if fresh:
                self._lower(now, self.rate or self._admitted_rate(now))
            return
        self._admitted.append(now)
        while self._admitted[0] < now - WINDOW_SECONDS:
            self._admitted.popleft()
        if info.remaining is not None and info.limit is not None:
            self._refill(now)
            # what the CRM holds now, at least: its `Remaining` less every request still open,
            # which it may have counted already or not (requests overtake one another)
            self._tokens = min(self._burst, info.remaining - still_open)
            if self._learn_from_headers(ticket, info.remaining, info.limit, info.reset, still_open):
                return
        if self.rate is not None:
            self.rate *= 1 + self._probe / max(1.0, self.rate)  # `_probe` a second at `rate`

    def _learn_from_headers(
        self, ticket: Ticket, remaining: float, limit: float, reset: float | None, still_open: int
    ) -> bool:
        """The CRM's refill, measured: the change in ``Remaining`` plus the requests sent
        meanwhile, over the time between; True if it set the rate.

        Only while the CRM's bucket is not full (a full one refills nothing): with a rate too
        low nothing is measured, and the probe raises the rate instead.
        """
        if remaining >= limit - 1:
            self._anchor = None
            return False
        if self.rate is None:
            if remaining - still_open > LOW_REMAINING * limit:
                return False
            estimate = (limit - remaining) / reset if reset else 0.0
            self._lower(ticket.started, estimate or self._admitted_rate(ticket.started))
            self._anchor = (ticket, remaining)
            return True
        if self._anchor is None:
            self._anchor = (ticket, remaining)
            return False
        anchor, anchor_remaining = self._anchor
        span = ticket.started - anchor.started
        if span < MEASURE_SECONDS:
            return False
        sent = ticket.number - anchor.number
        self.rate = max(MIN_RATE, MEASURED_SHARE * (remaining - anchor_remaining + sent) / span)
        self._probe = PROBE_PER_SECOND
        self._anchor = (ticket, remaining)
        return True

    def _admitted_rate(self, now: float) -> float:
        """Answers other than 429 a second, over the last `WINDOW_SECONDS` (at least 1 s)."""
        first = now if self._first_start is None else self._first_start
        span = min(WINDOW_SECONDS, max(1.0, now - first))
        while self._admitted and self._admitted[0] < now - span:
            self._admitted.popleft()
        return len(self._admitted) / span

    def _lower(self, now: float, admitted: float) -> None:
        """AIMD's decrease: a share of what the CRM admitted, and never up."""
        if self.rate is None:
            self._refilled = now
            admitted = max(FIRST_RATE, admitted)
        else:
            self._probe = PROBE_PER_SECOND  # past the first refusal, probe gently
        self.rate = max(MIN_RATE, DECREASE * admitted)
        self._lowered_after = self._started

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
