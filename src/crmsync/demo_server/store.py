"""The demo CRM's records, the edits made to them, and the clock that stamps those edits.

Stored records are never changed in place: an edit replaces the record's dict. A request
thread can therefore serialize the page it sliced without holding the lock while another
thread edits, and a page is always a consistent snapshot.
"""

from __future__ import annotations

import calendar
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from crmsync.demo_server.data import (
    DEFAULT_SIZES,
    RESOURCES,
    Record,
    Refs,
    changes,
    format_timestamp,
    generate,
    new_record,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = calendar.timegm((9999, 12, 31, 23, 59, 59))
_MAX_CACHED_VIEWS = 64


@dataclass(frozen=True)
class Mutation:
    """Ids touched by one :meth:`CrmStore.mutate` call, each list ascending."""

    created: list[int]
    updated: list[int]
    deleted: list[int]


def _is_deleted(record: Record) -> bool:
    return record.get("deleted_at") is not None


def _since_bound(updated_since: datetime) -> tuple[str, bool]:
    """``updated_since`` as (normalized timestamp, whether a record stamped exactly then matches).

    Stored timestamps have whole seconds, so ``12:00:00.5Z`` admits ``12:00:01Z`` but not
    ``12:00:00Z``: the bound is the floored second, exclusive when a fraction was cut off.
    """
    delta = updated_since - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    if seconds < 0:  # before any record; the string form only orders years 1000-9999
        return format_timestamp(0), True
    if seconds > _LATEST:
        return format_timestamp(_LATEST), False
    return format_timestamp(seconds), delta.microseconds == 0


class CrmStore:
    """Records per resource, kept in id order with ids 1..N (creates append N+1)."""

    def __init__(self, sizes: Mapping[str, int] | None = None, seed: int = 7) -> None:
        merged = {**DEFAULT_SIZES, **(sizes or {})}
        unknown = sorted(set(merged) - set(RESOURCES))
        if unknown:
            raise ValueError(f"unknown resource(s) in sizes: {', '.join(unknown)}")
        negative = sorted(name for name, count in merged.items() if count < 0)
        if negative:
            raise ValueError(f"sizes must not be negative: {', '.join(negative)}")
        refs = Refs(accounts=merged["accounts"], contacts=merged["contacts"])
        self._records = {name: generate(name, merged[name], seed, refs) for name in RESOURCES}
        self._mutation_rngs = {
            name: random.Random(f"{seed}:{name}:mutations") for name in RESOURCES
        }
        self._lock = threading.Lock()
        self._views: dict[tuple[str, tuple[str, bool] | None, bool], list[Record]] = {}
        self._frozen_at: int | None = None

    def _table(self, resource: str) -> list[Record]:
        try:
            return self._records[resource]
        except KeyError:
            raise ValueError(f"unknown resource: {resource!r}") from None

    def records(self, resource: str, include_deleted: bool = True) -> list[Record]:
        """Deep copies, so a test can inspect records without freezing the store."""
        with self._lock:
            rows = [r for r in self._table(resource) if include_deleted or not _is_deleted(r)]
            return list(orjson.loads(orjson.dumps(rows)))

    def ids(self, resource: str, include_deleted: bool = False) -> set[int]:
        with self._lock:
            table = self._table(resource)
            return {r["id"] for r in table if include_deleted or not _is_deleted(r)}

    def _now_epoch(self) -> int:
        return int(time.time()) if self._frozen_at is None else self._frozen_at

    def now(self) -> str:
        return format_timestamp(self._now_epoch())

    def set_clock(self, value: datetime | None) -> None:
        """Freezes the clock (a naive ``value`` counts as UTC), so tests know every stamp."""
        if value is None:
            self._frozen_at = None
            return
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        self._frozen_at = int((value - _EPOCH).total_seconds())

    def advance_clock(self, seconds: int) -> None:
        if self._frozen_at is None:
            raise RuntimeError("the clock is not frozen; call set_clock() first")
        self._frozen_at += seconds

    def page(
        self,
        resource: str,
        page: int,
        limit: int,
        updated_since: datetime | None = None,
        include_deleted: bool = False,
    ) -> tuple[list[Record], int]:
        """One page of the filtered, id-ordered records, and how many match in all.

        The filtered view is cached until the next edit: a client paging through 200,000
        records with one filter would otherwise rescan them for every page.
        """
        bound = None if updated_since is None else _since_bound(updated_since)
        key = (resource, bound, include_deleted)
        with self._lock:
            view = self._views.get(key)
            if view is None:
                stamp, inclusive = bound or ("", True)  # "" sorts before every timestamp
                view = [
                    r
                    for r in self._table(resource)
                    if (include_deleted or not _is_deleted(r))
                    and (r["updated_at"] >= stamp if inclusive else r["updated_at"] > stamp)
                ]
                if len(self._views) >= _MAX_CACHED_VIEWS:
                    self._views.clear()
                self._views[key] = view
            start = (page - 1) * limit
            return view[start : start + limit], len(view)

    def update(self, resource: str, ids: Iterable[int], changes: Mapping[str, Any]) -> None:
        """Merges ``changes`` into each record and stamps ``updated_at`` with :meth:`now`.

        A key in ``changes`` wins over the stamp, so a test may also set ``updated_at`` or
        ``deleted_at`` itself (e.g. to back-date an edit).
        """
        fresh = dict(orjson.loads(orjson.dumps(changes)))
        with self._lock:
            table = self._table(resource)
            positions = [self._position(table, record_id) for record_id in ids]
            now = self.now()
            for position in positions:
                table[position] = {**table[position], "updated_at": now, **fresh}
            self._views.clear()  # every cached view may now be stale

    @staticmethod
    def _position(table: list[Record], record_id: int) -> int:
        if not 1 <= record_id <= len(table):
            raise ValueError(f"no record with id {record_id}")
        return record_id - 1

    def mutate(self, resource: str, create: int = 0, update: int = 0, delete: int = 0) -> Mutation:
        """Creates, edits and soft-deletes records the way CRM users do between two syncs.

        Edited and deleted records are distinct and drawn from records that existed and
        were not deleted before the call; all choices come from a per-resource generator
        seeded from the store's seed, so a call sequence always has the same outcome.
        """
        if min(create, update, delete) < 0:
            raise ValueError("create, update and delete must not be negative")
        if delete and resource == "events":
            raise ValueError("events cannot be deleted")
        with self._lock:
            table = self._table(resource)
            rng = self._mutation_rngs[resource]
            live = [r["id"] for r in table if not _is_deleted(r)]
            if update + delete > len(live):
                raise ValueError(
                    f"{resource} has {len(live)} live records; cannot edit {update + delete}"
                )
            chosen = rng.sample(live, update + delete)
            updated, deleted = sorted(chosen[:update]), sorted(chosen[update:])
            now_epoch = self._now_epoch()
            now = format_timestamp(now_epoch)
            for record_id in updated:
                old = table[record_id - 1]
                table[record_id - 1] = {**old, **changes(resource, old, rng), "updated_at": now}
            for record_id in deleted:
                table[record_id - 1] = {
                    **table[record_id - 1],
                    "updated_at": now,
                    "deleted_at": now,
                }
            refs = Refs(
                accounts=len(self._records["accounts"]), contacts=len(self._records["contacts"])
            )
            created = list(range(len(table) + 1, len(table) + 1 + create))
            table.extend(new_record(resource, i, rng, now_epoch, refs) for i in created)
            self._views.clear()  # every cached view may now be stale
        return Mutation(created=created, updated=updated, deleted=deleted)
