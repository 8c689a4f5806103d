"""Pages fetched ahead of a paginator that knows its next requests, and the paginator base for
reads cut by position (page numbers, offsets) that uses it.

rest_api asks a paginator for one request at a time. A read whose pages are cut by position
knows the next ones in advance: this module fetches them concurrently (`PageLookahead`) and
holds the rule of when a page fetched ahead may be used (`PositionalPaginator.accepts`), so
that each positional paginator is only the names of its params and its end conditions
(`crmsync.reading.pagination.PageNumberPaginator`,
`crmsync.reading.offset_pagination.OffsetPaginator`).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from dlt.common import jsonpath
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from crmsync.dlt_internals import SharedThroughConfig
from crmsync.reading.page import Page
from crmsync.reading.page_observer import PageObserver


class PageFetcher(Protocol):
    """The session the look-ahead sends through (`crmsync.transport.http_policy.CrmSession`)."""

    def prepare_request(self, request: Request) -> requests.PreparedRequest: ...

    def fetch(self, request: requests.PreparedRequest, **kwargs: Any) -> Response: ...


PageCheck = Callable[[Response, float], bool]
"""Whether a page fetched ahead may be used: given its response and the moment its request
was handed to the look-ahead (`time.monotonic()`)."""


@dataclass(frozen=True)
class _PageAhead:
    future: Future[Response]
    read: int
    requested_at: float
    check: PageCheck | None


class PageLookahead(SharedThroughConfig):
    """Fetches the pages a paginator expects next, concurrently, before it asks for them.

    rest_api reads a resource's pages strictly one after another; over a 25 ms link that is
    mostly waiting. The paginator knows which pages come next (all of them once a total is
    known; otherwise a window that doubles with every full page), so it names them here, by the
    value of its page or offset param; each
    is sent through the same session — retries, budget and ledger included — and handed over
    when rest_api asks for exactly that URL, if the paginator's check accepts it then: a page
    fetched ahead shows the list as it was when the CRM answered, which may be older than the
    page read before it (`PageNumberPaginator.accepts`). A page refused is fetched again, now.
    Pages past the end come back empty and are dropped when the paginator finishes, so nothing
    is loaded twice or skipped.
    """

    def __init__(self, session: PageFetcher, max_pages: int) -> None:
        self.session = session
        self.max_pages = max(1, max_pages)
        self._pool = ThreadPoolExecutor(self.max_pages, thread_name_prefix="crmsync-lookahead")
        self._by_url: dict[str, _PageAhead] = {}
        self._by_read: dict[int, list[str]] = {}
        self._furthest: dict[int, int] = {}
        """Per read, the furthest param value expected so far."""
        self._lock = threading.Lock()
        self.scarce: Callable[[], bool] = lambda: False
        """Whether requests are scarce (the session's budget: a quota, a rate limit): then a
        paginator asks for no page ahead that it does not know it needs."""

    def expect(
        self, request: Request, param: str, values: Sequence[int], check: PageCheck | None = None
    ) -> None:
        """Fetches `request` with `param` set to each of `values` (ascending page numbers or
        offsets), those not yet expected for this read."""
        read = id(request)
        with self._lock:
            furthest = self._furthest.get(read)
            fresh = [value for value in values if furthest is None or value > furthest]
            if fresh:
                self._furthest[read] = fresh[-1]
        for value in fresh:
            ahead = copy.copy(request)
            ahead.params = {**(request.params or {}), param: value}
            prepared = self.session.prepare_request(ahead)
            url = str(prepared.url)
            with self._lock:
                if url in self._by_url:
                    continue
                future = self._pool.submit(self.session.fetch, prepared)
                self._by_url[url] = _PageAhead(future, read, time.monotonic(), check)
                self._by_read.setdefault(read, []).append(url)

    def take(self, url: str) -> Response | None:
        """The page fetched ahead for `url`, once its answer is in and accepted; else None,
        and the caller sends the request itself."""
        with self._lock:
            ahead = self._by_url.pop(url, None)
        if ahead is None:
            return None
        response = ahead.future.result()
        if ahead.check is not None and not ahead.check(response, ahead.requested_at):
            return None
        return response

    def discard(self, request: Request) -> None:
        """The read is over: pages fetched past its end are not needed."""
        with self._lock:
            self._furthest.pop(id(request), None)
            for url in self._by_read.pop(id(request), []):
                ahead = self._by_url.pop(url, None)
                if ahead is not None:
                    ahead.future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class ReadContext:
    """What a run gives each of crmsync's paginators besides its config: the ledger's observer,
    the look-ahead, and the filters that narrow the read's list (`PositionalPaginator`'s
    `view_filters`). dlt, building one from a profile on its own, gives none."""

    observer: PageObserver | None = None
    lookahead: PageLookahead | None = None
    view_filters: Sequence[str] | None = None


class PositionalPaginator(BasePaginator):
    """A read of pages cut by position: page `i` (0, 1, 2, ...) is requested with `param` set
    to `value(i)`, the page size in `limit_param` on every request.

    The last page is the first one that holds fewer records than the page size, or none: a
    full page always leads to the next request, whatever a total says (a CRM's total may lag
    its list). A subclass adds its own end conditions (`_last_page`). A total of records
    (`total_path`) says how many pages to fetch ahead, and whether a list moved between two of
    its pages; without one, pages are fetched ahead in a window that doubles with every full
    page.

    **Pages of a list that moves.** A record that enters the list ahead of a position (an
    incremental read's view admits a record updated meanwhile) pushes the later records one
    place on. Pages read in order only ever see such a record twice (`RepeatedRecordFilter`),
    never miss one: a record that was in the list when the read began is at or past its old
    position, and the first page that is not full ends the read only once every position
    before it has been read. A page fetched *ahead* may show an older list than the page before
    it, read later: records pushed out of that earlier page meanwhile are in neither. So a page
    fetched ahead is used only if it was requested after the page before it arrived, or if both
    report the same total (the list did not grow between them); otherwise it is fetched again,
    now (`accepts`). A read that narrows the list by none of `view_filters` (a first read of a
    list in ascending id order, where new records take new, higher ids) keeps its positions and
    is not checked; `view_filters=None` checks every read. A read that must be checked but has
    no total to check by is read one page after another.
    """

    reports_pages = True
    """It tells its observer of pages, totals and re-reads itself
    (`crmsync.reading.page_observer`)."""

    def __init__(
        self,
        param: str,
        limit_param: str | None,
        limit: int | None,
        total_path: jsonpath.TJsonPath | None,
        context: ReadContext | None = None,
    ) -> None:
        super().__init__()
        context = context or ReadContext()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError(f"page size `limit` must be an integer, got {limit!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"page size `limit` must be at least 1, got {limit}")
        self.param = param
        self.limit_param = limit_param
        self.limit = limit
        self.total_path = jsonpath.compile_path(total_path) if total_path else None
        self.observer = context.observer
        self.lookahead = context.lookahead
        self.view_filters = None if context.view_filters is None else tuple(context.view_filters)
        self.position = 0
        """The page of the read requested last: 0 for the first."""
        self.rows_seen = 0
        self.total: int | None = None
        self.list_moves = True
        """Whether records can enter this read's list ahead of positions already read."""
        self._window = 1
        self._request: Request | None = None
        self._page_arrived_at = 0.0

    def value(self, position: int) -> int:
        """The value of `param` that requests the page at `position`."""
        raise NotImplementedError

    def _last_page(self, response: Response) -> bool:
        """Whether the page just read ends the read although it was full."""
        return False

    def _last_position(self) -> int | None:
        """The last position this read may request, if it is bounded."""
        return None

    def init_request(self, request: Request) -> None:
        self._has_next_page = True
        self.position = 0
        self.rows_seen = 0
        self.total = None
        self._window = 1
        self._request = request
        if request.params is None:
            request.params = {}
        if self.limit_param and self.limit is not None:
            request.params[self.limit_param] = self.limit
        request.params[self.param] = self.value(0)
        self.list_moves = self.view_filters is None or any(
            request.params.get(name) is not None for name in self.view_filters
        )

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        self._page_arrived_at = time.monotonic()
        rows = Page.of(data).served
        self.rows_seen += rows
        total = self.total = self._total(response)
        if self.observer is not None:
            self.observer.page_read(rows, total)
        self._has_next_page = not (
            rows == 0 or (self.limit is not None and rows < self.limit) or self._last_page(response)
        )
        if self._has_next_page:
            return
        if self.lookahead is not None and self._request is not None:
            self.lookahead.discard(self._request)
        if self.observer is not None:
            self.observer.read_finished()

    def update_request(self, request: Request) -> None:
        self.position += 1
        if request.params is None:
            request.params = {}
        request.params[self.param] = self.value(self.position)
        if self.lookahead is not None and self._has_next_page:
            ahead = [self.value(position) for position in self._positions_ahead()]
            self.lookahead.expect(request, self.param, ahead, self.accepts)

    def accepts(self, response: Response, requested_at: float) -> bool:
        """Whether a page fetched ahead shows the list as the page read before it did."""
        if not self.list_moves or requested_at >= self._page_arrived_at:
            return True
        total = self._total(response)
        if total is not None and total == self.total:
            return True
        if self.observer is not None:
            self.observer.page_refetched()
        return False

    def _positions_ahead(self) -> range:
        """The next pages: up to the last one the total implies, or a doubling window; none
        past the next where the list may move and no total can tell whether it did. Where
        requests are scarce (`PageLookahead.scarce`), no window past an unknown end: just the
        next page, which the full page before it makes certain."""
        reach = self.lookahead.max_pages if self.lookahead else 1
        if self.total is not None and self.limit:
            last = math.ceil(self.total / self.limit) - 1
        elif self.list_moves:
            last = self.position - 1
        elif self.lookahead is not None and self.lookahead.scarce():
            last = self.position
            self._window = 1
        else:
            last = self.position + self._window - 1
            self._window = min(reach, self._window * 2)
        bound = self._last_position()
        if bound is not None:
            last = min(last, bound)
        return range(self.position, min(last, self.position + reach - 1) + 1)

    def _total(self, response: Response) -> int | None:
        if self.total_path is None:
            return None
        return _integer_at(self.total_path, response.json())


def _integer_at(path: Any, document: Any) -> int | None:
    values = jsonpath.find_values(path, document)
    if not values:
        return None
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return None
