"""Hostile CRMs, value by value: small servers on loopback that serve the records they are given.

A real CRM sends what the contract allows and worse: a field whose type changes from page to
page, lower-case timestamps, a field named `_dlt_id`, a 64-bit-overflowing id. `RecordServer`
serves one resource's records as the contract's numbered pages (`meta.total` included), so a
test says only which records, and reads what landed in DuckDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer

STAMP = "2026-03-01T10:00:00Z"


def record(ident: Any, **fields: Any) -> dict[str, Any]:
    """A contact-shaped record with the contract's timestamps, `fields` laid over it."""
    return {"id": ident, "created_at": STAMP, "updated_at": STAMP, **fields}


class RecordServer(LoopbackServer):
    """`records` of `resource` in pages of `page[limit]` (the CRM's own pages of 500 unless a
    test's profile asks for fewer), on a free loopback port."""

    def __init__(self, resource: str, records: Sequence[dict[str, Any]]) -> None:
        self.resource = resource
        self.records = list(records)
        super().__init__(self._handler())
        self.base_url = self.url

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path != f"/{server.resource}":
                    self._answer(404, {"error": {"code": "not_found", "message": url.path}})
                    return
                page = int(query.get("page[page]", query.get("page", "1")))
                limit = int(query.get("page[limit]", query.get("limit", "100")))
                chosen = server.records[(page - 1) * limit : page * limit]
                meta = {"page": page, "limit": limit, "total": len(server.records)}
                self._answer(200, {server.resource: chosen, "meta": meta})

            def _answer(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()  # orjson cannot write integers beyond 64 bits
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[RecordServer]:
        with self:
            yield self
