"""One attempt at a request, bounded: a deadline over the whole exchange, redirects inside it.

Two ways a hostile or broken CRM (or a proxy in front of it) used to hang a run:

- `read_timeout` bounds each socket read, not a response: a body (or a status line and
  headers) trickled one byte a second never times out. Here the body is read in whatever
  pieces arrive, against one monotonic deadline (`request_deadline`) that also caps the
  connect and read timeouts of every hop; and a timer shuts the hop's socket at the deadline,
  which ends a read of the status line and headers too (urllib3 reads them line by line, each
  read bounded by `read_timeout` alone). The adapter's connections are the ones that take the
  timer (`_install`); a request through a proxy is bounded by the timeouts only.
- `requests` follows a redirect by calling `Session.send` again, which in `CrmSession` is a
  new attempt that waits for a second slot of the run's budget while holding the first: with
  every request answered `302`, all slots were soon held by requests waiting for their own
  redirect, and the run stopped. Here each hop is prepared by requests' own
  `resolve_redirects` (which drops the `Authorization` header when the host, port or scheme
  changes) and sent within the same attempt, slot and deadline, up to `max_redirects` hops.

The response handed back has its body read (`.content`), like a `stream=False` one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import timedelta
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.hooks import dispatch_hook
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.response import HTTPResponse

from crmsync.redaction import redact_url, without_login

_PIECE = 256 * 1024
"""Most bytes one read takes; a read returns as soon as any bytes are there."""


class DeadlineExceeded(requests.Timeout):
    """The exchange took longer than `request_deadline`; retried like any timeout."""


class TooManyRedirectsError(requests.TooManyRedirects):
    """More than `max_redirects` hops (a loop, or a base URL that moved): not retried, as every
    attempt would be redirected the same way."""

    def __init__(self, hops: int, location: str, **kwargs: Any) -> None:
        super().__init__(
            f"redirected more than {hops} times (last to {redact_url(location)})", **kwargs
        )


def exchange(
    session: requests.Session,
    request: requests.PreparedRequest,
    *,
    deadline: float,
    max_redirects: int,
    timeout: tuple[float, float],
    **kwargs: Any,
) -> requests.Response:
    """Sends `request` and follows its redirects, all within `deadline` seconds.

    `kwargs` are the send settings (`verify`, `cert`, `proxies`; `stream` is ignored, the body
    is always read). The request's response hooks run on the final response, as
    `Session.send` runs them.
    """
    kwargs.pop("stream", None)
    started = time.monotonic()
    ends = started + deadline
    sent = _without_userinfo(request)
    response = _send(session, sent, ends, timeout, kwargs)
    history: list[requests.Response] = []
    while response.is_redirect:
        if len(history) == max_redirects:
            raise TooManyRedirectsError(
                max_redirects,
                response.headers["location"],
                request=request,
                response=response,
            )
        history.append(response)
        hop = cast(
            requests.PreparedRequest,
            next(session.resolve_redirects(response, sent, yield_requests=True, **kwargs)),
        )
        sent = _without_userinfo(hop)
        response = _send(session, sent, ends, timeout, kwargs)
    response.history = history
    response.elapsed = timedelta(seconds=time.monotonic() - started)
    if response.status_code >= 400:
        # the error `raise_for_status` (a response hook) raises quotes this URL, and dlt keeps
        # the message in its trace, on disk: redacted first
        response.url = redact_url(response.url)
    hooked: requests.Response = dispatch_hook(  # type: ignore[no-untyped-call]  # untyped in requests
        "response", request.hooks, response, timeout=timeout, **kwargs
    )
    return hooked


class _Watch:
    """One hop's deadline: at `expire` (a timer's call), the socket of the connection the hop
    uses is shut, so that a read blocked on it returns at once."""

    def __init__(self) -> None:
        self.expired = False
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self.expired:
                _shut(connection)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._connection is not None:
                _shut(self._connection)


def _shut(connection: HTTPConnection) -> None:
    with contextlib.suppress(OSError):
        if connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)


_hop = threading.local()
"""`watch`: the `_Watch` of the hop this thread is sending, if any."""


class _WatchedConnection(HTTPConnection):
    """A connection the current hop's `_Watch` can shut: it attaches on connecting and on
    reading a response (a connection from the pool connects no more)."""

    def connect(self) -> None:
        _attach(self)
        super().connect()

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _attach(self)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


def _attach(connection: HTTPConnection) -> None:
    watch = getattr(_hop, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedHTTPSPool}
_install_lock = threading.Lock()


def _install(adapter: Any) -> None:
    """Has `adapter`'s pools make `_WatchedConnection`s (once; pools made before are dropped,
    their idle connections closed)."""
    if not isinstance(adapter, HTTPAdapter):
        return
    manager = adapter.poolmanager
    with _install_lock:
        if manager.pool_classes_by_scheme is not _WATCHED_POOLS:
            manager.pool_classes_by_scheme = _WATCHED_POOLS
            manager.clear()


def _send(
    session: requests.Session,
    request: requests.PreparedRequest,
    ends: float,
    timeout: tuple[float, float],
    kwargs: dict[str, Any],
) -> requests.Response:
    left = _time_left(ends, request)
    connect, read = timeout
    adapter = session.get_adapter(url=str(request.url))
    _install(adapter)
    watch = _Watch()
    timer = threading.Timer(left, watch.expire)
    timer.daemon = True
    _hop.watch = watch
    timer.start()
    try:
        response = adapter.send(
            request, stream=True, timeout=(min(connect, left), min(read, left)), **kwargs
        )
        _read_body(response, ends)
    except requests.RequestException as error:
        if watch.expired and not isinstance(error, DeadlineExceeded):
            raise _exceeded(request) from None
        raise
    finally:
        timer.cancel()
        _hop.watch = None
    if watch.expired:  # shut mid-headers, urllib3 may have taken what came as the response
        response.close()
        raise _exceeded(request)
    # a load balancer's affinity cookie, as `Session.send` keeps it
    extract_cookies_to_jar(session.cookies, request, response.raw)  # type: ignore[no-untyped-call]
    return response


def _read_body(response: requests.Response, ends: float) -> None:
    """Reads the whole body before `ends`; requests' own `.content` would wait as long as
    bytes keep coming. urllib3's errors become requests' own, as `.content` raises them."""
    pieces: list[bytes] = []
    try:
        while piece := response.raw.read1(_PIECE, decode_content=True):
            pieces.append(piece)
            if time.monotonic() > ends:
                response.close()
                raise DeadlineExceeded(
                    "the response took longer than request_deadline",
                    request=response.request,
                    response=response,
                )
    except ReadTimeoutError as error:
        raise requests.ReadTimeout(error, request=response.request) from None
    except ProtocolError as error:
        raise requests.exceptions.ChunkedEncodingError(error, request=response.request) from None
    except DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error, request=response.request) from None
    except SSLError as error:
        raise requests.exceptions.SSLError(error, request=response.request) from None
    response._content = b"".join(pieces)
    # requests' own flag that the body was read: closing the response then returns its
    # connection to the pool instead of dropping it
    response._content_consumed = True  # type: ignore[attr-defined]


def _exceeded(request: requests.PreparedRequest) -> DeadlineExceeded:
    return DeadlineExceeded("the response took longer than request_deadline", request=request)


def _time_left(ends: float, request: requests.PreparedRequest) -> float:
    left = ends - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("no time left within request_deadline", request=request)
    return left


def _without_userinfo(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """`request` without a login in its URL (`https://user:token@crm/...`).

    The login is never sent as part of the URL, but requests writes the URL into its errors
    (`503 Server Error ... for url: ...`), which dlt keeps in its trace on disk; the
    credentials that authenticate are the session's, already in the headers."""
    url = without_login(str(request.url))
    if url == request.url:
        return request
    stripped = request.copy()
    stripped.url = url
    return stripped
