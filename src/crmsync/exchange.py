"""One attempt at a request, bounded: a deadline over the whole exchange, redirects inside it.

Two ways a hostile or broken CRM (or a proxy in front of it) used to hang a run:

- `read_timeout` bounds each socket read, not a response: a body trickled one byte a second
  never times out. Here the body is read in whatever pieces arrive, against one monotonic
  deadline (`request_deadline`) that also caps the connect and read timeouts of every hop.
- `requests` follows a redirect by calling `Session.send` again, which in `CrmSession` is a
  new attempt that waits for a second slot of the run's budget while holding the first: with
  every request answered `302`, all slots were soon held by requests waiting for their own
  redirect, and the run stopped. Here each hop is prepared by requests' own
  `resolve_redirects` (which drops the `Authorization` header when the host, port or scheme
  changes) and sent within the same attempt, slot and deadline, up to `max_redirects` hops.

The response handed back has its body read (`.content`), like a `stream=False` one.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, cast

import requests
from requests.cookies import extract_cookies_to_jar
from requests.hooks import dispatch_hook
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

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
    hooked: requests.Response = dispatch_hook(  # type: ignore[no-untyped-call]  # untyped in requests
        "response", request.hooks, response, timeout=timeout, **kwargs
    )
    return hooked


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
    response = adapter.send(
        request, stream=True, timeout=(min(connect, left), min(read, left)), **kwargs
    )
    _read_body(response, ends)
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
