"""A resource's first read loads by replace; every later read merges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmsync.demo_server import DemoServer
from crmsync.loading.sync import DEFAULT_DATASET
from crmsync.reading.first_read import DeletedRecordFilter, replaces_merge
from crmsync.reading.page import Page
from crmsync.reading.source import SyncOptions
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import profile_with, sync

STAGING_DATASET = f"{DEFAULT_DATASET}_staging"


pytestmark = pytest.mark.destinations("duckdb")


def staged_tables(destination: DuckDBDestination) -> set[str]:
    """Tables of dlt's staging dataset: a merge copies its load there first, a replace does not."""
    rows = destination.query(
        f"select table_name from information_schema.tables where table_schema = '{STAGING_DATASET}'"
    )
    return {row[0] for row in rows}


@pytest.mark.parametrize("page_processes", [0, 1], ids=["dicts", "tables"])
def test_a_first_read_is_written_without_a_staging_copy_and_later_reads_merge(
    crm: DemoServer, destination: DuckDBDestination, page_processes: int, pages_as_tables: list[str]
) -> None:
    options = SyncOptions(resources=("accounts", "contacts"), page_processes=page_processes)

    sync(crm, destination, options)

    assert staged_tables(destination) == set()
    assert crm.store.ids("contacts", include_deleted=True) != crm.store.ids("contacts")
    assert destination.ids("contacts") == sorted(crm.store.ids("contacts"))
    assert destination.ids("accounts") == sorted(crm.store.ids("accounts"))

    changed = crm.mutate("accounts", create=1, update=2, delete=1)
    sync(crm, destination, options)

    assert {"accounts", "accounts__tags"} <= staged_tables(destination)
    assert destination.ids("accounts") == sorted(crm.store.ids("accounts"))
    assert set(changed.created) <= set(destination.ids("accounts"))
    assert bool(pages_as_tables) is bool(page_processes)


@pytest.mark.parametrize("page_processes", [0, 1], ids=["dicts", "tables"])
def test_a_first_read_over_several_pages_counts_every_record_served(
    start_crm: Any, destination: DuckDBDestination, page_processes: int
) -> None:
    """Deleted records are dropped before the load, not before the paginator counts a page:
    a page short of deleted records is not the last page."""
    server: DemoServer = start_crm({"contacts": 1600})
    served = server.store.ids("contacts", include_deleted=True)
    assert len(served) - len(server.store.ids("contacts")) > 3  # deletions on most pages

    result = sync(
        server, destination, SyncOptions(resources=("contacts",), page_processes=page_processes)
    )

    tally = result.ledger.tallies["contacts"]
    assert (tally.rows, tally.reported_total, tally.complete) == (1600, 1600, True)
    assert destination.ids("contacts") == sorted(server.store.ids("contacts"))


def test_a_first_read_loads_no_nested_rows_of_soft_deleted_records(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    sync(crm, destination, SyncOptions(resources=("accounts",)))

    parents = destination.query(
        "select distinct a.id from {accounts__tags} t"
        " join {accounts} a on t._dlt_parent_id = a._dlt_id"
    )
    orphans = destination.query(
        "select count(*) from {accounts__tags} t"
        " where t._dlt_root_id not in (select _dlt_id from {accounts})"
    )
    assert {row[0] for row in parents} <= crm.store.ids("accounts")
    assert orphans == [(0,)]


@pytest.mark.parametrize(
    ("since", "config", "with_deleted"),
    [
        pytest.param("2020-01-01T00:00:00Z", "", False, id="since"),
        pytest.param(None, "ordered_by_primary_key = false", False, id="unordered"),
        # dlt's upsert inserts a record that arrives already deleted (unless `delete_absent`)
        pytest.param(
            None,
            'write_disposition = { disposition = "merge", strategy = "upsert" }',
            True,
            id="upsert",
        ),
    ],
)
def test_a_read_that_cannot_stand_for_the_whole_table_merges(
    crm: DemoServer,
    destination: DuckDBDestination,
    tmp_path: Path,
    since: str | None,
    config: str,
    with_deleted: bool,
) -> None:
    profile = profile_with(tmp_path, f'[[resources]]\nname = "contacts"\n{config}\n')
    options = SyncOptions(resources=("contacts",), since=since)

    sync(crm, destination, options, profile=profile)

    assert "contacts" in staged_tables(destination)
    assert destination.ids("contacts") == sorted(
        crm.store.ids("contacts", include_deleted=with_deleted)
    )


@pytest.mark.parametrize(
    ("write_disposition", "whole_read", "replaces"),
    [
        ("merge", True, True),
        ({"disposition": "merge"}, True, True),
        ({"disposition": "merge", "strategy": "delete-insert"}, True, True),
        ({"disposition": "merge", "strategy": "upsert"}, True, False),
        ({"disposition": "merge", "strategy": "scd2"}, True, False),
        ("append", True, False),
        ("replace", True, False),
        ("merge", False, False),
    ],
)
def test_only_a_whole_read_of_a_delete_insert_merge_loads_by_replace(
    write_disposition: Any, whole_read: bool, replaces: bool
) -> None:
    assert replaces_merge(write_disposition, whole_read) is replaces


@pytest.mark.parametrize(
    ("hint", "values", "kept"),
    [
        ({"data_type": "timestamp", "hard_delete": True}, [None, "2024-05-01T09:00:00Z"], [0]),
        ({"data_type": "bool", "hard_delete": True}, [None, False, True], [0, 1]),
        ({"data_type": "timestamp", "hard_delete": False}, [None, "2024-05-01T09:00:00Z"], [0, 1]),
    ],
)
def test_deleted_records_are_dropped_by_dlts_hard_delete_rule(
    hint: dict[str, Any], values: list[Any], kept: list[int]
) -> None:
    step = DeletedRecordFilter({"gone": hint})
    page = Page.of([{"id": i, "gone": value} for i, value in enumerate(values)])

    filtered = step(page)

    assert [record["id"] for record in filtered.records] == kept
