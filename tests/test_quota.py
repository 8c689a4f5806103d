"""A request quota per run (`max_requests`): the run stops requesting at it, loads the resources
that finished their read, leaves the others' cursors where they were, and the next run finishes
them. The mechanism on a fake transport, then whole runs against the bundled CRM."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests
from requests.adapters import BaseAdapter
from urllib3.response import HTTPResponse

from crmsync.demo_server import DemoServer
from crmsync.failures import EXIT_OK, EXIT_QUOTA, describe
from crmsync.ledger import QUOTA_REACHED, QuotaCutReplaceError, RunLedger
from crmsync.loading.sync import SyncFailed
from crmsync.reading.source import SyncOptions
from crmsync.transport.http_policy import CrmSession, QuotaReached, RequestBudget
from tests.support.cli import crm_env, run_crmsync
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import fast_policy, sync


class CountingAdapter(BaseAdapter):
    """A transport that answers every request with one page of one record, and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(str(request.url))
        response = requests.Response()
        response.status_code = 200
        body = io.BytesIO(b'{"contacts": [{"id": 1}]}')
        response.raw = HTTPResponse(body=body, status=200, preload_content=False)
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass


def get(session: CrmSession, url: str) -> requests.Response:
    return session.send(session.prepare_request(requests.Request("GET", url)))


def test_the_budget_starts_no_request_past_the_quota() -> None:
    budget = RequestBudget(max_in_flight=8, max_requests=3)

    tickets = [budget.acquire() for _ in range(3)]
    with pytest.raises(QuotaReached):
        budget.acquire()
    for ticket in tickets:
        budget.release(ticket, None)

    with pytest.raises(QuotaReached):
        budget.acquire()  # answers give slots back, never quota
    assert budget.started == 3


def test_a_read_past_the_quota_ends_with_an_empty_page_and_holds_its_cursor() -> None:
    ledger = RunLedger()
    observer = ledger.observer("contacts", "/contacts")
    held: list[bool] = []
    observer.hold_cursor = lambda: held.append(True)
    session = CrmSession(fast_policy(max_requests=2, max_retries=3), ledger)
    adapter = CountingAdapter()
    session.mount("http://", adapter)
    url = "http://crm.test/contacts?page={}"

    try:
        pages = [get(session, url.format(page)).json() for page in (1, 2, 3, 4)]
        observer.page_read(0, None)  # the paginator counts the empty page; the ledger does not
        observer.read_finished()
        with pytest.raises(QuotaReached) as untracked:
            get(session, "http://crm.test/accounts")
    finally:
        session.close()

    assert len(adapter.sent) == 2
    assert pages == [{"contacts": [{"id": 1}]}] * 2 + [{}] * 2
    assert held == [True]
    assert observer.tally.outcome == QUOTA_REACHED
    assert (observer.tally.requests, observer.tally.pages) == (2, 0)
    assert ledger.unfinished == ["contacts"]
    assert ledger.observer_of(None, "/api/v1/contacts") is observer  # a base URL with a path
    assert describe(untracked.value).exit_code == EXIT_QUOTA


def contacts_wait_for_accounts(server: DemoServer) -> None:
    """Contacts' first page is answered only once accounts' page has been asked for, so that
    accounts' one request is always among the first three the run sends."""
    asked = threading.Event()

    def hook(resource: str, page: int, params: dict[str, str]) -> None:
        if resource == "accounts":
            asked.set()
        else:
            asked.wait(10)

    server.before_page = hook


def test_a_run_stops_at_its_quota_loads_what_finished_and_the_next_run_finishes_the_rest(
    start_crm: Any, workdir: Path
) -> None:
    crm = start_crm({"accounts": 240, "contacts": 2300, "events": 0, "products": 0, "pipelines": 0})
    contacts_wait_for_accounts(crm)
    resources = ("--resources", "accounts,contacts")

    cut = run_crmsync(workdir, "run", *resources, "--max-requests", "3", env=crm_env(crm))

    assert cut.returncode == EXIT_QUOTA, cut.stderr
    assert len(crm.requests) <= 3
    assert cut.stderr.splitlines()[-1] == (
        "crmsync: quota reached: the run sent its 3 requests (max_requests); loaded accounts;"
        " left, cursors kept where they were: contacts. Run again to finish them"
        " (--resources contacts spends the next quota on them alone)"
    )
    assert "(quota reached)" in cut.stdout
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as db:
        assert {i for (i,) in db.execute("select id from crm.accounts").fetchall()} == (
            crm.store.ids("accounts")
        )
        tables = {t for (t,) in db.execute("select table_name from duckdb_tables()").fetchall()}
        assert "contacts" not in tables  # nothing of a partial read lands
        outcomes = dict(db.execute("select resource, outcome from crm._crmsync_runs").fetchall())
        assert outcomes == {"accounts": "ok", "contacts": QUOTA_REACHED}

    crm.before_page = None
    crm.mutate("contacts", update=5, delete=2)
    done = run_crmsync(workdir, "run", *resources, env=crm_env(crm))

    assert done.returncode == EXIT_OK, done.stderr
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as db:
        for resource in ("accounts", "contacts"):
            ids = [
                i for (i,) in db.execute(f"select id from crm.{resource} order by id").fetchall()
            ]
            assert ids == sorted(crm.store.ids(resource)), resource


def test_an_incremental_read_cut_short_is_read_again_from_where_it_began(
    start_crm: Any, workdir: Path
) -> None:
    crm = start_crm({"accounts": 240, "contacts": 2300, "events": 0, "products": 0, "pipelines": 0})
    destination = DuckDBDestination(workdir)
    options = SyncOptions(resources=("accounts", "contacts"))
    sync(crm, destination, options)
    before = destination.current_values("contacts", "updated_at")
    # the last page of the changes holds the oldest of them: a read that moved its cursor
    # past the newest it saw would never come back for them
    ids = sorted(crm.store.ids("contacts"))
    newest = max(before.values())
    for some, later in ((ids[-200:], 3600), (ids[:1000], 7200)):
        stamp = (newest + timedelta(seconds=later)).strftime("%Y-%m-%dT%H:%M:%SZ")
        crm.store.update("contacts", some, {"updated_at": stamp})
    contacts_wait_for_accounts(crm)

    cut = sync(crm, destination, options, policy=fast_policy(max_requests=3))
    crm.before_page = None

    assert cut.unfinished == ["contacts"]
    assert destination.current_values("contacts", "updated_at") == before  # nothing landed
    done = sync(crm, destination, options)
    assert done.unfinished == []
    assert destination.ids("contacts") == sorted(crm.store.ids("contacts"))
    server = {r["id"]: _time(r["updated_at"]) for r in crm.store.records("contacts")}
    landed = destination.current_values("contacts", "updated_at")
    assert landed == {i: server[i] for i in landed}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_full_refresh_cut_short_loads_nothing(start_crm: Any, workdir: Path) -> None:
    crm = start_crm({"accounts": 240, "contacts": 2300, "events": 0, "products": 0, "pipelines": 0})
    destination = DuckDBDestination(workdir)
    options = SyncOptions(resources=("accounts", "contacts"))
    sync(crm, destination, options)
    before = {r: destination.ids(r) for r in ("accounts", "contacts")}
    crm.mutate("accounts", delete=3)
    contacts_wait_for_accounts(crm)

    with pytest.raises(SyncFailed) as failed:
        sync(
            crm,
            destination,
            SyncOptions(resources=("accounts", "contacts"), full_refresh=True),
            policy=fast_policy(max_requests=3),
        )

    assert isinstance(failed.value.__cause__, Exception)
    failure = describe(failed.value.__cause__)
    assert failure.exit_code == EXIT_QUOTA
    assert "nothing was loaded" in failure.message
    assert any(isinstance(e, QuotaCutReplaceError) for e in _chain(failed.value))
    assert {r: destination.ids(r) for r in ("accounts", "contacts")} == before


def _chain(error: BaseException) -> list[BaseException]:
    from crmsync.failures import causes

    return list(causes(error))


@pytest.mark.parametrize(
    ("limits", "most_wasted"),
    [({}, None), ({"max_requests_per_second": 500.0}, 1), ({"max_requests": 1000}, 1)],
    ids=["plentiful", "ceiling", "quota"],
)
def test_where_requests_are_scarce_a_list_without_a_total_wastes_at_most_one_request(
    start_crm: Any, workdir: Path, limits: dict[str, float], most_wasted: int | None
) -> None:
    crm = start_crm({"accounts": 0, "contacts": 0, "events": 3200, "products": 0, "pipelines": 0})
    crm.latency_ms = 20  # pages ahead are still in flight when the short page ends the read

    result = sync(
        crm, DuckDBDestination(workdir), SyncOptions(resources=("events",)), **_policy(limits)
    )

    (events,) = result.ledger.tallies.values()
    assert events.pages == 7
    assert events.wasted == len(crm.requests) - 7
    if most_wasted is None:
        assert events.wasted > 1  # the doubling window, as fast as it was
    else:
        assert events.wasted <= most_wasted


def _policy(limits: dict[str, float]) -> dict[str, Any]:
    return {"policy": fast_policy(**limits)}
