"""Exact under change: no record changed before a read began is lost when the list moves while
pages are fetched ahead, out of order, or again.

The bundled CRM's `before_page` hook moves the list at chosen moments between concurrent page
requests; the server's request log is the witness of what was served.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from crmsync.demo_server import DemoServer, Fault
from crmsync.demo_server.app import RequestRecord
from crmsync.reading.source import SyncOptions
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import fast_policy, sync

CONTACTS = 3000
CHANGED_BEFORE = list(range(1, 2400, 2))
"""The odd ids 1..2399: 1,200 contacts, 3 pages of the next read's `updated_since` view."""
ENTER_AHEAD = list(range(2, 54, 2))
"""26 contacts changed during the read that enter the view ahead of position 1000 (id 2001)."""
ENTER_AT_END = list(range(2402, 2470, 2))


# These tests are about what is read; DuckDB alone shows what landed.
pytestmark = pytest.mark.destinations("duckdb")


def titles(destination: DuckDBDestination) -> dict[int, str]:
    return dict(destination.query("select id, title from {contacts}"))


def pages_served(server: DemoServer) -> list[tuple[int, int]]:
    """(page, rows) of each answered contacts request, in arrival order."""
    records: list[RequestRecord] = server.requests_for("contacts")
    return [(int(r.params["page[page]"]), r.rows) for r in records if r.status == 200]


def move_the_list_while_page_2_is_late(server: DemoServer) -> None:
    """Page 2's first answer waits until page 3 (fetched ahead) is served, then 60 contacts
    change: 26 enter ahead of page 3's first position and push 26 records into it. Page 2
    answers broken JSON and is retried after the move."""
    first_page_2 = threading.Lock()

    def page_3_served() -> bool:
        return any(page == 3 for page, _ in pages_served(server))

    def hook(resource: str, page: int, params: dict[str, str]) -> None:
        if resource == "contacts" and page == 2 and first_page_2.acquire(blocking=False):
            deadline = time.monotonic() + 30
            while not page_3_served() and time.monotonic() < deadline:
                time.sleep(0.005)
            server.store.update("contacts", ENTER_AHEAD + ENTER_AT_END, {"title": "during"})

    server.faults.add(Fault("/contacts", "malformed", page=2))
    server.before_page = hook


@pytest.mark.parametrize("page_processes", [0, 1], ids=["dicts", "tables"])
def test_records_pushed_into_a_page_fetched_ahead_are_read_by_the_same_sync(
    start_crm: Any, destination: DuckDBDestination, page_processes: int
) -> None:
    server: DemoServer = start_crm({"contacts": CONTACTS})
    options = SyncOptions(resources=("contacts",), page_processes=page_processes)
    sync(server, destination, options)
    server.store.update("contacts", CHANGED_BEFORE, {"title": "before"})
    move_the_list_while_page_2_is_late(server)
    server.clear_requests()

    result = sync(server, destination, options, policy=fast_policy(max_in_flight=4))

    landed = titles(destination)
    assert {i for i in CHANGED_BEFORE if landed.get(i) != "before"} & server.store.ids(
        "contacts"
    ) == set()
    # page 3 was fetched ahead before the move, then again after page 2's retry
    assert [page for page, _ in pages_served(server)].count(3) == 2
    (tally,) = result.ledger.tallies.values()
    assert (tally.refetched, tally.list_moved, tally.complete) == (1, True, True)

    server.before_page = None
    sync(server, destination, options)

    live = {
        r["id"]: r.get("title") for r in server.store.records("contacts", include_deleted=False)
    }
    assert titles(destination) == live


def test_pages_of_a_list_that_does_not_move_are_read_ahead_once(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"contacts": CONTACTS}, latency_ms=20)
    options = SyncOptions(resources=("contacts",))
    sync(server, destination, options)
    server.store.update("contacts", CHANGED_BEFORE, {"title": "before"})
    server.clear_requests()

    result = sync(server, destination, options, policy=fast_policy(max_in_flight=4))

    assert sorted(page for page, _ in pages_served(server)) == [1, 2, 3]
    (tally,) = result.ledger.tallies.values()
    assert (tally.refetched, tally.list_moved, tally.complete) == (0, False, True)
    assert {i: t for i, t in titles(destination).items() if i in CHANGED_BEFORE} == {
        i: "before" for i in CHANGED_BEFORE if i in server.store.ids("contacts")
    }


def test_an_incremental_read_without_a_total_reads_one_page_after_another(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    """`/events` reports no total, so a fetched-ahead page could not be checked: each page is
    requested once the one before it has arrived."""
    server: DemoServer = start_crm({"events": 3000}, latency_ms=20)
    options = SyncOptions(resources=("events",))
    sync(server, destination, options)
    server.store.update("events", range(1, 2400, 2), {"type": "changed"})
    server.clear_requests()

    sync(server, destination, options, policy=fast_policy(max_in_flight=8))

    seen = server.requests_for("events")
    assert [int(r.params["page"]) for r in seen] == [1, 2, 3]
    assert all(after.at >= before.finished_at for before, after in itertools.pairwise(seen))
