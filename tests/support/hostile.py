"""A CRM that misbehaves in one way: an HTTP server on 127.0.0.1 whose every GET is answered by
one function, with a log of what it was sent (path and headers) to witness the client.

The bundled CRM (`crmsync.demo_server`) models the contract and its faults; the behaviours
here are outside any contract (a body that never ends, redirects to elsewhere, pages of
another shape), so each test states its behaviour as a few lines of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from tests.support.loopback import LoopbackServer

Answer = Callable[["Exchange"], None]


@dataclass(frozen=True)
class Seen:
    path: str
    """Path and query, as sent."""
    headers: dict[str, str]


class Exchange(BaseHTTPRequestHandler):
    """One request; an `Answer` writes the response with `send` or the handler's own calls."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.crm.record(Seen(self.path, dict(self.headers.items())))
        try:
            self.server.crm.answer(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on this response

    def do_POST(self) -> None:
        """A POST is answered like a GET, its body in `self.body` (an OAuth2 token request)."""
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `HostileServer.seen`, not stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    crm: HostileServer


class HostileServer(LoopbackServer):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        super().__init__(Exchange, _Server)
        cast(_Server, self.http).crm = self

    @property
    def base_url(self) -> str:
        return self.url

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


def contact(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "first_name": f"Contact {n}",
        "custom_fields": {},
        "created_at": "2026-03-01T12:00:00Z",
        "updated_at": f"2026-03-01T12:{n // 60:02}:{n % 60:02}Z",
    }


def contacts_page(query: str = "", total: int = 3) -> bytes:
    """The page of `/contacts` (records 1 to `total`) that `query` asks for, in the contract's
    shape: `page[page]` from 1, `page[limit]` records each (500 when absent)."""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    page, limit = int(params.get("page[page]", 1)), int(params.get("page[limit]", 500))
    ids = range((page - 1) * limit + 1, min(page * limit, total) + 1)
    meta = {"page": page, "limit": limit, "total": total}
    return orjson.dumps({"contacts": [contact(n) for n in ids], "meta": meta})


def serve_contacts(total: int = 3) -> Answer:
    def answer(exchange: Exchange) -> None:
        exchange.send(200, contacts_page(urlsplit(exchange.path).query, total))

    return answer
