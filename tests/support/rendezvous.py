"""Concurrency shown by the requests the server holds, not by timestamps.

`Rendezvous` is a `DemoServer.before_page` hook: the requests it gates wait in the server until
`size` of them are in at once (and a moment more, `grace`, for a request past `size` to show);
from then on every request passes. It notes the most it held at once (`peak`), so a test
asserts that a client sent `size` requests at once, and none past them, whatever the machine's
speed. A client that never sends `size` at once leaves them waiting
until `timeout` (a guard against a hang, never a figure a test asserts): then `stalled` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Rendezvous:
    def __init__(
        self,
        size: int,
        gates: Callable[[str, int], bool] = lambda resource, page: page >= 2,
        timeout: float = 60.0,
        grace: float = 0.05,
    ) -> None:
        self.size = size
        self.gates = gates
        """Which requests (resource, page) are held and counted; by default every page
        after the first, which a look-ahead may send at once."""
        self.timeout = timeout
        self.grace = grace
        self.open = 0
        self.peak = 0
        self.stalled = False
        self._released = False
        self._condition = threading.Condition()

    def __call__(self, resource: str, page: int, params: dict[str, str]) -> None:
        if not self.gates(resource, page):
            return
        with self._condition:
            self.open += 1
            self.peak = max(self.peak, self.open)
            releases = self.open >= self.size and not self._released
            if not releases and not self._condition.wait_for(lambda: self._released, self.timeout):
                self.stalled = True
                self._released = True  # let the rest through: the test fails on `stalled`
                self._condition.notify_all()
        if releases:
            time.sleep(self.grace)  # a request past `size` would come now, and count
            with self._condition:
                self._released = True
                self._condition.notify_all()
        with self._condition:
            self.open -= 1
