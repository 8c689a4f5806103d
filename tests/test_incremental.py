"""Incremental sync: only what changed is fetched, and the destination mirrors the CRM."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmsync.demo_server import DemoServer, Fault
from crmsync.failures import EXIT_SOURCE, causes, describe
from crmsync.ledger import IncompleteReadError
from crmsync.loading.sync import SyncFailed
from crmsync.reading.source import SyncOptions
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import RESOURCES, fast_policy, profile_with, sync

MUTABLE = ("accounts", "contacts", "products", "pipelines")
# DESTINATION_FREE: the tests marked `destinations("duckdb")` prove what the reader asks for
# and holds: the `since` it sends, the boundary second's records, the lookback behind the
# reader, the ledger and cursor of an incomplete read, a strict read failing before anything
# loads. What each destination does with that (merging, deleting, replacing, storing the
# cursor with the data) the other tests prove on all four.


def since_sent(server: DemoServer, resource: str) -> set[str | None]:
    return {r.params.get("updated_since") for r in server.requests_for(resource)}


def test_the_second_sync_fetches_only_changes_and_mirrors_them(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    sync(crm, destination)
    first_max = {r: max(x["updated_at"] for x in crm.store.records(r)) for r in RESOURCES}
    changed = {r: crm.mutate(r, create=2, update=3, delete=2) for r in MUTABLE}
    changed["events"] = crm.mutate("events", create=4, update=1)
    crm.store.update("contacts", [changed["contacts"].updated[0]], {"title": "Chief Tester"})
    crm.clear_requests()

    sync(crm, destination)

    for resource in RESOURCES:
        mutation = changed[resource]
        assert destination.current_ids(resource) == sorted(crm.store.ids(resource)), resource
        assert set(mutation.created) <= set(destination.current_ids(resource))
        assert not set(mutation.deleted) & set(destination.current_ids(resource))
        (since,) = since_sent(crm, resource)
        assert since is not None
        served = sum(r.rows for r in crm.requests_for(resource))
        expected = [x for x in crm.store.records(resource) if x["updated_at"] >= since]
        assert served == len(expected), resource
        touched = {*mutation.created, *mutation.updated, *mutation.deleted}
        assert touched <= {x["id"] for x in expected}
        lookback_only = [x for x in expected if x["id"] not in touched]
        assert all(x["updated_at"] <= first_max[resource] for x in lookback_only)
    (title,) = destination.query(
        f"select title from {{contacts}} where id = {changed['contacts'].updated[0]}"
        " order by _dlt_load_id desc limit 1"
    )[0]
    assert title == "Chief Tester"


@pytest.mark.destinations("duckdb")  # see DESTINATION_FREE
def test_the_first_sync_starts_at_since_when_given(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    since = "2026-01-01T00:00:00Z"

    sync(crm, destination, SyncOptions(resources=("contacts",), since=since))

    assert since_sent(crm, "contacts") == {since}
    live = crm.store.records("contacts", include_deleted=False)
    assert destination.current_ids("contacts") == sorted(
        x["id"] for x in live if x["updated_at"] >= since
    )


@pytest.mark.destinations("duckdb")  # see DESTINATION_FREE
def test_several_updates_within_the_boundary_second_are_all_kept(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    options = SyncOptions(resources=("contacts",), lookback_seconds=0)
    crm.store.set_clock(datetime.now(UTC).replace(microsecond=0))
    crm.store.update("contacts", [1, 2], {"title": "first"})
    sync(crm, destination, options)
    crm.store.update("contacts", [1], {"title": "second"})
    created = crm.mutate("contacts", create=1).created

    sync(crm, destination, options)

    titles = dict(
        destination.query(
            "select id, title from {contacts} where id in (1, 2) order by _dlt_load_id"
        )
    )
    assert titles == {1: "second", 2: "first"}
    assert set(created) <= set(destination.current_ids("contacts"))


@pytest.mark.destinations("duckdb")  # see DESTINATION_FREE
def test_a_record_changed_behind_the_reader_is_caught_by_the_next_run(
    start_crm: object, destination: DuckDBDestination
) -> None:
    """Contact 1 changes after its page was read, contact 1400 later, before its page is read.

    The cursor then holds 1400's newer timestamp; the next run must still ask from before 1's.
    """
    server: DemoServer = start_crm({"contacts": 1500})  # type: ignore[operator]
    options = SyncOptions(resources=("contacts",), lookback_seconds=1)
    changed: list[int] = []

    def change_while_reading(resource: str, page: int, params: dict[str, str]) -> None:
        """Once page 1 (1..500) is read, before the next page is served: 1 changes, and 1400
        (page 3) three seconds later on the CRM's clock, more than the lookback."""
        if page >= 2 and not changed:
            changed.append(page)
            server.store.set_clock(datetime.now(UTC).replace(microsecond=0))
            server.store.update("contacts", [1], {"title": "changed behind the reader"})
            server.store.advance_clock(3)
            server.store.update("contacts", [1400], {"title": "changed ahead of the reader"})

    server.before_page = change_while_reading
    sync(server, destination, options, policy=fast_policy(max_in_flight=1))
    server.before_page = None
    first = dict(
        destination.query(
            "select id, title from {contacts} where id in (1, 1400) order by _dlt_load_id"
        )
    )
    assert first[1400] == "changed ahead of the reader"
    assert first[1] != "changed behind the reader"

    sync(server, destination, options)

    titles = dict(
        destination.query(
            "select id, title from {contacts} where id in (1, 1400) order by _dlt_load_id"
        )
    )
    assert titles == {1: "changed behind the reader", 1400: "changed ahead of the reader"}


def test_the_cursor_does_not_advance_when_a_sync_fails(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    options = SyncOptions(resources=("contacts",))
    sync(crm, destination, options)
    crm.mutate("contacts", update=2)
    crm.clear_requests()
    crm.faults.add(Fault("/contacts", "status", status=500, times=4))
    with pytest.raises(SyncFailed):
        sync(crm, destination, options)
    failed_since = since_sent(crm, "contacts")
    crm.clear_requests()

    sync(crm, destination, options)

    assert since_sent(crm, "contacts") == failed_since
    assert destination.current_ids("contacts") == sorted(crm.store.ids("contacts"))


def test_full_refresh_leaves_the_destination_exactly_equal_to_the_crm(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    sync(crm, destination)
    tags = "select count(*) from {accounts__tags}" if destination.nested_tables else "select 1"
    before = destination.query(tags)
    crm.mutate("contacts", update=3, delete=3)
    crm.clear_requests()

    sync(crm, destination, SyncOptions(full_refresh=True, resources=("accounts", "contacts")))

    assert since_sent(crm, "contacts") == {None}
    assert {r.resource for r in crm.requests} == {"accounts", "contacts"}
    for resource in RESOURCES:
        assert destination.current_ids(resource) == sorted(crm.store.ids(resource)), resource
    assert destination.query(tags) == before


def test_full_refresh_removes_rows_whose_deletion_was_missed(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    sync(crm, destination, SyncOptions(resources=("contacts",), keep_deleted=True))
    deleted = crm.store.ids("contacts", include_deleted=True) - crm.store.ids("contacts")
    assert deleted and deleted <= set(destination.current_ids("contacts", include_deleted=True))

    sync(crm, destination, SyncOptions(resources=("contacts",), full_refresh=True))

    assert destination.current_ids("contacts") == sorted(crm.store.ids("contacts"))


def test_keep_deleted_keeps_soft_deleted_rows_flagged(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    options = SyncOptions(resources=("accounts",), keep_deleted=True)
    sync(crm, destination, options)
    newly_deleted = crm.mutate("accounts", delete=2).deleted

    sync(crm, destination, options)

    every_id = crm.store.ids("accounts", include_deleted=True)
    assert destination.current_ids("accounts", include_deleted=True) == sorted(every_id)
    flagged = {
        row[0]
        for row in destination.query("select id from {accounts} where deleted_at is not null")
    }
    assert flagged == every_id - crm.store.ids("accounts")
    assert set(newly_deleted) <= flagged


@pytest.mark.parametrize("full_refresh", [False, True], ids=["first-read", "full-refresh"])
def test_an_incomplete_read_never_replaces_a_table(
    start_crm: object, destination: DuckDBDestination, full_refresh: bool
) -> None:
    server: DemoServer = start_crm({"contacts": 1200})  # type: ignore[operator]
    options = SyncOptions(resources=("contacts",), full_refresh=full_refresh)
    if full_refresh:
        sync(server, destination, options)
    loaded = destination.current_ids("contacts") if full_refresh else []
    server.faults.add(Fault("/contacts", "short_page", page=2))

    with pytest.raises(SyncFailed) as raised:
        sync(server, destination, options)

    failure = describe(raised.value.__cause__ or raised.value)
    assert (failure.exit_code, failure.message) == (
        EXIT_SOURCE,
        "contacts: GET /contacts reported meta.total=1200 but its pages held 999 distinct"
        " records; the read is incomplete, so nothing was loaded; rerun later",
    )
    tables = destination.tables()
    assert (destination.current_ids("contacts") if "contacts" in tables else []) == loaded


@pytest.mark.destinations("duckdb")  # see DESTINATION_FREE
def test_an_incomplete_incremental_read_loads_and_is_read_again_by_the_next_run(
    start_crm: object, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"contacts": 1200})  # type: ignore[operator]
    options = SyncOptions(resources=("contacts",))
    sync(server, destination, options)
    server.store.update("contacts", range(1, 1101), {"title": "changed"})
    server.faults.add(Fault("/contacts", "short_page", page=2))
    server.clear_requests()

    result = sync(server, destination, options)

    tally = result.ledger.tallies["contacts"]
    assert (tally.rows, tally.complete, tally.outcome) == (999, False, "incomplete")
    assert tally.reported_total is not None and tally.reported_total >= 1100
    (held,) = since_sent(server, "contacts")
    server.clear_requests()

    sync(server, destination, options)

    (since,) = since_sent(server, "contacts")
    assert since is not None and held is not None and since <= held
    live = {r["id"]: r.get("title") for r in server.store.records("contacts", False)}
    assert destination.current_values("contacts", "title") == live


@pytest.mark.destinations("duckdb")  # see DESTINATION_FREE
def test_strict_fails_an_incomplete_read_and_loads_nothing(
    start_crm: object, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"contacts": 1200})  # type: ignore[operator]
    server.faults.add(Fault("/contacts", "short_page", page=2))

    with pytest.raises(SyncFailed) as raised:
        sync(server, destination, SyncOptions(resources=("contacts",), strict=True))

    assert any(isinstance(e, IncompleteReadError) for e in causes(raised.value))
    assert "contacts" not in destination.tables()


def test_a_resource_configured_to_keep_deleted_rows_keeps_them(
    crm: DemoServer, destination: DuckDBDestination, tmp_path: Path
) -> None:
    profile = profile_with(
        tmp_path,
        '[[resources]]\nname = "contacts"\n'
        'columns = { deleted_at = { data_type = "timestamp", hard_delete = false } }\n',
    )

    sync(crm, destination, SyncOptions(resources=("accounts", "contacts")), profile=profile)

    assert destination.current_ids("contacts", include_deleted=True) == sorted(
        crm.store.ids("contacts", include_deleted=True)
    )
    assert destination.current_ids("accounts") == sorted(crm.store.ids("accounts"))
