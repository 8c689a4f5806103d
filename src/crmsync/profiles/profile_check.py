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
from dlt.sources.rest_api.typing import ClientConfig, Endpoint, EndpointResource, IncrementalConfig

from crmsync.profiles.connection import AUTH_SECRETS
from crmsync.profiles.cursor_format import CursorFormatError, cursor_format
from crmsync.profiles.governance import EXCLUDE_KEY, HASH_KEY, parse_paths

REST_API_KEYS = frozenset(typing.get_type_hints(EndpointResource))
ENDPOINT_KEYS = frozenset(typing.get_type_hints(Endpoint))
CLIENT_KEYS = frozenset(typing.get_type_hints(ClientConfig))
INCREMENTAL_KEYS = frozenset(typing.get_type_hints(IncrementalConfig)) | {"cursor_format"}
FLAGS = frozenset({"ordered_by_primary_key"})
"""crmsync's keys beside rest_api's that are true or false."""
LISTS = frozenset({"list_fields"})
"""crmsync's keys beside rest_api's that list field names."""
DELETED_LISTING = "deleted_listing"
CRMSYNC_KEYS = FLAGS | LISTS | {EXCLUDE_KEY, HASH_KEY, DELETED_LISTING}
DLT_PAGE_NUMBER_KEYS = frozenset({"limit_param", "limit"})
CONTRACT_MODES = frozenset(get_args(TSchemaEvolutionMode))
CONTRACT_ENTITIES = frozenset({"tables", "columns", "data_type"})


class ProfileError(ValueError):
    """A profile file that cannot be run as it is written."""


def check_profile(path: Path, profile: Mapping[str, Any], whole: bool) -> None:
    """Raises `ProfileError` for the first key or value of `profile` that cannot work: a
    `whole` profile describes a CRM, an overlay (`--config`) changes one."""
    unknown = set(profile) - {"client", "resource_defaults", "resources"}
    if unknown:
        raise ProfileError(
            f"{path}: unknown top-level keys {sorted(unknown)}; "
            "expected client, resource_defaults, resources"
        )
    _check_client(path, profile.get("client", {}))
    defaults = profile.get("resource_defaults", {})
    if not isinstance(defaults, Mapping):
        raise ProfileError(f"{path}: resource_defaults must be a table")
    known = REST_API_KEYS | CRMSYNC_KEYS
    _check_resource(path, "resource_defaults", defaults, known - {"name"})
    resources = profile.get("resources", [])
    if not isinstance(resources, list) or (whole and not resources):
        raise ProfileError(f"{path}: resources must be a list of tables ([[resources]])")
    for position, resource in enumerate(resources):
        if isinstance(resource, str):
            continue
        name = resource.get("name") if isinstance(resource, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ProfileError(f"{path}: resources[{position}] needs a name")
        _check_resource(path, f"resource {name}", resource, known)
        _check_deletes(path, name, defaults, resource)


def _check_deletes(
    path: Path, name: str, defaults: Mapping[str, Any], resource: Mapping[str, Any]
) -> None:
    columns = {**(defaults.get("columns") or {}), **(resource.get("columns") or {})}
    deletes = [
        c for c, hint in columns.items() if isinstance(hint, Mapping) and hint.get("hard_delete")
    ]
    if len(deletes) > 1:
        raise ProfileError(
            f"{path}: resource {name}: columns {' and '.join(deletes)} are both hard_delete;"
            " dlt deletes by one column per table"
        )


def _check_client(path: Path, client: Any) -> None:
    if not isinstance(client, Mapping):
        raise ProfileError(f"{path}: client must be a table")
    _check_keys(path, "client", client, CLIENT_KEYS - {"session"})
    auth = client.get("auth")
    if auth is None:
        return
    kind = auth.get("type") if isinstance(auth, Mapping) else auth
    if kind not in AUTH_SECRETS:
        known = ", ".join(sorted(k for k in AUTH_SECRETS if k != "http_basic"))
        raise ProfileError(f"{path}: client.auth: type {kind!r} is not one of {known}")
    secrets = set(AUTH_SECRETS[str(kind)]) - {"username", "client_id"}
    written = secrets & set(auth if isinstance(auth, Mapping) else ())
    if written:
        raise ProfileError(
            f"{path}: client.auth: {', '.join(sorted(written))} is a secret: set it in"
            " .dlt/secrets.toml or the environment (SOURCES__CRM__...), not in the profile"
        )
    query = isinstance(auth, Mapping) and auth.get("location") == "query"
    if kind == "api_key" and query and not auth.get("name"):
        raise ProfileError(f"{path}: client.auth: an api_key in the query needs its name")


def _check_resource(
    path: Path, where: str, resource: Mapping[str, Any], known: frozenset[str]
) -> None:
    _check_keys(path, where, resource, known)
    endpoint = resource.get("endpoint")
    if isinstance(endpoint, Mapping):
        _check_endpoint(path, f"{where}: endpoint", endpoint)
    listing = resource.get(DELETED_LISTING)
    if listing is not None and not (
        isinstance(listing, Mapping) and set(listing) == {"params"} and listing["params"]
    ):
        raise ProfileError(
            f"{path}: {where}: {DELETED_LISTING} must be a table of params that selects the"
            ' deleted records, e.g. { params = { archived = "true" } }'
        )
    for key in (EXCLUDE_KEY, HASH_KEY):
        if key in resource:
            try:
                parse_paths(resource[key], key)
            except ValueError as error:
                raise ProfileError(f"{path}: {where}: {error}") from None
    for key in FLAGS & set(resource):
        if not isinstance(resource[key], bool):
            raise ProfileError(f"{path}: {where}: {key} must be true or false")
    for key in LISTS & set(resource):
        value = resource[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProfileError(f"{path}: {where}: {key} must be a list of field names")
    if "schema_contract" in resource:
        _check_contract(path, where, resource["schema_contract"])


def _check_endpoint(path: Path, where: str, endpoint: Mapping[str, Any]) -> None:
    _check_keys(path, where, endpoint, ENDPOINT_KEYS)
    paginator = endpoint.get("paginator")
    if isinstance(paginator, Mapping) and paginator.get("type") == "page_number":
        crmsync_keys = DLT_PAGE_NUMBER_KEYS & set(paginator)
        if crmsync_keys:
            raise ProfileError(
                f"{path}: {where}: paginator: page_number is dlt's (total_path counts pages, no"
                f' {"/".join(sorted(crmsync_keys))}); use type = "crm_page_number" for'
                " numbered pages with a page size param"
            )
    incremental = endpoint.get("incremental")
    if isinstance(incremental, Mapping):
        _check_keys(path, f"{where}: incremental", incremental, INCREMENTAL_KEYS)
        if "cursor_format" in incremental:
            try:
                cursor_format(incremental["cursor_format"])
            except CursorFormatError as error:
                raise ProfileError(f"{path}: {where}: incremental: {error}") from None


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
