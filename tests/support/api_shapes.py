"""The part the test servers imitating other CRMs' APIs share (`pipedrive_like`,
`hubspot_like`): a JSON API on a loopback port with a request log, a credential check, a clock
that mutations move on, optional latency, and records kept in id order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import orjson

from tests.support.loopback import LoopbackServer

MUTATIONS_BEGIN = datetime(2026, 1, 1, tzinfo=UTC)
"""The clock of every mutation starts here, after every seeded timestamp (all in 2025)."""


@dataclass(frozen=True)
class SeenRequest:
    """One request as the server saw it: `target` is the path with its query, as sent."""

    method: str
    path: str
    target: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int
    rows: int


@dataclass
class Answer:
    status: int
    body: Any
    rows: int = 0


class ShapeServer(LoopbackServer):
    """A CRM API of another shape: a subclass answers `respond` and says what `authorized` is.

    `records[resource]` maps each id to its record, in ascending id order (the order the
    subclass lists them in). Mutations take their timestamps from `tick()`: one second later
    each time, from `MUTATIONS_BEGIN`.
    """

    resources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, latency_ms: float = 0) -> None:
        super().__init__(_handler_for(self))
        self.latency_ms = latency_ms
        self.fail_status: int | None = None
        """When set, every authorized request is answered with this status."""
        self.records: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in self.resources}
        self.seen: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._clock = MUTATIONS_BEGIN
        self._views: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def authorized(self, query: dict[str, str], headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Any:
        raise NotImplementedError

    def respond(self, method: str, path: str, query: dict[str, str]) -> Answer:
        raise NotImplementedError

    def update(self, resource: str, record_id: Any, **fields: Any) -> dict[str, Any]:
        """Changes a record as a user of the CRM would: its change time moves to `tick()`."""
        raise NotImplementedError

    def remove(self, resource: str, record_id: Any) -> dict[str, Any]:
        """Deletes (or archives) a record the way the CRM does."""
        raise NotImplementedError

    def live_ids(self, resource: str) -> list[Any]:
        """The ids of the records not deleted (or archived), in listing order."""
        raise NotImplementedError

    def tick(self) -> datetime:
        """The time of a mutation; every view listed so far is stale now."""
        with self._lock:
            self._views.clear()
            self._clock += timedelta(seconds=1)
            return self._clock

    def tick_done(self) -> None:
        """A mutation that changed more after its `tick()`: the views are stale again."""
        with self._lock:
            self._views.clear()

    def view(
        self, resource: str, key: tuple[Any, ...], admits: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """The records of `resource` that `admits` lets in, in id order: listed once per `key`
        (the filter's params) until the next mutation, so that a page costs a slice, not a
        sort and a scan."""
        cached = self._views.get((resource, *key))
        if cached is None:
            cached = [r for r in in_id_order(self.records[resource]) if admits(r)]
            self._views[(resource, *key)] = cached
        return cached

    def requests_to(self, path: str) -> list[SeenRequest]:
        return [seen for seen in self.seen if seen.path == path]

    def clear_requests(self) -> None:
        self.seen.clear()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {key.lower(): value for key, value in handler.headers.items()}
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        if self.authorized(query, headers) and self.fail_status is not None:
            answer = Answer(self.fail_status, {"error": "failing on purpose"})
        elif self.authorized(query, headers):
            with self._lock:
                answer = self.respond(handler.command, url.path, query)
        else:
            answer = Answer(401, self.unauthorized())
        self.seen.append(
            SeenRequest(
                handler.command, url.path, handler.path, query, headers, answer.status, answer.rows
            )
        )
        body = orjson.dumps(answer.body)
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def in_id_order(records: dict[Any, dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (records[key] for key in sorted(records, key=int))


def _handler_for(server: ShapeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            server.handle(self)

        do_GET = do_POST = _handle

    return Handler
