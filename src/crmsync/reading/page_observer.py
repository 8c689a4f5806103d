"""The ledger's view of any paginator: which resource each request reads, and its pages.

The ledger counts requests, pages and rows per resource, whatever the profile's paginator:
crmsync's own (which report pages, totals and re-reads themselves) or any of dlt's (`cursor`,
`json_link`, `header_link`, `offset`, ...). `ObservedPaginator` wraps each resource's
paginator: it names the resource on every request it shapes, with a
`crmsync.transport.http_policy.RequestTag` the session reads, and reports the pages of
paginators that do not report their own.
"""

from __future__ import annotations

from typing import Any, Protocol

from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from crmsync.reading.page import Page
from crmsync.transport.http_policy import RequestTag


class PageObserver(Protocol):
    """Told about every page a paginator consumed, e.g. to keep a run ledger."""

    def page_read(self, rows: int, total: int | None) -> None: ...

    def page_refetched(self) -> None: ...

    def read_finished(self) -> None: ...


class ObservedPaginator(BasePaginator):
    """`paginator`, with each request named for `resource` and, unless the paginator reports
    its pages itself (`reports_pages`), each page and the read's end told to `observer`."""

    def __init__(
        self, paginator: BasePaginator, resource: str, observer: PageObserver | None = None
    ) -> None:
        super().__init__()
        self.paginator = paginator
        self.tag = RequestTag(resource)
        self.observer = None if getattr(paginator, "reports_pages", False) else observer

    def init_request(self, request: Request) -> None:
        request.hooks.setdefault("response", []).append(self.tag)
        self.paginator.init_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        self.paginator.update_state(response, data)
        if self.observer is not None:
            self.observer.page_read(Page.of(data).served, None)
            if not self.paginator.has_next_page:
                self.observer.read_finished()

    def update_request(self, request: Request) -> None:
        self.paginator.update_request(request)

    @property
    def has_next_page(self) -> bool:
        return self.paginator.has_next_page

    def __str__(self) -> str:
        return str(self.paginator)
