"""How crmsync talks HTTP to a CRM: authentication, retries, timeouts and one request budget.

The retry policy is the seed's — 429/500/502/503/504, connection errors, timeouts and a `200`
whose body is not JSON are retried up to 3 times with exponential backoff (factor 2),
`Retry-After` honoured up to a cap — built from dlt's and tenacity's retry pieces
(`retry_if_status`, `wait_exponential`) on a session that rest_api uses for every resource,
including the ones a user adds. Each attempt is bounded by a deadline and follows its
redirects itself (`crmsync.transport.exchange`). The same session enforces one budget for the
whole run, paced to the CRM's rate limit (`crmsync.transport.pacing`), because that limit is per
account, not per resource.

What a body means is not this module's: the session hands each `200`'s body to the decoder it
was given (`BodyDecoder`; by default JSON, `decode_json`), within the attempt, so that a body
the decoder refuses (`BrokenBodyError`: not JSON, or JSON but not a page, as the reading
layer's `crmsync.reading.page_reader.PageDecoder` checks) is retried like a 5xx. Pages fetched
ahead are handed over through `CrmSession.prefetched`, which the reading layer fills in.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.specs import BaseConfiguration
from dlt.sources.helpers.requests.retry import retry_if_status
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_any,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from crmsync.dlt_internals import SharedThroughConfig
from crmsync.ledger import RunLedger
from crmsync.redaction import redact_url, redact_urls_in
from crmsync.transport.exchange import exchange
from crmsync.transport.json_body import loads
from crmsync.transport.pacing import Pacer, Ticket, retry_after_seconds

RETRYABLE_STATUSES = (429, 500, 502, 503, 504)


@configspec
class HttpPolicy(BaseConfiguration):
    """`[sources.crm.http]` in `.dlt/config.toml`, or `SOURCES__CRM__HTTP__<KEY>`."""

    max_retries: int = 3
    backoff_factor: float = 2.0
    max_retry_delay: float = 300.0
    """Upper bound of one wait, `Retry-After` included."""
    retry_statuses: list[int] | None = None
    """Defaults to 429, 500, 502, 503, 504."""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    """Longest wait for any one read of the socket."""
    request_deadline: float = 120.0
    """Longest one attempt may take, from connecting to the body's last byte (redirects
    included): a body trickled a byte at a time never trips `read_timeout`."""
    max_redirects: int = 5
    """Redirects one request follows; past them the run fails (a loop, or a base URL that
    moved)."""
    max_in_flight: int = 8
    """Requests open at once across all resources."""
    max_requests_per_second: float = 0.0
    """0 means no rate cap of our own; the CRM's 429s still slow the whole budget down."""
    max_requests: int = 0
    """Requests one run may send (every attempt: retries and pages fetched ahead included);
    0 means no quota. A run that reaches it loads the resources that finished their read
    (`crmsync.ledger.ResourceObserver.quota_reached`)."""
    allow_insecure_http: bool = False

    def statuses(self) -> tuple[int, ...]:
        return tuple(self.retry_statuses) if self.retry_statuses else RETRYABLE_STATUSES


def load_policy(**overrides: Any) -> HttpPolicy:
    policy = resolve_configuration(HttpPolicy(), sections=("sources", "crm", "http"))
    for key, value in overrides.items():
        if value is not None:
            setattr(policy, key, value)
    return policy


class InsecureTransportError(ValueError):
    """Basic auth over plain HTTP to another host sends the password in clear text."""


def check_transport(base_url: str, allow_insecure_http: bool) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL {redact_url(base_url)!r} is not an http(s) URL")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise InsecureTransportError(
            f"refusing to send credentials over plain http to {parts.hostname}; "
            "use https, or pass --allow-insecure-http if you accept that risk"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BrokenBodyError(requests.RequestException):
    """A `200` whose body the session's decoder refused: a server fault, retried like a 5xx,
    never loaded. The session adds the request and response to it."""


class MalformedBodyError(BrokenBodyError):
    """A `200` whose body is not JSON."""


BodyDecoder = Callable[[str, bytes], Any]
"""What the body of a `200` for a URL path is (what `.json()` answers); raises
`BrokenBodyError` for a body the read cannot use."""


def decode_json(path: str, body: bytes) -> Any:
    """The body's JSON (`crmsync.transport.json_body.loads`): a session's decoder, unless the
    reading layer gives it its own."""
    try:
        return loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedBodyError(f"body is not valid JSON ({error})") from None


class RequestTag:
    """A response hook that leaves the response as it is and names the resource it reads.

    `requests` keeps a request's hooks on the prepared request, its retries and the copies the
    look-ahead sends, so the ledger can count every attempt for its resource
    (`crmsync.reading.page_observer.ObservedPaginator` tags them)."""

    def __init__(self, resource: str) -> None:
        self.resource = resource

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        return None


def resource_of(request: requests.PreparedRequest) -> str | None:
    """The resource a request reads, where its paginator named it."""
    for hook in (request.hooks or {}).get("response", ()):
        if isinstance(hook, RequestTag):
            return hook.resource
    return None


class DecodedJsonResponse(requests.Response):
    """A response whose body was decoded once, by the session's decoder, when it arrived.

    rest_api and the paginator both call `.json()` on every page; decoding once halves the
    decoding cost of a sync.
    """

    decoded: Any

    def json(self, **kwargs: Any) -> Any:
        return self.decoded


class QuotaReached(requests.RequestException):
    """The run has sent its `max_requests`: this request is not sent."""


class RequestBudget:
    """At most `max_in_flight` requests open, each started when the run's `Pacer` allows, and
    at most `max_requests` in the whole run (0: no quota).

    The pacer spaces requests to the rate it learns from the CRM, under the user's
    `max_per_second` if set (`crmsync.transport.pacing`). A 429 also halves the requests allowed in
    flight; each success afterwards gives one slot back, up to the maximum. Once `max_requests`
    have started, every request asking for a slot gets `QuotaReached` instead, at once.

    The requests waiting go lane by lane (a lane is an endpoint, a resource's list): the lane
    served least recently first, and in the order they came within a lane. A resource read a
    page at a time (a list without a total, so without a look-ahead) then keeps pace with one
    that asks for many pages ahead, instead of waiting behind all of them for each page and
    being left to finish alone, where each 429 stalls the whole run for its ``Retry-After`` (at
    20 requests a second: a second of 3 requests instead of 20, measured).
    """

    def __init__(
        self,
        max_in_flight: int,
        max_per_second: float = 0.0,
        max_pause: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_requests: int = 0,
    ) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.allowed_in_flight = self.max_in_flight
        self.max_requests = max(0, max_requests)
        self.started = 0
        """Requests started so far (every attempt)."""
        self.pacer = Pacer(max_per_second, max_pause, clock)
        """The run's figures: `pacer.rate`, `pacer.waited_seconds`, `pacer.throttled`."""
        self._in_flight = 0
        self._served: dict[str, int] = {}
        """Per lane, the number (`started`) of its latest request."""
        self._waiting: list[tuple[str, int]] = []
        """The lanes of the requests waiting, with the order they came in."""
        self._arrivals = 0
        self._condition = threading.Condition()

    def scarce(self) -> bool:
        """Whether a request spent on a page that may not exist costs the run: under a quota,
        a ceiling or a learnt rate limit (`Pacer.limited`)."""
        return bool(self.max_requests) or self.pacer.limited

    @property
    def quota_reached(self) -> bool:
        return bool(self.max_requests) and self.started >= self.max_requests

    def acquire(self, lane: str = "") -> Ticket:
        """Waits for a slot, the pacer and its turn among the lanes waiting; the ticket goes
        back with `release`. Raises `QuotaReached` once the run's `max_requests` have started,
        without waiting."""
        with self._condition:
            self._arrivals += 1
            place = (lane, self._arrivals)
            self._waiting.append(place)
            try:
                while True:
                    if self.quota_reached:
                        self.pacer.hold(False)
                        raise QuotaReached(
                            f"the run's quota of {self.max_requests} requests is spent"
                        )
                    wait: float | None = None
                    if self._in_flight < self.allowed_in_flight and place == self._next_in_line():
                        wait = self.pacer.delay()
                        self.pacer.hold(wait > 0)
                        if wait <= 0:
                            self._in_flight += 1
                            self.started += 1
                            self._served[lane] = self.started
                            return self.pacer.start()
                    self._condition.wait(timeout=wait)
            finally:
                self._waiting.remove(place)
                self._condition.notify_all()

    def _next_in_line(self) -> tuple[str, int]:
        return min(self._waiting, key=lambda place: (self._served.get(place[0], 0), place[1]))

    def release(self, ticket: Ticket, response: requests.Response | None) -> None:
        """The request of ``ticket`` is answered (``response``) or failed without one (None)."""
        with self._condition:
            self._in_flight -= 1
            if response is not None:
                self.pacer.learn(ticket, response.status_code, response.headers, self._in_flight)
            if response is not None and response.status_code == 429:
                self.allowed_in_flight = max(1, self.allowed_in_flight // 2)
            elif self.allowed_in_flight < self.max_in_flight:
                self.allowed_in_flight += 1
            self._condition.notify_all()


class _WaitRetryAfter(wait_exponential):
    """Exponential backoff, or the answer's ``Retry-After`` (up to the cap) where it has one."""

    def __call__(self, retry_state: RetryCallState) -> float:
        response = _response_of(retry_state)
        header = response.headers.get("Retry-After") if response is not None else None
        seconds = retry_after_seconds(header)
        if seconds:
            return float(max(self.min, min(self.max, seconds)))
        return float(super().__call__(retry_state))


def _response_of(state: RetryCallState) -> requests.Response | None:
    outcome = state.outcome
    if outcome is None:
        return None
    error = outcome.exception()
    if error is not None:
        response = getattr(error, "response", None)
        return response if isinstance(response, requests.Response) else None
    result = outcome.result()
    return result if isinstance(result, requests.Response) else None


class CrmSession(SharedThroughConfig, requests.Session):
    """The session every resource's RESTClient shares: retries, timeouts, budget, ledger; each
    `200`'s body decoded by `decode`."""

    def __init__(
        self,
        policy: HttpPolicy,
        ledger: RunLedger | None = None,
        decode: BodyDecoder = decode_json,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.decode = decode
        self.ledger = ledger or RunLedger()
        self.budget = RequestBudget(
            policy.max_in_flight,
            policy.max_requests_per_second,
            policy.max_retry_delay,
            max_requests=policy.max_requests,
        )
        self.timeout = (policy.connect_timeout, policy.read_timeout)
        self.prefetched: Callable[[str], requests.Response | None] = lambda url: None
        """The response already fetched for a URL, if any, which `send` hands over instead of
        sending the request (the reading layer's look-ahead, `crmsync.reading.lookahead`)."""
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(8, policy.max_in_flight * 2))
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = "crmsync"
        self._environment: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._retrying = Retrying(
            retry=retry_any(
                retry_if_status(policy.statuses()),
                retry_if_exception_type(
                    (
                        requests.ConnectionError,
                        requests.Timeout,
                        requests.exceptions.ChunkedEncodingError,
                        BrokenBodyError,
                    )
                ),
            ),
            wait=_WaitRetryAfter(multiplier=policy.backoff_factor, max=policy.max_retry_delay),
            stop=stop_after_attempt(policy.max_retries + 1),
            before_sleep=self._count_retry,
            reraise=True,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        try:
            prefetched = self.prefetched(str(request.url))
            if prefetched is not None:
                return prefetched
            return self.fetch(request, **kwargs)
        except QuotaReached as error:
            return self._quota_reached(request, error)

    def _quota_reached(
        self, request: requests.PreparedRequest, error: QuotaReached
    ) -> requests.Response:
        """The run's quota is spent before this page of a read: the read ends here, quietly,
        and its resource is left for the next run (`ResourceObserver.quota_reached`), as an
        empty page that holds no records. A request of no read the ledger tracks fails."""
        observer = self.ledger.observer_of(resource_of(request), urlsplit(request.url or "").path)
        if observer is None:
            error.request = request
            raise error
        observer.quota_reached(self.budget.max_requests)
        response = DecodedJsonResponse()
        response.status_code = 200
        response.reason = "quota reached"
        response.url = str(request.url)
        response.request = request
        response._content = b"{}"
        response.decoded = {}
        return response

    def fetch(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Sends now, under the retry policy and the budget (the look-ahead sends this way).

        rest_api merges the environment's settings into every request it sends;
        `Session.send` alone would still find the proxy but not `REQUESTS_CA_BUNDLE`. Pages the
        look-ahead sends get the same settings here, whichever thread sends them.
        """
        url = str(request.url)
        for key, value in self.merge_environment_settings(url, {}, None, None, None).items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("timeout", self.timeout)
        response: requests.Response = self._retrying(self._attempt, request, **kwargs)
        return response

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:  # requests' own type for it is private (`_Settings`)
        """requests reads the proxy and CA variables of the environment again for every request
        (a tenth of the CPU a page costs the main thread); they depend on the host alone, so a
        session keeps each host's answer."""
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        host = (parts.scheme, parts.netloc)
        if host not in self._environment:
            self._environment[host] = super().merge_environment_settings(url, {}, None, None, None)
        settings = self._environment[host]
        return {**settings, "proxies": dict(settings["proxies"])}

    def _attempt(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = urlsplit(request.url or "").path
        ticket = self.budget.acquire(path)
        self.ledger.attempt(resource_of(request), path)
        response: requests.Response | None = None
        try:
            response = exchange(
                self,
                request,
                deadline=self.policy.request_deadline,
                max_redirects=self.policy.max_redirects,
                **kwargs,
            )
        except requests.HTTPError as error:
            response = error.response
            raise
        except requests.RequestException as error:
            # urllib3 quotes the request line (`... with url: /persons?api_token=...`); dlt
            # keeps the message in its trace, on disk
            error.args = tuple(redact_urls_in(str(arg)) for arg in error.args)
            raise
        finally:
            self.budget.release(ticket, response)
        if response.status_code == 200:
            _decode_body(response, self.decode, path)
        return response

    def _count_retry(self, state: RetryCallState) -> None:
        request = state.args[0]
        path = urlsplit(request.url or "").path
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        response = getattr(error, "response", None) if error is not None else None
        throttled = response is not None and response.status_code == 429
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        self.ledger.retry(resource_of(request), path, wait, throttled)


def _decode_body(response: requests.Response, decode: BodyDecoder, path: str) -> None:
    try:
        decoded = decode(path, response.content)
    except BrokenBodyError as error:
        error.request, error.response = response.request, response
        raise
    response.__class__ = DecodedJsonResponse
    response.decoded = decoded  # type: ignore[attr-defined]
