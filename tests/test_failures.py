"""`describe`: an exception, however deep dlt wraps it, as the one line a user reads and the exit
code a scheduler reads. Built from the exceptions themselves; the end-to-end tests (a run that
fails against the bundled CRM) are in test_http_policy.py, test_cli.py and test_quota.py."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.schema.exceptions import DataValidationError
from dlt.extract.exceptions import ResourceExtractionError
from dlt.pipeline.exceptions import PipelineStepFailed

from crmsync.failures import (
    EXIT_CONFIG,
    EXIT_DESTINATION,
    EXIT_QUOTA,
    EXIT_SOURCE,
    Failure,
    describe,
    quota_reached,
)
from crmsync.ledger import IncompleteReadError, QuotaCutReplaceError
from crmsync.reading.page_shape import NotAPageError
from crmsync.transport.exchange import TooManyRedirectsError
from crmsync.transport.http_policy import InsecureTransportError, MalformedBodyError, QuotaReached

URL = "http://crm.test/contacts?include_deleted=true&page[limit]=500&page[page]=3"
REQUEST_LINE = "GET /contacts?include_deleted=true&page[limit]=500&page[page]=3"


def request(url: str = URL) -> requests.PreparedRequest:
    return requests.Request("GET", url).prepare()


def sent(error: requests.RequestException) -> requests.RequestException:
    """`error` as the session raises it: with the request it failed."""
    error.request = request()
    return error


def answered(status: int, reason: str, url: str = URL) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.reason = reason
    response.request = request(url)
    return requests.HTTPError(f"{status} {reason}", response=response)


def in_resource(error: BaseException, resource: str = "contacts") -> ResourceExtractionError:
    """`error` as dlt raises it from a resource's extraction: wrapped, the cause chained."""
    try:
        try:
            raise error
        except BaseException as cause:
            raise ResourceExtractionError(resource, None, str(cause), "generator") from cause
    except ResourceExtractionError as wrapped:
        return wrapped


class StepFailed(PipelineStepFailed):
    """dlt's step failure without a pipeline to describe."""

    def __init__(self, step: Any, exception: BaseException) -> None:
        Exception.__init__(self, f"Pipeline execution failed at stage {step}")
        self.step = step
        self.exception = exception


@pytest.mark.parametrize(
    ("error", "attempts", "expected"),
    [
        (
            answered(503, "Service Unavailable"),
            4,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} answered 503 Service Unavailable after 4 attempts;"
                " the CRM is failing; try again later",
            ),
        ),
        (
            answered(429, "Too Many Requests"),
            4,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} answered 429 Too Many Requests after 4 attempts;"
                " the CRM kept rate-limiting; lower [sources.crm.http] max_requests_per_second",
            ),
        ),
        (
            answered(401, "Unauthorized"),
            1,
            Failure(
                EXIT_CONFIG,
                f"contacts: {REQUEST_LINE} answered 401 Unauthorized;"
                " check SOURCES__CRM__USERNAME and SOURCES__CRM__PASSWORD",
            ),
        ),
        (
            answered(403, "Forbidden"),
            None,
            Failure(
                EXIT_CONFIG,
                f"contacts: {REQUEST_LINE} answered 403 Forbidden; these credentials may not"
                " read this resource; ask the CRM admin or drop it with --resources",
            ),
        ),
        (
            answered(404, "Not Found"),
            1,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} answered 404 Not Found;"
                " check the resource's path and the base URL",
            ),
        ),
        (
            requests.ReadTimeout("read timed out", request=request()),
            4,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} timed out after 4 attempts; the CRM is slow or"
                " unreachable (timeouts: [sources.crm.http] request_deadline, read_timeout,"
                " connect_timeout)",
            ),
        ),
        (
            requests.ConnectionError("refused", request=request()),
            None,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} failed: connection error;"
                " check the base URL and the network",
            ),
        ),
        (
            MalformedBodyError("body is not valid JSON", request=request()),
            4,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} returned 200 with a body that is not JSON after 4"
                " attempts; the CRM is failing, try again later",
            ),
        ),
        (
            sent(NotAPageError("no list under `contacts`")),
            2,
            Failure(
                EXIT_SOURCE,
                f"contacts: {REQUEST_LINE} answered 200 with a body that is not a page of"
                " records (no list under `contacts`) after 2 attempts; the CRM is failing,"
                " try again later",
            ),
        ),
    ],
    ids=[
        "503-retried",
        "429-retried",
        "401",
        "403",
        "404",
        "timeout",
        "connection",
        "not-json",
        "not-a-page",
    ],
)
def test_a_request_that_failed_is_one_line_naming_the_resource_the_request_and_what_to_do(
    error: requests.RequestException, attempts: int | None, expected: Failure
) -> None:
    assert describe(in_resource(error), attempts) == expected


def test_a_secret_in_a_url_is_masked_wherever_it_shows() -> None:
    url = "http://crm.test/persons?api_token=tok-123&start=0"
    error = answered(400, "Bad Request", url)

    failure = describe(in_resource(error, "persons"))

    assert "tok-123" not in failure.message
    assert failure.message.startswith("persons: GET /persons?api_token=***&start=0 answered 400")


def test_a_secret_in_a_url_an_error_quotes_is_masked_too() -> None:
    error = ValueError("no page at http://crm.test/persons?api_token=tok-123&start=0")

    assert describe(in_resource(error, "persons")) == Failure(
        EXIT_SOURCE, "persons: no page at http://crm.test/persons?api_token=***&start=0"
    )


def test_an_error_outside_any_resource_has_no_prefix() -> None:
    failure = describe(requests.ConnectionError("refused", request=request()))

    assert failure.message.startswith(f"{REQUEST_LINE} failed: connection error")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            QuotaReached("the run's quota of 3 requests is spent", request=request()),
            Failure(
                EXIT_QUOTA,
                f"contacts: {REQUEST_LINE} was not sent: the run's quota of 3 requests is"
                " spent (max_requests); nothing was loaded; run again, or raise max_requests",
            ),
        ),
        (
            QuotaCutReplaceError("contacts", 3),
            Failure(
                EXIT_QUOTA,
                "contacts: the run's quota of 3 requests (max_requests) ran out before this"
                " read, which replaces its table (--full-refresh), had finished; nothing was"
                " loaded; raise max_requests, or refresh fewer resources at a time (--resources)",
            ),
        ),
        (
            IncompleteReadError("contacts", "/contacts", 1000, 990),
            Failure(
                EXIT_SOURCE,
                "contacts: GET /contacts reported meta.total=1000 but its pages held 990"
                " distinct records; the read is incomplete, so nothing was loaded; rerun later",
            ),
        ),
        (
            TooManyRedirectsError(5, "http://crm.test/elsewhere", request=request()),
            None,
        ),
        (
            ValueError("a page of contacts had no id\nsecond line"),
            Failure(EXIT_SOURCE, "contacts: a page of contacts had no id"),
        ),
        (
            RuntimeError("boom"),
            Failure(EXIT_SOURCE, "contacts: RuntimeError: boom"),
        ),
    ],
    ids=["quota", "quota-cut-a-refresh", "incomplete", "redirects", "value-error", "other"],
)
def test_a_read_that_stopped_says_why_with_its_exit_code(
    error: BaseException, expected: Failure | None
) -> None:
    failure = describe(in_resource(error))

    if expected is None:  # the redirect error's own wording is exchange's
        assert failure.exit_code == EXIT_SOURCE
        assert failure.message.startswith(f"contacts: {REQUEST_LINE} was ")
        assert failure.message.endswith(
            "; check the base URL, or the proxy or load balancer in front of the CRM"
        )
    else:
        assert failure == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            InsecureTransportError("refusing Basic auth over http://; --allow-insecure-http"),
            Failure(EXIT_CONFIG, "refusing Basic auth over http://; --allow-insecure-http"),
        ),
        (
            ConfigurationException("missing CRM setting\n  details dlt adds"),
            Failure(EXIT_CONFIG, "missing CRM setting"),
        ),
        (ValueError("bad --since"), Failure(EXIT_CONFIG, "bad --since")),
    ],
    ids=["insecure", "configuration", "value-error-outside-a-resource"],
)
def test_a_setting_that_is_wrong_exits_2(error: BaseException, expected: Failure) -> None:
    assert describe(error) == expected


@pytest.mark.parametrize("step", ["load", "normalize"])
def test_a_failure_after_the_read_is_the_destination_s_exit_4(step: str) -> None:
    error = StepFailed(step, RuntimeError("connection to the warehouse lost\ntraceback..."))

    assert describe(error) == Failure(
        EXIT_DESTINATION, f"{step} failed: connection to the warehouse lost"
    )


def test_a_record_the_schema_contract_refuses_is_named_by_table_and_field_never_by_value() -> None:
    error = DataValidationError(
        "crm",
        "contacts",
        "nickname",
        "columns",
        "freeze",
        None,
        {},
        data_item={"nickname": "personal data"},
    )

    failure = describe(StepFailed("extract", in_resource(error)))

    assert failure == Failure(
        EXIT_SOURCE,
        "contacts: the CRM sent a new field `nickname`, which the schema contract `freeze`"
        " refuses; nothing was loaded. Declare it in the resource's columns, or relax"
        " schema_contract in your profile",
    )


def test_a_chain_that_loops_is_walked_once() -> None:
    first, second = ValueError("first"), ValueError("second")
    first.__cause__, second.__cause__ = second, first

    assert describe(first) == Failure(EXIT_CONFIG, "second")


def test_a_quota_cut_run_names_what_it_loaded_and_what_is_left() -> None:
    assert quota_reached(10, ["accounts"], ["contacts", "events"]) == Failure(
        EXIT_QUOTA,
        "quota reached: the run sent its 10 requests (max_requests); loaded accounts; left,"
        " cursors kept where they were: contacts, events. Run again to finish them"
        " (--resources contacts,events spends the next quota on them alone)",
    )
