"""What lands: fields kept out of the warehouse, fields pseudonymised, and history kept right.

Per resource, in a profile or a `--config` file:

    exclude_columns = ["phone", "address.street", "custom_fields.*"]
    hash_columns = ["email"]

An excluded field is removed from each record as the page arrives, before any other step, so
it never reaches a table, a child table, a load package, a trace or a log. A hashed field lands
as the lowercase hex HMAC-SHA256 of its UTF-8 text, keyed by the secret `sources.crm.hash_key`:
the same input gives the same text in every run and resource, so joins on it still work, and
nobody without the key can test a guess. `null` stays `null`. A path names nested fields with
dots; a last segment ending in `*` matches every key that starts with what comes before it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

EXCLUDE_KEY = "exclude_columns"
HASH_KEY = "hash_columns"
HASH_SECRET = "sources.crm.hash_key"
SEPARATOR = "__"
"""dlt's `snake_case` naming joins nested names with a double underscore."""


@dataclass(frozen=True)
class FieldPath:
    """`address.street` → ("address", "street"); `custom_fields.*` ends in a prefix match."""

    parents: tuple[str, ...]
    leaf: str
    prefix: bool

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        segments = text.split(".")
        if not text or any(not s for s in segments) or any("*" in s for s in segments[:-1]):
            raise ValueError(
                f"{text!r} is not a field path: names joined by dots, `*` only at the end"
            )
        leaf = segments[-1]
        prefix = leaf.endswith("*")
        if prefix and "*" in leaf[:-1]:
            raise ValueError(f"{text!r}: `*` may stand only at the end of the last name")
        return cls(tuple(segments[:-1]), leaf.rstrip("*"), prefix)

    @property
    def column(self) -> str | None:
        """The column a single field lands in (None for a prefix, which names many)."""
        return None if self.prefix else SEPARATOR.join((*self.parents, self.leaf))

    def covers(self, column: str) -> bool:
        """Whether the flattened `column` (`address__street`) is, or lies under, this field."""
        name = SEPARATOR.join((*self.parents, self.leaf))
        if self.prefix:
            return column.startswith(name)
        return column == name or column.startswith(name + SEPARATOR)

    def holders(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The objects in `record` that hold the field (none where a parent is missing)."""
        current: Any = record
        for name in self.parents:
            current = current.get(name) if isinstance(current, dict) else None
        return [current] if isinstance(current, dict) else []

    def keys(self, holder: dict[str, Any]) -> list[str]:
        if not self.prefix:
            return [self.leaf] if self.leaf in holder else []
        return [key for key in holder if key.startswith(self.leaf)]


def parse_paths(values: Any, key: str) -> tuple[FieldPath, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"`{key}` must be a list of field paths, got {values!r}")
    return tuple(FieldPath.parse(v) for v in values)


class FieldPolicy:
    """A resource step that removes the excluded fields of each record and hashes the others.

    Sample record and what the step leaves of it (`exclude_columns = ["phone"]`,
    `hash_columns = ["email"]`):

        {"id": 7, "email": "ada@example.com", "phone": "+44 20 7946 0000"}
        {"id": 7, "email": "3f1c…e9 (64 hex digits)"}
    """

    def __init__(
        self, exclude: Sequence[FieldPath], hashed: Sequence[FieldPath], key: bytes | None
    ) -> None:
        if hashed and not key:
            raise ValueError("hashing fields needs a key")
        self.exclude = tuple(exclude)
        self.hashed = tuple(hashed)
        self.key = key or b""

    def __call__(self, page: Any, meta: Any = None) -> Any:
        records = page if isinstance(page, list) else [page]
        for record in records:
            if isinstance(record, dict):
                self._apply(record)
        return page

    def _apply(self, record: dict[str, Any]) -> None:
        for path in self.exclude:
            for holder in path.holders(record):
                for name in path.keys(holder):
                    del holder[name]
        for path in self.hashed:
            for holder in path.holders(record):
                for name in path.keys(holder):
                    holder[name] = self.digest(holder[name])

    def digest(self, value: Any) -> str | None:
        """HMAC-SHA256 of the value's text: a string as it is, anything else as JSON."""
        if value is None:
            return None
        text = (
            value.encode()
            if isinstance(value, str)
            else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        )
        return hmac.new(self.key, text, hashlib.sha256).hexdigest()

    def column_hints(self, declared: Mapping[str, Any]) -> dict[str, Any]:
        """The resource's column hints less the excluded fields' (a declared column would be
        created empty), with each hashed single field typed text, whatever the CRM's type."""
        kept = {c: h for c, h in declared.items() if not any(p.covers(c) for p in self.exclude)}
        for path in self.hashed:
            if column := path.column:
                kept[column] = {**kept.get(column, {}), "data_type": "text"}
        return kept


def field_policy(resource: Mapping[str, Any], hash_key: str | None) -> FieldPolicy | None:
    """The resource's policy from its `exclude_columns` and `hash_columns`, or None."""
    exclude = parse_paths(resource.get(EXCLUDE_KEY, []), EXCLUDE_KEY)
    hashed = parse_paths(resource.get(HASH_KEY, []), HASH_KEY)
    if not exclude and not hashed:
        return None
    return FieldPolicy(exclude, hashed, hash_key.encode() if hash_key else None)


def history_disposition(write_disposition: Any, delete_column: str | None, primary_key: str) -> Any:
    """dlt's `scd2` merge, made right for incremental reads that also carry deletions.

    dlt's `scd2` retires every open version absent from the load: right for a load that holds
    the whole table, wrong for an incremental read, which holds only what changed (it would
    retire every record that did not). The merge is therefore scoped to the ids the load holds
    (`destination_scope`): a record absent from the load stays open, an updated one closes its
    old version and opens a new one, and a record re-read unchanged adds nothing. A soft-deleted
    record (its `hard_delete` column set) is left out of the merge source (`source_filter`):
    its open version closes and no new one opens.
    """
    if not isinstance(write_disposition, Mapping) or write_disposition.get("strategy") != "scd2":
        return write_disposition
    disposition = dict(write_disposition)
    disposition.setdefault(
        "destination_scope", f"{primary_key} IN (SELECT {primary_key} FROM {{staging_table}})"
    )
    if delete_column:
        disposition.setdefault("source_filter", f"{delete_column} IS NULL")
    return disposition
