"""A `200` page has the contract's shape, or it is a broken page.

The contract: `{"<envelope key>": [<record>, ...], "meta": {...}}`. rest_api selects the
records with the endpoint's data selector and, finding none, yields none, so a `200` whose
body was `null`, a top-level list, `{"meta": {}}` or `{"contacts": {"id": 1}}` loaded an empty
table and ended the run with exit 0: a read that failed, reported as a success. The session's
decoder (`crmsync.reading.page_reader.PageDecoder`) checks every page of the endpoints
registered here (the data selectors that are a plain key; a JSONPath is left to rest_api) as it
decodes it, within the session's attempt, so that such a page is retried like a body that is
not JSON, and fails the run if it stays broken. A key that holds `null` is a page without
records, the end of the list (Pipedrive's `"data": null`); one that holds a `Page` holds the
records a worker process decoded (`crmsync.reading.page_decoding`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from dlt.sources.helpers.rest_client.utils import join_url

from crmsync.reading.page import Page
from crmsync.transport.http_policy import BrokenBodyError


class NotAPageError(BrokenBodyError):
    """A `200` whose JSON is not a page of records; `reason` says what it is instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"body is not a page of records ({reason})")
        self.reason = reason


class PageShapes:
    """The envelope key each registered endpoint's pages hold their records under."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def expect_records(self, url: str, key: str) -> None:
        """Pages of `url` (any query) hold a list of records under `key`."""
        self._keys[urlsplit(url).path] = key

    def check(self, path: str, body: Any) -> None:
        """Raises `NotAPageError` if `body`, the decoded page of `path`, is not a page."""
        key = self._keys.get(path)
        if key is None:
            return
        reason = _not_a_page(body, key)
        if reason is not None:
            raise NotAPageError(reason)


def envelope_keys(endpoints: Iterable[tuple[str, Any]], base_url: str) -> Iterator[tuple[str, str]]:
    """`(url, envelope key)` of each `(path, data selector)` whose selector is a plain key and
    whose path names no parent's field (`/accounts/{id}/contacts` is not one URL)."""
    for path, key in endpoints:
        if isinstance(key, str) and key.isidentifier() and "{" not in path:
            absolute = urlsplit(path).scheme in ("http", "https")
            yield (path if absolute else join_url(base_url, path)), key


def _not_a_page(body: Any, key: str) -> str | None:
    if not isinstance(body, dict):
        return f"{_kind(body)}, not an object"
    if key not in body:
        return f"no {key!r} key"
    if body[key] is None:
        return None  # no records: an end of the list some CRMs write so (`"data": null`)
    if not isinstance(body[key], list | Page):
        return f"{key!r} holds {_kind(body[key])}, not a list"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return next((n for t, n in names.items() if isinstance(value, t)), "a number")
