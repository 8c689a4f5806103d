"""URLs as crmsync shows them: without the credentials a user may have put inside.

Many CRMs document URLs that carry a secret: a login (`https://api-user:token@crm.example.com`)
or a key in the query (`/contacts?api_key=...`). crmsync prints URLs in its progress line, its
failure messages, `check` and `--dry-run`; each of them goes through `redact_url` first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

REDACTED = "***"
SECRET_PARAMS = frozenset(
    {
        "token",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
        "access_token",
        "client_secret",
        "signature",
    }
)
"""Query parameter names (compared case-insensitively) whose values are credentials."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)]")
"""A URL in a message, without the punctuation that ends a sentence or a clause after it."""


def redact_url(url: str) -> str:
    """`url` with its login and the values of its secret-looking query params replaced by
    `***`: `https://***@crm.example.com/contacts?api_key=***&page=2`. A path with a query
    (`/contacts?token=x`) is redacted the same way."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query=_redact_query(parts.query)))


def without_login(url: str) -> str:
    """`url` without its `user:password@`: for URLs that are kept (dlt records a source's base
    URL in the trace it writes to disk) or sent, when the login is not what authenticates."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact_urls_in(text: str) -> str:
    """`text` (an error message of a library) with every URL in it redacted."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&") if query else []:
        name, equals, _ = pair.partition("=")
        secret = equals and unquote_plus(name).lower() in SECRET_PARAMS
        pairs.append(f"{name}={REDACTED}" if secret else pair)
    return "&".join(pairs)
