"""Page-number pagination the way the CRM contract and the seed describe it.

dlt's own `page_number` paginator does not fit the seed: it knows no `limit_param`/`limit`,
starts at page 0 unless told otherwise (the CRM's page 0 is a 400, an empty first page on
lenient servers) and reads `total` as a count of *pages*, failing when it is absent. This one
accepts the seed's keys as they are written, starts at page 1, sends the page size on every
request, and stops at the first short or empty page.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Protocol

from dlt.common import jsonpath
from dlt.sources.rest_api.config_setup import register_paginator
from requests import Response

from crmsync.reading.lookahead import (
    PageCheck,
    PageFetcher,
    PageLookahead,
    PositionalPaginator,
    ReadContext,
)
from crmsync.reading.offset_pagination import OFFSET_TYPE, OffsetPaginator
from crmsync.reading.page import Page
from crmsync.reading.page_observer import PageObserver

__all__ = [
    "OFFSET_TYPE",
    "PAGE_NUMBER_TYPE",
    "PAGINATOR_TYPES",
    "KeyOrderError",
    "OffsetPaginator",
    "PageCheck",
    "PageFetcher",
    "PageLookahead",
    "PageNumberPaginator",
    "PageObserver",
    "RepeatedRecordFilter",
    "RepeatingListError",
    "paginator_from_config",
]

PAGE_NUMBER_TYPE = "crm_page_number"
"""The paginator `type` name a profile gives this paginator (dlt's `page_number` is dlt's)."""


class PageNumberPaginator(PositionalPaginator):
    """Numbered pages with a page size param and an optional record total.

    Sample response, page 2 of `GET /contacts?page[page]=2&page[limit]=500`:

        {"contacts": [{"id": 501, ...}, ... 500 records ...],
         "meta": {"page": 2, "limit": 500, "total": 1234}}

    `/events` has no `meta` at all. The last page is the first one that holds fewer records than
    the page size: the contract says a client must not depend on `meta`, so a full page always
    leads to the next request. `meta.total` (a count of records, not pages) says how many pages
    to fetch ahead, and whether a list moved between two of its pages; pages fetched ahead of a
    list that moves are checked as `PositionalPaginator` says.
    """

    def __init__(
        self,
        page_param: str = "page",
        limit_param: str | None = None,
        limit: int | None = None,
        base_page: int = 1,
        total_path: jsonpath.TJsonPath | None = "meta.total",
        maximum_page: int | None = None,
        context: ReadContext | None = None,
    ) -> None:
        super().__init__(page_param, limit_param, limit, total_path, context)
        self.page_param = page_param
        self.base_page = base_page
        self.maximum_page = maximum_page

    @property
    def page(self) -> int:
        """The page number requested last."""
        return self.base_page + self.position

    def value(self, position: int) -> int:
        return self.base_page + position

    def _last_page(self, response: Response) -> bool:
        return self.maximum_page is not None and self.page >= self.maximum_page

    def _last_position(self) -> int | None:
        return None if self.maximum_page is None else self.maximum_page - self.base_page

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}: page {self.page} ({self.page_param}), "
            f"size {self.limit} ({self.limit_param}), rows so far {self.rows_seen}"
        )


PAGINATOR_TYPES: dict[str, type[PositionalPaginator]] = {
    PAGE_NUMBER_TYPE: PageNumberPaginator,
    OFFSET_TYPE: OffsetPaginator,
}
"""crmsync's paginators by the `type` names their config dicts use."""

register_paginator(PAGE_NUMBER_TYPE, PageNumberPaginator)


def paginator_from_config(config: Any, context: ReadContext | None = None) -> Any:
    """An instance for a config dict of one of crmsync's paginators (`PAGINATOR_TYPES`); any
    other paginator config as it is.

    dlt validates paginator dicts against its own typed configs, which reject the seed's
    `limit_param`/`limit` keys, so these dicts become instances before dlt sees them, each
    with the run's observer and look-ahead.
    """
    if not isinstance(config, dict) or config.get("type") not in PAGINATOR_TYPES:
        return config
    kwargs = {key: value for key, value in config.items() if key != "type"}
    paginator = PAGINATOR_TYPES[config["type"]]
    return paginator(**kwargs, context=context)


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
    declares `id` as `text` and has no filter (`crmsync.reading.source`), and a key of another kind
    fails the read. Within a page keys must ascend, and a key not above the highest must be a
    repeat: a page that breaks that order fails the read rather than have anything dropped, or
    loaded twice, on an assumption that does not hold. A page with exactly the keys of the page
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

    def __call__(self, page: Page, meta: Any = None) -> Page:
        if not page:
            return page
        values = page.ids(self.key)
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
        if not repeats:
            return page
        if self.observer is not None:
            self.observer.repeats_dropped(repeats)
        return page.keep([position >= repeats for position in range(len(keys))])

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
