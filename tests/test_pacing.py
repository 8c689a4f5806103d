"""The pacer on a fake clock: what it reads from the CRM, and a whole run against the demo CRM's
token bucket, simulated request by request (no wall clock anywhere)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from crmsync.demo_server.rate_limit import TokenBucket
from crmsync.transport.pacing import DECREASE, Pacer, limit_headers, retry_after_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        (format_datetime(NOW + timedelta(seconds=5), usegmt=True), 5.0),
        (format_datetime(NOW - timedelta(seconds=5), usegmt=True), 0.0),
        ("soon", None),
        ("-1", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(value, now=NOW.timestamp()) == seconds


def test_rate_limit_headers_are_read_in_both_forms_reset_as_delta_or_epoch() -> None:
    now = NOW.timestamp()
    x = limit_headers({"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "4"}, now)
    ietf = limit_headers(
        {"RateLimit-Limit": "100, 100;w=60", "RateLimit-Remaining": "7", "RateLimit-Reset": "3"},
        now,
    )
    epoch = limit_headers({"X-RateLimit-Reset": str(int(now) + 42)}, now)

    assert (x.limit, x.remaining, x.reset) == (10, 4, None)
    assert (ietf.limit, ietf.remaining, ietf.reset) == (100, 7, 3)
    assert epoch.reset == 42
    assert limit_headers({}, now) == limit_headers({"X-RateLimit-Limit": "many"}, now)


def test_a_crm_that_shows_no_limit_is_never_paced() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)

    for _ in range(100):
        assert pacer.delay() == 0
        pacer.learn(pacer.start(), 200, {})
        clock.now += 0.001

    assert (pacer.rate, pacer.throttled) == (None, 0)


def test_a_ceiling_spaces_requests_whatever_the_crm_says() -> None:
    clock = FakeClock()
    pacer = Pacer(ceiling=4, clock=clock)

    pacer.learn(pacer.start(), 200, {})

    assert pacer.delay() == pytest.approx(0.25)
    clock.now += 0.25
    assert pacer.delay() == 0


def test_a_429_starts_pacing_once_and_requests_in_flight_before_it_lower_nothing() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    tickets = [pacer.start() for _ in range(12)]
    for ticket in tickets[:10]:
        pacer.learn(ticket, 200, {})
    clock.now += 0.5

    pacer.learn(tickets[10], 429, {"Retry-After": "1"})
    learnt = pacer.rate
    pacer.learn(tickets[11], 429, {"Retry-After": "1"})

    assert learnt == pytest.approx(DECREASE * 10)  # 10 admitted within the last second
    assert (pacer.rate, pacer.throttled) == (learnt, 2)
    assert pacer.delay() == pytest.approx(1 / learnt)  # one second less than Retry-After: 0


LIMIT_10 = {"X-RateLimit-Limit": "10", "X-RateLimit-Reset": "1"}


def test_what_may_start_is_the_crms_remaining_less_the_requests_still_open() -> None:
    """The CRM's `Remaining` counts, or not yet, the requests still on their way: the pacer
    takes them all off, and may send as many as are left, even when its own model of the
    bucket holds fewer (it paces a little under the CRM's rate)."""
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.learn(pacer.start(), 429, {"Retry-After": "0"})
    answered, other = pacer.start(), pacer.start()

    pacer.learn(answered, 200, {**LIMIT_10, "X-RateLimit-Remaining": "4"}, still_open=1)

    starts = 0
    while pacer.delay() == 0:
        pacer.start()
        starts += 1
    assert starts == 4 - 1
    pacer.learn(other, 200, {**LIMIT_10, "X-RateLimit-Remaining": "3"}, still_open=starts)
    assert pacer.delay() > 0  # 3 less the 3 just started


def test_with_headers_pacing_starts_before_the_requests_open_drain_the_crm() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    tickets = [pacer.start() for _ in range(6)]

    pacer.learn(tickets[0], 200, {**LIMIT_10, "X-RateLimit-Remaining": "7"}, still_open=5)

    assert pacer.rate == pytest.approx(DECREASE * (10 - 7) / 1)  # what it refills by the reset
    assert [pacer.delay() == 0 and bool(pacer.start()) for _ in range(3)] == [True, True, False]


def test_a_long_retry_after_pauses_every_request_a_second_less_up_to_the_cap() -> None:
    clock = FakeClock()
    pacer = Pacer(max_pause=30, clock=clock)

    pacer.learn(pacer.start(), 429, {"Retry-After": "5"})
    assert pacer.delay() == pytest.approx(4)
    pacer.learn(pacer.start(), 429, {"Retry-After": "3600"})
    assert pacer.delay() == pytest.approx(30)


def test_the_time_a_ready_request_is_held_back_is_counted() -> None:
    clock = FakeClock()
    pacer = Pacer(ceiling=1, clock=clock)
    pacer.start()

    pacer.hold(True)
    clock.now += 0.4
    pacer.hold(True)  # another look, same wait
    clock.now += 0.6
    pacer.hold(False)

    assert pacer.waited_seconds == pytest.approx(1.0)


def test_a_rate_learnt_too_low_probes_upward_while_the_crm_admits() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.learn(pacer.start(), 429, {"Retry-After": "0"})
    first = pacer.rate
    assert first is not None

    for _ in range(30):
        clock.now += pacer.delay()
        pacer.learn(pacer.start(), 200, {})

    assert pacer.rate is not None and pacer.rate > 3 * first


@dataclass(frozen=True)
class Run:
    seconds: float
    requests: int
    throttled: int
    learnt: float | None


def simulate(rate: float, headers: str | None, pages: int = 600, burst: int = 10) -> Run:
    """A run of `pages` pages, 8 at once at most, each answered 25 ms after it starts by the demo
    CRM's bucket; a refused page is asked for again after its Retry-After, through the pacer."""
    clock = FakeClock()
    start = clock.now
    crm = TokenBucket(rate, burst, headers, clock=clock)
    pacer = Pacer(clock=clock)
    events: list[tuple[float, int, str, object]] = []
    order = 0

    def at(when: float, kind: str, data: object = None) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (when, order, kind, data))

    waiting, retries, in_flight, done, requests, next_try = pages, 0, 0, 0, 0, float("inf")
    at(clock.now, "try")
    while done < pages:
        clock.now, _, kind, data = heapq.heappop(events)
        if kind == "try":
            next_try = float("inf")
        elif kind == "retry":
            retries += 1
        elif kind == "answer":
            ticket, admission = data  # type: ignore[misc]
            in_flight -= 1
            answer = dict(admission.headers)
            if admission.allowed:
                done += 1
                pacer.learn(ticket, 200, answer, in_flight)
            else:
                answer["Retry-After"] = str(admission.retry_after)
                pacer.learn(ticket, 429, answer, in_flight)
                at(clock.now + admission.retry_after, "retry")
        while in_flight < 8 and (retries or waiting):
            delay = pacer.delay()
            if delay > 0:
                if clock.now + delay < next_try:
                    next_try = clock.now + max(delay, 1e-6)
                    at(next_try, "try")
                break
            ticket = pacer.start()
            retries, waiting = (retries - 1, waiting) if retries else (retries, waiting - 1)
            in_flight, requests = in_flight + 1, requests + 1
            at(clock.now + 0.025, "answer", (ticket, crm.admit()))
    return Run(clock.now - start, requests, pacer.throttled, pacer.rate)


@pytest.mark.parametrize("headers", [None, "x"], ids=["no-headers", "x-ratelimit"])
@pytest.mark.parametrize("rate", [5, 10, 20])
def test_a_run_against_a_token_bucket_keeps_to_its_bound_and_wastes_few_requests(
    rate: float, headers: str | None
) -> None:
    pages, burst = 600, 10

    run = simulate(rate, headers, pages, burst)

    bound = (pages - burst) / rate
    assert bound / run.seconds >= 0.99
    assert run.requests - pages == run.throttled <= 0.05 * pages
    assert run.learnt == pytest.approx(rate, rel=0.15)


def test_with_headers_the_rate_is_measured_and_refusals_stop_after_the_start() -> None:
    run = simulate(10, "ietf", pages=600)

    assert run.throttled <= 12  # the first burst's requests in flight, then a few at most
    assert run.learnt == pytest.approx(10, rel=0.05)
