"""The CRM's resources as plain data, in the seed's `rest_api_source` dict shape.

Everything a resource needs — path, envelope key, paginator, cursor, column types — is data
here, so that a resource is added or changed by configuration (`--config crmsync.toml`), never
by code. The source (`crmsync.source`) only adds the mechanism: credentials, the HTTP policy
and the sync mode of a run.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from crmsync.profile_check import check_overlay

Profile = dict[str, Any]
"""A `rest_api_source` config dict (dlt's `RESTAPIConfig`), handled as the plain data it is."""

SEED_PAGINATOR: dict[str, Any] = {
    "type": "page_number",
    "page_param": "page[page]",
    "limit_param": "page[limit]",
    "limit": 500,
}
"""The seed's paginator for the four JSON:API-style resources (`page[page]`, `page[limit]`)."""

EVENTS_PAGINATOR: dict[str, Any] = {"type": "page_number", "limit_param": "limit", "limit": 500}
"""The seed's paginator for `/events`, the one endpoint with plain `page`/`limit` params."""


def _timestamp(**hints: Any) -> dict[str, Any]:
    """A fresh dict each time: dlt writes the column name into a hint dict it is given."""
    return {"data_type": "timestamp", "timezone": True, **hints}


SOFT_DELETE_COLUMN = {"deleted_at": _timestamp(nullable=True, hard_delete=True)}
"""`deleted_at` set means soft-deleted in the CRM; `hard_delete` makes a merge remove the row.
Set `hard_delete = false` on a resource (or run with `--keep-deleted`) to keep such rows."""

ORDERED_KEY = "ordered_by_primary_key"
"""crmsync's one key beside rest_api's: the endpoint lists records in ascending primary key
order (the contract: "Records are ordered by `id` ascending"). crmsync then drops the records a
read is served twice when the list shifts under it, and tells the destination that each load
holds every key once, which spares the merge a dedup pass over the whole load (its largest
memory and time cost). Set it to false for an endpoint that lists records in another order."""

LIST_FIELDS_KEY = "list_fields"
"""crmsync's other key: a resource's fields that hold lists (`accounts.tags`). dlt loads each
as a child table (`accounts__tags`); on Delta tables crmsync keeps them in the row, as JSON."""

CRM_PROFILE: Profile = {
    "client": {"base_url": "http://127.0.0.1:8080", "auth": {"type": "basic"}},
    "resource_defaults": {
        "primary_key": "id",
        "write_disposition": "merge",
        "parallelized": True,
        ORDERED_KEY: True,
        "endpoint": {
            "paginator": SEED_PAGINATOR,
            "params": {"include_deleted": "true"},
            "incremental": {"cursor_path": "updated_at", "start_param": "updated_since"},
        },
        "columns": {
            "id": {"data_type": "bigint", "nullable": False},
            "created_at": _timestamp(),
            "updated_at": _timestamp(),
        },
    },
    "resources": [
        {
            "name": "accounts",
            "endpoint": {"path": "/accounts", "data_selector": "accounts"},
            LIST_FIELDS_KEY: ["tags"],
            "columns": {
                "name": {"data_type": "text"},
                "domain": {"data_type": "text"},
                "industry": {"data_type": "text"},
                "employee_count": {"data_type": "bigint"},
                "annual_revenue": {"data_type": "double"},
                "owner_id": {"data_type": "bigint"},
                "address__street": {"data_type": "text"},
                "address__city": {"data_type": "text"},
                "address__postal_code": {"data_type": "text"},
                "address__country": {"data_type": "text"},
                **copy.deepcopy(SOFT_DELETE_COLUMN),
            },
        },
        {
            "name": "contacts",
            "endpoint": {"path": "/contacts", "data_selector": "contacts"},
            "columns": {
                "account_id": {"data_type": "bigint"},
                "first_name": {"data_type": "text"},
                "last_name": {"data_type": "text"},
                "email": {"data_type": "text"},
                "phone": {"data_type": "text"},
                "title": {"data_type": "text"},
                "lifecycle_stage": {"data_type": "text"},
                **copy.deepcopy(SOFT_DELETE_COLUMN),
            },
        },
        {
            "name": "events",
            "endpoint": {
                "path": "/events",
                "data_selector": "events",
                "paginator": EVENTS_PAGINATOR,
            },
            "columns": {
                "type": {"data_type": "text"},
                "contact_id": {"data_type": "bigint"},
                "account_id": {"data_type": "bigint"},
                "occurred_at": _timestamp(),
                "payload": {"data_type": "json"},
            },
        },
        {
            "name": "products",
            "endpoint": {"path": "/products", "data_selector": "products"},
            "columns": {
                "sku": {"data_type": "text"},
                "name": {"data_type": "text"},
                "price": {"data_type": "decimal", "precision": 18, "scale": 2},
                "currency": {"data_type": "text"},
                "active": {"data_type": "bool"},
                **copy.deepcopy(SOFT_DELETE_COLUMN),
            },
        },
        {
            "name": "pipelines",
            "endpoint": {"path": "/pipelines", "data_selector": "pipelines"},
            LIST_FIELDS_KEY: ["stages"],
            "columns": {
                "name": {"data_type": "text"},
                "is_default": {"data_type": "bool"},
                **copy.deepcopy(SOFT_DELETE_COLUMN),
            },
        },
    ],
}
"""The contract's five resources (`shared/crm-api.md`), each in the seed's shape."""


def list_fields(profile: Profile) -> dict[str, tuple[str, ...]]:
    """Each resource's `list_fields`, by resource name."""
    return {
        resource_name(resource): tuple(resource[LIST_FIELDS_KEY])
        for resource in profile["resources"]
        if isinstance(resource, dict) and resource.get(LIST_FIELDS_KEY)
    }


def resource_names(profile: Profile) -> list[str]:
    return [resource_name(resource) for resource in profile["resources"]]


def resource_name(resource: Any) -> str:
    return resource if isinstance(resource, str) else str(resource["name"])


def load_profile(path: Path | None = None) -> Profile:
    """The built-in profile, with a user's file laid over it.

    The file (TOML or JSON) has the seed's shape: `[resource_defaults]` is merged key by key, and
    each `[[resources]]` entry replaces the built-in resource of the same `name` (its keys laid
    over the built-in ones, `endpoint` and `columns` merged one level deep) or, with a new name,
    adds a resource.
    """
    profile = copy.deepcopy(CRM_PROFILE)
    if path is None:
        return profile
    overlay = _read_config_file(path)
    unknown = set(overlay) - {"client", "resource_defaults", "resources"}
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level keys {sorted(unknown)}; "
            "expected client, resource_defaults, resources"
        )
    check_overlay(path, overlay, frozenset({ORDERED_KEY}), frozenset({LIST_FIELDS_KEY}))
    profile["client"].update(overlay.get("client", {}))
    defaults = profile.setdefault("resource_defaults", {})
    for key, value in overlay.get("resource_defaults", {}).items():
        defaults[key] = _merge_one_level(defaults.get(key), value)
    by_name = {resource_name(r): r for r in profile["resources"]}
    for resource in overlay.get("resources", []):
        name = resource_name(resource)
        existing = by_name.get(name)
        if existing is None or isinstance(existing, str) or isinstance(resource, str):
            profile["resources"].append(resource)
            by_name[name] = resource
            continue
        for key, value in resource.items():
            existing[key] = _merge_one_level(existing.get(key), value)
    return profile


def _merge_one_level(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **overlay}
    return copy.deepcopy(overlay)


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table/object at the top level")
    return data


def endpoint_of(resource: dict[str, Any]) -> dict[str, Any]:
    endpoint = resource.get("endpoint") or {}
    if isinstance(endpoint, str):
        return {"path": endpoint}
    return dict(endpoint)
