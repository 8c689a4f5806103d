"""The page-number paginator (`crm_page_number`) with fake responses, as dlt tests its
paginators: the params it sends, where a read ends, the total it reads, how far a bound lets it
read ahead, and how a profile's dict becomes one. Which fetched pages may be used is in
test_lookahead.py; reads over HTTP in test_pagination.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests
from dlt.sources.rest_api.config_setup import create_paginator, get_paginator_class
from requests import PreparedRequest, Request, Response

from crmsync.reading.lookahead import ReadContext
from crmsync.reading.pagination import PageLookahead, PageNumberPaginator, paginator_from_config

URL = "http://crm.test/contacts"


def page(rows: int, body: dict[str, Any] | None = None) -> Response:
    """A page of `rows` records, `body`'s other keys beside them."""
    answer = Response()
    answer.status_code = 200
    answer._content = orjson.dumps({"contacts": [{"id": i} for i in range(rows)], **(body or {})})
    return answer


def records(rows: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(rows)]


class Observer:
    def __init__(self) -> None:
        self.pages: list[tuple[int, int | None]] = []
        self.finished = 0

    def page_read(self, rows: int, total: int | None) -> None:
        self.pages.append((rows, total))

    def page_refetched(self) -> None:
        pass

    def read_finished(self) -> None:
        self.finished += 1


class PageSession:
    """Answers every page empty; `pages` lists those the look-ahead sent, in order."""

    def __init__(self, param: str = "page") -> None:
        self.param = param
        self.pages: list[int] = []

    def prepare_request(self, request: Request) -> PreparedRequest:
        self.pages.append(int((request.params or {})[self.param]))
        return requests.Session().prepare_request(request)

    def fetch(self, request: PreparedRequest, **kwargs: Any) -> Response:
        return page(0)


def params_of(request: Request) -> dict[str, str]:
    prepared = requests.Session().prepare_request(request)
    return {k: v[0] for k, v in parse_qs(urlsplit(str(prepared.url)).query).items()}


def reader(
    lookahead: PageLookahead | None = None, **options: Any
) -> tuple[PageNumberPaginator, Request, Observer]:
    observer = Observer()
    options.setdefault("limit", 10)
    paginator = PageNumberPaginator(context=ReadContext(observer, lookahead), **options)
    request = Request("GET", URL, params={})
    paginator.init_request(request)
    return paginator, request, observer


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({"limit": None}, [{"page": "1"}, {"page": "2"}]),
        (
            {"limit_param": "per_page"},
            [{"page": "1", "per_page": "10"}, {"page": "2", "per_page": "10"}],
        ),
        (
            {"page_param": "page[page]", "limit_param": "page[limit]", "base_page": 0},
            [{"page[page]": "0", "page[limit]": "10"}, {"page[page]": "1", "page[limit]": "10"}],
        ),
    ],
    ids=["page-alone", "page-and-size", "own-names-base-0"],
)
def test_each_request_sends_its_page_and_the_page_size(
    options: dict[str, Any], sent: list[dict[str, str]]
) -> None:
    paginator, request, _ = reader(**options)
    first = params_of(request)

    paginator.update_state(page(10), records(10))
    paginator.update_request(request)

    assert [first, params_of(request)] == sent
    assert paginator.page == int(sent[1][options.get("page_param", "page")])


@pytest.mark.parametrize(
    ("rows", "options", "more"),
    [
        (7, {}, False),
        (0, {}, False),
        (10, {}, True),
        (10, {"maximum_page": 2}, False),
        (10, {"maximum_page": 3}, True),
    ],
    ids=["short-page", "empty-page", "full-page", "full-page-at-maximum", "below-maximum"],
)
def test_a_read_ends_at_a_short_or_empty_page_or_the_maximum_page(
    rows: int, options: dict[str, Any], more: bool
) -> None:
    paginator, request, observer = reader(**options)
    paginator.update_state(page(10), records(10))
    paginator.update_request(request)

    paginator.update_state(page(rows), records(rows))

    assert paginator.has_next_page is more
    assert observer.finished == (0 if more else 1)


@pytest.mark.parametrize(
    ("body", "options", "total"),
    [
        ({"meta": {"total": 35}}, {}, 35),
        ({"meta": {"total": "35"}}, {}, 35),
        ({"meta": {"total": "many"}}, {}, None),
        ({}, {}, None),
        ({"count": 12}, {"total_path": "count"}, 12),
        ({"meta": {"total": 35}}, {"total_path": None}, None),
    ],
    ids=["meta-total", "as-text", "not-a-number", "no-meta", "own-path", "no-total-path"],
)
def test_the_total_is_a_count_of_records_read_where_the_profile_says(
    body: dict[str, Any], options: dict[str, Any], total: int | None
) -> None:
    """A full page leads to the next request whatever the total says (the contract: a client
    must not depend on `meta`); the total only reaches the observer and the look-ahead."""
    paginator, _, observer = reader(**options)

    paginator.update_state(page(10, body), records(10))

    assert observer.pages == [(10, total)]
    assert paginator.has_next_page


@pytest.mark.parametrize(
    ("options", "ahead"),
    [({}, [2, 3, 4, 5]), ({"maximum_page": 3}, [2, 3])],
    ids=["to-the-total-within-reach", "to-the-maximum-page"],
)
def test_pages_ahead_reach_the_total_or_the_maximum_page_whichever_is_first(
    options: dict[str, Any], ahead: list[int]
) -> None:
    session = PageSession()
    lookahead = PageLookahead(session, max_pages=4)
    paginator, request, _ = reader(lookahead, **options)

    paginator.update_state(page(10, {"meta": {"total": 100}}), records(10))
    paginator.update_request(request)
    lookahead.close()

    assert session.pages == ahead


def test_a_crm_page_number_config_dict_becomes_an_instance_with_the_runs_observer() -> None:
    lookahead = PageLookahead(PageSession(), max_pages=2)
    observer = Observer()
    config = {
        "type": "crm_page_number",
        "page_param": "page[page]",
        "limit_param": "page[limit]",
        "limit": 500,
    }

    paginator = paginator_from_config(config, ReadContext(observer, lookahead, ["updated_since"]))

    assert isinstance(paginator, PageNumberPaginator)
    assert (paginator.page_param, paginator.limit_param, paginator.limit) == (
        "page[page]",
        "page[limit]",
        500,
    )
    assert (paginator.observer, paginator.lookahead) == (observer, lookahead)
    assert paginator.view_filters == ("updated_since",)
    assert get_paginator_class("crm_page_number") is PageNumberPaginator
    assert isinstance(create_paginator(config), PageNumberPaginator)  # as plain dlt builds it
    assert paginator_from_config({"type": "cursor", "cursor_path": "next"}) == {
        "type": "cursor",
        "cursor_path": "next",
    }  # dlt's own paginators stay dlt's
    lookahead.close()


def test_it_describes_itself_by_page_size_and_rows_so_far() -> None:
    paginator, request, _ = reader(page_param="pg", limit_param="per_page")
    paginator.update_state(page(10), records(10))
    paginator.update_request(request)

    assert str(paginator) == "PageNumberPaginator: page 2 (pg), size 10 (per_page), rows so far 10"


@pytest.mark.parametrize(
    "limit",
    [
        0,
        -5,
        True,
        2.5,
    ],
    ids=["zero", "negative", "bool", "fraction"],
)
def test_a_page_size_that_is_not_a_positive_integer_is_refused(limit: Any) -> None:
    with pytest.raises(ValueError, match="page size `limit` must be"):
        PageNumberPaginator(limit=limit)
