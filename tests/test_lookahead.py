"""The page look-ahead and the page-number paginator's checks, with a fake session and clock-free
ordering: which pages are fetched ahead, and which fetched pages may be used."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests
from requests import PreparedRequest, Request, Response

from crmsync.reading.lookahead import ReadContext
from crmsync.reading.pagination import PageLookahead, PageNumberPaginator
from crmsync.transport.http_policy import RequestBudget

URL = "http://crm.test/contacts"


def page(rows: int, total: int | None) -> Response:
    response = Response()
    response.status_code = 200
    body: dict[str, Any] = {"contacts": [{"id": i} for i in range(rows)]}
    if total is not None:
        body["meta"] = {"total": total}
    response._content = orjson.dumps(body)
    return response


class FakeSession:
    """Answers each page from `answers` (page number → response); `fetched` lists the pages
    the look-ahead prepared to send, in order (it prepares a request as it submits it), `sent`
    those it sent."""

    def __init__(self, answers: dict[int, Response]) -> None:
        self.answers = answers
        self.fetched: list[int] = []
        self.sent: list[int] = []

    def prepare_request(self, request: Request) -> PreparedRequest:
        self.fetched.append(int((request.params or {})["page"]))
        return requests.Session().prepare_request(request)

    def fetch(self, request: PreparedRequest, **kwargs: Any) -> Response:
        number = int(str(request.url).rsplit("=", 1)[-1])
        self.sent.append(number)
        return self.answers[number]


class FakeObserver:
    def __init__(self) -> None:
        self.refetched = 0
        self.pages: list[tuple[int, int | None]] = []

    def page_read(self, rows: int, total: int | None) -> None:
        self.pages.append((rows, total))

    def page_refetched(self) -> None:
        self.refetched += 1

    def read_finished(self) -> None:
        pass


def reader(
    session: FakeSession, view_filters: list[str] | None = None, **params: Any
) -> tuple[PageNumberPaginator, PageLookahead, Request, FakeObserver]:
    lookahead = PageLookahead(session, max_pages=8)
    observer = FakeObserver()
    paginator = PageNumberPaginator(
        page_param="page",
        limit=10,
        context=ReadContext(observer, lookahead, view_filters),
    )
    request = Request("GET", URL, params=dict(params))
    paginator.init_request(request)
    return paginator, lookahead, request, observer


def next_url(request: Request) -> str:
    return str(requests.Session().prepare_request(request).url)


def test_pages_of_a_list_with_a_total_are_all_fetched_ahead_after_page_1() -> None:
    session = FakeSession({n: page(10 if n < 4 else 5, 35) for n in range(1, 5)})
    paginator, lookahead, request, _ = reader(session, view_filters=["since"], since="x")

    paginator.update_state(page(10, 35), [{"id": i} for i in range(10)])
    paginator.update_request(request)
    lookahead.close()

    assert sorted(session.fetched) == [2, 3, 4]


@pytest.mark.parametrize(
    ("view_filters", "params", "fetched_ahead"),
    [
        ([], {}, [2]),  # a stable list: a window that doubles with each full page
        (["since"], {}, [2]),  # the filter is not set: a first read keeps its positions
        (["since"], {"since": "x"}, []),  # a moving list with no total: one page at a time
        (None, {}, []),  # every read of a list in another order may move
    ],
    ids=["stable", "filter-unset", "filtered", "unordered"],
)
def test_without_a_total_only_a_list_that_keeps_its_positions_is_read_ahead(
    view_filters: list[str] | None, params: dict[str, str], fetched_ahead: list[int]
) -> None:
    session = FakeSession({n: page(10, None) for n in range(1, 9)})
    paginator, lookahead, request, _ = reader(session, view_filters, **params)

    paginator.update_state(page(10, None), [{"id": i} for i in range(10)])
    paginator.update_request(request)
    lookahead.close()

    assert session.fetched == fetched_ahead


@pytest.mark.parametrize(
    ("total_ahead", "used"), [(35, True), (36, False)], ids=["same-total", "total-grew"]
)
def test_a_page_fetched_before_the_page_before_it_arrived_is_used_only_if_the_totals_agree(
    total_ahead: int, used: bool
) -> None:
    """Page 3 is fetched ahead with page 2; page 2 arrives after it, reporting 35 records."""
    session = FakeSession({2: page(10, 35), 3: page(10, total_ahead), 4: page(5, 35)})
    paginator, lookahead, request, observer = reader(session, ["since"], since="x")
    paginator.update_state(page(10, 35), [{}] * 10)
    paginator.update_request(request)  # pages 2, 3 and 4 are fetched ahead now
    page_2 = lookahead.take(next_url(request))
    assert page_2 is not None
    paginator.update_state(page_2, [{}] * 10)
    paginator.update_request(request)

    page_3 = lookahead.take(next_url(request))

    assert (page_3 is not None, observer.refetched) == (used, 0 if used else 1)
    lookahead.close()


def test_a_page_requested_after_the_page_before_it_arrived_is_used_as_it_is() -> None:
    """The CRM answered it later than the page before it: whatever moved, it shows."""
    session = FakeSession({2: page(10, 36)})
    paginator, lookahead, request, observer = reader(session, ["since"], since="x")
    paginator.update_state(page(10, 35), [{}] * 10)
    paginator.update_request(request)  # page 2 is requested now, after page 1 arrived

    assert lookahead.take(next_url(request)) is not None
    assert observer.refetched == 0
    lookahead.close()


def test_a_full_page_asks_for_the_next_even_when_the_total_says_the_list_ended() -> None:
    paginator, lookahead, _, observer = reader(FakeSession({}), [])

    paginator.update_state(page(10, 10), [{}] * 10)
    assert paginator.has_next_page
    paginator.update_state(page(0, 10), [])
    assert not paginator.has_next_page
    assert observer.pages == [(10, 10), (0, 10)]
    lookahead.close()


def read_to_the_end(scarce: bool) -> list[int]:
    """Reads a list of 8 pages without a total (the 8th short) the way rest_api does, and
    returns the pages the look-ahead asked for."""
    session = FakeSession(
        {n: page(10 if n < 8 else 3 if n == 8 else 0, None) for n in range(1, 40)}
    )
    paginator, lookahead, request, _ = reader(session, view_filters=["since"])
    lookahead.scarce = lambda: scarce
    try:
        while True:
            url = next_url(request)
            response = lookahead.take(url)
            if response is None:
                response = session.fetch(requests.Session().prepare_request(request))
            paginator.update_state(response, response.json()["contacts"])
            paginator.update_request(request)
            if not paginator.has_next_page:
                break
    finally:
        lookahead.close()
    return session.fetched


def test_where_requests_are_scarce_no_page_past_an_unknown_end_is_fetched_ahead() -> None:
    plentiful = read_to_the_end(scarce=False)
    scarce = read_to_the_end(scarce=True)

    assert [n for n in plentiful if n > 8]  # the doubling window runs past the end
    assert scarce == [2, 3, 4, 5, 6, 7, 8]  # each next page still ahead, none past the end


def test_requests_are_scarce_under_a_quota_a_ceiling_or_a_learnt_rate() -> None:
    plain, quota, ceiling, limited = (
        RequestBudget(8),
        RequestBudget(8, max_requests=100),
        RequestBudget(8, max_per_second=5),
        RequestBudget(8),
    )
    ticket = limited.acquire()
    limited.release(ticket, page(0, None))
    assert not limited.scarce()  # no limit shown yet: as fast as without one
    throttled = page(0, None)
    throttled.status_code = 429
    limited.release(limited.acquire(), throttled)

    assert [b.scarce() for b in (plain, quota, ceiling, limited)] == [False, True, True, True]


def expected_read(session: FakeSession, lookahead: PageLookahead) -> Request:
    request = Request("GET", URL, params={"page": 1})
    lookahead.expect(request, "page", [2, 3])
    return request


def url_of(number: int) -> str:
    return next_url(Request("GET", URL, params={"page": number}))


def test_the_look_ahead_fetches_each_page_of_a_read_once_however_often_it_is_named() -> None:
    session = FakeSession({n: page(10, None) for n in range(1, 6)})
    lookahead = PageLookahead(session, max_pages=4)
    request = expected_read(session, lookahead)

    lookahead.expect(request, "page", [2, 3, 4])
    lookahead.expect(Request("GET", URL, params={"page": 1}), "page", [3])  # another read
    pages = [lookahead.take(url_of(n)) for n in (2, 3, 4)]
    lookahead.close()

    assert None not in pages
    assert sorted(session.sent) == [2, 3, 4]


def test_a_page_is_handed_over_once_and_only_for_the_url_it_was_fetched_for() -> None:
    session = FakeSession({2: page(10, None), 3: page(5, None)})
    lookahead = PageLookahead(session, max_pages=4)
    expected_read(session, lookahead)

    first, again, never = (
        lookahead.take(url_of(2)),
        lookahead.take(url_of(2)),
        lookahead.take(url_of(9)),
    )
    lookahead.close()

    assert first is session.answers[2]
    assert (again, never) == (None, None)


def test_a_page_its_check_refuses_is_not_handed_over() -> None:
    session = FakeSession({2: page(10, 35)})
    lookahead = PageLookahead(session, max_pages=4)
    seen: list[Response] = []

    def refuse(response: Response, requested_at: float) -> bool:
        seen.append(response)
        return False

    lookahead.expect(Request("GET", URL, params={"page": 1}), "page", [2], refuse)

    assert lookahead.take(url_of(2)) is None
    assert seen == [session.answers[2]]
    lookahead.close()


def test_pages_of_a_read_that_ended_are_dropped_and_another_read_keeps_its_own() -> None:
    session = FakeSession({n: page(10, None) for n in range(1, 6)})
    lookahead = PageLookahead(session, max_pages=4)
    ended = expected_read(session, lookahead)
    other = Request("GET", URL + "?kind=b", params={"page": 1})
    lookahead.expect(other, "page", [2])

    lookahead.discard(ended)

    assert lookahead.take(url_of(2)) is None
    assert lookahead.take(next_url(Request("GET", URL + "?kind=b", params={"page": 2})))
    lookahead.expect(ended, "page", [2])  # the same request read again starts afresh
    assert lookahead.take(url_of(2)) is not None
    lookahead.close()
