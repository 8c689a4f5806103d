"""A small CRM of another shape than the contract's, for profile tests: its auth scheme, the
format of its timestamps and how it lists deleted records are the test's choice.

    GET /people?page=2&per_page=50[&changed_since=...][&archived=true]
    {"items": [{"id": 51, "properties": {"name": ..., "changed": <in the format>},
                "is_deleted": false, "archived": false}, ...],
     "paging": {"total": 120, "next": "<base>/people?page=3&per_page=50"}}

and the next page's URL in a `Link` header too (`<...>; rel="next"`).

Records are ordered by id; `changed_since` keeps records changed at or after it (written in
the CRM's format); archived records are listed only with `archived=true`.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from crmsync.profiles.cursor_format import cursor_format
from tests.support.hostile import Exchange, HostileServer

TOKEN = "tok-Abc123-never-printed"
CLIENT_ID = "client-42"
CLIENT_SECRET = "cs-Xyz789-never-printed"
USERNAME, PASSWORD = "robot", "pw-Qrs456-never-printed"
BEGINNING = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

AUTH_CHECKS: dict[str, Callable[[dict[str, str], dict[str, str]], bool]] = {
    "basic": lambda headers, query: (
        headers.get("Authorization")
        == "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    ),
    "bearer": lambda headers, query: headers.get("Authorization") == f"Bearer {TOKEN}",
    "api_key_header": lambda headers, query: headers.get("X-Api-Key") == TOKEN,
    "api_key_query": lambda headers, query: query.get("api_token") == TOKEN,
    "oauth2_client_credentials": lambda headers, query: (
        headers.get("Authorization") == "Bearer issued-access-token"
    ),
}


@dataclass
class Person:
    id: int
    changed: datetime
    is_deleted: bool = False
    archived: bool = False
    name: str = ""


@dataclass
class ShapedCrm:
    auth: str = "bearer"
    cursor_format: str = "rfc3339"
    people: dict[int, Person] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(path and query, params) of every request, in order."""

    def __post_init__(self) -> None:
        self.format = cursor_format(self.cursor_format)
        self.lock = threading.Lock()
        self.server = HostileServer(self.answer)
        for n in range(1, 121):
            self.people[n] = Person(n, BEGINNING + timedelta(minutes=n), name=f"Person {n}")

    @property
    def base_url(self) -> str:
        return self.server.url

    def __enter__(self) -> ShapedCrm:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    def change(self, n: int, **values: Any) -> None:
        with self.lock:
            person = self.people[n]
            for key, value in values.items():
                setattr(person, key, value)
            person.changed = max(p.changed for p in self.people.values()) + timedelta(minutes=1)

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [params for seen, params in self.seen if urlsplit(seen).path == path]

    def answer(self, exchange: Exchange) -> None:
        parts = urlsplit(exchange.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = dict(exchange.headers.items())
        with self.lock:
            self.seen.append((exchange.path, query))
        if parts.path == "/oauth/token":
            form = parse_qs(getattr(exchange, "body", b"").decode())
            granted = form.get("client_secret") == [CLIENT_SECRET] and exchange.command == "POST"
            body = {"access_token": "issued-access-token", "expires_in": 3600}
            exchange.send(200 if granted else 401, orjson.dumps(body))
            return
        if not AUTH_CHECKS[self.auth](headers, query):
            exchange.send(401, b'{"error": "unauthorized"}')
            return
        if parts.path not in ("/people", "/people-copy"):
            exchange.send(404, b'{"error": "no such path"}')
            return
        body = self.page(query)
        headers = {}
        if body["paging"].get("next"):
            body["paging"]["next"] = f"{self.base_url}{parts.path}?{body['paging']['next']}"
            headers["Link"] = f'<{body["paging"]["next"]}>; rel="next"'
        exchange.send(200, orjson.dumps(body), **headers)

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        page, size = int(query.get("page", 1)), int(query.get("per_page", 50))
        archived = query.get("archived") == "true"
        since = query.get("changed_since")
        start = self.format.parse(_number_or_text(since)) if since else None
        with self.lock:
            people = [
                p
                for _, p in sorted(self.people.items())
                if p.archived == archived and (start is None or p.changed >= start)
            ]
            items = [self.record(p) for p in people[(page - 1) * size : page * size]]
        paging: dict[str, Any] = {"total": len(people)}
        if page * size < len(people):
            paging["next"] = urlencode({**query, "page": page + 1, "per_page": size})
        return {"items": items, "paging": paging}

    def record(self, person: Person) -> dict[str, Any]:
        return {
            "id": person.id,
            "properties": {"name": person.name, "changed": self.format.render(person.changed)},
            "is_deleted": person.is_deleted,
            "archived": person.archived,
        }


def _number_or_text(value: str) -> Any:
    return int(value) if value.isdigit() else value
