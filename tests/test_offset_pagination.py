"""The offset paginator (`crm_offset`) with fake responses and a fake session, as dlt tests its
paginators: the params it sends, where a read ends, and which offsets it fetches ahead; then
once over HTTP, through rest_api, against the Pipedrive-shaped test server."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dlt
import orjson
import pytest
import requests
from dlt.sources.rest_api.config_setup import create_paginator, get_paginator_class
from requests import PreparedRequest, Request, Response

from crmsync import rest_api_source
from crmsync.reading.lookahead import ReadContext
from crmsync.reading.offset_pagination import OffsetPaginator
from crmsync.reading.page_reader import PageReader
from crmsync.reading.pagination import PageLookahead, paginator_from_config
from tests.support.pipedrive_like import TOKEN, PipedriveLike
from tests.support.syncs import fast_policy

URL = "http://crm.test/v1/deals"
HAS_MORE = "additional_data.pagination.more_items_in_collection"


def response(body: dict[str, Any]) -> Response:
    answer = Response()
    answer.status_code = 200
    answer._content = orjson.dumps(body)
    return answer


def page(rows: int | None, total: int | None = None, more: bool | None = None) -> Response:
    """A page of `rows` records (`None`: `"data": null`), a `total` and a has-more flag."""
    body: dict[str, Any] = {"data": None if rows is None else [{"id": i} for i in range(rows)]}
    if total is not None:
        body["total"] = total
    if more is not None:
        body["additional_data"] = {"pagination": {"more_items_in_collection": more}}
    return response(body)


def records(rows: int | None) -> list[dict[str, int]] | None:
    return None if rows is None else [{"id": i} for i in range(rows)]


class Observer:
    def __init__(self) -> None:
        self.pages: list[tuple[int, int | None]] = []
        self.refetched = 0
        self.finished = 0

    def page_read(self, rows: int, total: int | None) -> None:
        self.pages.append((rows, total))

    def page_refetched(self) -> None:
        self.refetched += 1

    def read_finished(self) -> None:
        self.finished += 1


class OffsetSession:
    """Answers each offset from `answers`; `offsets` lists those the look-ahead sent, in order."""

    def __init__(self, answers: dict[int, Response] | None = None) -> None:
        self.answers = answers or {}
        self.offsets: list[int] = []

    def prepare_request(self, request: Request) -> PreparedRequest:
        self.offsets.append(int((request.params or {})["start"]))
        return requests.Session().prepare_request(request)

    def fetch(self, request: PreparedRequest, **kwargs: Any) -> Response:
        return self.answers.get(offset_of(str(request.url)), page(0))


def offset_of(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["start"][0])


def params_of(request: Request) -> dict[str, str]:
    prepared = requests.Session().prepare_request(request)
    return {k: v[0] for k, v in parse_qs(urlsplit(str(prepared.url)).query).items()}


def reader(
    session: OffsetSession | None = None,
    view_filters: list[str] | None = None,
    params: dict[str, str] | None = None,
    **options: Any,
) -> tuple[OffsetPaginator, Request, Observer, PageLookahead | None]:
    lookahead = PageLookahead(session, max_pages=4) if session is not None else None
    observer = Observer()
    options.setdefault("offset_param", "start")
    paginator = OffsetPaginator(
        limit=10, context=ReadContext(observer, lookahead, view_filters), **options
    )
    request = Request("GET", URL, params=dict(params or {}))
    paginator.init_request(request)
    return paginator, request, observer, lookahead


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({}, [{"start": "0", "limit": "10"}, {"start": "10", "limit": "10"}]),
        (
            {"offset_param": "skip", "limit_param": "top", "offset": 1},
            [{"skip": "1", "top": "10"}, {"skip": "11", "top": "10"}],
        ),
    ],
    ids=["start-limit", "own-names-base-1"],
)
def test_each_request_sends_its_offset_and_the_page_size(
    options: dict[str, Any], sent: list[dict[str, str]]
) -> None:
    paginator, request, _, _ = reader(**options)
    first = params_of(request)

    paginator.update_state(page(10), records(10))
    paginator.update_request(request)

    assert [first, params_of(request)] == sent
    assert paginator.offset == int(next(iter(sent[1].values())))


@pytest.mark.parametrize(
    ("last", "options", "more"),
    [
        (page(7), {}, False),
        (page(0), {}, False),
        (page(None), {}, False),
        (page(10, more=False), {"has_more_path": HAS_MORE}, False),
        (page(10, more=True), {"has_more_path": HAS_MORE}, True),
        (page(10), {"has_more_path": HAS_MORE}, True),
        (page(10, total=10), {"total_path": "total"}, True),
        (page(10, total=5), {"total_path": "total"}, True),
    ],
    ids=[
        "short-page",
        "empty-page",
        "null-data",
        "has-more-false",
        "has-more-true",
        "no-flag-in-page",
        "full-page-at-total",
        "full-page-beyond-total",
    ],
)
def test_a_read_ends_at_a_short_or_empty_page_or_has_more_false_only(
    last: Response, options: dict[str, Any], more: bool
) -> None:
    paginator, request, observer, _ = reader(**options)
    paginator.update_state(page(10, total=20, more=True), records(10))
    paginator.update_request(request)

    body = last.json()
    paginator.update_state(last, body["data"])

    assert paginator.has_next_page is more
    assert observer.finished == (0 if more else 1)
    assert observer.pages[1] == (len(body["data"] or ()), body.get("total"))


@pytest.mark.parametrize(
    ("options", "params", "first_page", "ahead"),
    [
        ({"total_path": "total"}, {"since": "x"}, page(10, total=35), [10, 20, 30]),
        ({"total_path": "total"}, {"since": "x"}, page(10, total=90), [10, 20, 30, 40]),
        ({}, {}, page(10), [10]),
        ({}, {"since": "x"}, page(10), []),
    ],
    ids=["total-all-to-the-end", "total-within-reach", "stable-window", "moving-no-total"],
)
def test_the_offsets_the_total_or_the_window_imply_are_fetched_ahead(
    options: dict[str, Any], params: dict[str, str], first_page: Response, ahead: list[int]
) -> None:
    session = OffsetSession()
    paginator, request, _, lookahead = reader(session, ["since"], params, **options)

    paginator.update_state(first_page, first_page.json()["data"])
    paginator.update_request(request)
    assert lookahead is not None
    lookahead.close()

    assert session.offsets == ahead


def test_without_a_total_the_window_doubles_with_each_full_page() -> None:
    session = OffsetSession({n: page(10) for n in range(0, 200, 10)})
    paginator, request, _, lookahead = reader(session, [])
    assert lookahead is not None
    expected = []
    for _ in range(4):
        paginator.update_state(page(10), records(10))
        paginator.update_request(request)
        expected.append(sorted(session.offsets))
        url = str(requests.Session().prepare_request(request).url)
        assert lookahead.take(url) is not None
    lookahead.close()

    assert expected == [[10], [10, 20, 30], [10, 20, 30, 40, 50, 60], [10, 20, 30, 40, 50, 60, 70]]


@pytest.mark.parametrize(
    ("total_ahead", "used"), [(35, True), (36, False)], ids=["same-total", "total-grew"]
)
def test_an_offset_fetched_before_the_page_before_it_arrived_is_used_only_if_totals_agree(
    total_ahead: int, used: bool
) -> None:
    """Offset 20 is fetched ahead with offset 10; offset 10 arrives after it, reporting 35."""
    session = OffsetSession({10: page(10, 35), 20: page(10, total_ahead), 30: page(5, 35)})
    paginator, request, observer, lookahead = reader(
        session, ["since"], {"since": "x"}, total_path="total"
    )
    assert lookahead is not None
    paginator.update_state(page(10, 35), records(10))
    paginator.update_request(request)  # offsets 10, 20 and 30 are fetched ahead now
    second = lookahead.take(str(requests.Session().prepare_request(request).url))
    assert second is not None
    paginator.update_state(second, records(10))
    paginator.update_request(request)

    third = lookahead.take(str(requests.Session().prepare_request(request).url))

    assert (third is not None, observer.refetched) == (used, 0 if used else 1)
    lookahead.close()


def test_a_crm_offset_config_dict_becomes_an_instance_with_the_runs_observer() -> None:
    lookahead = PageLookahead(OffsetSession(), max_pages=2)
    observer = Observer()
    config = {"type": "crm_offset", "offset_param": "start", "limit": 100, "has_more_path": "m"}

    paginator = paginator_from_config(config, ReadContext(observer, lookahead, ["since"]))

    assert isinstance(paginator, OffsetPaginator)
    assert (paginator.offset_param, paginator.limit, paginator.observer) == ("start", 100, observer)
    assert (paginator.lookahead, paginator.view_filters) == (lookahead, ("since",))
    assert get_paginator_class("crm_offset") is OffsetPaginator
    assert isinstance(create_paginator(config), OffsetPaginator)  # as plain dlt would build it
    lookahead.close()


@pytest.mark.parametrize("limit", [0, "100", True], ids=["zero", "text", "bool"])
def test_a_page_size_that_is_not_a_positive_integer_is_refused(limit: Any) -> None:
    with pytest.raises(ValueError, match="page size `limit` must be"):
        OffsetPaginator(limit=limit)


@pytest.mark.parametrize("ahead", [False, True], ids=["config-dict", "instance-reading-ahead"])
def test_an_offset_paged_api_loads_whole_over_http_through_rest_api_source(
    workdir: Path, ahead: bool
) -> None:
    """1,000 persons in pages of 100: the full page at 900 says there are no more items."""
    reader = PageReader(fast_policy())
    session = reader.session
    options = {"offset_param": "start", "limit": 100, "has_more_path": HAS_MORE}
    paginator: Any = {"type": "crm_offset", **options}
    if ahead:  # a first read of a list in id order: a doubling window of offsets ahead
        paginator = OffsetPaginator(
            **options, context=ReadContext(lookahead=reader.lookahead, view_filters=[])
        )
    with PipedriveLike(persons=1000, deals=0) as server:
        source = rest_api_source(
            {
                "client": {
                    "base_url": server.url,
                    "session": session,
                    "auth": {"type": "api_key", "name": "api_token", "api_key": TOKEN,
                             "location": "query"},
                },
                "resources": [
                    {
                        "name": "persons",
                        "primary_key": "id",
                        "endpoint": {
                            "path": "/v1/persons",
                            "data_selector": "data",
                            "paginator": paginator,
                        },
                    }
                ],
            }
        )  # fmt: skip
        pipeline = dlt.pipeline("offsets", destination="duckdb", dataset_name="crm")
        pipeline.run(source)
    reader.close()

    with pipeline.sql_client() as client:
        assert client.execute_sql("select id from persons order by id") == [
            (n,) for n in range(1, 1001)
        ]
    starts = [int(seen.query["start"]) for seen in server.seen]
    assert sorted(starts)[:10] == list(range(0, 1000, 100))
    assert len(starts) == len(set(starts)) and (len(starts) > 10) is ahead
