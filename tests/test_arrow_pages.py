"""The fast path loads exactly what dlt's own normalizer loads: tables, columns, types, values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from crmsync.demo_server import DemoServer
from crmsync.ledger import RunLedger
from crmsync.profiles.profile import built_in_profile
from crmsync.reading.arrow_pages import PageBatcher, TypedPages
from crmsync.reading.child_tables import ChildTables
from crmsync.reading.page import Page
from crmsync.reading.page_reader import PageReader
from crmsync.reading.source import SyncOptions, crm_source
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import connection_to, fast_policy, sync

SIZES = {"accounts": 700, "contacts": 1100, "events": 1300, "products": 40, "pipelines": 8}


def snapshot(destination: DuckDBDestination) -> dict[str, Any]:
    """Every data table: its columns with types, and its rows without dlt's random ids; a child
    table's rows with their parent's `id` and whether their keys link as dlt links them; and
    dlt's schema of each child table and of its parent's row key."""
    tables = {}
    for table in sorted(t for t in destination.tables() if not t.startswith("_")):
        types = destination.column_types(table)
        columns = sorted(c for c in types if not c.startswith("_dlt"))
        if "_dlt_parent_id" in types:
            parent = table.rsplit("__", 1)[0]
            rows = destination.query(
                f"select p.id, c._dlt_list_idx, c._dlt_root_id = p._dlt_id,"
                f" c._dlt_parent_id = p._dlt_id, {', '.join(f'c.{c}' for c in columns)}"
                f" from {{{table}}} c left join {{{parent}}} p on c._dlt_parent_id = p._dlt_id"
            )
            (keys,) = destination.query(
                f"select count(distinct _dlt_id) = count(*) from {{{table}}}"
            )
            tables[f"{table} keys unique"] = {"types": {}, "rows": [repr(keys)]}
        else:
            rows = destination.query(f"select {', '.join(columns)} from {{{table}}}")
        tables[table] = {"types": {c: types[c] for c in columns}, "rows": sorted(map(repr, rows))}
    ((stored,),) = destination.query(
        "select schema from {_dlt_version} order by inserted_at desc limit 1"
    )
    schema = json.loads(stored)["tables"]
    for name, table in schema.items():
        if "parent" in table:
            tables[f"{name} schema"] = {"types": {}, "rows": [json.dumps(table, sort_keys=True)]}
            row_key = schema[table["parent"]]["columns"]["_dlt_id"]
            rows = [json.dumps(row_key, sort_keys=True)]
            tables[f"{table['parent']} row key"] = {"types": {}, "rows": rows}
    return tables


def test_the_fast_path_loads_exactly_what_the_straightforward_path_loads(
    start_crm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = {}
    child_files: list[str] = []
    write = ChildTables._write

    def writing(self: ChildTables, *args: Any) -> Any:
        child_files.append(args[1])
        return write(self, *args)

    monkeypatch.setattr(ChildTables, "_write", writing)
    for arrow_pages in (False, True):
        server: DemoServer = start_crm(SIZES)
        server.store.set_clock(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
        server.store.update("contacts", [7], {"loyalty": {"tier": "gold", "points": 1200}})
        server.store.update("events", [9], {"payload": {"deep": {"list": [1, {"x": None}]}}})
        server.store.update("accounts", [2], {"tags": ["a", "b", "a"]})
        workdir = tmp_path / f"arrow-{arrow_pages}"
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        destination = DuckDBDestination(workdir)
        sync(server, destination, SyncOptions(arrow_pages=arrow_pages))
        server.store.advance_clock(60)
        server.mutate("contacts", update=5, delete=2, create=3)
        # an account's tags grow, shrink, empty, go; deleted accounts take their tags along
        server.store.update("accounts", [2], {"tags": ["b"]})
        server.store.update("accounts", [3], {"tags": ["x", "y", "z", "w", "v"]})
        server.store.update("accounts", [4], {"tags": []})
        server.store.update("accounts", [5], {"tags": None})
        server.mutate("accounts", update=4, delete=3, create=2)
        sync(server, destination, SyncOptions(arrow_pages=arrow_pages))
        snapshots[arrow_pages] = snapshot(destination)

    straightforward, fast = snapshots[False], snapshots[True]
    assert child_files.count("accounts__tags") == 2  # one batch a run, both on the fast path
    assert fast.keys() == straightforward.keys()
    for table in straightforward:
        assert fast[table]["types"] == straightforward[table]["types"], table
        assert fast[table]["rows"] == straightforward[table]["rows"], table


HINTS = built_in_profile()["resources"][1]["columns"] | {"updated_at": {"data_type": "timestamp"}}


@pytest.mark.parametrize(
    "page",
    [
        [{"id": 1, "stages": [{"id": 1}]}],
        [{"id": 1, "scores": [1.5]}],
        [{"id": 1, "x": "text"}, {"id": 2, "x": 3}],
        [{"id": 1, "updated_at": "not a timestamp"}],
    ],
    ids=["list-of-objects", "list-of-floats", "mixed-types", "unparsable-hinted-value"],
)
def test_a_page_arrow_cannot_hold_as_dlt_would_goes_on_as_dicts(page: list[Any]) -> None:
    assert TypedPages(HINTS)(Page.of(page)) is page


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "dicts"])
def test_every_row_gets_its_own_row_key_in_either_form(arrow: bool) -> None:
    page = [{"id": i, "stages": [{"a": 1}] if i == 0 and not arrow else []} for i in range(1000)]

    typed = TypedPages(HINTS)(Page.of(page))

    keys = typed.column("_dlt_id").to_pylist() if arrow else [r["_dlt_id"] for r in typed]
    assert isinstance(typed, pa.Table) is arrow
    assert len(set(keys)) == 1000
    assert {len(key) for key in keys} == {16}


def test_after_a_page_with_lists_the_resource_goes_as_dicts_without_another_arrow_try() -> None:
    typed = TypedPages(HINTS)
    with_lists, without_lists = [{"id": 1, "stages": [{"a": 1}]}], [{"id": 2, "stages": []}]

    assert isinstance(TypedPages(HINTS)(Page.of(without_lists)), pa.Table)
    assert typed(Page.of(with_lists)) is with_lists
    assert typed(Page.of(without_lists)) is without_lists


def test_nested_objects_become_double_underscore_columns_in_hinted_types() -> None:
    page = [
        {"id": 1, "account_id": None, "custom_fields": {"tier": "a", "x": {"y": True}}},
        {"id": 2, "account_id": 5, "custom_fields": {}, "tags": []},
    ]

    table = TypedPages(HINTS)(Page.of(page))

    assert isinstance(table, pa.Table)
    assert table.schema.names == [
        "id",
        "account_id",
        "custom_fields__tier",
        "custom_fields__x__y",
        "_dlt_id",
    ]
    assert table.column("custom_fields__x__y").to_pylist() == [True, None]


class _Page(list[Any]):
    def __init__(self, items: list[Any], has_next_page: bool) -> None:
        super().__init__(items)
        self.paginator = type("P", (), {"has_next_page": has_next_page})()


def ids_of(batches: list[Any]) -> list[list[int]]:
    return [
        batch.column("id").to_pylist() if isinstance(batch, pa.Table) else [r["id"] for r in batch]
        for batch in batches
    ]


def test_pages_are_joined_until_the_batch_is_full_or_the_read_ends() -> None:
    batcher = PageBatcher(TypedPages(HINTS), max_rows=4)
    pages = [([1, 2], True), ([3, 4], True), ([5], True), ([6], False)]

    results = [list(batcher(Page.of(_Page([{"id": i} for i in ids], more)))) for ids, more in pages]

    assert [ids_of(r) for r in results] == [[], [[1, 2, 3, 4]], [], [[5, 6]]]
    assert all(isinstance(batch, pa.Table) for r in results for batch in r)


def test_a_column_that_changes_type_sends_the_read_on_as_dicts_after_the_batch_so_far() -> None:
    batcher = PageBatcher(TypedPages(HINTS), max_rows=100)
    pages = [
        [{"id": 1, "note": "a"}],
        [{"id": 2, "note": None, "extra": 1.5}],
        [{"id": 3, "note": 7}],
        [{"id": 4, "note": "b"}],
    ]

    results = [
        list(batcher(Page.of(_Page(page, more))))
        for page, more in zip(pages, [1, 1, 1, 0], strict=True)
    ]

    assert [ids_of(r) for r in results] == [[], [], [[1, 2]], [[3, 4]]]
    tables, (dicts,) = results[2][0], results[3]
    assert tables.column("extra").to_pylist() == [None, 1.5]
    assert [(r["id"], r["note"]) for r in dicts] == [(3, 7), (4, "b")]


def test_a_dict_page_drops_nulls_dlt_could_not_type_and_keeps_hinted_ones() -> None:
    page = [
        {
            "id": 1,
            "stages": [{"a": 1}],
            "address": None,
            "custom_fields": {"note": None, "tier": "gold"},
            "deleted_at": None,
        }
    ]

    (record,) = TypedPages(HINTS)(Page.of(page))

    assert "address" not in record
    assert record["custom_fields"] == {"tier": "gold"}
    assert "deleted_at" in record and record["deleted_at"] is None


@pytest.mark.parametrize(
    ("first", "later"),
    [(None, [1, 2]), ([1], ["a"]), ([True], [1]), (None, ["a", None])],
    ids=["integers-after-text", "text-after-integers", "integers-after-booleans", "a-null"],
)
def test_child_tables_land_as_dlts_normalizer_lands_them_when_a_later_page_differs(
    start_crm: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: list[Any] | None,
    later: list[Any],
) -> None:
    """`later` tags on the second page of the first run and on the whole first page of the
    second, after `first` tags on every account (else the demo CRM's text tags)."""
    snapshots = {}
    sizes = {"accounts": 700, "contacts": 1, "events": 1, "products": 1, "pipelines": 1}
    for arrow_pages in (False, True):
        server: DemoServer = start_crm(sizes)
        server.store.set_clock(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
        if first is not None:
            server.store.update("accounts", range(1, 701), {"tags": first})
        server.store.update("accounts", [650, 651], {"tags": later})
        workdir = tmp_path / f"arrow-{arrow_pages}"
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        destination = DuckDBDestination(workdir)
        options = SyncOptions(arrow_pages=arrow_pages, resources=("accounts",))
        sync(server, destination, options)
        server.store.advance_clock(60)
        server.store.update("accounts", range(1, 501), {"tags": later})
        sync(server, destination, options)
        snapshots[arrow_pages] = snapshot(destination)

    assert snapshots[True] == snapshots[False]


def test_a_list_of_values_stays_a_list_column_of_the_page_table() -> None:
    page = [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}, {"id": 3}]

    table = TypedPages(HINTS)(Page.of(page))

    assert isinstance(table, pa.Table)
    assert table.column("tags").to_pylist() == [["a", "b"], [], None]


def test_a_pipeline_of_its_own_gets_the_child_tables_from_dlts_normalizer(
    crm: DemoServer, tmp_path: Path
) -> None:
    """Only `run_sync` places the child tables' files in the load package; a pipeline running
    the source itself gets the lists as dicts, and dlt's normalizer makes the child tables."""
    live = crm.store.records("accounts", include_deleted=False)
    tags = [tag for record in live for tag in record.get("tags") or []]
    pipeline = dlt.pipeline(
        "own",
        destination=dlt.destinations.duckdb(str(tmp_path / "own.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    reader = PageReader(fast_policy(), RunLedger(), page_processes=0)
    source = crm_source(connection_to(crm), reader, sync=SyncOptions(resources=("accounts",)))

    try:
        pipeline.run(source)
    finally:
        reader.close()

    with pipeline.sql_client() as client:
        ((rows,),) = client.execute_sql("select count(*) from accounts__tags")
    assert tags and rows == len(tags)
