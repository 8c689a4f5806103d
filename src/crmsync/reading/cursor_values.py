"""A resource step: each record's cursor value, in the CRM's format, becomes a UTC datetime.

dlt's incremental compares the cursor values it sees and subtracts the lookback (`lag`) from
the newest; that works in one kind of value. A profile that names the cursor's format
(`crmsync.profiles.cursor_format`) has its records' values parsed here, before dlt sees them,
wherever the cursor sits (`properties.hs_lastmodifieddate`, sample HubSpot record):

    {"id": "101", "properties": {"email": "a@example.com",
                                 "hs_lastmodifieddate": "2026-03-01T12:00:00.000Z"}}

A value that is not in the format fails the read with one line naming the record and the
value: a cursor that cannot be compared would move to the wrong place or not at all.
"""

from __future__ import annotations

from typing import Any

from crmsync.profiles.cursor_format import CursorFormat
from crmsync.reading.dict_pages import RecordError, page_name


class CursorValues:
    def __init__(self, path: str, cursor_format: CursorFormat, primary_key: Any) -> None:
        self.parents = path.split(".")[:-1]
        self.field = path.split(".")[-1]
        self.path = path
        self.format = cursor_format
        self.primary_key = primary_key if isinstance(primary_key, str) else None

    def __call__(self, page: Any, meta: Any = None) -> Any:
        if not isinstance(page, list):
            return page
        for position, record in enumerate(page, start=1):
            holder = record
            for name in self.parents:
                holder = holder.get(name) if isinstance(holder, dict) else None
            if not isinstance(holder, dict) or holder.get(self.field) is None:
                continue
            value = holder[self.field]
            parsed = self.format.parse_record_value(value)
            if parsed is None:
                ident = record.get(self.primary_key) if self.primary_key else None
                named = f" (id {ident})" if ident is not None else ""
                raise RecordError(
                    f"record {position} of {page_name(page)}{named}: {self.path} {value!r} is not"
                    f" {self.format.describe()}, and the incremental cursor needs one; fix the"
                    " record in the CRM, or the cursor_format in the profile"
                )
            holder[self.field] = parsed
        return page
