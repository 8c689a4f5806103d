"""The fast path: a page of records becomes one Arrow table before dlt sees it.

dlt normalizes dict records one by one in Python (flattening, type inference, name
normalization) — at CRM volumes that is most of a sync's CPU. An Arrow table skips it: dlt
passes its columns through to Parquet. The table must land exactly as the dicts would: nested
objects flattened into `parent__child` columns, hinted columns in their hinted types, `json`
columns as JSON text, other columns typed the way dlt infers them, a list of values as a list
column, of which `crmsync.reading.child_tables` makes the child table dlt would make. A page this
cannot express as one table (a list of objects, which dlt turns into a child table, or values
pyarrow cannot type) is passed on as dicts, so dlt's own normalizer keeps the last word.
"""

from __future__ import annotations

import base64
import secrets
from array import array as int_array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from crmsync.reading.dict_pages import C_DLT_ID, SEPARATOR, STORED, WEI_DIGITS, DictPages
from crmsync.reading.field_names import needs_renames
from crmsync.reading.page import Page

ROW_KEY_BYTES = 12
"""Random bytes per `_dlt_id` (dlt's own take 10): a multiple of 3 encodes to whole base64
characters, so one encode of a page's bytes splits into its keys."""
ROW_KEY_WIDTH = ROW_KEY_BYTES * 4 // 3


def _row_key_text(count: int) -> bytes:
    """`count` random `_dlt_id` row keys, one after another.

    dlt draws and encodes a key per row (`generate_dlt_id`), several microseconds each: for
    a dict row a fifth of its normalizer's time, for a page a tenth of its conversion.
    """
    return base64.b64encode(secrets.token_bytes(ROW_KEY_BYTES * count))


def row_keys(count: int) -> pa.Array:
    """Row keys for an Arrow table: the key text and a fixed-stride offsets buffer."""
    offsets = int_array("i", range(0, ROW_KEY_WIDTH * count + 1, ROW_KEY_WIDTH))
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(_row_key_text(count))]
    )


def row_key_list(count: int) -> list[str]:
    """Row keys for dict rows, which dlt's normalizer keeps when a row has one."""
    text = _row_key_text(count).decode("ascii")
    return [text[i : i + ROW_KEY_WIDTH] for i in range(0, len(text), ROW_KEY_WIDTH)]


def arrow_type(hint: Mapping[str, Any]) -> pa.DataType | None:
    """The Arrow type a column hinted `hint` has in a page's table; None where it is inferred."""
    data_type = hint.get("data_type")
    if data_type == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if data_type == "decimal":
        return pa.decimal128(hint.get("precision", 38), hint.get("scale", 9))
    if data_type == "wei":
        return pa.decimal128(WEI_DIGITS, 0)
    return {
        "bigint": pa.int64(),
        "double": pa.float64(),
        "bool": pa.bool_(),
        "text": pa.string(),
        "json": pa.string(),
    }.get(str(data_type))


class PageBatcher:
    """A resource step: each page (`crmsync.reading.page.Page`) made typed (`TypedPages`), then
    joined into batches of up to `max_rows` records.

    dlt computes and validates a table schema for every item a resource yields, about a
    millisecond each; joining forty 500-record pages spares thirty-nine of them. Pages are
    joined once typed, as Arrow tables (about 150 bytes a record) rather than as dicts (about
    2 KB), so a batch costs little memory. A page whose columns cannot join the batch (a type
    that differs, or dicts after tables) first flushes the batch; the last page of a read (its
    paginator has no next page) flushes it too.
    """

    def __init__(self, typed: TypedPages, max_rows: int = 20000) -> None:
        self.typed = typed
        self.max_rows = max_rows
        self.pending: list[Any] = []
        self.rows = 0
        self.schema: pa.Schema | None = None

    def __call__(self, page: Page, meta: Any = None) -> Iterator[Any]:
        paginator = page.paginator
        item = self.typed(page)
        if paginator is None:
            yield from self._flush()
            yield item
            return
        if len(item):
            if not self._joins(item):
                yield from self._flush()
                self.schema = item.schema if isinstance(item, pa.Table) else None
            self.pending.append(item)
            self.rows += len(item)
        if not paginator.has_next_page or self.rows >= self.max_rows:
            yield from self._flush()

    def _joins(self, item: Any) -> bool:
        if not self.pending:
            return False
        if not isinstance(item, pa.Table):
            return self.schema is None
        if self.schema is None:
            return False
        try:
            self.schema = pa.unify_schemas([self.schema, item.schema], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        return True

    def _flush(self) -> Iterator[Any]:
        pending, self.pending, self.rows = self.pending, [], 0
        if not pending:
            return
        if self.schema is not None:
            yield pa.concat_tables(pending, promote_options="default")
        else:
            yield [record for page in pending for record in page]


class TypedPages:
    """A page (`crmsync.reading.page.Page`) becomes an Arrow table or, where it cannot, stays
    dicts (`PageBatcher` asks it, for each page).

    Rows get their `_dlt_id` keys here, whichever form they take: added later to Arrow tables,
    dlt would rewrite every Parquet file of the load; dlt's normalizer keeps a dict row's key,
    and these cost a fraction of the ones it would make (`_row_key_text`).

    pyarrow infers the nested page in C++ (objects become structs), which is then flattened
    column by column; only `json` columns are serialized in Python first. Either way, columns
    hinted as timestamps hold timestamps, not strings, so that the incremental cursor compares
    one type whichever form a page took (`arrow=False` keeps every page as dicts).

    A table must type each column as dlt's schema already has it. A page Arrow cannot hold as
    dlt would (a list of objects, lists or floats, which dlt turns into a child table typed by
    its first values; a field that was an integer on
    page 1 and is text on page 2, which dlt loads as a variant column `score__v_text`; a name
    dlt would rename, `crmsync.reading.field_names`; a value to check,
    `crmsync.reading.dict_pages`) goes as dicts, and so does every page of the resource after it,
    tables decoded ahead by a worker process included: dlt's normalizer has the last word from the
    first page it typed on. The checks per page are per column, never per value.
    """

    def __init__(
        self,
        columns: dict[str, dict[str, Any]],
        arrow: bool = True,
        cursor: str | None = None,
        row_keys: bool = True,
    ) -> None:
        self.arrow = arrow
        self.row_keys = row_keys
        """Off for a history (`scd2`) resource: dlt's row hash of its content is the key then."""
        self.dicts_only = False
        self.json_columns = [
            n for n, h in columns.items() if h.get("data_type") == "json" and not h.get(STORED)
        ]
        self.types = {n: t for n, h in columns.items() if (t := arrow_type(h)) is not None}
        self.required = {n for n, h in columns.items() if h.get("nullable") is False}
        self.seen: dict[str, pa.DataType] = {}
        """The type each column had in the tables made so far: dlt's schema of this read."""
        self.dicts = DictPages(columns, cursor)

    def __call__(self, page: Page) -> pa.Table | list[Any]:
        records = page.records
        if not isinstance(records, pa.Table):
            if not records:
                return records
            made = self.table(records)
            if made is None:
                return self.dicts.prepare(records, self._keys(len(records)), page)
            return made
        table = records
        if self.dicts_only or not self._agrees(table):
            self.dicts_only = True
            keys = table.column(C_DLT_ID).to_pylist()
            rows = _records(table.drop_columns([C_DLT_ID]), self.json_columns)
            return self.dicts.prepare(rows, keys, page)
        self._note_bigints(table)  # typed by a worker process
        return table

    def _keys(self, count: int) -> Sequence[str | None]:
        return row_key_list(count) if self.row_keys else [None] * count

    def table(self, page: list[Any]) -> pa.Table | None:
        """`page` as a table; None where it goes as dicts, as every page after it will (a
        worker process calls this, and leaves the dicts to the run's process)."""
        if self.arrow and not self.dicts_only:
            table = self._table(page)
            if table is not None and self._agrees(table):
                return table
        self.dicts_only = True
        return None

    def _agrees(self, table: pa.Table) -> bool:
        """Whether each column has the type it had in the tables before (its first one)."""
        for field in table.schema:
            if self.seen.setdefault(field.name, field.type) != field.type:
                return False
        return True

    def _table(self, page: list[Any]) -> pa.Table | None:
        try:
            records = pa.array(self._with_json_text(page))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return None
        if not pa.types.is_struct(records.type):
            return None
        arrays: list[pa.Array] = []
        fields: list[pa.Field] = []
        if not self._leaves(records, page, (), arrays, fields):
            return None
        if not self.required.issubset(f.name for f in fields if not f.nullable):
            return None  # a record without a required value: `DictPages` names it
        arrays.append(row_keys(len(records)))
        fields.append(pa.field(C_DLT_ID, pa.string(), nullable=False))
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        self._note_bigints(table)
        return table

    def _note_bigints(self, table: pa.Table) -> None:
        """The unhinted columns `table` has dlt make `bigint`, for the dicts after it."""
        fields = table.schema
        self.dicts.bigint_columns |= {
            f.name for f in fields if f.type == pa.int64() and f.name not in self.types
        }

    def _with_json_text(self, page: list[Any]) -> list[Any]:
        if not self.json_columns:
            return page
        encoded = []
        for record in page:
            if type(record) is dict:
                record = dict(record)
                for name in self.json_columns:
                    if record.get(name) is not None:
                        record[name] = orjson.dumps(record[name]).decode()
            encoded.append(record)
        return encoded

    def _leaves(
        self,
        struct: pa.StructArray,
        page: list[Any],
        path: tuple[str, ...],
        arrays: list[pa.Array],
        fields: list[pa.Field],
    ) -> bool:
        """Adds `struct`'s flattened columns (the fields at `path` in `page`'s records); False
        where dlt would make a child table, rename a field, or type a column otherwise."""
        prefix = "".join(part + SEPARATOR for part in path)
        if needs_renames(struct.type.names, top=not prefix):
            return False
        for field, array in zip(struct.type, struct.flatten(), strict=True):
            name = prefix + field.name
            if pa.types.is_struct(array.type):
                if not self._leaves(array, page, (*path, field.name), arrays, fields):
                    return False
                continue
            if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
                if not pc.sum(pc.list_value_length(array)).as_py():
                    continue  # no child rows, and no column: dlt's normalizer makes neither
                if (
                    not pa.types.is_list(array.type)
                    or array.type.value_type not in _CHILD_VALUES
                    or name in self.types
                ):
                    return False
                arrays.append(array)  # its child table: `crmsync.reading.child_tables`
                fields.append(pa.field(name, array.type))
                continue
            target = self.types.get(name)
            if target is None and array.type not in _INFERRED_TYPES:
                return False
            if target is None and array.null_count == len(array):
                continue
            if (
                target is None
                and array.type == pa.float64()
                and name not in self.seen
                and type(_first_value(array, page, (*path, field.name))) is int
            ):
                return False  # dlt types the column bigint, the floats go to its variant
            if target is not None and array.type != target:
                array = _cast(array, target)
                if array is None:
                    return False
            nullable = name not in self.required or array.null_count > 0
            arrays.append(array)
            fields.append(pa.field(name, array.type, nullable=nullable))
        return True


def _first_value(array: pa.Array, page: list[Any], path: tuple[str, ...]) -> Any:
    """The value at `path` in the first record of `page` that has one in `array`, its column:
    pyarrow types `[5, 2.5]` as doubles, where dlt types a new column by its first value."""
    value: Any = page[pc.index(array.is_valid(), True).as_py()]
    for key in path:
        value = value[key]
    return value


def _cast(array: pa.Array, target: pa.DataType) -> pa.Array | None:
    """`array` in its hinted type, else None. Arrow parses RFC 3339 in its upper-case form
    only; a page that has others (`2026-03-01t10:00:00z`) is tried once more in upper case.
    Only text becomes a timestamp: Arrow would read a number as microseconds, dlt as seconds."""
    if pa.types.is_timestamp(target) and not (
        pa.types.is_string(array.type)
        or pa.types.is_null(array.type)
        or pa.types.is_timestamp(array.type)
    ):
        return None
    try:
        return array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not (pa.types.is_timestamp(target) and pa.types.is_string(array.type)):
            return None
    try:
        return pc.utf8_upper(array).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _records(table: pa.Table, json_columns: list[str]) -> list[dict[str, Any]]:
    """A table's rows as the records they came from: `parent__child` columns nested again
    (dlt's normalizer flattens them itself), JSON text parsed, nulls left out."""
    records = []
    for row in table.to_pylist():
        record: dict[str, Any] = {}
        for name, value in row.items():
            if value is None:
                continue
            if name in json_columns:
                value = orjson.loads(value)
            *parents, leaf = name.split(SEPARATOR)
            level = record
            for parent in parents:
                level = level.setdefault(parent, {})
            level[leaf] = value
        records.append(record)
    return records


_CHILD_VALUES = (pa.bool_(), pa.int64(), pa.string())
"""A list of these values is kept as a list column, which becomes a child table (a list of
objects or lists, or of floats, which dlt types by the first value, sends the page as dicts)."""
_INFERRED_TYPES = (pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.string())
"""What dlt infers from JSON scalars: bool, bigint, double, text (and nothing, for nulls)."""
