"""Page-number reads: pages fetched concurrently, none loaded twice or skipped, even when the
list shifts under the reader."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmsync.demo_server import DemoServer, Fault
from crmsync.failures import EXIT_SOURCE, describe
from crmsync.loading.sync import SyncFailed
from crmsync.reading.source import SyncOptions
from tests.support.destinations import DuckDBDestination
from tests.support.rendezvous import Rendezvous
from tests.support.syncs import fast_policy, profile_with, sync

# These tests are about the HTTP side; DuckDB alone shows what landed.
pytestmark = pytest.mark.destinations("duckdb")


def test_pages_of_a_resource_are_fetched_concurrently_within_the_budget(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"contacts": 3000})
    held = server.before_page = Rendezvous(size=4)

    sync(
        server,
        destination,
        SyncOptions(resources=("contacts",)),
        policy=fast_policy(max_in_flight=4),
    )

    seen = server.requests_for("contacts")
    # pages 2 to 6 are read ahead once page 1 gives the total; full page 6 still asks for 7
    assert sorted(int(r.params["page[page]"]) for r in seen) == [1, 2, 3, 4, 5, 6, 7]
    assert [r.rows for r in seen if r.params["page[page]"] == "7"] == [0]
    assert (held.stalled, held.peak) == (False, 4)  # 4 pages at once, never a 5th
    assert destination.ids("contacts") == sorted(server.store.ids("contacts"))


def test_without_a_total_the_look_ahead_stops_at_the_first_short_page(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"events": 3000})

    sync(
        server, destination, SyncOptions(resources=("events",)), policy=fast_policy(max_in_flight=8)
    )

    pages = sorted(int(r.params["page"]) for r in server.requests_for("events"))
    assert pages[:7] == [1, 2, 3, 4, 5, 6, 7]
    assert len(pages) == len(set(pages)) <= 7 + 8
    assert destination.ids("events") == sorted(server.store.ids("events"))


def test_the_budget_caps_requests_in_flight_across_resources(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"accounts": 2000, "contacts": 2000, "events": 2000})
    held = server.before_page = Rendezvous(size=3)

    sync(server, destination, policy=fast_policy(max_in_flight=3))

    assert (held.stalled, held.peak) == (False, 3)  # 3 pages at once, never a 4th
    for resource in ("accounts", "contacts", "events"):
        assert destination.ids(resource) == sorted(server.store.ids(resource))


@pytest.mark.parametrize("page_processes", [0, 1], ids=["dicts", "tables"])
def test_a_record_served_again_after_a_page_shift_is_loaded_once(
    start_crm: Any, destination: DuckDBDestination, page_processes: int, pages_as_tables: list[str]
) -> None:
    """Ids 100..1099 changed since T; once page 1 (100..599) is read, ids 1..10 change too and
    enter the list ahead of it, so page 2 starts at 590: 590..599 come twice."""
    server: DemoServer = start_crm({"contacts": 1500})
    server.store.set_clock(datetime(2030, 1, 1, tzinfo=UTC))
    server.store.update("contacts", range(100, 1100), {"title": "changed"})

    changed: list[int] = []

    def change_behind_the_reader(resource: str, page: int, params: dict[str, str]) -> None:
        if page >= 2 and not changed:  # page 1 is read; the next is served after the change
            changed.append(page)
            server.store.update("contacts", range(1, 11), {"title": "changed behind"})

    server.before_page = change_behind_the_reader
    result = sync(
        server,
        destination,
        SyncOptions(
            resources=("contacts",), since="2030-01-01T00:00:00Z", page_processes=page_processes
        ),
        policy=fast_policy(max_in_flight=1),
    )

    served = sorted((int(r.params["page[page]"]), r.rows) for r in server.requests_for("contacts"))
    assert served == [(1, 500), (2, 500), (3, 10)]
    live = server.store.ids("contacts")
    assert destination.ids("contacts") == sorted(i for i in live if 100 <= i < 1100)
    (tally,) = result.ledger.tallies.values()
    assert (tally.rows, tally.repeats) == (1010, 10)
    assert bool(pages_as_tables) is bool(page_processes)


@pytest.mark.parametrize("page_processes", [0, 1], ids=["dicts", "tables"])
def test_a_page_out_of_id_order_fails_the_read_and_loads_nothing(
    start_crm: Any, destination: DuckDBDestination, page_processes: int, pages_as_tables: list[str]
) -> None:
    server: DemoServer = start_crm({"contacts": 1200})
    server.faults.add(Fault("/contacts", "unordered", page=2, times=None))
    options = SyncOptions(resources=("contacts",), page_processes=page_processes)

    with pytest.raises(SyncFailed) as raised:
        sync(server, destination, options)

    failure = describe(raised.value.__cause__ or raised.value)
    # which pair is named depends on the soft-deleted records a first read drops beforehand
    order = re.fullmatch(
        r"contacts: GET /contacts answered 200 with id (\d+) after (\d+): the records are not"
        r" in ascending id order; set ordered_by_primary_key = false for contacts in your"
        r" --config",
        failure.message,
    )
    assert failure.exit_code == EXIT_SOURCE
    assert order is not None, failure.message
    assert int(order[1]) < int(order[2])
    assert "contacts" not in destination.tables()
    assert bool(pages_as_tables) is bool(page_processes)


def test_a_resource_not_ordered_by_id_loads_exactly_through_the_merge_dedup(
    start_crm: Any, destination: DuckDBDestination, tmp_path: Path
) -> None:
    server: DemoServer = start_crm({"contacts": 1200})
    server.faults.add(Fault("/contacts", "unordered", times=None))
    profile = profile_with(
        tmp_path, '[[resources]]\nname = "contacts"\nordered_by_primary_key = false\n'
    )

    sync(server, destination, SyncOptions(resources=("contacts",)), profile=profile)

    assert destination.ids("contacts") == sorted(server.store.ids("contacts"))


@pytest.mark.parametrize(
    ("resource", "paginator"),
    [
        ("contacts", 'page_param = "pg", limit_param = "page[limit]"'),
        ("events", 'page_param = "pg", limit_param = "limit"'),
    ],
    ids=["with-a-total", "without-meta"],
)
def test_a_list_that_ignores_the_page_param_fails_at_its_second_page(
    start_crm: Any, destination: DuckDBDestination, tmp_path: Path, resource: str, paginator: str
) -> None:
    """The CRM ignores a param it does not know (`pg`), so it serves page 1 again and again."""
    server: DemoServer = start_crm({resource: 1200})
    profile = profile_with(
        tmp_path,
        f'[[resources]]\nname = "{resource}"\n'
        f'endpoint = {{ paginator = {{ type = "crm_page_number", {paginator}, limit = 500 }} }}\n',
    )

    with pytest.raises(SyncFailed) as raised:
        sync(server, destination, SyncOptions(resources=(resource,)), profile=profile)

    failure = describe(raised.value.__cause__ or raised.value)
    assert (failure.exit_code, failure.message) == (
        EXIT_SOURCE,
        f"{resource}: GET /{resource} answered the same records as the page before it"
        f" (id 1 to 500): the CRM ignores the page param; check the paginator of {resource}"
        " in your profile",
    )
    served = [r.rows for r in server.requests_for(resource)]
    assert served[:2] == [500, 500] and len(served) <= 4  # page 2, and what was read ahead
    assert resource not in destination.tables()


@pytest.mark.parametrize("page_processes", [0, 1], ids=["dicts", "tables"])
@pytest.mark.parametrize("id_type", ["bigint", "text"])
def test_integer_ids_sent_as_strings_load_whole_across_a_digit_boundary(
    start_crm: Any,
    destination: DuckDBDestination,
    tmp_path: Path,
    id_type: str,
    page_processes: int,
) -> None:
    """Ids "100" to "1400" changed since T, in pages of 450: page 2 ends at "999", page 3
    starts at "1000", which sorts before it as text, so compared as text every record of page
    3 would look served before. As integers they ascend; declared text, they are not compared."""
    server: DemoServer = start_crm({"contacts": 1400})
    server.store.set_clock(datetime(2030, 1, 1, tzinfo=UTC))
    for record_id in range(100, 1401):
        server.store.update("contacts", [record_id], {"id": str(record_id)})
    profile = profile_with(
        tmp_path,
        '[[resources]]\nname = "contacts"\n'
        'endpoint = { paginator = { type = "crm_page_number", page_param = "page[page]",'
        ' limit_param = "page[limit]", limit = 450 } }\n'
        f'columns = {{ id = {{ data_type = "{id_type}", nullable = false }} }}\n',
    )
    options = SyncOptions(
        resources=("contacts",), since="2030-01-01T00:00:00Z", page_processes=page_processes
    )

    result = sync(server, destination, options, profile=profile)

    live = sorted(str(i) for i in server.store.ids("contacts") if int(i) >= 100)
    assert sorted(str(i) for i in destination.ids("contacts")) == live
    (tally,) = result.ledger.tallies.values()
    assert (tally.rows, tally.repeats, tally.complete) == (1301, 0, True)
