"""Faults the demo server injects on request, so clients prove they survive real networks.

Each kind mimics something a production CRM or the network in front of it does: a 429 or
503 from an overloaded gateway, a connection reset by a proxy, a body cut short by a
crashing worker, a request that never gets an answer, a page that silently holds one
record fewer than it should, and a page whose records are not in the contract's id order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http import HTTPStatus

FAULT_KINDS = ("status", "drop", "malformed", "hang", "short_page", "unordered")
_STATUSES = frozenset(status.value for status in HTTPStatus)


@dataclass
class Fault:
    """One fault for requests to ``path`` (and to page ``page`` only, if given).

    ``times`` is how many matching requests get it; ``None`` means every one, forever.
    """

    path: str
    kind: str
    times: int | None = 1
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    page: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for every request")
        if self.kind == "status" and self.status not in _STATUSES:
            raise ValueError(f"not an HTTP status: {self.status}")
        if self.seconds < 0:
            raise ValueError("seconds must not be negative")


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None


class FaultPlan:
    """Faults waiting for their requests; the earliest added matching fault fires first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._armed.append(_Armed(fault, fault.times))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, path: str, page: int | None) -> Fault | None:
        """The fault this request gets, if any, used up by one."""
        with self._lock:
            for armed in self._armed:
                fault = armed.fault
                if fault.path == path and (fault.page is None or fault.page == page):
                    if armed.remaining is not None:
                        armed.remaining -= 1
                        if armed.remaining == 0:
                            self._armed.remove(armed)
                    return fault
        return None
