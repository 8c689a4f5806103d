"""A resource's first read loads by replace, not by merge.

With no cursor stored yet, a read asks for every record, so what it loads is the whole table.
A merge would copy the load into a staging table, delete-join it against the table and copy
it again: on the benchmark's 400,000 records, about 40% of the load step, spent on a table
that is still empty. Replace writes the table directly. The merge's two other duties are done
before the load instead: each key is loaded once (only a resource whose repeats are dropped,
`ordered_by_primary_key`, reads by replace) and soft-deleted records are dropped here, as
`hard_delete` would have removed them. The next read has a cursor and merges as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crmsync.reading.arrow_pages import page_table

MERGE_STRATEGIES_REPLACED = (None, "delete-insert")
"""Merges whose outcome on a whole read is the replaced table (not `scd2`, which keeps history,
nor `upsert`, which the user chose to keep rows the CRM no longer lists)."""


def replaces_merge(write_disposition: Any, whole_read: bool) -> bool:
    """Whether a read with this write disposition can load by replace."""
    if not whole_read:
        return False
    if write_disposition == "merge":
        return True
    return (
        isinstance(write_disposition, Mapping)
        and write_disposition.get("disposition") == "merge"
        and write_disposition.get("strategy") in MERGE_STRATEGIES_REPLACED
    )


class DeletedRecordFilter:
    """A resource step that drops the records a merge's `hard_delete` columns would delete.

    dlt's rule: a `bool` column deletes on `True`, any other column on a value that is set
    (`"deleted_at": "2024-05-01T09:00:00Z"`). The page is filtered in place, so it keeps its
    paginator for the steps after this one.
    """

    def __init__(self, columns: Mapping[str, Mapping[str, Any]]) -> None:
        hard_delete = {n: h for n, h in columns.items() if h.get("hard_delete")}
        self.flags = [n for n, h in hard_delete.items() if h.get("data_type") == "bool"]
        self.stamps = [n for n in hard_delete if n not in self.flags]

    def __bool__(self) -> bool:
        return bool(self.flags or self.stamps)

    def __call__(self, page: Any, meta: Any = None) -> Any:
        if not isinstance(page, list) or not page:
            return page
        table = page_table(page)
        if table is not None:
            page[0] = self.live_rows(table)
            return page
        kept = page
        for name in self.stamps:
            kept = [r for r in kept if type(r) is not dict or r.get(name) is None]
        for name in self.flags:
            kept = [r for r in kept if type(r) is not dict or r.get(name) is not True]
        if len(kept) < len(page):
            page[:] = kept
        return page

    def live_rows(self, table: pa.Table) -> pa.Table:
        """The table without deleted rows. A page decoded in a worker process comes filtered
        already (the worker calls this); here, only `null_count`, which the table keeps, is
        read then: a compute call would give up the interpreter lock."""
        stamps = [n for n in self.stamps if n in table.column_names]
        flags = [n for n in self.flags if n in table.column_names]
        if not flags and all(table.column(n).null_count == len(table) for n in stamps):
            return table
        live = None
        for name in stamps + flags:
            column = table.column(name)
            keep = pc.is_null(column) if name in stamps else pc.invert(pc.fill_null(column, False))
            live = keep if live is None else pc.and_(live, keep)
        return table.filter(live)
