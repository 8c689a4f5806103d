"""A test server in the shape of Pipedrive's API v1 list endpoints (`/v1/persons`, `/v1/deals`).

Followed from Pipedrive's public docs (developers.pipedrive.com, "Pagination" in the core API
concepts; "Get all deals"; "Get recents"):

- offset pages: `start` (default 0) and `limit` (default 100, at most 500); the answer is
  `{"success": true, "data": [...], "additional_data": {"pagination": {"start": 0, "limit": 100,
  "more_items_in_collection": true, "next_start": 100}}}`, `next_start` only while there are
  more; past the end `data` is `null`. No total of records.
- the API token in the query string, `?api_token=...`; a missing or wrong one is a 401
  `{"success": false, "error": "unauthorized access", "errorCode": 401, ...}`.
- integer ids; `add_time`/`update_time` as `YYYY-MM-DD HH:MM:SS` in UTC.
- `sort` ("field_name ASC"); this server knows only `id ASC`, its order anyway.
- deals: `status` = `open`, `won`, `lost`, `deleted` or `all_not_deleted` (the default: deleted
  deals are left out); a deleted deal has `status: "deleted"`, `active: false`, `deleted: true`.
  Persons have `active_flag` (false once deleted).

Where this server goes beyond the docs: Pipedrive's v1 offset lists have no filter for
"changed since"; its Recents endpoint (`/v1/recents`) has one, `since_timestamp` in
`YYYY-MM-DD HH:MM:SS` (UTC), and reports deletions among the changes. So the list endpoints
here honour `since_timestamp` the same way: records whose `update_time` is at or after it,
deleted ones included, flagged as above. A `since_timestamp` in another format is a 400.
Records are listed in ascending id order.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.api_shapes import Answer, ShapeServer

TOKEN = "pd-token-3f9c2e7a1b"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 500
SEEDED_FROM = datetime(2025, 1, 1, tzinfo=UTC)
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
STATUSES = ("open", "won", "lost")


def pipedrive_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


class PipedriveLike(ShapeServer):
    resources = ("persons", "deals")

    def __init__(
        self, persons: int = 1150, deals: int = 420, token: str = TOKEN, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.token = token
        rng = random.Random(20260101)
        for n in range(1, persons + 1):
            added = SEEDED_FROM + timedelta(minutes=rng.randrange(0, 60 * 24 * 200))
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            self.records["persons"][n] = {
                "id": n,
                "name": f"{first} {last}",
                "first_name": first,
                "last_name": last,
                "email": [{"value": f"person{n}@example.com", "primary": True, "label": "work"}],
                "org_id": rng.randrange(1, 40),
                "owner_id": rng.randrange(1, 6),
                "add_time": pipedrive_time(added),
                "update_time": pipedrive_time(added + timedelta(minutes=rng.randrange(0, 9000))),
                "active_flag": True,
                "visible_to": "3",
            }
        for n in range(1, deals + 1):
            added = SEEDED_FROM + timedelta(minutes=rng.randrange(0, 60 * 24 * 200))
            self.records["deals"][n] = {
                "id": n,
                "title": f"Deal {n}",
                "value": rng.randrange(100, 100_000) / 4,
                "currency": "EUR",
                "status": rng.choice(STATUSES),
                "stage_id": rng.randrange(1, 6),
                "person_id": rng.randrange(1, persons + 1),
                "add_time": pipedrive_time(added),
                "update_time": pipedrive_time(added + timedelta(minutes=rng.randrange(0, 9000))),
                "active": True,
                "deleted": False,
            }

    # mutations, as a user of Pipedrive's web app makes them

    def update(self, resource: str, record_id: int, **fields: Any) -> dict[str, Any]:
        record = self.records[resource][record_id]
        record.update(fields, update_time=pipedrive_time(self.tick()))
        return record

    def remove(self, resource: str, record_id: int) -> dict[str, Any]:
        if resource == "deals":
            return self.update(resource, record_id, status="deleted", active=False, deleted=True)
        return self.update(resource, record_id, active_flag=False)

    def live_ids(self, resource: str) -> list[int]:
        return sorted(i for i, r in self.records[resource].items() if not _deleted(r))

    # the API

    def authorized(self, query: dict[str, str], headers: dict[str, str]) -> bool:
        return query.get("api_token") == self.token

    def unauthorized(self) -> Any:
        return {
            "success": False,
            "error": "unauthorized access",
            "errorCode": 401,
            "error_info": "Please check developers.pipedrive.com",
        }

    def respond(self, method: str, path: str, query: dict[str, str]) -> Answer:
        resource = path.removeprefix("/v1/")
        if not path.startswith("/v1/") or resource not in self.records:
            return _failure(404, f"Unknown method: {path}")
        if method != "GET":
            return _failure(405, "Method not allowed")
        try:
            start = _count(query, "start", 0, None)
            limit = _count(query, "limit", 100, MAX_LIMIT)
            since = _since(query.get("since_timestamp"))
            if query.get("sort", "id ASC") != "id ASC":
                raise ValueError("this server sorts by id only: sort=id ASC")
        except ValueError as bad:
            return _failure(400, str(bad))
        status = query.get("status", "all_not_deleted")
        listed = self.view(
            resource,
            (since, status),
            lambda record: (
                (since is None or record["update_time"] >= since)
                and _status_admits(status, record, changes=since is not None)
            ),
        )
        page = listed[start : start + limit]
        pagination: dict[str, Any] = {
            "start": start,
            "limit": limit,
            "more_items_in_collection": start + limit < len(listed),
        }
        if pagination["more_items_in_collection"]:
            pagination["next_start"] = start + limit
        body = {
            "success": True,
            "data": page or None,
            "additional_data": {"pagination": pagination},
        }
        return Answer(200, body, rows=len(page))


def _deleted(record: dict[str, Any]) -> bool:
    return record.get("deleted") is True or record.get("active_flag") is False


def _status_admits(status: str, record: dict[str, Any], changes: bool) -> bool:
    if changes and status == "all_not_deleted":
        return True  # a read of changes reports deletions too (as Recents does)
    if status == "deleted":
        return _deleted(record)
    if _deleted(record):
        return False
    return status == "all_not_deleted" or record.get("status") == status


def _count(query: dict[str, str], name: str, default: int, maximum: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or (maximum is not None and int(raw) > maximum):
        bound = f" up to {maximum}" if maximum else ""
        raise ValueError(f"{name} must be a non-negative integer{bound}, got {raw!r}")
    return int(raw)


def _since(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return pipedrive_time(datetime.strptime(raw, TIME_FORMAT).replace(tzinfo=UTC))
    except ValueError:
        raise ValueError(
            f"since_timestamp must be UTC in the format YYYY-MM-DD HH:MM:SS, got {raw!r}"
        ) from None


def _failure(status: int, message: str) -> Answer:
    return Answer(status, {"success": False, "error": message, "errorCode": status})


def main(argv: list[str]) -> None:
    """`python -m tests.support.pipedrive_like PERSONS LATENCY_MS`: serves until killed, after
    printing its base URL (the benchmark's offset-paged CRM, in a process of its own)."""
    persons, latency_ms = int(argv[0]), float(argv[1])
    with PipedriveLike(persons=persons, deals=0, latency_ms=latency_ms) as server:
        print(server.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
