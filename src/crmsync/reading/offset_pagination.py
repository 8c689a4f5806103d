"""Offset pagination, crmsync's own: registered with dlt as `crm_offset`.

dlt's `offset` paginator reads `total` and stops once the offset reaches it, even after a full
page, and fetches one page at a time. This one is `PositionalPaginator`'s read by offsets: a
full page always leads to the next request, and the next offsets are fetched ahead.
"""

from __future__ import annotations

from dlt.common import jsonpath
from dlt.sources.rest_api.config_setup import register_paginator
from requests import Response

from crmsync.reading.lookahead import PositionalPaginator, ReadContext

OFFSET_TYPE = "crm_offset"
"""The paginator `type` name of `OffsetPaginator` (dlt's `offset` keeps dlt's meaning)."""


class OffsetPaginator(PositionalPaginator):
    """Pages by record offset and page size, with an optional record total or has-more flag.

    Sample response, the second page of `GET /v1/deals?start=100&limit=100` (Pipedrive's
    shape: `offset_param = "start"`, `has_more_path =
    "additional_data.pagination.more_items_in_collection"`):

        {"success": true,
         "data": [{"id": 101, ...}, ... 100 records ...],
         "additional_data": {"pagination": {"start": 100, "limit": 100,
                                            "more_items_in_collection": true,
                                            "next_start": 200}}}

    and past the end `{"success": true, "data": null, "additional_data": {...}}`. The first
    request asks for offset `offset` (0), each next one `limit` records further on. The read
    ends at the first page with fewer than `limit` records, none (an empty list, `null` or no
    list at all: rest_api hands either over as no records), or a `has_more_path` value of
    `false`; a full page always leads to the next request, whatever `total_path` says: the
    total (a count of records) only says how many pages to fetch ahead, and whether the list
    moved between two pages (`PositionalPaginator`). Without a total, pages are fetched ahead
    in a window that doubles with every full page, where the list keeps its positions.
    """

    def __init__(
        self,
        limit: int,
        offset_param: str = "offset",
        limit_param: str = "limit",
        offset: int = 0,
        total_path: jsonpath.TJsonPath | None = None,
        has_more_path: jsonpath.TJsonPath | None = None,
        context: ReadContext | None = None,
    ) -> None:
        super().__init__(offset_param, limit_param, limit, total_path, context)
        self.limit: int = limit
        self.offset_param = offset_param
        self.base_offset = offset
        self.has_more_path = jsonpath.compile_path(has_more_path) if has_more_path else None

    @property
    def offset(self) -> int:
        """The offset requested last."""
        return self.value(self.position)

    def value(self, position: int) -> int:
        return self.base_offset + position * self.limit

    def _last_page(self, response: Response) -> bool:
        if self.has_more_path is None:
            return False
        values = jsonpath.find_values(self.has_more_path, response.json())
        return bool(values) and values[0] is False

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}: offset {self.offset} ({self.offset_param}), "
            f"size {self.limit} ({self.limit_param}), rows so far {self.rows_seen}"
        )


register_paginator(OFFSET_TYPE, OffsetPaginator)
