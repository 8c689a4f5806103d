"""The seed's retry policy against real faults from the bundled CRM, and the failures it ends in.

Waits are test-sized (`fast_policy`: backoff factor 0.01) but the attempts are the seed's: one
try and up to 3 retries. The server's own request log is the witness of every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from crmsync.demo_server import DemoServer, Fault
from crmsync.demo_server.rate_limit import TokenBucket
from crmsync.failures import EXIT_CONFIG, EXIT_SOURCE, describe
from crmsync.loading.sync import SyncFailed
from crmsync.reading.source import SyncOptions
from crmsync.transport.http_policy import InsecureTransportError, check_transport
from tests.support.destinations import DuckDBDestination
from tests.support.proxy import ForwardingProxy
from tests.support.syncs import fast_policy, sync

CONTACTS = SyncOptions(resources=("contacts",))


# These tests are about the HTTP side; DuckDB alone shows what landed.
pytestmark = pytest.mark.destinations("duckdb")


@dataclass(frozen=True)
class Survivable:
    fault: Fault
    attempts: int


SURVIVABLE = {
    "429-retry-after-0": Survivable(Fault("/contacts", "status", status=429, retry_after="0"), 2),
    "500-once": Survivable(Fault("/contacts", "status", status=500), 2),
    "502-once": Survivable(Fault("/contacts", "status", status=502), 2),
    "503-burst-of-3": Survivable(Fault("/contacts", "status", status=503, times=3), 4),
    "504-once": Survivable(Fault("/contacts", "status", status=504), 2),
    "dropped-connection": Survivable(Fault("/contacts", "drop", times=2), 3),
    "malformed-json": Survivable(Fault("/contacts", "malformed"), 2),
    "hung-response": Survivable(Fault("/contacts", "hang", seconds=1.0), 2),
}


@pytest.mark.parametrize("case", SURVIVABLE.values(), ids=SURVIVABLE.keys())
def test_a_transient_fault_is_retried_and_the_data_lands_exactly(
    crm: DemoServer, destination: DuckDBDestination, case: Survivable
) -> None:
    crm.faults.add(case.fault)

    result = sync(crm, destination, CONTACTS, policy=fast_policy(read_timeout=0.3))

    assert len(crm.requests_for("contacts")) == case.attempts
    assert destination.current_ids("contacts") == sorted(crm.store.ids("contacts"))
    tally = result.ledger.tallies["contacts"]
    assert (tally.requests, tally.retries, tally.outcome) == (
        case.attempts,
        case.attempts - 1,
        "ok",
    )


@pytest.mark.parametrize(
    ("retry_after", "cap", "waited"),
    [("1", 2.0, 1.0), ("3600", 0.5, 0.5)],
    ids=["retry-after", "cut-to-the-cap"],
)
def test_a_429_is_retried_after_its_retry_after_cut_to_the_cap(
    crm: DemoServer, destination: DuckDBDestination, retry_after: str, cap: float, waited: float
) -> None:
    """Over HTTP: the CRM sees the 429 answered, then one retry, and the wait the ledger counts
    is Retry-After's, cut to the cap (the order of send and wait, on no clock: in
    test_request_budget.py)."""
    crm.faults.add(Fault("/contacts", "status", status=429, retry_after=retry_after))

    result = sync(crm, destination, CONTACTS, policy=fast_policy(max_retry_delay=cap))

    assert [r.status for r in crm.requests_for("contacts")] == [429, 200]
    tally = result.ledger.tallies["contacts"]
    assert (tally.throttled, tally.retries, tally.wait_seconds) == (1, 1, waited)
    assert destination.current_ids("contacts") == sorted(crm.store.ids("contacts"))


@dataclass(frozen=True)
class Fatal:
    fault: Fault
    attempts: int
    exit_code: int
    message: str


FATAL = {
    "permanent-500": Fatal(
        Fault("/contacts", "status", status=500, times=None),
        4,
        EXIT_SOURCE,
        "contacts: GET /contacts?include_deleted=true&page[limit]=500&page[page]=1 answered 500"
        " Internal Server Error after 4 attempts; the CRM is failing; try again later",
    ),
    "permanent-429": Fatal(
        Fault("/contacts", "status", status=429, retry_after="0", times=None),
        4,
        EXIT_SOURCE,
        "answered 429 Too Many Requests after 4 attempts",
    ),
    "permanent-malformed-json": Fatal(
        Fault("/contacts", "malformed", times=None),
        4,
        EXIT_SOURCE,
        "returned 200 with a body that is not JSON after 4 attempts",
    ),
    "permanent-hang": Fatal(
        Fault("/contacts", "hang", seconds=1.0, times=None), 4, EXIT_SOURCE, "timed out"
    ),
    "400": Fatal(Fault("/contacts", "status", status=400), 1, EXIT_SOURCE, "answered 400"),
    "401": Fatal(Fault("/contacts", "status", status=401), 1, EXIT_CONFIG, "answered 401"),
    "403": Fatal(Fault("/contacts", "status", status=403), 1, EXIT_CONFIG, "answered 403"),
    "404": Fatal(Fault("/contacts", "status", status=404), 1, EXIT_SOURCE, "answered 404"),
}


@pytest.mark.parametrize("case", FATAL.values(), ids=FATAL.keys())
def test_a_fault_that_persists_fails_clearly_after_the_seeds_attempts(
    crm: DemoServer, destination: DuckDBDestination, case: Fatal
) -> None:
    crm.faults.add(case.fault)

    with pytest.raises(SyncFailed) as raised:
        sync(crm, destination, CONTACTS, policy=fast_policy(read_timeout=0.3))

    assert len(crm.requests_for("contacts")) == case.attempts
    failure = describe(raised.value.__cause__ or raised.value, raised.value.attempts)
    assert failure.exit_code == case.exit_code
    assert case.message in failure.message
    assert failure.message.startswith("contacts: GET /contacts")
    assert "\n" not in failure.message
    assert "contacts" not in _tables(destination)


def test_a_failing_resource_loads_nothing_while_the_others_wait_for_a_rerun(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    crm.faults.add(Fault("/contacts", "status", status=503, times=4, page=1))

    with pytest.raises(SyncFailed):
        sync(crm, destination)
    sync(crm, destination)

    for resource in ("accounts", "contacts", "events", "products", "pipelines"):
        assert destination.current_ids(resource) == sorted(crm.store.ids(resource)), resource


def test_a_bad_page_in_the_middle_is_retried_and_never_half_loaded(
    start_crm: object, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"contacts": 1200})  # type: ignore[operator]
    server.faults.add(Fault("/contacts", "malformed", times=None, page=2))

    with pytest.raises(SyncFailed):
        sync(server, destination, CONTACTS)

    assert "contacts" not in _tables(destination)
    pages = [int(r.params["page[page]"]) for r in server.requests_for("contacts")]
    assert (pages.count(1), pages.count(2)) == (1, 4)


@pytest.mark.parametrize(
    ("url", "opted_in", "refused"),
    [
        ("http://127.0.0.1:8080", False, False),
        ("http://localhost:8080", False, False),
        ("http://[::1]:8080", False, False),
        ("https://crm.example.com", False, False),
        ("http://crm.example.com", True, False),
        ("http://crm.example.com", False, True),
        ("http://10.1.2.3:8080", False, True),
    ],
)
def test_plain_http_is_allowed_only_to_loopback_or_when_opted_in(
    url: str, opted_in: bool, refused: bool
) -> None:
    if refused:
        with pytest.raises(InsecureTransportError, match="--allow-insecure-http"):
            check_transport(url, allow_insecure_http=opted_in)
    else:
        check_transport(url, allow_insecure_http=opted_in)


def _tables(destination: DuckDBDestination) -> set[str]:
    try:
        return destination.tables()
    except Exception:
        return set()


def test_a_429_under_concurrent_reads_paces_the_run_and_every_record_lands(
    start_crm: object, destination: DuckDBDestination
) -> None:
    """Two resources read at once, one answered 429: the run learns a rate from it and loads
    both whole. That the pause holds back every resource, Retry-After less its rounding, is
    shown on a fake clock (test_request_budget.py, test_pacing.py)."""
    server: DemoServer = start_crm({"contacts": 2000, "events": 2000})  # type: ignore[operator]
    server.faults.add(Fault("/contacts", "status", status=429, retry_after="1", page=2))

    result = sync(server, destination, SyncOptions(resources=("contacts", "events")))

    assert [r.resource for r in server.requests if r.status == 429] == ["contacts"]
    assert result.ledger.tallies["contacts"].throttled == 1
    assert result.ledger.learnt_rate is not None
    for resource in ("contacts", "events"):
        assert destination.current_ids(resource) == sorted(server.store.ids(resource))


def test_max_requests_per_second_keeps_the_run_under_a_crm_limit_it_would_break(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    """The CRM admits one request at a time, 8 a second: five resources at a ceiling of 4 a
    second, twice as far apart, are never refused (without it, they come faster and are). The
    spacing itself is shown on a fake clock (test_request_budget.py)."""
    crm.rate_limit = TokenBucket(rate=8, burst=1)

    result = sync(crm, destination, policy=fast_policy(max_requests_per_second=4))

    assert [r.status for r in crm.requests] == [200] * 5
    assert result.ledger.learnt_rate is None  # nothing was learnt: the ceiling alone paced


def test_every_page_goes_through_the_proxy_the_environment_names_read_ahead_or_not(
    start_crm: object, destination: DuckDBDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: DemoServer = start_crm({"contacts": 2600})  # type: ignore[operator]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        sync(server, destination, CONTACTS)

    served = sorted(int(r.params["page[page]"]) for r in server.requests_for("contacts"))
    carried = sorted(int(parse_qs(urlsplit(url).query)["page[page]"][0]) for url in proxy.urls)
    assert served == [1, 2, 3, 4, 5, 6]  # pages 2 to 6 are read ahead once page 1 gives a total
    assert carried == served
    assert destination.current_ids("contacts") == sorted(server.store.ids("contacts"))


@pytest.mark.parametrize("headers", ["x", "ietf"])
def test_against_a_token_bucket_requests_are_paced_so_that_429s_are_few(
    start_crm: object, destination: DuckDBDestination, headers: str
) -> None:
    bucket = TokenBucket(rate=10, burst=5, headers=headers)
    server: DemoServer = start_crm({"contacts": 10_000}, rate_limit=bucket)  # type: ignore[operator]

    result = sync(server, destination, CONTACTS, policy=fast_policy(max_in_flight=2))

    assert destination.current_ids("contacts") == sorted(server.store.ids("contacts"))
    throttled = [r for r in server.requests if r.status == 429]
    assert len(throttled) <= 2
    assert len(server.requests) == 21 + len(throttled)  # 20 full pages, then an empty one
    assert result.ledger.tallies["contacts"].throttled == len(throttled)
