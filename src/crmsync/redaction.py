"""URLs as crmsync shows them: without the credentials a user may have put inside.

Many CRMs document URLs that carry a secret: a login (`https://api-user:token@crm.example.com`)
or a key in the query (`/contacts?api_key=...`). crmsync prints URLs in its progress line, its
failure messages, `check` and `--dry-run`; each of them goes through `redact_url` first.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

REDACTED = "***"
SECRET_PARAMS = frozenset(
    {
        "token",
        "api_token",
        "auth_token",
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
"""Query parameter names (compared case-insensitively) whose values are credentials; a
profile's `api_key` param name joins them (`treat_as_secret`)."""

_secret_params = set(SECRET_PARAMS)
_secret_values: set[str] = set()


def treat_as_secret(param: str) -> None:
    """A query param whose value is a credential, as a profile's `api_key` auth names it."""
    _secret_params.add(param.lower())


def register_secret(value: str) -> None:
    """A secret this process read (a password, a token): masked in every text redacted."""
    if len(value) >= 4:  # shorter ones would mask ordinary words; no real secret is that short
        _secret_values.add(value)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)]")
"""A URL in a message, without the punctuation that ends a sentence or a clause after it."""


def redact_url(url: str) -> str:
    """`url` with its login and the values of its secret-looking query params replaced by
    `***`: `https://***@crm.example.com/contacts?api_key=***&page=2`. A path with a query
    (`/contacts?token=x`) is redacted the same way."""
    parts = urlsplit(redact_secrets(url))
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
    """`text` (an error message of a library) with every URL and every secret in it redacted."""
    return redact_secrets(_URL.sub(lambda match: redact_url(match.group(0)), text))


def redact_secrets(text: str) -> str:
    """`text` with each secret read by this process (`register_secret`) replaced by `***`,
    also where it appears URL-encoded."""
    for value in sorted(_secret_values, key=len, reverse=True):
        for form in {value, quote(value, safe=""), quote_plus(value)}:
            text = text.replace(form, REDACTED)
    return text


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&") if query else []:
        name, equals, _ = pair.partition("=")
        secret = equals and unquote_plus(name).lower() in _secret_params
        pairs.append(f"{name}={REDACTED}" if secret else pair)
    return "&".join(pairs)
