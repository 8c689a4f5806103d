"""A profile file checked before anything runs: one line naming the file, the resource and the
key, instead of dlt's validation of the whole config dict (a line of thousands of characters).

rest_api's own keys come from its typed spec (`EndpointResource`, `Endpoint`), so a key dlt
learns is accepted here too; crmsync's keys and the values that decide what lands are checked
for their form.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from dlt.common.schema.typing import TSchemaEvolutionMode
from dlt.sources.rest_api.typing import Endpoint, EndpointResource

from crmsync.governance import EXCLUDE_KEY, HASH_KEY, parse_paths

REST_API_KEYS = frozenset(typing.get_type_hints(EndpointResource))
ENDPOINT_KEYS = frozenset(typing.get_type_hints(Endpoint))
CONTRACT_MODES = frozenset(get_args(TSchemaEvolutionMode))
CONTRACT_ENTITIES = frozenset({"tables", "columns", "data_type"})


class ProfileError(ValueError):
    """A profile file that cannot be run as it is written."""


def check_overlay(
    path: Path, overlay: Mapping[str, Any], flags: frozenset[str], lists: frozenset[str]
) -> None:
    """Raises `ProfileError` for the first key or value of `overlay` that cannot work; crmsync's
    own keys beside rest_api's are `flags` (true or false), `lists` (lists of field names) and
    the field policy's."""
    known = REST_API_KEYS | flags | lists | {EXCLUDE_KEY, HASH_KEY}
    defaults = overlay.get("resource_defaults", {})
    if not isinstance(defaults, Mapping):
        raise ProfileError(f"{path}: resource_defaults must be a table")
    _check_resource(path, "resource_defaults", defaults, known - {"name"}, flags, lists)
    resources = overlay.get("resources", [])
    if not isinstance(resources, list):
        raise ProfileError(f"{path}: resources must be a list of tables ([[resources]])")
    for position, resource in enumerate(resources):
        if isinstance(resource, str):
            continue
        name = resource.get("name") if isinstance(resource, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ProfileError(f"{path}: resources[{position}] needs a name")
        _check_resource(path, f"resource {name}", resource, known, flags, lists)


def _check_resource(
    path: Path,
    where: str,
    resource: Mapping[str, Any],
    known: frozenset[str],
    flags: frozenset[str],
    lists: frozenset[str],
) -> None:
    _check_keys(path, where, resource, known)
    endpoint = resource.get("endpoint")
    if isinstance(endpoint, Mapping):
        _check_keys(path, f"{where}: endpoint", endpoint, ENDPOINT_KEYS)
    for key in (EXCLUDE_KEY, HASH_KEY):
        if key in resource:
            try:
                parse_paths(resource[key], key)
            except ValueError as error:
                raise ProfileError(f"{path}: {where}: {error}") from None
    for key in flags & set(resource):
        if not isinstance(resource[key], bool):
            raise ProfileError(f"{path}: {where}: {key} must be true or false")
    for key in lists & set(resource):
        value = resource[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProfileError(f"{path}: {where}: {key} must be a list of field names")
    if "schema_contract" in resource:
        _check_contract(path, where, resource["schema_contract"])


def _check_keys(path: Path, where: str, table: Mapping[str, Any], known: frozenset[str]) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(f"{path}: {where}: unknown key {key!r}{hint}")


def _check_contract(path: Path, where: str, contract: Any) -> None:
    modes = ", ".join(sorted(CONTRACT_MODES))
    if isinstance(contract, str):
        if contract not in CONTRACT_MODES:
            raise ProfileError(
                f"{path}: {where}: schema_contract {contract!r} is not one of {modes}"
            )
        return
    if not isinstance(contract, Mapping):
        raise ProfileError(f"{path}: {where}: schema_contract must be a mode or a table")
    for entity, mode in contract.items():
        if entity not in CONTRACT_ENTITIES:
            raise ProfileError(
                f"{path}: {where}: schema_contract.{entity} is not one of"
                f" {', '.join(sorted(CONTRACT_ENTITIES))}"
            )
        if mode not in CONTRACT_MODES:
            raise ProfileError(
                f"{path}: {where}: schema_contract.{entity} {mode!r} is not one of {modes}"
            )
