"""`crmsync run --dry-run`: what a run needs, checked without reading or loading anything.

The CRM settings, the destination's settings (a missing one named with where to set it, an
unknown key under `[destination.<name>]` with the likely one) and, for SQL destinations and
buckets, a connection opened and closed.
"""

from __future__ import annotations

import collections.abc
import difflib
import os
import tempfile
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.configuration.providers.doc import BaseDocProvider
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.destination import Destination

from crmsync.dlt_internals import missing_settings
from crmsync.loading.destinations import (
    FILESYSTEM,
    DestinationSettingError,
    describe_writes,
    destination_type,
    resolve,
    table_format,
)
from crmsync.loading.sync import RunSettings, make_pipeline
from crmsync.profiles.connection import CrmConnection
from crmsync.profiles.profile import Profile, resource_names
from crmsync.reading.source import SyncOptions
from crmsync.redaction import redact_url

NO_CONNECTION_CHECK = {"duckdb", "dummy"}
"""Destinations whose connection a dry run does not open: for DuckDB that would create the file."""


def dry_run(
    connection: CrmConnection,
    settings: RunSettings,
    sync: SyncOptions,
    profile: Profile,
    connect: bool = True,
) -> list[str]:
    """Checks what a run needs without requesting anything from the CRM; the lines to print.

    Raises a `ConfigurationException` naming the first missing or wrong setting. With `connect`,
    a SQL destination's connection is opened and closed, and a bucket's root listed.
    """
    known = resource_names(profile)
    unknown = sorted(set(sync.resources or ()) - set(known))
    if unknown:
        raise DestinationSettingError(
            f"unknown resources {unknown} in --resources; known: {', '.join(known)}"
        )
    factory = resolve(settings.destination)
    _check_keys(factory)
    chosen_format = table_format(settings.destination, settings.table_format)
    if chosen_format == "delta":
        _require(
            "deltalake",
            "Delta tables need the deltalake package: pip install 'crmsync[filesystem]'",
        )
    with tempfile.TemporaryDirectory(prefix="crmsync-dry-run-") as scratch:
        pipeline = make_pipeline(settings, scratch)
        try:
            client = pipeline.destination_client()
        except ConfigFieldMissingException as error:
            raise DestinationSettingError(_missing_message(factory, error)) from error
        target = _describe_target(client.config)
        checked = "not opened (a dry run does not create the DuckDB file)"
        if connect and destination_type(factory) not in NO_CONNECTION_CHECK:
            checked = _connect(factory, client)
    mode = (
        "full refresh" if sync.full_refresh else f"incremental, lookback {sync.lookback_seconds:g}s"
    )
    if sync.since:
        mode += f", first sync from {sync.since}"
    if sync.keep_deleted:
        mode += ", deleted records kept"
    return [
        "Dry run: the settings are complete; nothing was requested from the CRM or loaded.",
        f"  {'CRM':<13}{redact_url(connection.base_url)} (user {connection.username})",
        f"  {'resources':<13}{', '.join(sync.resources or known)}",
        f"  {'sync':<13}{mode}",
        f"  {'destination':<13}{factory.destination_name}: {target}",
        f"  {'dataset':<13}{settings.dataset_name} (pipeline {settings.pipeline_name})",
        f"  {'writes':<13}{describe_writes(settings.destination, settings.table_format)}",
        f"  {'connection':<13}{checked}",
    ]


def _require(module: str, message: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DestinationSettingError(message)


def _describe_target(config: Any) -> str:
    bucket_url = getattr(config, "bucket_url", None)
    if bucket_url:
        return str(bucket_url)
    credentials = getattr(config, "credentials", None)
    if credentials is not None and hasattr(credentials, "to_url"):
        # dlt renders connection strings with the password masked
        return str(credentials)
    return type(config).__name__.removesuffix("ClientConfiguration")


def _connect(factory: Destination[Any, Any], client: Any) -> str:
    name = factory.destination_name
    try:
        sql_client = getattr(client, "sql_client", None)
        if destination_type(factory) == FILESYSTEM:
            client.fs_client.exists(client.config.bucket_url)
            return "ok (bucket reachable)"
        if sql_client is None:
            return "not checked (no SQL client)"
        with sql_client:
            sql_client.execute_sql("SELECT 1")
        return "ok (connected and disconnected)"
    except Exception as error:  # each driver has its own errors; the first line says enough
        first = next(
            (ln.strip() for ln in str(error).splitlines() if ln.strip()), type(error).__name__
        )
        raise DestinationSettingError(
            f"cannot connect to {name}: {first}; check DESTINATION__{name.upper()}__CREDENTIALS"
            f" (or credentials under [destination.{name}] in .dlt/secrets.toml)"
        ) from error


def _missing_message(factory: Destination[Any, Any], error: ConfigFieldMissingException) -> str:
    name = factory.destination_name
    paths = missing_settings(error)
    if not paths:
        return f"missing destination setting for {name}: {', '.join(error.fields)}"
    groups: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        groups.setdefault(path[:-1], []).append(path[-1])
    parts = []
    for section, fields in groups.items():
        envs = ", ".join(_render("env", name, (*section, f)) for f in fields)
        where = ".dlt/secrets.toml" if "credentials" in (*section, *fields) else ".dlt/config.toml"
        table = ".".join(("destination", name, *section))
        parts.append(f"{envs} (or {', '.join(fields)} under [{table}] in {where})")
    return f"missing destination setting for {name}: set " + "; ".join(parts)


def _check_keys(factory: Destination[Any, Any]) -> None:
    """A key under the destination's section that dlt does not know is a typo: name it."""
    name = factory.destination_name
    spec = factory.spec
    extra = {"table_format"} if destination_type(factory) == FILESYSTEM else set()
    for source, path in _configured_paths(name):
        problem = _unknown(spec, path, extra)
        if problem is None:
            continue
        bad, choices = problem
        suggestion = difflib.get_close_matches(path[bad], choices, n=1)
        hint = (
            f" (did you mean {_render(source, name, (*path[:bad], suggestion[0]))}?)"
            if suggestion
            else ""
        )
        raise DestinationSettingError(
            f"unknown destination setting {_render(source, name, path[: bad + 1])}{hint}"
        )


def _render(source: str, name: str, path: tuple[str, ...]) -> str:
    if source == "env":
        return "__".join(("DESTINATION", name.upper(), *(p.upper() for p in path)))
    return f"{path[-1]} under [{'.'.join(('destination', name, *path[:-1]))}] in {source}"


def _configured_paths(name: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    prefix = f"DESTINATION__{name.upper()}__"
    for key in os.environ:
        if key.upper().startswith(prefix) and len(key) > len(prefix):
            yield "env", tuple(p.lower() for p in key[len(prefix) :].split("__"))
    for provider in dlt.config.config_providers:
        if not isinstance(provider, BaseDocProvider):
            continue  # the environment, read above
        doc = tomllib.loads(provider.to_toml())
        section = doc.get("destination", {}).get(name)
        if isinstance(section, dict):
            for path in _leaf_paths(section, ()):
                yield provider.name, path


def _leaf_paths(node: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            yield from _leaf_paths(value, (*path, key))
        else:
            yield (*path, key)


def _unknown(
    spec: type[BaseConfiguration], path: tuple[str, ...], extra: set[str]
) -> tuple[int, list[str]] | None:
    """Where `path` leaves the configuration `spec` (index, valid names there), else None."""
    fields: dict[str, Any] = dict(spec.get_resolvable_fields())
    fields.update(dict.fromkeys(extra, str))
    for index, part in enumerate(path):
        if part not in fields:
            return index, sorted(fields)
        configs, open_ended = _config_classes(fields[part])
        if open_ended or not configs or index == len(path) - 1:
            return None
        fields = {}
        for config in configs:
            fields.update(config.get_resolvable_fields())
    return None


def _config_classes(hint: Any) -> tuple[list[type[BaseConfiguration]], bool]:
    """Configuration classes in a field's type hint, and whether it also takes any mapping."""
    configs: list[type[BaseConfiguration]] = []
    open_ended = False
    stack = [hint]
    while stack:
        current = stack.pop()
        origin = typing.get_origin(current)
        if origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(current))
        elif origin in (typing.Annotated, typing.Final, typing.ClassVar):
            stack.append(typing.get_args(current)[0])
        elif isinstance(current, type) and issubclass(current, BaseConfiguration):
            configs.append(current)
        elif current in (dict, Any) or origin in (dict, Mapping, collections.abc.Mapping):
            open_ended = True
    return configs, open_ended
