"""A page that goes to dlt's normalizer as dicts: what each of its records becomes first.

dlt's normalizer types every value, but some records it would load wrongly or fail on with a
message that names neither the resource nor the record:

    {"id": 7, "_dlt_id": "x", "Email": "b@x", "email": "a@x", "": "?",
     "updated_at": "2026-03-01t10:00:00z", "score": 1000000000000000000000000000007}

Here names are made collision-free (`crmsync.reading.field_names`), hinted timestamps in any RFC
3339 form become datetimes (`crmsync.profiles.rfc3339`; a value that is none stays text, which dlt
loads as a variant column, `created_at__v_text`), and integers beyond 64 bits become dlt's `Wei`
(`decimal(38,0)`). A record that cannot load fails the run with a `RecordError` naming the
record, its page and the value: no value of a non-nullable column (`id`), a cursor value that
is no timestamp (the incremental cursor compares them), an integer too wide for its column.
The walk over each record's values is the one dlt's normalizer makes after it, in Python: this
path is the slow one by nature, for the pages Arrow cannot hold (`crmsync.reading.arrow_pages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from crmsync.profiles.rfc3339 import parse_timestamp
from crmsync.reading.field_names import rename_fields

C_DLT_ID = "_dlt_id"
"""dlt's row key column (`dlt.common.schema.typing.C_DLT_ID`), spelled out so that this module
loads without dlt in a page-decoding worker process."""
SEPARATOR = "__"
"""dlt's `snake_case` naming convention joins nested names with a double underscore."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
WEI_DIGITS = 38
"""dlt's `wei` type is `decimal(38,0)` on DuckDB and in Parquet (`caps.wei_precision`)."""
STORED = "x-crmsync-stored"
"""Marks a column hint that is no hint of the profile's but the type dlt's schema already has
for the column, from a previous run (`stored_types`)."""
_STORED_KINDS = frozenset({"bigint", "double", "bool", "text", "timestamp", "decimal", "wei"})


def stored_types(
    columns: Mapping[str, Mapping[str, Any]], hints: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`hints`, and the type of each other column in `columns` (a table of dlt's stored schema)
    marked `STORED`.

    A column exists in the destination with the type its first value gave it, and dlt loads
    every later value as that type or, where it cannot be, into a variant column: a page must
    then be typed as the column is, not as its own values would be typed afresh. (Given an
    Arrow table, dlt casts it to the column's type instead: `2.5` for a `bigint` column would
    land as `2`.)"""
    merged = {name: dict(hint) for name, hint in hints.items()}
    for name, column in columns.items():
        kind = column.get("data_type")
        if name in merged or name.startswith("_dlt_") or kind not in _STORED_KINDS:
            continue
        stored: dict[str, Any] = {"data_type": kind, STORED: True}
        stored.update({k: column[k] for k in ("precision", "scale") if k in column})
        merged[name] = stored
    return merged


class RecordError(ValueError):
    """A record crmsync cannot load as the CRM sent it; the message names it, its page, the
    field and the value (the resource is named by `crmsync.failures`)."""


class _BadValue(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field = field
        self.problem = problem


class DictPages:
    """Prepares dict records for dlt's normalizer; `cursor` is the incremental cursor's column,
    `bigint_columns` the unhinted columns dlt has as `bigint`: from a previous run (`STORED`),
    or typed so by the run's Arrow pages or by an unhinted column's first value in its dicts (a
    wider integer cannot land in such a column, and goes to a variant column)."""

    def __init__(self, columns: Mapping[str, Mapping[str, Any]], cursor: str | None) -> None:
        declared = {n: h for n, h in columns.items() if not h.get(STORED)}
        self.hinted = set(declared)
        self.kinds = {n: str(h.get("data_type")) for n, h in declared.items()}
        self.json_columns = {n for n, kind in self.kinds.items() if kind == "json"}
        self.timestamps = [n for n, kind in self.kinds.items() if kind == "timestamp"]
        self.required = [n for n, h in declared.items() if h.get("nullable") is False]
        self.cursor = cursor
        self.bigint_columns = {
            n for n, h in columns.items() if h.get(STORED) and h.get("data_type") == "bigint"
        }
        self.first_kinds: dict[str, type] = {}
        """The type of each unhinted column's first value in the run's dicts, which dlt's
        normalizer types the column by."""

    def prepare(self, page: list[Any], keys: Sequence[str | None], source: Any = None) -> list[Any]:
        """Prepares `page`'s records in place, giving each its row key from `keys`; `source`
        (rest_api's page, with its request) is named in a `RecordError`."""
        for position, (record, key) in enumerate(zip(page, keys, strict=True), start=1):
            if type(record) is not dict:
                continue
            try:
                self._record(record, "", top=True)
                self._top_level(record)
            except _BadValue as error:
                bad = error
            else:
                if key is not None:  # none for a history resource: dlt hashes its content
                    record[C_DLT_ID] = key
                continue
            # raised outside the handler: the one line is this error's, not its context's
            raise RecordError(_describe(record, position, source, bad))
        return page

    def _top_level(self, record: dict[str, Any]) -> None:
        for name in self.required:
            if record.get(name) is None:
                raise _BadValue(name, "is missing, and every record needs one")
        for name in self.timestamps:
            value = record.get(name)
            if type(value) is str:
                record[name] = parse_timestamp(value) or value
            if name == self.cursor and value is not None and not isinstance(record[name], datetime):
                raise _BadValue(
                    name,
                    f"{value!r} is not an RFC 3339 timestamp, and the incremental cursor"
                    " needs one; fix the record in the CRM",
                )

    def _record(self, record: dict[str, Any], prefix: str, top: bool) -> None:
        """A null loads as a missing key does; but a key dlt has only seen null (an account's
        `"address": null`) becomes a column it cannot type, and it warns of it on every run.
        The Arrow path leaves such columns out too."""
        rename_fields(record, top)
        first_kinds = self.first_kinds
        for name, value in list(record.items()):
            path = prefix + name
            kind = type(value)
            if value is None:
                if path not in self.hinted:
                    del record[name]
            elif path in self.json_columns:
                continue
            elif kind is dict:
                self._record(value, path + SEPARATOR, top=False)
            elif kind is list:
                for item in value:
                    if type(item) is dict:
                        self._record(item, path + SEPARATOR, top=True)
            else:
                if kind is int and not INT64_MIN <= value <= INT64_MAX:
                    value = record[name] = self._wide_integer(path, value)
                    kind = type(value)
                if path not in first_kinds:
                    first_kinds[path] = kind

    def _wide_integer(self, path: str, value: int) -> Any:
        """`value` as dlt can load it: in a text column as text; in a hinted `bigint` column
        not at all; in a column dlt made `bigint` as its variant `decimal(38,0)` column
        (`score__v_wei`, the name dlt's normalizer gives a variant, nested here so that dlt's
        naming keeps its double underscore); in a new column as `decimal(38,0)`."""
        kind = self.kinds.get(path)
        if kind == "text":
            return str(value)
        if kind == "bigint":
            raise _BadValue(path, f"{value} is beyond the 64-bit range of its bigint column")
        if len(str(abs(value))) > WEI_DIGITS:
            raise _BadValue(path, f"{value} has more than {WEI_DIGITS} digits")
        from dlt.common.wei import Wei

        if self.first_kinds.get(path) is int or path in self.bigint_columns:
            return {"v_wei": Wei(value)}
        return Wei(value)


def _describe(record: dict[str, Any], position: int, source: Any, bad: _BadValue) -> str:
    ident = record.get("id")
    named = f" (id {ident})" if ident is not None and bad.field != "id" else ""
    return f"record {position} of {page_name(source)}{named}: {bad.field} {bad.problem}"


def page_name(source: Any) -> str:
    """`GET /accounts?page[page]=2` for rest_api's page (the request its response answered:
    rest_api's own request object already asks for the next page), else `a page`."""
    request = getattr(getattr(source, "response", None), "request", None)
    if request is None or not request.url:
        return "a page"
    parts = urlsplit(request.url)
    query = f"?{unquote(parts.query)}" if parts.query else ""
    return f"{request.method or 'GET'} {parts.path}{query}"
