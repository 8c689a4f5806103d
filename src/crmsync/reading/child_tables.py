"""A record's lists of values as dlt's child tables, built from Arrow batches during extract.

dlt's normalizer turns a list of values in a record (an account's `"tags": ["a", "b"]`) into
rows of a child table, `accounts__tags`, one per value, linked to the record's row:

    value  _dlt_root_id  _dlt_parent_id  _dlt_list_idx  _dlt_id
    "a"    <row's key>   <row's key>     0              digest(<row's key>_accounts__tags_0)
    "b"    <row's key>   <row's key>     1              digest(<row's key>_accounts__tags_1)

It does so row by row in Python after the read, at ~25 µs a value: for the benchmark's 20,000
accounts, most of the normalize step (1.6 s), spent after the last page, where a run at the CRM's
rate limit could have done it while waiting for the next request. `ChildTables` builds the same
rows from a batch's list columns, in a few Arrow calls per batch, as the read goes: the batch
goes on without its lists, and each list column becomes a Parquet file of its child table, which
joins the load's package once it is extracted (`place_child_tables`), declared in dlt's schema
as a nested table of the batch's table (`parent`), typed and hinted as dlt's normalizer types
and hints it (`child_columns`). dlt's normalize imports the files as they are, and its merges
replace a record's child rows, and `hard_delete` removes them, as they do dlt's normalizer's.

A batch whose lists dlt would not make child tables of this way goes on as dicts, as does every
page of the resource after it (`TypedPages.dicts_only`): lists of objects or lists, or of
floats (dlt types a column by its first value), which `TypedPages` already sends as dicts; a
list field with a hint (JSON on Delta); a list beyond the table's nesting level; a child table
whose `value` dlt's schema or this read already types otherwise; columns propagated to child
tables besides `_dlt_root_id`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dlt.common.schema import Schema
from dlt.common.schema.typing import C_DLT_ID, TColumnSchema
from dlt.common.schema.utils import new_table
from dlt.extract import DltResource, DltSource
from dlt.extract.items_transform import BaseItemTransform, ItemTransform

from crmsync.dlt_internals import (
    DataItemNormalizer,
    get_table_nesting_level,
    is_nested_type,
    nested_row_hash,
    place_in_extracted_package,
    requires_root_key,
    resource_steps,
)
from crmsync.reading.arrow_pages import TypedPages, _records
from crmsync.reading.dict_pages import SEPARATOR

C_VALUE = DataItemNormalizer.C_VALUE
C_ROOT_ID = DataItemNormalizer.C_DLT_ROOT_ID
C_PARENT_ID = DataItemNormalizer.C_DLT_PARENT_ID
C_LIST_IDX = DataItemNormalizer.C_DLT_LIST_IDX
DEFAULT_MAX_NESTING = 1000
"""dlt's relational normalizer's nesting level when none is configured."""

VALUE_TYPES = {pa.string(): "text", pa.int64(): "bigint", pa.bool_(): "bool"}
"""The list values a child table is built of, and the type dlt's normalizer gives them."""


def child_columns(value_type: str, root_key: bool) -> dict[str, TColumnSchema]:
    """A child table's columns, in the order and with the hints dlt's normalizer gives them
    (its schema's default hints: `not_null`, `root_key`, `parent_key`, `unique`, `row_key`)."""
    columns: dict[str, TColumnSchema] = {
        C_VALUE: {"name": C_VALUE, "data_type": value_type, "nullable": True}  # type: ignore[typeddict-item]
    }
    if root_key:
        columns[C_ROOT_ID] = {
            "name": C_ROOT_ID,
            "data_type": "text",
            "nullable": False,
            "root_key": True,
        }
    columns[C_PARENT_ID] = {
        "name": C_PARENT_ID,
        "data_type": "text",
        "nullable": False,
        "parent_key": True,
    }
    columns[C_LIST_IDX] = {"name": C_LIST_IDX, "data_type": "bigint", "nullable": False}
    columns[C_DLT_ID] = {
        "name": C_DLT_ID,
        "data_type": "text",
        "nullable": False,
        "unique": True,
        "row_key": True,
    }
    return columns


class ChildTables(ItemTransform[Any, dict[str, Any]]):
    """A resource step, after dlt's own (its incremental reads the rows with their lists, and a
    transformer fed by the resource gets them so): each Arrow batch goes on without its list
    columns, which become child tables in Parquet files of their own, placed in the load's
    package once extracted (`place_child_tables`); or the batch goes on as dicts (see the
    module)."""

    placement_affinity: ClassVar[float] = 3
    """After dlt's incremental (1), its limit (1.1) and the fork to transformers (2)."""

    def __init__(self, typed: TypedPages, resource: DltResource) -> None:
        BaseItemTransform.__init__(self)
        self.typed = typed
        self.resource = resource
        self.files: list[_ChildFile] = []
        """The child tables written so far, for `place_child_tables`."""
        self.value_types: dict[str, str] = {}
        self.enabled = False
        """Set by `enable_child_tables` for a run that places the files; else lists go as
        dicts to dlt's normalizer."""
        self._folder: str | None = None

    def __call__(self, item: Any, meta: Any = None) -> Any:
        if not isinstance(item, pa.Table):
            return item
        lists = [f.name for f in item.schema if pa.types.is_list(f.type)]
        if not lists:
            return item
        if not self.enabled:
            return self._as_dicts(item)
        schema = dlt.current.source_schema()
        # the resource as extracted: selecting resources, dlt may copy them, and hints applied
        # to the copy (`crmsync.loading.destinations.adapt_source`) are its own
        resource = dlt.current.source().resources.get(self.resource.name, self.resource)
        root = schema.naming.normalize_table_identifier(str(resource.table_name))
        children = []
        for name in lists:
            child = self._child(item, name, root, schema, resource)
            if child is None:
                return self._as_dicts(item)
            children.append(child)
        load_id = dlt.current.load_package_state()["load_id"]
        for child_name, columns, rows in children:
            if len(rows):
                self.files.append(self._write(load_id, child_name, root, columns, rows))
        return self._declaring(item.drop_columns(lists), schema)

    def _declaring(self, table: pa.Table, schema: Schema) -> Iterator[pa.Table]:
        yield table
        # dlt asks for the next item once it has extracted `table`: its table is in the schema
        for file in self.files:
            if file.parent in schema.tables:
                declare(schema, file)

    def _child(
        self, table: pa.Table, name: str, root: str, schema: Schema, resource: DltResource
    ) -> tuple[str, dict[str, TColumnSchema], pa.Table] | None:
        """The child table of list column `name` in `root`'s batch `table`; None where dlt's
        normalizer would not make it so."""
        lists = table.column(name).combine_chunks()
        value_type = VALUE_TYPES.get(lists.type.value_type)
        hints = resource.columns if isinstance(resource.columns, dict) else {}
        if value_type is None or name in hints or name in self.typed.types:
            return None
        config = DataItemNormalizer.get_normalizer_config(schema)
        max_nesting = resource.max_table_nesting
        if max_nesting is None:
            configured = config.get("max_nesting")
            default = DEFAULT_MAX_NESTING if configured is None else configured
            level = get_table_nesting_level(schema, root, default)
            max_nesting = default if level is None else level
        if is_nested_type(schema, root, name, max_nesting - name.count(SEPARATOR)):
            return None  # dlt keeps the list in the row, as JSON
        child_name = schema.naming.shorten_fragments(root, name)
        root_key = _propagates_root_key(schema, root, config)
        if root_key is None:
            return None
        stored = schema.tables.get(child_name, {}).get("columns", {})
        known = self.value_types.setdefault(child_name, value_type)
        if stored.get(C_VALUE, {}).get("data_type", known) != value_type or known != value_type:
            return None  # dlt's normalizer would make a variant column
        columns = child_columns(value_type, root_key)
        return child_name, columns, _child_rows(table, lists, child_name, columns)

    def _write(
        self,
        load_id: str,
        child_name: str,
        root: str,
        columns: dict[str, TColumnSchema],
        rows: pa.Table,
    ) -> _ChildFile:
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="crmsync-child-tables-")
            weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
        path = os.path.join(self._folder, f"{child_name}.{len(self.files)}.parquet")
        pq.write_table(rows, path)
        return _ChildFile(load_id, child_name, root, columns, path, len(rows))

    def _as_dicts(self, table: pa.Table) -> list[Any]:
        """`table` as the dict records it came from, for dlt's normalizer; the resource's
        pages after it go as dicts too."""
        typed = self.typed
        typed.dicts_only = True
        keys = table.column(C_DLT_ID).to_pylist() if typed.row_keys else [None] * len(table)
        rows = _records(table.drop_columns([C_DLT_ID]), typed.json_columns)
        return typed.dicts.prepare(rows, keys)


def declare(schema: Schema, file: _ChildFile) -> None:
    """`file`'s table in `schema` as dlt's normalizer declares it: a nested table of its parent,
    whose `_dlt_id` is its row key (a merge finds a record's child rows by it)."""
    if file.table in schema.tables:
        return
    parent = schema.tables[file.parent]
    if not parent["columns"].get(C_DLT_ID, {}).get("row_key"):
        row_key = {C_DLT_ID: {**ROW_KEY, **parent["columns"].get(C_DLT_ID, {})}}
        schema.update_table({"name": file.parent, "columns": row_key}, normalize_identifiers=False)  # type: ignore[typeddict-item]
    table = new_table(file.table, file.parent, columns=list(file.columns.values()))
    schema.update_table(table, normalize_identifiers=False)


ROW_KEY: TColumnSchema = {"name": C_DLT_ID, "unique": True, "row_key": True}


@dataclass(frozen=True)
class _ChildFile:
    load_id: str
    table: str
    parent: str
    columns: dict[str, TColumnSchema]
    path: str
    rows: int


def _steps(source: DltSource) -> list[ChildTables]:
    return [
        step
        for resource in source.resources.values()
        for step in resource_steps(resource)
        if isinstance(step, ChildTables)
    ]


def enable_child_tables(source: DltSource) -> None:
    """Lets `source`'s resources build their child tables (`ChildTables`): for a run that calls
    `place_child_tables` after the extract."""
    for step in _steps(source):
        step.enabled = True


def place_child_tables(pipeline: dlt.Pipeline, source: DltSource) -> None:
    """Puts the child tables `source`'s resources wrote (`ChildTables`) into the load packages
    just extracted, as files of their nested tables, declared in the pipeline's schema as dlt's
    normalizer would declare them; dlt's normalize then imports them as they are.

    Placed after the extract rather than extracted: dlt 1.31's extract metrics name the resource
    of each table it wrote files for, and a nested table has none (its schema refuses one)."""
    steps = _steps(source)
    files = [f for step in steps for f in step.files]
    if not files:
        return
    schema = pipeline.schemas[source.schema.name]
    extracted = set(pipeline.list_extracted_load_packages())
    for file in files:
        declare(schema, file)  # declared during the extract already, but for a failure
        if file.load_id in extracted:
            place_in_extracted_package(pipeline, file.load_id, file.table, file.path)
    for step in steps:
        step.files.clear()


def _child_rows(
    table: pa.Table, lists: pa.ListArray, child_name: str, columns: dict[str, Any]
) -> pa.Table:
    """One row per value of `lists`, linked to its row of `table` as dlt's normalizer links it."""
    parents = pc.list_parent_indices(lists)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).cast(pa.int64())
    starts = pc.subtract(pc.cumulative_sum(lengths), lengths)  # each list's first value's row
    positions = pc.subtract(pa.array(range(len(parents)), pa.int64()), pc.take(starts, parents))
    parent_keys = pc.take(table.column(C_DLT_ID), parents).combine_chunks()
    keys = [
        nested_row_hash(key, child_name, position)
        for key, position in zip(parent_keys.to_pylist(), positions.to_pylist(), strict=True)
    ]
    arrays = {
        C_VALUE: pc.list_flatten(lists),
        C_ROOT_ID: parent_keys,
        C_PARENT_ID: parent_keys,
        C_LIST_IDX: positions,
        C_DLT_ID: pa.array(keys, pa.string()),
    }
    fields = [
        pa.field(name, arrays[name].type, nullable=column["nullable"])
        for name, column in columns.items()
    ]
    return pa.Table.from_arrays([arrays[f.name] for f in fields], schema=pa.schema(fields))


def _propagates_root_key(schema: Schema, root: str, config: Any) -> bool | None:
    """Whether dlt's normalizer gives `root`'s child rows `_dlt_root_id`; None where it would
    propagate other columns too, or where it cannot tell yet (`root` not in the schema)."""
    propagation = config.get("propagation") or {}
    tables = propagation.get("tables") or {}
    if propagation.get("root") or set(tables.get(root, {}).items()) - {(C_DLT_ID, C_ROOT_ID)}:
        return None
    if config.get("root_key_propagation") is True:
        return True
    if root not in schema.tables:
        return None
    return requires_root_key(schema, schema.tables[root], config.get("root_key_propagation"))
