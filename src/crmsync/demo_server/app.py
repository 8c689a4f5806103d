"""The demo CRM over HTTP: the contract's five list endpoints, plus a control API.

Standard-library ``http.server`` keeps the demo free of a web framework; HTTP/1.1
keep-alive, a cached filtered view per query and one ``orjson.dumps`` per page keep it
from being the bottleneck when a benchmark pulls hundreds of thousands of records.

Sample exchange (``meta`` only on the four endpoints that have it, never on ``/events``)::

    GET /contacts?page[page]=2&page[limit]=2&updated_since=2026-01-01T00:00:00Z
    200 {"contacts": [{"id": 7, ...}, {"id": 9, ...}], "meta": {"page": 2, "limit": 2, "total": 5}}
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from crmsync.demo_server.data import RESOURCES
from crmsync.demo_server.faults import Fault, FaultPlan
from crmsync.demo_server.rate_limit import Admission, TokenBucket
from crmsync.demo_server.store import CrmStore, Mutation

DEFAULT_USERNAME = "demo"
DEFAULT_PASSWORD = "demo-password"
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the server saw it (control requests are not recorded).

    ``status`` is 0 when no response was written (a dropped connection, or a client
    that hung up during a hang fault); ``rows`` counts the records in the body.
    """

    at: float
    finished_at: float
    method: str
    path: str
    resource: str | None
    params: dict[str, str]
    status: int
    fault: str | None
    rows: int


@dataclass(frozen=True)
class _Endpoint:
    resource: str
    page_param: str
    limit_param: str
    has_meta: bool


_ENDPOINTS = {
    f"/{name}": _Endpoint(name, "page[page]", "page[limit]", has_meta=True)
    for name in ("accounts", "contacts", "products", "pipelines")
}
# The contract's odd one out: plain page/limit parameters and no meta block.
_ENDPOINTS["/events"] = _Endpoint("events", "page", "limit", has_meta=False)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    rows: int = 0


def _json(status: int, document: Any, rows: int = 0) -> _Response:
    return _Response(status, orjson.dumps(document), {"Content-Type": "application/json"}, rows)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> _Response:
    """The contract's error body; every 401 also names the realm, as the contract says."""
    response = _json(status, {"error": {"code": code, "message": message}})
    response.headers.update(headers or {})
    if status == HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Basic realm="crm"'
    return response


class _BadParameter(Exception):
    """A query parameter the contract says to answer with 400 ``invalid_parameter``."""


def _count(raw: str) -> int | None:
    # Digits only: int() would also take " 5", "+5", "1_000" and other scripts' digits.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _positive(params: dict[str, str], name: str, default: int, maximum: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    value = _count(raw)
    if value is None or value < 1 or (maximum is not None and value > maximum):
        bounds = f"between 1 and {maximum}" if maximum else "at least 1"
        raise _BadParameter(f"{name} must be an integer {bounds}, got {raw!r}")
    return value


def _updated_since(params: dict[str, str]) -> datetime | None:
    raw = params.get("updated_since")
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise _BadParameter(
            f"updated_since must be an RFC 3339 timestamp with an offset, got {raw!r}"
        )
    return value


def _unauthorized() -> _Response:
    # Deliberately vague: never say which half was wrong, never echo what was sent.
    return _error(401, "unauthorized", "missing or invalid credentials")


def _authorized(header: str | None, expected: bytes) -> bool:
    if header is None:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(given, expected)


def _fault_response(fault: Fault) -> _Response:
    phrase = HTTPStatus(fault.status).phrase
    headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    return _error(fault.status, code, f"injected fault: {phrase}", headers)


def _throttled(admission: Admission) -> _Response:
    headers = {"Retry-After": str(admission.retry_after), **admission.headers}
    return _error(429, "rate_limited", "too many requests; retry after Retry-After", headers)


def _json_object(body: bytes) -> dict[str, Any]:
    document = orjson.loads(body) if body else {}
    if not isinstance(document, dict):
        raise ValueError("the request body must be a JSON object")
    return document


def _control_mutate(demo: DemoServer, body: dict[str, Any]) -> _Response:
    resource = body.get("resource")
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}")
    counts = {name: body.get(name, 0) for name in ("create", "update", "delete")}
    for name, value in counts.items():
        if type(value) is not int:
            raise ValueError(f"{name} must be an integer")
    return _json(200, demo.mutate(resource, **counts))


def _control_add_fault(demo: DemoServer, body: dict[str, Any]) -> _Response:
    demo.faults.add(Fault(**body))
    return _Response(204)


def _control_clear_faults(demo: DemoServer, body: dict[str, Any]) -> _Response:
    demo.faults.clear()
    return _Response(204)


def _control_latency(demo: DemoServer, body: dict[str, Any]) -> _Response:
    value = body.get("latency_ms")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("latency_ms must be a number >= 0")
    demo.latency_ms = float(value)
    return _Response(204)


def _control_rate_limit(demo: DemoServer, body: dict[str, Any]) -> _Response:
    """A fresh, full bucket (``rate`` 0 lifts the limit): benchmarks change it between runs."""
    rate, burst = body.get("rate", 0), body.get("burst", 1)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise ValueError("rate must be a number >= 0")
    if type(burst) is not int:
        raise ValueError("burst must be an integer")
    demo.rate_limit = TokenBucket(rate, burst, body.get("headers")) if rate else None
    return _Response(204)


def _control_requests(demo: DemoServer, body: dict[str, Any]) -> _Response:
    return _json(200, demo.requests)


_ControlAction = Callable[["DemoServer", dict[str, Any]], _Response]
PageHook = Callable[[str, int, dict[str, str]], None]
_CONTROL: dict[str, dict[str, _ControlAction]] = {
    "/_control/mutate": {"POST": _control_mutate},
    "/_control/faults": {"POST": _control_add_fault, "DELETE": _control_clear_faults},
    "/_control/latency": {"POST": _control_latency},
    "/_control/rate_limit": {"POST": _control_rate_limit},
    "/_control/requests": {"GET": _control_requests},
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "crmsync-demo-crm/1"
    # A response leaves in two writes (headers, body); Nagle would hold the second back.
    disable_nagle_algorithm = True
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a stderr line per request would swamp benchmarks; see the request log."""

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def handle(self) -> None:
        # A client that went away mid-exchange leaves no one to answer.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def _handle(self) -> None:
        arrived = time.time()
        length = self.headers.get("Content-Length", "")
        body = self.rfile.read(int(length)) if length.isdigit() else b""
        url = urlsplit(self.path)
        demo = self.server.demo
        authorized = _authorized(self.headers.get("Authorization"), self.server.credentials)
        if url.path.startswith("/_control/"):
            self._send(self._control(url.path, body) if authorized else _unauthorized())
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if demo.latency_ms > 0:
            demo.sleep(demo.latency_ms / 1000)
        endpoint = _ENDPOINTS.get(url.path)
        fault = None
        response: _Response | None
        admission = demo.rate_limit.admit() if authorized and demo.rate_limit else None
        if admission is not None and not admission.allowed:
            response = _throttled(admission)
        elif authorized:
            page = _count(params.get(endpoint.page_param, "1")) if endpoint else None
            fault = demo.faults.take(url.path, page)
            response = self._api(url.path, endpoint, params, fault)
            if response is not None and admission is not None:
                response.headers.update(admission.headers)
        else:
            response = _unauthorized()
        # Logged before the answer leaves, so a client that has its answer finds it logged.
        demo._record(
            RequestRecord(
                at=arrived,
                finished_at=time.time(),
                method=self.command,
                path=url.path,
                resource=endpoint.resource if endpoint else None,
                params=params,
                status=response.status if response else 0,
                fault=fault.kind if fault else None,
                rows=response.rows if response else 0,
            )
        )
        if response is None:
            self.close_connection = True  # closing without a byte written is the fault
        else:
            self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _api(
        self, path: str, endpoint: _Endpoint | None, params: dict[str, str], fault: Fault | None
    ) -> _Response | None:
        if fault is not None:
            if fault.kind == "drop" or (
                fault.kind == "hang" and not self._client_waits(fault.seconds)
            ):
                return None
            if fault.kind == "status":
                return _fault_response(fault)
        kind = fault.kind if fault else None
        if endpoint is None:
            return _error(404, "not_found", f"no resource at {path}")
        if self.command != "GET":
            return _error(405, "method_not_allowed", "list endpoints answer GET", {"Allow": "GET"})
        try:
            page = _positive(params, endpoint.page_param, 1, None)
            limit = _positive(params, endpoint.limit_param, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            since = _updated_since(params)
        except _BadParameter as bad:
            return _error(400, "invalid_parameter", str(bad))
        include_deleted = params.get("include_deleted", "").lower() == "true"
        if self.server.demo.before_page is not None:
            self.server.demo.before_page(endpoint.resource, page, params)
        rows, total = self.server.demo.store.page(
            endpoint.resource, page, limit, since, include_deleted
        )
        if kind == "short_page":
            rows = rows[:-1]
        elif kind == "unordered":
            rows = rows[::-1]
        document: dict[str, Any] = {endpoint.resource: rows}
        if endpoint.has_meta:
            document["meta"] = {"page": page, "limit": limit, "total": total}
        response = _json(200, document, rows=len(rows))
        if kind == "malformed":
            # Any proper prefix of a JSON object is invalid JSON.
            response.body, response.rows = response.body[: len(response.body) // 2], 0
        return response

    def _client_waits(self, seconds: float) -> bool:
        """Sits out a hang fault; False as soon as the client hangs up.

        A client that times out closes its socket; noticing that at once logs the request
        when the client gave up, so a test can check the log right after its retry.
        """
        if seconds <= 0:
            return True  # a zero timeout would make the socket non-blocking instead
        deadline = time.monotonic() + seconds
        self.connection.settimeout(seconds)
        try:
            if not self.connection.recv(1, socket.MSG_PEEK):
                return False
        except TimeoutError:
            return True
        except OSError:
            return False
        finally:
            self.connection.settimeout(None)
        time.sleep(max(0.0, deadline - time.monotonic()))  # bytes of a pipelined request
        return True

    def _control(self, path: str, body: bytes) -> _Response:
        actions = _CONTROL.get(path)
        if actions is None:
            return _error(404, "not_found", f"no control endpoint at {path}")
        action = actions.get(self.command)
        if action is None:
            allowed = ", ".join(actions)
            return _error(
                405, "method_not_allowed", f"{path} answers {allowed}", {"Allow": allowed}
            )
        try:
            return action(self.server.demo, _json_object(body))
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_parameter", str(exc))

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], demo: DemoServer, credentials: bytes) -> None:
        self.demo = demo
        self.credentials = credentials
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Ends idle keep-alive connections, whose threads would otherwise outlive stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)


class DemoServer:
    """The demo CRM, serving its generated records from a background thread.

    Tests drive it in-process (``store``, ``faults``, ``mutate``, ``latency_ms``,
    ``rate_limit``) and read back what clients did (``requests``); other processes use the
    control API instead. ``rate_limit``, if set, is one token bucket for every API request.
    """

    def __init__(
        self,
        sizes: dict[str, int] | None = None,
        seed: int = 7,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.store = CrmStore(sizes, seed)
        self.faults = FaultPlan()
        self.latency_ms = latency_ms
        self.sleep: Callable[[float], None] = time.sleep
        """How a request waits out the latency (a test records the waits instead)."""
        self.before_page: PageHook | None = None
        """Called in the request's thread just before a page is cut from the list, with the
        resource, the page number and the query: a test moves the list at chosen moments
        between concurrent page requests (and may block to order them)."""
        self.rate_limit = rate_limit
        self._credentials = f"{username}:{password}".encode()
        self._address = (host, port)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()

    def start(self) -> DemoServer:
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._httpd = _HttpServer(self._address, self, self._credentials)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # how long stop() may wait
            name="crmsync-demo-server",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return f"http://{self._address[0]}:{self._httpd.server_port}"

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, entry: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(entry)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot in arrival order (requests are logged when answered, which can differ)."""
        with self._log_lock:
            return sorted(self._log, key=lambda entry: entry.at)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    def requests_for(self, resource: str) -> list[RequestRecord]:
        return [entry for entry in self.requests if entry.resource == resource]

    def mutate(self, resource: str, create: int = 0, update: int = 0, delete: int = 0) -> Mutation:
        return self.store.mutate(resource, create=create, update=update, delete=delete)
