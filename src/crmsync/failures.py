"""Turning an exception into the one line a user reads, and the exit code a scheduler reads.

dlt wraps a resource's error two or three levels deep (`PipelineStepFailed` →
`ResourceExtractionError` → the `requests` error); the user needs the resource, the request
and what to do, not the chain. Exit codes:

    0  success
    2  configuration or authentication: a setting is missing or wrong, credentials rejected
    3  source failure: the CRM failed, timed out, or answered with something unusable
    4  destination failure: extraction worked but loading did not
    5  quota reached: the run sent its `max_requests`; the resources that finished their read
       were loaded, the others kept their cursors: run again to finish the rest
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

import requests
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.exceptions import DltException
from dlt.common.schema.exceptions import DataValidationError
from dlt.extract.exceptions import PipeException
from dlt.pipeline.exceptions import PipelineStepFailed

from crmsync.ledger import IncompleteReadError, QuotaCutReplaceError
from crmsync.reading.page_shape import NotAPageError
from crmsync.redaction import redact_url, redact_urls_in
from crmsync.transport.exchange import TooManyRedirectsError
from crmsync.transport.http_policy import InsecureTransportError, MalformedBodyError, QuotaReached

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_SOURCE = 3
EXIT_DESTINATION = 4
EXIT_QUOTA = 5

_ADVICE = {
    400: "the request was rejected; check the resource's params in your config",
    401: "check SOURCES__CRM__USERNAME and SOURCES__CRM__PASSWORD",
    403: "these credentials may not read this resource; ask the CRM admin or drop it with"
    " --resources",
    404: "check the resource's path and the base URL",
    429: "the CRM kept rate-limiting; lower [sources.crm.http] max_requests_per_second",
}


@dataclass(frozen=True)
class Failure:
    exit_code: int
    message: str


def describe(error: BaseException, attempts: int | None = None) -> Failure:
    """The user's view of `error`; every URL in it redacted (`crmsync.redaction`)."""
    failure = _describe(error, attempts)
    return Failure(failure.exit_code, redact_urls_in(failure.message))


@dataclass(frozen=True)
class _RequestFailure:
    """How a request that failed in this way reads: `<resource>: GET /path <what>[ after N
    attempts]; <advice>`."""

    kind: type[requests.RequestException]
    exit_code: int
    what: Callable[[requests.RequestException], str]
    advice: str
    retried: bool = True


_REQUEST_FAILURES = (
    _RequestFailure(
        QuotaReached,
        EXIT_QUOTA,
        lambda error: f"was not sent: {error} (max_requests)",
        "nothing was loaded; run again, or raise max_requests",
        retried=False,
    ),
    _RequestFailure(
        NotAPageError,
        EXIT_SOURCE,
        lambda error: (
            "answered 200 with a body that is not a page of records"
            f" ({cast(NotAPageError, error).reason})"
        ),
        "the CRM is failing, try again later",
    ),
    _RequestFailure(
        TooManyRedirectsError,
        EXIT_SOURCE,
        lambda error: f"was {error}",
        "check the base URL, or the proxy or load balancer in front of the CRM",
        retried=False,
    ),
    _RequestFailure(
        MalformedBodyError,
        EXIT_SOURCE,
        lambda error: "returned 200 with a body that is not JSON",
        "the CRM is failing, try again later",
    ),
    _RequestFailure(
        requests.Timeout,
        EXIT_SOURCE,
        lambda error: "timed out",
        "the CRM is slow or unreachable (timeouts: [sources.crm.http] request_deadline,"
        " read_timeout, connect_timeout)",
    ),
    _RequestFailure(
        requests.ConnectionError,
        EXIT_SOURCE,
        lambda error: "failed: connection error",
        "check the base URL and the network",
    ),
)
"""In the order they are told apart: a connect timeout is both a `Timeout` and a
`ConnectionError`."""


def _describe(error: BaseException, attempts: int | None) -> Failure:
    chain = list(causes(error))
    resource = next((e.pipe_name for e in chain if isinstance(e, PipeException)), None)
    prefix = f"{resource}: " if resource else ""
    for cause in chain:
        if isinstance(cause, DataValidationError):
            return Failure(EXIT_SOURCE, _contract_violation(cause))
        if isinstance(cause, QuotaCutReplaceError):
            return Failure(
                EXIT_QUOTA,
                f"{cause}; nothing was loaded; raise max_requests, or refresh fewer resources"
                " at a time (--resources)",
            )
        if isinstance(cause, IncompleteReadError):
            return Failure(
                EXIT_SOURCE, f"{cause}; the read is incomplete, so nothing was loaded; rerun later"
            )
        kind = next((k for k in _REQUEST_FAILURES if isinstance(cause, k.kind)), None)
        if kind is not None:
            assert isinstance(cause, requests.RequestException)
            after = _after(attempts) if kind.retried else ""
            return Failure(
                kind.exit_code,
                f"{prefix}{_request_line(cause)} {kind.what(cause)}{after}; {kind.advice}",
            )
        if isinstance(cause, requests.HTTPError) and cause.response is not None:
            status = cause.response.status_code
            reason = cause.response.reason or ""
            auth = status in (401, 403)
            retried = status == 429 or status >= 500
            advice = _ADVICE.get(status, "the CRM is failing; try again later")
            return Failure(
                EXIT_CONFIG if auth else EXIT_SOURCE,
                f"{prefix}{_request_line(cause)} answered {status} {reason}"
                f"{_after(attempts) if retried else ''}; {advice}",
            )
        if isinstance(cause, InsecureTransportError):
            return Failure(EXIT_CONFIG, str(cause))
        if isinstance(cause, ConfigurationException):
            return Failure(EXIT_CONFIG, _first_line(str(cause)))
    step = next((e.step for e in chain if isinstance(e, PipelineStepFailed)), None)
    if step in ("load", "normalize"):
        return Failure(EXIT_DESTINATION, f"{step} failed: {_first_line(str(chain[-1]))}")
    if isinstance(chain[-1], (ValueError, DltException)):
        return Failure(
            EXIT_SOURCE if resource else EXIT_CONFIG, prefix + _first_line(str(chain[-1]))
        )
    return Failure(
        EXIT_SOURCE, f"{prefix}{type(chain[-1]).__name__}: {_first_line(str(chain[-1]))}"
    )


def quota_reached(max_requests: int, loaded: list[str], left: list[str]) -> Failure:
    """A run the request quota cut short: what it loaded, what is left, how to go on."""
    done = ", ".join(loaded) if loaded else "nothing"
    return Failure(
        EXIT_QUOTA,
        f"quota reached: the run sent its {max_requests} requests (max_requests); loaded"
        f" {done}; left, cursors kept where they were: {', '.join(left)}. Run again to finish"
        f" them (--resources {','.join(left)} spends the next quota on them alone)",
    )


def _contract_violation(error: DataValidationError) -> str:
    """One line naming the table and the field; never the offending record (it may hold
    personal data) that dlt's own message includes."""
    what = {"tables": "table", "columns": "field", "data_type": "type of field"}.get(
        str(error.schema_entity), str(error.schema_entity)
    )
    field = f" `{error.column_name}`" if error.column_name else f" `{error.table_name}`"
    return (
        f"{error.table_name}: the CRM sent a new {what}{field}, which the schema contract"
        f" `{error.contract_mode}` refuses; nothing was loaded. Declare it in the resource's"
        " columns, or relax schema_contract in your profile"
    )


def causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nested = getattr(current, "exception", None)
        if isinstance(current, PipelineStepFailed) and isinstance(nested, BaseException):
            current = nested
        else:
            context = None if current.__suppress_context__ else current.__context__
            current = current.__cause__ or context


def _request_line(error: requests.RequestException) -> str:
    request = error.request
    if request is None and error.response is not None:
        request = error.response.request
    if request is None or not request.url:
        return "request"
    parts = urlsplit(redact_url(request.url))
    target = parts.path + (f"?{unquote(parts.query)}" if parts.query else "")
    return f"{request.method or 'GET'} {target}"


def _after(attempts: int | None) -> str:
    return f" after {attempts} attempts" if attempts else ""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text
