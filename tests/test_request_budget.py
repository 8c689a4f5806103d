"""The run's one request budget (`RequestBudget`) and the retry policy's waits, on a fake clock
and a fake transport: when each request may start, how many may be open, and what a retry waits
for. Nothing here waits on the wall clock; the end-to-end proofs are in test_http_policy.py."""

from __future__ import annotations

import io
import queue
import threading
import time
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from urllib3.response import HTTPResponse

from crmsync.ledger import RunLedger
from crmsync.transport.http_policy import CrmSession, RequestBudget
from tests.support.syncs import fast_policy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WouldBlock(Exception):
    """The budget would wait for a release that a single-threaded test never makes."""


class SteppingCondition(threading.Condition):
    """The budget's condition with the wait taken out: a timed wait moves the fake clock on by
    its timeout at once; an untimed one (no slot free) raises `WouldBlock`."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            raise WouldBlock
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


def budget_on(clock: FakeClock, max_in_flight: int = 8, **kwargs: Any) -> RequestBudget:
    budget = RequestBudget(max_in_flight, clock=clock, **kwargs)
    budget._condition = SteppingCondition(clock)
    return budget


def answer(status: int = 200, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


def test_a_ceiling_starts_requests_one_interval_apart_and_counts_the_time_held_back() -> None:
    clock = FakeClock()
    budget = budget_on(clock, max_per_second=20)

    starts = []
    for _ in range(5):
        ticket = budget.acquire()
        starts.append(clock.now - 1000.0)
        budget.release(ticket, answer())

    assert starts == pytest.approx([0.0, 0.05, 0.10, 0.15, 0.20])
    assert budget.pacer.waited_seconds == pytest.approx(0.20)
    assert budget.started == 5


def test_without_a_limit_no_request_is_held_back() -> None:
    clock = FakeClock()
    budget = budget_on(clock)

    for _ in range(20):
        budget.release(budget.acquire(), answer())

    assert (clock.now, budget.pacer.waited_seconds, budget.scarce()) == (1000.0, 0.0, False)


def test_no_more_than_max_in_flight_requests_are_open_and_a_release_frees_a_slot() -> None:
    budget = budget_on(FakeClock(), max_in_flight=2)
    first, _ = budget.acquire(), budget.acquire()

    with pytest.raises(WouldBlock):
        budget.acquire()
    budget.release(first, None)  # failed without an answer: its slot comes back all the same

    budget.acquire()
    assert budget.started == 3


def test_the_requests_waiting_go_lane_by_lane_the_lane_served_least_recently_first() -> None:
    """Three contacts pages wait (a read with a look-ahead), then two events pages (a read of
    one page at a time): the slot alternates between the lanes instead of going in the order
    the requests came, which would make events wait for every contacts page ahead of it."""
    budget = RequestBudget(max_in_flight=1)
    held = budget.acquire("/contacts")
    granted: list[str] = []
    tickets: queue.Queue[Any] = queue.Queue()

    def wait_for_a_slot(lane: str) -> None:
        ticket = budget.acquire(lane)
        granted.append(lane)
        tickets.put(ticket)

    lanes = ["/contacts"] * 3 + ["/events"] * 2
    threads = []
    for number, lane in enumerate(lanes, start=1):
        threads.append(threading.Thread(target=wait_for_a_slot, args=(lane,)))
        threads[-1].start()
        while len(budget._waiting) < number:  # each waits before the next comes
            time.sleep(0.001)
    budget.release(held, answer())
    for _ in lanes:
        budget.release(tickets.get(timeout=5), answer())
    for thread in threads:
        thread.join(timeout=5)

    assert granted == ["/events", "/contacts", "/events", "/contacts", "/contacts"]


def test_a_429_halves_the_requests_allowed_in_flight_and_each_success_gives_one_back() -> None:
    budget = budget_on(FakeClock(), max_in_flight=8)
    tickets = [budget.acquire() for _ in range(6)]

    budget.release(tickets[0], answer(429, **{"Retry-After": "0"}))
    halved = budget.allowed_in_flight
    allowed = []
    for ticket in tickets[1:]:
        budget.release(ticket, answer())
        allowed.append(budget.allowed_in_flight)

    assert (halved, allowed) == (4, [5, 6, 7, 8, 8])


def test_a_retry_after_on_one_request_holds_back_every_next_request_a_second_less() -> None:
    """Retry-After is whole seconds rounded up: the pause is one second shorter (`Pacer`),
    and it holds back every request of the run, whichever resource asks next."""
    clock = FakeClock()
    budget = budget_on(clock)
    throttled, other = budget.acquire(), budget.acquire()

    budget.release(throttled, answer(429, **{"Retry-After": "5"}))
    answered = clock.now
    budget.release(other, answer())
    budget.acquire()

    assert clock.now - answered == pytest.approx(4.0)
    assert budget.pacer.throttled == 1


class ScriptedAdapter(BaseAdapter):
    """Answers the requests it is sent with `statuses` in turn (`Retry-After` as given), and
    logs each send and each wait of the session's retry policy in `events`, in order."""

    def __init__(self, statuses: list[tuple[int, str | None]], events: list[str]) -> None:
        super().__init__()
        self.statuses = list(statuses)
        self.events = events

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        status, retry_after = self.statuses.pop(0)
        self.events.append(f"send -> {status}")
        response = answer(status, **({"Retry-After": retry_after} if retry_after else {}))
        body = io.BytesIO(b'{"contacts": []}' if status == 200 else b"{}")
        response.raw = HTTPResponse(body=body, status=status, preload_content=False)
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass


def retried(
    statuses: list[tuple[int, str | None]], log: list[str] | None = None, **policy: Any
) -> tuple[list[str], requests.Response, RunLedger]:
    """One GET of /contacts through a `CrmSession` whose retry policy sleeps on no clock: its
    waits are logged instead. `events` is filled even when the GET raises."""
    events = log if log is not None else []
    ledger = RunLedger()
    ledger.observer("contacts", "/contacts")
    session = CrmSession(fast_policy(**policy), ledger)
    session.mount("http://", ScriptedAdapter(statuses, events))
    session._retrying.sleep = lambda seconds: events.append(f"wait {seconds:g}")
    try:
        # as dlt's RESTClient sends it: an error status raises, from a response hook
        raising = {"response": [lambda response, *args, **kwargs: response.raise_for_status()]}
        request = requests.Request("GET", "http://crm.test/contacts", hooks=raising)
        response = session.send(session.prepare_request(request))
    finally:
        session.close()
    return events, response, ledger


@pytest.mark.parametrize(
    ("retry_after", "cap", "waited"),
    [("1", 2.0, 1.0), ("3600", 0.5, 0.5)],
    ids=["retry-after", "cut-to-the-cap"],
)
def test_a_429_is_retried_after_its_retry_after_up_to_the_cap(
    retry_after: str, cap: float, waited: float
) -> None:
    events, response, ledger = retried([(429, retry_after), (200, None)], max_retry_delay=cap)

    assert events == ["send -> 429", f"wait {waited:g}", "send -> 200"]
    assert response.status_code == 200
    tally = ledger.tallies["contacts"]
    assert (tally.requests, tally.retries, tally.throttled, tally.wait_seconds) == (
        2,
        1,
        1,
        waited,
    )


def test_without_retry_after_the_waits_back_off_exponentially_up_to_the_cap() -> None:
    events, response, _ = retried(
        [(503, None)] * 3 + [(200, None)], backoff_factor=1.0, max_retry_delay=3.0
    )

    waits = [e for e in events if e.startswith("wait")]
    assert waits == ["wait 1", "wait 2", "wait 3"]  # 1, 2, 4 cut to 3
    assert response.status_code == 200


def test_a_status_that_persists_is_sent_the_seeds_four_times_then_raised() -> None:
    events: list[str] = []

    with pytest.raises(requests.HTTPError) as raised:
        retried([(500, None)] * 5, events, backoff_factor=0.0)

    assert [e for e in events if e.startswith("send")] == ["send -> 500"] * 4
    assert raised.value.response is not None and raised.value.response.status_code == 500
