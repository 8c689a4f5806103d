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

from crmsync.reading.page import Page

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
    (`"deleted_at": "2024-05-01T09:00:00Z"`). A worker process applies it too, to the tables
    it decodes (`crmsync.reading.page_decoding`): the filter is the description it is sent.
    """

    def __init__(self, columns: Mapping[str, Mapping[str, Any]]) -> None:
        hard_delete = {n: h for n, h in columns.items() if h.get("hard_delete")}
        self.flags = [n for n, h in hard_delete.items() if h.get("data_type") == "bool"]
        self.stamps = [n for n in hard_delete if n not in self.flags]

    def __bool__(self) -> bool:
        return bool(self.flags or self.stamps)

    def __call__(self, page: Page, meta: Any = None) -> Page:
        return page.live(self.stamps, self.flags)
