"""One plan per resource, read from the profile in one pass: what every other part reads.

A profile is the seed's `rest_api_source` dict plus a few crmsync keys. The plan takes it
apart once — the endpoint merged with the defaults, the paginator, the cursor and its format,
the delete rule, the id kind, the page form, the column hints — and leaves rest_api a config
with none of crmsync's keys in it. The source (`crmsync.reading.source`), `check` and `--dry-run`
read the plans; none of them edits the profile or depends on another's edits.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.profiles.cursor_format import CursorFormat, cursor_format
from crmsync.profiles.governance import EXCLUDE_KEY, HASH_KEY
from crmsync.profiles.profile import (
    CURSOR_FORMAT_KEY,
    DELETED_LISTING_KEY,
    LIST_FIELDS_KEY,
    ORDERED_KEY,
    Profile,
    endpoint_of,
    resource_name,
)

CRMSYNC_KEYS = (ORDERED_KEY, LIST_FIELDS_KEY, DELETED_LISTING_KEY, EXCLUDE_KEY, HASH_KEY)
LISTING_SUFFIX = "__deleted"
"""A deleted listing is read as a resource of its own, `contacts__deleted`, into `contacts`."""


@dataclass(frozen=True)
class CursorPlan:
    """The incremental cursor: where it is in a record, which params filter by it, its format.

    `parse` is set where crmsync turns the record's value into a datetime as it reads it (a
    profile that names `cursor_format`); without it the column's hint decides, as before."""

    path: str
    start_param: str | None
    end_param: str | None
    format: CursorFormat
    parse: bool

    @property
    def column(self) -> str:
        """The column the cursor lands in: a nested path's parts joined as dlt joins them."""
        return self.path.replace(".", "__")

    @property
    def nested(self) -> bool:
        return "." in self.path


@dataclass(frozen=True)
class ResourcePlan:
    name: str
    path: str
    records_key: str | None
    primary_key: Any
    write_disposition: Any
    columns: dict[str, dict[str, Any]]
    """The resource's column hints over the defaults'."""
    cursor: CursorPlan | None
    ordered: bool
    """Listed in ascending primary key order (`ordered_by_primary_key`)."""
    list_fields: tuple[str, ...]
    deleted_listing: dict[str, Any] | None
    """The params that list the resource's deleted records apart, if the CRM does so."""
    excluded: Any = None
    hashed: Any = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    """The resource as rest_api reads it: endpoint merged with the defaults', no crmsync key."""

    @property
    def id_kind(self) -> str | None:
        """The primary key column's declared type (`bigint`, `text`) where it has one key."""
        if not isinstance(self.primary_key, str):
            return None
        kind = self.columns.get(self.primary_key, {}).get("data_type")
        return str(kind) if kind else None

    @property
    def filters_by_cursor(self) -> bool:
        """Whether the CRM filters by the cursor; otherwise every run reads in full, merged."""
        return self.cursor is not None and self.cursor.start_param is not None

    @property
    def hard_delete_columns(self) -> list[str]:
        return [name for name, hint in self.columns.items() if hint.get("hard_delete")]

    def listing(self) -> ResourcePlan | None:
        """The plan of the deleted listing: the same endpoint with its params, into the same
        table, read in full (deleted records carry no usable cursor), always merged."""
        if self.deleted_listing is None:
            return None
        config = copy.deepcopy(self.config)
        endpoint = config["endpoint"]
        endpoint["params"] = {**(endpoint.get("params") or {}), **self.deleted_listing}
        endpoint.pop("incremental", None)
        config["name"] = self.name + LISTING_SUFFIX
        config["table_name"] = config.get("table_name") or self.name
        return dataclasses.replace(
            self, name=config["name"], cursor=None, deleted_listing=None, config=config
        )


def plan_resources(profile: Profile) -> list[ResourcePlan]:
    """Every resource of `profile`, planned; a resource given by name only (`"contacts"`)
    takes the defaults alone."""
    defaults = profile.get("resource_defaults") or {}
    paginator = (profile.get("client") or {}).get("paginator")
    return [_plan(resource, defaults, paginator) for resource in profile.get("resources") or []]


def _plan(resource: Any, defaults: Mapping[str, Any], client_paginator: Any) -> ResourcePlan:
    resource = {"name": resource} if isinstance(resource, str) else resource
    name = resource_name(resource)
    endpoint = {**endpoint_of(defaults), **endpoint_of(resource)}
    endpoint.setdefault("path", name)
    if client_paginator is not None:
        endpoint.setdefault("paginator", client_paginator)
    hints = {**(defaults.get("columns") or {}), **(resource.get("columns") or {})}
    columns = {key: dict(hint) for key, hint in hints.items()}

    def setting(key: str, default: Any = None) -> Any:
        return resource.get(key, defaults.get(key, default))

    config = {
        key: copy.deepcopy(value)
        for key, value in {**defaults, **resource}.items()
        if key not in CRMSYNC_KEYS
    }
    incremental = dict(endpoint.get("incremental") or {})
    cursor = None
    if incremental:
        spec = incremental.pop(CURSOR_FORMAT_KEY, None)
        cursor = CursorPlan(
            path=str(incremental["cursor_path"]),
            start_param=incremental.get("start_param"),
            end_param=incremental.get("end_param"),
            format=cursor_format(spec),
            parse=spec is not None,
        )
        endpoint["incremental"] = incremental
        if cursor.parse and cursor.column not in columns:
            columns[cursor.column] = {"data_type": "timestamp", "timezone": True}
    config["endpoint"] = copy.deepcopy(endpoint)
    config["columns"] = copy.deepcopy(columns)
    listing = setting(DELETED_LISTING_KEY)
    return ResourcePlan(
        name=name,
        path=str(endpoint.get("path", "")),
        records_key=endpoint.get("data_selector"),
        primary_key=setting("primary_key"),
        write_disposition=setting("write_disposition"),
        columns=columns,
        cursor=cursor,
        ordered=bool(setting(ORDERED_KEY, False)),
        list_fields=tuple(setting(LIST_FIELDS_KEY) or ()),
        deleted_listing=dict(listing["params"]) if listing else None,
        excluded=resource.get(EXCLUDE_KEY),
        hashed=resource.get(HASH_KEY),
        config=config,
    )
