"""The fast path: a page of records becomes one Arrow table before dlt sees it.

dlt normalizes dict records one by one in Python (flattening, type inference, name
normalization) — at CRM volumes that is most of a sync's CPU. An Arrow table skips it: dlt
passes its columns through to Parquet. The table must land exactly as the dicts would: nested
objects flattened into `parent__child` columns, hinted columns in their hinted types, `json`
columns as JSON text, other columns typed the way dlt infers them. A page this cannot express
as one table (a non-empty list, which dlt turns into a child table, or values pyarrow cannot
type) is passed on as dicts, so dlt's own normalizer keeps the last word.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from array import array as int_array
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

C_DLT_ID = "_dlt_id"
"""dlt's row key column (`dlt.common.schema.typing.C_DLT_ID`), spelled out so that this module
loads without dlt in a page-decoding worker process."""
SEPARATOR = "__"
"""dlt's `snake_case` naming convention joins nested names with a double underscore."""
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


class DecodedPage(list[Any]):
    """A page decoded in a worker process (`crmsync.page_decoding`): `[table]`, the shape
    rest_api gives a page whose records it selected as one item, and `served`, the records
    the CRM sent, which the paginator counts (the worker drops a first read's deleted ones)."""

    def __init__(self, table: pa.Table, served: int) -> None:
        super().__init__([table])
        self.served = served


def page_table(page: Any) -> pa.Table | None:
    """The table of a page decoded in a worker process, else None."""
    if isinstance(page, list) and len(page) == 1 and isinstance(page[0], pa.Table):
        return page[0]
    return None


def record_count(page: Any) -> int:
    """Records the CRM served in a page, however it was decoded."""
    return page.served if isinstance(page, DecodedPage) else len(page or ())


def _arrow_type(hint: dict[str, Any]) -> pa.DataType | None:
    data_type = hint.get("data_type")
    if data_type == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if data_type == "decimal":
        return pa.decimal128(hint.get("precision", 38), hint.get("scale", 9))
    return {
        "bigint": pa.int64(),
        "double": pa.float64(),
        "bool": pa.bool_(),
        "text": pa.string(),
        "json": pa.string(),
    }.get(str(data_type))


class PageBatcher:
    """A resource step: each page made typed (`TypedPages`), then joined into batches of up to
    `max_rows` records.

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

    def __call__(self, page: Any, meta: Any = None) -> Iterator[Any]:
        paginator = getattr(page, "paginator", None)
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
    """A resource step: a page becomes an Arrow table or, where it cannot, stays dicts.

    Rows get their `_dlt_id` keys here, whichever form they take: added later to Arrow tables,
    dlt would rewrite every Parquet file of the load; dlt's normalizer keeps a dict row's key,
    and these cost a fraction of the ones it would make (`_row_key_text`).

    pyarrow infers the nested page in C++ (objects become structs), which is then flattened
    column by column; only `json` columns are serialized in Python first. Either way, columns
    hinted as timestamps hold timestamps, not strings, so that the incremental cursor compares
    one type whichever form a page took (`arrow=False` keeps every page as dicts).

    A resource whose records hold lists (`accounts.tags`), which dlt turns into nested tables,
    goes as dicts from its first such page on, without another Arrow attempt per page.
    """

    def __init__(
        self, columns: dict[str, dict[str, Any]], arrow: bool = True, row_keys: bool = True
    ) -> None:
        self.arrow = arrow
        self.row_keys = row_keys
        """Off for a history (`scd2`) resource: dlt's row hash of its content is the key then."""
        self.has_lists = False
        self.json_columns = [n for n, h in columns.items() if h.get("data_type") == "json"]
        self.hinted = set(columns)
        self.types = {n: t for n, h in columns.items() if (t := _arrow_type(h)) is not None}
        self.required = {n for n, h in columns.items() if h.get("nullable") is False}
        self.timestamps = [n for n, t in self.types.items() if pa.types.is_timestamp(t)]

    def __call__(self, page: Any, meta: Any = None) -> Any:
        if not isinstance(page, list) or not page:
            return page
        table = page_table(page)
        if table is not None:
            return table
        if self.arrow and not self.has_lists:
            table = self._table(page)
            if table is not None:
                return table
        return self._as_dicts(page)

    def _table(self, page: list[Any]) -> pa.Table | None:
        try:
            records = pa.array(self._with_json_text(page))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return None
        if not pa.types.is_struct(records.type):
            return None
        arrays: list[pa.Array] = []
        fields: list[pa.Field] = []
        if not self._leaves(records, "", arrays, fields):
            return None
        arrays.append(row_keys(len(records)))
        fields.append(pa.field(C_DLT_ID, pa.string(), nullable=False))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _as_dicts(self, page: list[Any]) -> list[Any]:
        keys = row_key_list(len(page)) if self.row_keys else [None] * len(page)
        for record, key in zip(page, keys, strict=True):
            if type(record) is not dict:
                continue
            self._drop_unhinted_nulls(record, "")
            if key is not None:
                record.setdefault(C_DLT_ID, key)
            for name in self.timestamps:
                value = record.get(name)
                if type(value) is str:
                    with contextlib.suppress(ValueError):
                        record[name] = datetime.fromisoformat(value)
        return page

    def _drop_unhinted_nulls(self, record: dict[str, Any], prefix: str) -> None:
        """A null loads as a missing key does; but a key dlt has only seen null (an account's
        `"address": null`) becomes a column it cannot type, and it warns of it on every run.
        The Arrow path leaves such columns out too."""
        for name, value in list(record.items()):
            if value is None and prefix + name not in self.hinted:
                del record[name]
            elif type(value) is dict and prefix + name not in self.json_columns:
                self._drop_unhinted_nulls(value, prefix + name + SEPARATOR)

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
        self, struct: pa.StructArray, prefix: str, arrays: list[pa.Array], fields: list[pa.Field]
    ) -> bool:
        """Adds `struct`'s flattened columns; False where dlt would make a child table."""
        for field, array in zip(struct.type, struct.flatten(), strict=True):
            name = prefix + field.name
            if pa.types.is_struct(array.type):
                if not self._leaves(array, name + SEPARATOR, arrays, fields):
                    return False
                continue
            if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
                if pc.sum(pc.list_value_length(array)).as_py():
                    self.has_lists = True
                    return False
                continue
            target = self.types.get(name)
            if target is None and array.type not in _INFERRED_TYPES:
                return False
            if target is None and array.null_count == len(array):
                continue
            if target is not None and array.type != target:
                try:
                    array = array.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return False
            nullable = name not in self.required or array.null_count > 0
            arrays.append(array)
            fields.append(pa.field(name, array.type, nullable=nullable))
        return True


_INFERRED_TYPES = (pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.string())
"""What dlt infers from JSON scalars: bool, bigint, double, text (and nothing, for nulls)."""
