"""Where the CRM is and how crmsync proves who it is: the base URL and the profile's auth.

A profile names its auth scheme in `[client.auth]` (dlt's rest_api names); the secrets never
sit in the profile, they are read from `sources.crm.*` (`.dlt/secrets.toml` or the
environment) under one documented name each:

    type                       secrets read                      sent as
    basic (dlt: http_basic)    username, password                Authorization: Basic
    bearer                     token                             Authorization: Bearer
    api_key                    api_key                           a header or query param
                                                                 (`name`, `location`)
    oauth2_client_credentials  client_id, client_secret          a bearer token fetched from
                                                                 `access_token_url`

A missing secret is one line naming what to set. Every secret read is handed to
`crmsync.redaction`, so that it is masked wherever a message, log line or URL would show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException

from crmsync.redaction import register_secret, treat_as_secret

SECTION = "sources.crm"

AUTH_SECRETS: dict[str, tuple[str, ...]] = {
    "basic": ("username", "password"),
    "http_basic": ("username", "password"),
    "bearer": ("token",),
    "api_key": ("api_key",),
    "oauth2_client_credentials": ("client_id", "client_secret"),
}
"""The secrets each auth type reads from the profile's section, in the order they are named."""

SECRET_NAMES = ("token", "api_key", "client_id", "client_secret")
"""The secrets of the auth types beside basic's."""

DLT_AUTH_TYPES = {"basic": "http_basic"}
"""The seed writes `"type": "basic"`; dlt calls the same scheme `http_basic`."""

NOT_SECRET = frozenset({"username", "client_id"})
"""Read from the secrets but shown in `--dry-run`; still never printed by a failure message."""


class MissingSettingError(ConfigurationException):
    """A setting the user has to provide; the message says exactly where."""


@dataclass(frozen=True)
class CrmConnection:
    """The CRM's base URL, the profile's auth settings (`[client.auth]` without secrets) and
    the secrets that auth reads."""

    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    auth: Mapping[str, Any] = field(default_factory=lambda: {"type": "basic"})

    @classmethod
    def basic(cls, base_url: str, username: str, password: str) -> CrmConnection:
        return cls(base_url, {"username": username, "password": password})

    @classmethod
    def from_config(
        cls,
        base_url: str | None = None,
        client: Mapping[str, Any] | None = None,
        section: str = SECTION,
    ) -> CrmConnection:
        """The base URL (`base_url`, else `<section>.base_url`, else the profile's
        `client.base_url`) and the secrets of the profile's auth, read from `<section>`.

        dlt's argument injection would fall back to a bare `USERNAME`, which on many systems is
        the OS login name, so each key is read by its full name.
        """
        client = client or {}
        auth_config = client.get("auth") or {"type": "basic"}
        auth = dict(auth_config) if isinstance(auth_config, Mapping) else {"type": auth_config}
        kind = str(auth.get("type", "basic"))
        if kind not in AUTH_SECRETS:
            known = ", ".join(sorted(k for k in AUTH_SECRETS if k != "http_basic"))
            raise MissingSettingError(f"client.auth: unknown type {kind!r}; known: {known}")
        if kind == "api_key" and auth.get("location") == "query" and auth.get("name"):
            treat_as_secret(str(auth["name"]))
        url = base_url or dlt.config.get(f"{section}.base_url") or client.get("base_url")
        credentials: dict[str, str] = {}
        missing: list[str] = [] if url else ["base_url"]
        for key in AUTH_SECRETS[kind]:
            value = auth.pop(key, None) or dlt.secrets.get(f"{section}.{key}")
            if value:
                credentials[key] = str(value)
                if key not in NOT_SECRET:
                    register_secret(str(value))
            else:
                missing.append(key)
        if missing:
            raise MissingSettingError(_how_to_set(missing, section, kind))
        return cls(str(url), credentials, auth)

    @property
    def username(self) -> str:
        """Who the run authenticates as, for `--dry-run` (empty where the auth has no user)."""
        return self.credentials.get("username") or self.credentials.get("client_id", "")

    def dlt_auth(self) -> dict[str, Any]:
        """The auth as rest_api's config dict: settings and secrets together, never logged."""
        kind = str(self.auth.get("type", "basic"))
        return {**self.auth, "type": DLT_AUTH_TYPES.get(kind, kind), **self.credentials}


def env_name(section: str, key: str) -> str:
    """The environment variable dlt reads for `key` under `section`: `SOURCES__CRM__PASSWORD`."""
    return "__".join([*section.split("."), key]).upper()


def _how_to_set(missing: list[str], section: str, kind: str) -> str:
    where = []
    for key in missing:
        env = env_name(section, key)
        if key == "base_url":
            where.append(
                f"{env} (or --base-url, or base_url under [{section}] in .dlt/config.toml)"
            )
        else:
            where.append(f"{env} (or {key} under [{section}] in .dlt/secrets.toml)")
    needs = "" if missing == ["base_url"] else f" ({kind} auth)"
    return f"missing CRM setting{needs}: set " + "; ".join(where)
