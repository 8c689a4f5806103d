"""One page of a resource's records, in whichever form it was decoded, as the read's steps see it.

A page's records are dicts (decoded in the run's own process) or one Arrow table (decoded and
typed in a worker process, `crmsync.reading.page_decoding`). rest_api hands either on as it
found it under the data selector: a list of dicts, or a list holding the worker's `Page`, for
its paginator and then for the resource's steps. `Page.of` is the one place that tells the two
apart; every step after it (`crmsync.reading.pagination.RepeatedRecordFilter`,
`crmsync.reading.first_read.DeletedRecordFilter`, `crmsync.reading.arrow_pages.PageBatcher`)
asks a page for what it needs — its ids, the records a mask keeps, the live ones, how many the
CRM served — and never for its form. A table is never turned into Python records here, except
for the one column a read's ids are in.

A page is not changed in place: each operation answers a new page that keeps the response and
paginator of the one it came from, which `PageBatcher` and record errors read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Page:
    """`records` (dicts, or one Arrow table), and `served`, the records the CRM sent, which the
    paginator counts: a worker drops a first read's deleted ones before the page is handed on."""

    records: list[Any] | pa.Table
    served: int
    response: Any = None
    """rest_api's response for the page (it names the request in a record's error)."""
    paginator: Any = None
    """rest_api's paginator of the read: `has_next_page` says whether this is the last page."""

    @classmethod
    def of(cls, data: list[Any] | None, meta: Any = None) -> Page:
        """rest_api's page: the records its data selector found, as a paginator is given them,
        or with their response and paginator, as a resource step is (which this is too; `meta`
        is dlt's, unused)."""
        response = getattr(data, "response", None)
        paginator = getattr(data, "paginator", None)
        if data is not None and len(data) == 1 and isinstance(data[0], Page):
            return replace(data[0], response=response, paginator=paginator)
        records = data if data is not None else []
        return cls(records, len(records), response, paginator)

    @property
    def table(self) -> pa.Table | None:
        """The records as the table a worker made, else None: they are dicts."""
        return self.records if isinstance(self.records, pa.Table) else None

    def __len__(self) -> int:
        """The records on the page now (`served` counts those the CRM sent)."""
        return len(self.records)

    def ids(self, key: str) -> list[Any]:
        """Each record's `key` value as Python, None where it has none. A table's column goes
        to Python rather than through `pyarrow.compute`: each compute call gives up the
        interpreter lock, and taking it back from the look-ahead threads costs more than a
        page's keys."""
        if isinstance(self.records, pa.Table):
            if key not in self.records.column_names:
                return [None] * len(self.records)
            values: list[Any] = self.records.column(key).to_pylist()
            return values
        return [r.get(key) if isinstance(r, dict) else None for r in self.records]

    def keep(self, mask: Sequence[bool]) -> Page:
        """The page with the records whose place in `mask` is True."""
        if isinstance(self.records, pa.Table):
            return replace(self, records=self.records.filter(pa.array(mask, pa.bool_())))
        kept = [record for record, keep in zip(self.records, mask, strict=True) if keep]
        return replace(self, records=kept)

    def live(self, stamps: Sequence[str], flags: Sequence[str]) -> Page:
        """The page without the records dlt's `hard_delete` would delete: those with any of
        `stamps` set, or any of `flags` true; itself where there are none.

        A table is filtered with `pyarrow.compute` only where a flag is present or a stamp holds
        a value: otherwise only `null_count`, which the table keeps, is read. Each compute call
        gives up the interpreter lock, and taking it back from the look-ahead threads costs more
        than the call (a page decoded in a worker comes filtered there already)."""
        table = self.table
        if table is None:
            mask = [
                type(r) is not dict
                or not (
                    any(r.get(n) is not None for n in stamps)
                    or any(r.get(n) is True for n in flags)
                )
                for r in self.records
            ]
            return self if all(mask) else self.keep(mask)
        stamps = [n for n in stamps if n in table.column_names]
        flags = [n for n in flags if n in table.column_names]
        if not flags and all(table.column(n).null_count == len(table) for n in stamps):
            return self
        live = None
        for name in stamps + flags:
            column = table.column(name)
            keep = pc.is_null(column) if name in stamps else pc.invert(pc.fill_null(column, False))
            live = keep if live is None else pc.and_(live, keep)
        return replace(self, records=table.filter(live))
