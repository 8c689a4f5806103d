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

from typing import Any

import orjson
import pyarrow as pa

SEPARATOR = "__"
"""dlt's `snake_case` naming convention joins nested names with a double underscore."""


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
    """A resource step that joins consecutive pages into batches of up to `max_rows` records.

    dlt computes and validates a table schema for every item a resource yields, about a
    millisecond each; joining ten 500-record pages spares nine of them. The last page of a read
    (its paginator has no next page) always flushes the batch.
    """

    def __init__(self, max_rows: int = 5000) -> None:
        self.max_rows = max_rows
        self.pending: list[Any] = []

    def __call__(self, page: Any, meta: Any = None) -> Any:
        paginator = getattr(page, "paginator", None)
        if paginator is None:
            return page
        self.pending.extend(page)
        if paginator.has_next_page and len(self.pending) < self.max_rows:
            return None
        batch, self.pending = self.pending, []
        return batch


class PageToArrow:
    """A resource step: `page (list of dicts) -> pa.Table`, or the page itself if it must be."""

    def __init__(self, columns: dict[str, dict[str, Any]]) -> None:
        self.json_columns = {n for n, h in columns.items() if h.get("data_type") == "json"}
        self.types = {n: t for n, h in columns.items() if (t := _arrow_type(h)) is not None}

    def __call__(self, page: Any, meta: Any = None) -> Any:
        if not isinstance(page, list) or not page:
            return page
        rows = []
        for record in page:
            row = self._flat(record)
            if row is None:
                return page
            rows.append(row)
        return self._table(rows) or page

    def _flat(self, record: Any) -> dict[str, Any] | None:
        """`record` with nested objects spread into `parent__child` keys; None if it has a list."""
        if type(record) is not dict:
            return None
        nested = [key for key, value in record.items() if type(value) in _NESTED]
        if not nested:
            return record
        row = dict(record)
        for key in nested:
            if not self._spread(key, row.pop(key), row):
                return None
        return row

    def _spread(self, name: str, value: Any, row: dict[str, Any]) -> bool:
        if name in self.json_columns:
            row[name] = orjson.dumps(value).decode()
        elif type(value) is dict:
            for key, item in value.items():
                if type(item) in _NESTED:
                    if not self._spread(name + SEPARATOR + key, item, row):
                        return False
                else:
                    row[name + SEPARATOR + key] = item
        elif value:
            return False
        return True

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table | None:
        try:
            batch = pa.RecordBatch.from_struct_array(pa.array(rows))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return None
        arrays, names = [], []
        for name, array in zip(batch.schema.names, batch.columns, strict=True):
            target = self.types.get(name)
            if target is None:
                if array.type not in _INFERRED_TYPES:
                    return None
                if array.null_count == len(array):
                    continue
            elif array.type != target:
                try:
                    array = array.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return None
            arrays.append(array)
            names.append(name)
        return pa.Table.from_arrays(arrays, names=names)


_NESTED = (dict, list)
_INFERRED_TYPES = (pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.string())
"""What dlt infers from JSON scalars: bool, bigint, double, text (and nothing, for nulls)."""
