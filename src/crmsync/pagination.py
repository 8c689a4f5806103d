"""Page-number pagination the way the CRM contract and the seed describe it.

dlt's own `page_number` paginator does not fit the seed: it knows no `limit_param`/`limit`,
starts at page 0 unless told otherwise (the CRM's page 0 is a 400, an empty first page on
lenient servers) and reads `total` as a count of *pages*, failing when it is absent. This one
accepts the seed's keys as they are written, starts at page 1, sends the page size on every
request, and stops at the first short or empty page.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from dlt.common import jsonpath
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from crmsync.arrow_pages import page_table, record_count
from crmsync.page_observer import PageObserver

PAGE_NUMBER_TYPE = "crm_page_number"
"""The paginator `type` name a profile gives this paginator (dlt's `page_number` is dlt's)."""


class PageFetcher(Protocol):
    """The session the look-ahead sends through (`crmsync.http_policy.CrmSession`)."""

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


class PageLookahead:
    """Fetches the pages a paginator expects next, concurrently, before it asks for them.

    rest_api reads a resource's pages strictly one after another; over a 25 ms link that is
    mostly waiting. The paginator knows which pages come next (all of them once `meta.total` is
    known; otherwise a window that doubles with every full page), so it names them here; each
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
        self._lock = threading.Lock()
        self.scarce: Callable[[], bool] = lambda: False
        """Whether requests are scarce (the session's budget: a quota, a rate limit): then a
        paginator asks for no page ahead that it does not know it needs."""

    def __deepcopy__(self, memo: dict[int, Any]) -> PageLookahead:
        return self

    def expect(
        self, request: Request, page_param: str, pages: range, check: PageCheck | None = None
    ) -> None:
        read = id(request)
        with self._lock:
            first = max(pages.start, self._furthest.get(read, pages.start - 1) + 1)
            if pages.stop > first:
                self._furthest[read] = pages.stop - 1
        for page in range(first, pages.stop):
            ahead = copy.copy(request)
            ahead.params = {**(request.params or {}), page_param: page}
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


class PageNumberPaginator(BasePaginator):
    """Numbered pages with a page size param and an optional record total.

    Sample response, page 2 of `GET /contacts?page[page]=2&page[limit]=500`:

        {"contacts": [{"id": 501, ...}, ... 500 records ...],
         "meta": {"page": 2, "limit": 500, "total": 1234}}

    `/events` has no `meta` at all. The last page is the first one that holds fewer records than
    the page size: the contract says a client must not depend on `meta`, so a full page always
    leads to the next request. `meta.total` (a count of records, not pages) says how many pages
    to fetch ahead, and whether a list moved between two of its pages.

    **Pages of a list that moves.** Pages are cut by position. A record that enters the list
    ahead of a position (an incremental read's `updated_since` view admits a record updated
    meanwhile) pushes the later records one place on. Pages read in order only ever see such a
    record twice (`RepeatedRecordFilter`), never miss one: a record that was in the list when
    the read began is at or past its old position, and the first page that is not full ends
    the read only once every position before it has been read. A page fetched *ahead* may show
    an older list than the page before it, read later: records pushed out of that earlier page
    meanwhile are in neither. So a page fetched ahead is used only if it was requested after
    the page before it arrived, or if both report the same `meta.total` (the list did not grow
    between them; the contract's lists only grow); otherwise it is fetched again, now. A read
    that narrows the list by none of `view_filters` (a first read of a list in ascending id
    order, where new records take new, higher ids) keeps its positions and is not checked;
    `view_filters=None` checks every read. A read that must be checked but has no total to
    check by is read one page after another.
    """

    reports_pages = True
    """It tells its observer of pages, totals and re-reads itself (`crmsync.page_observer`)."""

    def __init__(
        self,
        page_param: str = "page",
        limit_param: str | None = None,
        limit: int | None = None,
        base_page: int = 1,
        total_path: jsonpath.TJsonPath | None = "meta.total",
        maximum_page: int | None = None,
        observer: PageObserver | None = None,
        lookahead: PageLookahead | None = None,
        view_filters: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if limit is not None and limit < 1:
            raise ValueError(f"page size `limit` must be at least 1, got {limit}")
        self.page_param = page_param
        self.limit_param = limit_param
        self.limit = limit
        self.base_page = base_page
        self.total_path = jsonpath.compile_path(total_path) if total_path else None
        self.maximum_page = maximum_page
        self.observer = observer
        self.lookahead = lookahead
        self.view_filters = None if view_filters is None else tuple(view_filters)
        self.page = base_page
        self.rows_seen = 0
        self.total: int | None = None
        self.list_moves = True
        """Whether records can enter this read's list ahead of positions already read."""
        self._window = 1
        self._request: Request | None = None
        self._page_arrived_at = 0.0

    def init_request(self, request: Request) -> None:
        self._has_next_page = True
        self.page = self.base_page
        self.rows_seen = 0
        self.total = None
        self._window = 1
        self._request = request
        if request.params is None:
            request.params = {}
        if self.limit_param and self.limit is not None:
            request.params[self.limit_param] = self.limit
        request.params[self.page_param] = self.page
        self.list_moves = self.view_filters is None or any(
            request.params.get(name) is not None for name in self.view_filters
        )

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        self._page_arrived_at = time.monotonic()
        rows = record_count(data)
        self.rows_seen += rows
        total = self.total = self._total(response)
        if self.observer is not None:
            self.observer.page_read(rows, total)
        self._has_next_page = not (
            rows == 0
            or (self.limit is not None and rows < self.limit)
            or (self.maximum_page is not None and self.page >= self.maximum_page)
        )
        if self._has_next_page:
            return
        if self.lookahead is not None and self._request is not None:
            self.lookahead.discard(self._request)
        if self.observer is not None:
            self.observer.read_finished()

    def update_request(self, request: Request) -> None:
        self.page += 1
        if request.params is None:
            request.params = {}
        request.params[self.page_param] = self.page
        if self.lookahead is not None and self._has_next_page:
            self.lookahead.expect(request, self.page_param, self._pages_ahead(), self.accepts)

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

    def _pages_ahead(self) -> range:
        """The next pages: up to the last one `meta.total` implies, or a doubling window; none
        past the next where the list may move and no total can tell whether it did. Where
        requests are scarce (`PageLookahead.scarce`), no window past an unknown end: just the
        next page, which the full page before it makes certain."""
        reach = self.lookahead.max_pages if self.lookahead else 1
        if self.total is not None and self.limit:
            last = self.base_page + math.ceil(self.total / self.limit) - 1
        elif self.list_moves:
            last = self.page - 1
        elif self.lookahead is not None and self.lookahead.scarce():
            last = self.page
            self._window = 1
        else:
            last = self.page + self._window - 1
            self._window = min(reach, self._window * 2)
        if self.maximum_page is not None:
            last = min(last, self.maximum_page)
        return range(self.page, min(last, self.page + reach - 1) + 1)

    def _total(self, response: Response) -> int | None:
        if self.total_path is None:
            return None
        values = jsonpath.find_values(self.total_path, response.json())
        if not values:
            return None
        try:
            return int(values[0])
        except (TypeError, ValueError):
            return None

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}: page {self.page} ({self.page_param}), "
            f"size {self.limit} ({self.limit_param}), rows so far {self.rows_seen}"
        )


def paginator_from_config(
    config: Any,
    observer: PageObserver | None = None,
    lookahead: PageLookahead | None = None,
    view_filters: Sequence[str] | None = None,
) -> Any:
    """An instance for a page-number config dict; any other paginator config as it is.

    dlt validates paginator dicts against its own typed configs, which reject the seed's
    `limit_param`/`limit` keys, so these dicts become instances before dlt sees them.
    """
    if not isinstance(config, dict) or config.get("type") != PAGE_NUMBER_TYPE:
        return config
    kwargs = {key: value for key, value in config.items() if key != "type"}
    return PageNumberPaginator(
        **kwargs, observer=observer, lookahead=lookahead, view_filters=view_filters
    )


class RepeatObserver(Protocol):
    """Told how many records a read served again after a page shift."""

    def repeats_dropped(self, count: int) -> None: ...


class KeyOrderError(ValueError):
    """A page's records are not in ascending key order, so repeats cannot be told apart."""


class RepeatingListError(ValueError):
    """A page held exactly the records of the page before it: the CRM ignores the page param,
    and would serve that page forever."""


RECENT_PAGES = 4
"""Pages whose keys a repeat must be among. A record is served again only when records enter
the list behind the reader while it reads the next page: fewer than a page, nearly always."""


class RepeatedRecordFilter:
    """A resource step that drops the records a page-number read has already passed.

    The CRM lists records in ascending `id` order and cuts pages by position. A record that
    enters the list behind the reader — an incremental read admits a record updated while
    earlier pages were read — moves every later record one place on, so the records at the end
    of the page just read come again at the top of the next:

        page 1: ids 100..599; then id 7 is updated and enters the list
        page 2: ids 590..1089  (590..599 again)

    A record whose key is not above the highest key read so far, and which one of the last
    `RECENT_PAGES` pages held, is such a repeat; dropping it leaves every id once in the load,
    so the destination's merge needs no dedup pass (the `deduplicated` merge hint). The record
    that entered behind the reader is caught by the next run's lookback. The filter never drops
    a record it has not seen: keys are integers, compared as integers (`"99999"` < `"100002"`,
    as a CRM that sends its integer ids as strings orders them); a resource whose ids are text
    declares `id` as `text` and has no filter (`crmsync.source`), and a key of another kind fails
    the read. Within a page keys must ascend, and a key not above the highest must be a repeat:
    a page that breaks that order fails the read rather than have anything dropped, or loaded
    twice, on an assumption that does not hold. A page with exactly the keys of the page
    before it fails the read too: a list that moves pushes records on, it does not serve a whole
    page again, but a CRM that ignores the page param does, forever.
    """

    def __init__(
        self, resource: str, path: str, key: str, observer: RepeatObserver | None = None
    ) -> None:
        self.resource = resource
        self.path = path
        self.key = key
        self.observer = observer
        self.highest: int | None = None
        self._previous: list[int] = []
        self._recent: deque[frozenset[int]] = deque(maxlen=RECENT_PAGES)

    def __call__(self, page: Any, meta: Any = None) -> Any:
        if not isinstance(page, list) or not page:
            return page
        table = page_table(page)
        values: list[Any]
        if table is None:
            values = [r.get(self.key) if isinstance(r, dict) else None for r in page]
        elif self.key in table.column_names:
            # to Python, not pyarrow.compute: each compute call gives up the interpreter lock,
            # and getting it back from the look-ahead threads costs more than these 500 keys
            values = table.column(self.key).to_pylist()
        else:
            return page
        if None in values:
            return page  # a record without its key fails the load on its own
        keys = [value if type(value) is int else self._integer(value) for value in values]
        for before, after in itertools.pairwise(keys):
            if not before < after:
                raise self._order_error(before, after)
        if keys == self._previous:
            raise RepeatingListError(
                f"GET {self.path} answered the same records as the page before it"
                f" ({self.key} {keys[0]!r} to {keys[-1]!r}): the CRM ignores the page param;"
                f" check the paginator of {self.resource} in your profile"
            )
        self._previous = keys
        repeats = 0
        if self.highest is not None:
            while repeats < len(keys) and keys[repeats] <= self.highest:
                if not any(keys[repeats] in seen for seen in self._recent):
                    raise self._order_error(self.highest, keys[repeats])
                repeats += 1
        if repeats < len(keys):
            self.highest = keys[-1]
        self._recent.append(frozenset(keys))
        if repeats:
            # in place: the page keeps its paginator and response
            if table is None:
                del page[:repeats]
            else:
                page[0] = table.slice(repeats)
            if self.observer is not None:
                self.observer.repeats_dropped(repeats)
        return page

    def _integer(self, value: Any) -> int:
        """An integer id sent as a string (`"100002"`); any other kind cannot be ordered."""
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        raise KeyOrderError(
            f"GET {self.path} answered 200 with {self.key} {value!r}, not an integer: declare"
            f' {self.key} as text (columns = {{ {self.key} = {{ data_type = "text" }} }})'
            f" for {self.resource} in your profile"
        )

    def _order_error(self, before: Any, after: Any) -> KeyOrderError:
        return KeyOrderError(
            f"GET {self.path} answered 200 with {self.key} {after!r} after {before!r}:"
            f" the records are not in ascending {self.key} order; set"
            f" ordered_by_primary_key = false for {self.resource} in your --config"
        )
