"""A CRM profile: its resources as plain data, in the seed's `rest_api_source` dict shape.

Everything a resource needs — path, envelope key, paginator, auth, cursor, delete rule, column
types — is data in a profile file, so that a CRM is added by configuration (`--profile
acme.toml`) and a resource changed by an overlay (`--config crmsync.toml`), never by code. The
built-in profile (`profiles/crm.toml`) is the bundled contract's. The plan (`crmsync.profiles.plan`)
reads a profile once per run; the source adds the mechanism.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from crmsync.profiles.profile_check import ProfileError, check_profile

Profile = dict[str, Any]
"""A `rest_api_source` config dict (dlt's `RESTAPIConfig`), handled as the plain data it is."""

ORDERED_KEY = "ordered_by_primary_key"
"""crmsync's key beside rest_api's: the endpoint lists records in ascending primary key
order (the contract: "Records are ordered by `id` ascending"). crmsync then drops the records a
read is served twice when the list shifts under it, and tells the destination that each load
holds every key once, which spares the merge a dedup pass over the whole load (its largest
memory and time cost). Set it to false for an endpoint that lists records in another order."""

LIST_FIELDS_KEY = "list_fields"
"""crmsync's key: a resource's fields that hold lists (`accounts.tags`). dlt loads each as a
child table (`accounts__tags`); on Delta tables crmsync keeps them in the row, as JSON."""

DELETED_LISTING_KEY = "deleted_listing"
"""crmsync's key: the CRM lists deleted records apart (`GET /contacts?archived=true`); a table
of params that selects them. crmsync reads that listing too, into the same table, where the
records' `hard_delete` flag removes their rows (`crmsync.profiles.plan`)."""

CURSOR_FORMAT_KEY = "cursor_format"
"""crmsync's key in `endpoint.incremental`: how the CRM writes the cursor's values
(`crmsync.profiles.cursor_format`)."""

BUILT_IN = resources.files("crmsync.profiles") / "crm.toml"
"""The contract's five resources (`shared/crm-api.md`), a profile like any other."""


def built_in_profile() -> Profile:
    return tomllib.loads(BUILT_IN.read_text(encoding="utf-8"))


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


def load_profile(config: Path | None = None, profile: Path | None = None) -> Profile:
    """The CRM's profile — `profile` (a file), else the built-in one — with `config` laid over
    it.

    Both files (TOML or JSON) have the seed's shape. In the overlay, `[resource_defaults]` is
    merged key by key, and each `[[resources]]` entry replaces the profile's resource of the
    same `name` (its keys laid over the profile's, `endpoint` and `columns` merged one level
    deep) or, with a new name, adds a resource.
    """
    if profile is None:
        base = built_in_profile()
    else:
        base = _read_config_file(profile)
        check_profile(profile, base, whole=True)
    if config is None:
        return base
    overlay = _read_config_file(config)
    check_profile(config, overlay, whole=False)
    base.setdefault("client", {}).update(overlay.get("client", {}))
    defaults = base.setdefault("resource_defaults", {})
    for key, value in overlay.get("resource_defaults", {}).items():
        defaults[key] = _merge_one_level(defaults.get(key), value)
    by_name = {resource_name(r): r for r in base.setdefault("resources", [])}
    for resource in overlay.get("resources", []):
        name = resource_name(resource)
        existing = by_name.get(name)
        if existing is None or isinstance(existing, str) or isinstance(resource, str):
            base["resources"].append(resource)
            by_name[name] = resource
            continue
        for key, value in resource.items():
            existing[key] = _merge_one_level(existing.get(key), value)
    return base


def _merge_one_level(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **overlay}
    return copy.deepcopy(overlay)


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ProfileError(f"{path}: not valid {kind}: {error}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a table/object at the top level")
    return data


def endpoint_of(resource: Mapping[str, Any]) -> dict[str, Any]:
    endpoint = resource.get("endpoint") or {}
    if isinstance(endpoint, str):
        return {"path": endpoint}
    return dict(endpoint)
