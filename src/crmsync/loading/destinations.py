"""What crmsync decides per dlt destination, and the dry run that checks a destination's settings.

dlt does the loading and reads every destination setting (`.dlt/secrets.toml`, `.dlt/config.toml`,
`DESTINATION__<NAME>__...` variables); crmsync only adds what its guarantees need:

- **filesystem** writes Parquet files. Plain files cannot merge, so each run appends the records
  it read, soft-deleted ones included, flagged by `deleted_at`.
- **filesystem with `table_format = "delta"`** (`[destination.filesystem]`, or
  `RunSettings.table_format`) writes Delta tables that merge on `id` and remove deleted records.
  dlt 1.31 refuses deletes on a Delta table that has nested tables, so the contract's lists
  (`accounts.tags`, `pipelines.stages`) stay in their row as JSON there, not in child tables.
- **duckdb** gets a memory limit sized to each load (`load_defaults`), unless one is configured.
- every other destination gets dlt's defaults: merge on `id`, soft-deleted records removed.
"""

from __future__ import annotations

import collections.abc
import difflib
import math
import os
import tempfile
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.configuration.container import Container
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
    LookupTrace,
    LookupTraces,
)
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.schema import Schema
from dlt.common.schema.utils import get_first_column_name_with_prop, get_table_format
from dlt.extract import DltSource

from crmsync.profiles.profile import Profile, resource_names
from crmsync.redaction import redact_url

if TYPE_CHECKING:
    from crmsync.loading.sync import RunSettings
    from crmsync.profiles.connection import CrmConnection
    from crmsync.reading.source import SyncOptions

FILESYSTEM = "filesystem"
TABLE_FORMATS = ("delta",)
"""Open table formats crmsync runs and tests on the filesystem destination."""

DUCKDB_MEMORY_FLOOR_MB = 64
DUCKDB_BYTES_PER_STAGED_ROW = 32
"""DuckDB's memory limit for a load: the floor, plus this much per row of the largest table the
load stages. Left to itself DuckDB keeps every page it wrote cached, up to 80% of RAM, so its
memory grows with all the data it has loaded. What a merge needs grows only with the rows it
stages (the `DELETE ... WHERE EXISTS` join builds on the staged keys). Measured with DuckDB
2.0 on 2 threads, replacing 5M rows failed at 64 MB and passed at 96 MB, 10M failed at 128 MB
and passed at 256 MB: 13 to 26 bytes a row; the dedup window of a resource not read in key
order passed 5M rows at 128 MB. The floor comes on top of the 32 bytes a row."""
DUCKDB_MEMORY_PER_FILE_BYTE = 4
"""...plus this much per byte of the largest Parquet file the load reads: DuckDB decodes a
row group whole, so a page of long records (500 notes of 100 KB) or one huge value (a 30 MB
note) needs memory in proportion to its bytes, not its rows. A 50 MB file failed at 2 bytes
a byte and passed at 4 (DuckDB 2.0, 2 threads)."""
DUCKDB_MEMORY_PER_COLUMN = 64 * 2**10
"""...plus this much per column of the widest table: DuckDB keeps buffers per column while it
reads and inserts, so 5,000 `custom_fields` keys (5,000 columns) failed at 175 MB whatever the
rows, and passed at 330 MB: about 50 KB a column."""

_NO_CONNECTION_CHECK = {"duckdb", "dummy"}
"""Destinations whose connection a dry run does not open: for DuckDB that would create the file."""


class DestinationSettingError(ConfigurationException):
    """A destination setting is missing or wrong; the message names it and where to set it."""


def resolve(destination: Any) -> Destination[Any, Any]:
    """dlt's destination factory for a name (`postgres`), a named destination, or a factory."""
    try:
        factory = Destination.from_reference(destination)
    except UnknownDestinationModule:
        factory = None
    if factory is not None:
        return factory
    raise DestinationSettingError(
        f"unknown destination {destination!r}: use a dlt destination (duckdb, postgres,"
        " filesystem, bigquery, snowflake, databricks, clickhouse, motherduck, ...) or name"
        f" one with DESTINATION__{str(destination).upper()}__DESTINATION_TYPE"
    )


def destination_type(destination: Any) -> str:
    """`postgres` for `postgres`, `dlt.destinations.postgres(...)` or a named postgres."""
    return resolve(destination).destination_type.rsplit(".", 1)[-1]


def _config_key(destination: Any, key: str) -> str:
    return f"destination.{resolve(destination).destination_name}.{key}"


def table_format(settings: RunSettings) -> str | None:
    """`RunSettings.table_format`, else `table_format` under the destination's config section."""
    value = settings.table_format
    if value is None:
        value = dlt.config.get(_config_key(settings.destination, "table_format"))
    if value is None:
        return None
    name = resolve(settings.destination).destination_name
    key = f"DESTINATION__{name.upper()}__TABLE_FORMAT (or table_format under [destination.{name}])"
    if destination_type(settings.destination) != FILESYSTEM:
        raise DestinationSettingError(f"table_format is a filesystem setting; remove {key}")
    if value not in TABLE_FORMATS:
        raise DestinationSettingError(
            f"table_format {value!r} is not supported: set {key} to"
            f" {' or '.join(TABLE_FORMATS)}, or leave it out for Parquet files"
        )
    return str(value)


def adapt_source(
    source: DltSource, settings: RunSettings, list_fields: Mapping[str, tuple[str, ...]]
) -> DltSource:
    """Lays the destination's needs over the source's hints; other destinations: unchanged.
    `list_fields` (the profile's) stay in-row, as JSON, on Delta tables."""
    if destination_type(settings.destination) != FILESYSTEM:
        return source
    chosen = table_format(settings)
    for resource in source.selected_resources.values():
        if chosen:
            resource.apply_hints(table_format=chosen)  # type: ignore[arg-type]
            lists = list_fields.get(resource.name, ())
            if lists:
                resource.apply_hints(columns={f: {"data_type": "json"} for f in lists})
        else:
            # files cannot merge: say so (dlt would fall back to append, warning per table)
            resource.apply_hints(write_disposition="append")
            columns = resource.columns if isinstance(resource.columns, dict) else {}
            flagged = [name for name, hint in columns.items() if hint.get("hard_delete")]
            if flagged:
                resource.apply_hints(columns={n: {"hard_delete": False} for n in flagged})
    return source


def load_defaults(
    pipeline: dlt.Pipeline,
    staged_rows: Mapping[str, int],
    file_format: str | None,
    file_bytes: Iterable[int] = (),
    columns: int = 0,
) -> dict[str, Any]:
    """crmsync's defaults for loading `staged_rows` from load files of `file_bytes` bytes into
    tables of up to `columns` columns (`crmsync.profiles.config_defaults`): on DuckDB, a
    `memory_limit` sized to the load; a configured `global_config` replaces it entirely.

    Only for Parquet files, which DuckDB reads in row groups: its JSON reader takes 32 MB
    buffers per file and thread, and ran out of memory under the limit on a demo-sized load.
    """
    destination = pipeline.destination
    if destination is None or destination_type(destination) != "duckdb":
        return {}
    if file_format != "parquet":
        return {}
    largest = max(staged_rows.values(), default=0) * DUCKDB_BYTES_PER_STAGED_ROW
    largest += max(file_bytes, default=0) * DUCKDB_MEMORY_PER_FILE_BYTE
    largest += columns * DUCKDB_MEMORY_PER_COLUMN
    limit_mb = DUCKDB_MEMORY_FLOOR_MB + math.ceil(largest / 2**20)
    global_config = {"memory_limit": f"{limit_mb}MB"}
    return {
        "destination": {
            destination.destination_name: {"credentials": {"global_config": global_config}}
        }
    }


def settle(pipeline: dlt.Pipeline) -> None:
    """Finishes what dlt 1.31 leaves undone after a load: on Delta, records deleted in the CRM.

    dlt merges into an existing Delta table, removing the rows whose `hard_delete` column is set,
    but writes a table's first load as it comes: the records already deleted in the CRM land. A
    predicate delete removes them; on later runs it finds nothing (file statistics skip the
    files), so it runs after every load, which also covers a run stopped before this step.
    """
    for schema in pipeline.schemas.values():
        flagged = {
            name: column
            for name in _delta_tables(schema)
            if (column := get_first_column_name_with_prop(schema.tables[name], "hard_delete"))
        }
        if not flagged:
            continue
        from dlt.common.libs.deltalake import get_delta_tables

        tables = get_delta_tables(pipeline, *flagged, schema_name=schema.name)
        for name, table in tables.items():
            table.delete(f"{flagged[name]} IS NOT NULL")


def table_row_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows per data table, in every schema of the pipeline (a run that failed early may leave
    the ledger's schema as the default one); Delta tables are counted by `deltalake`.

    dlt's dataset reads Delta through DuckDB's `delta` extension, which DuckDB downloads on first
    use: offline (and in CI) that fails after the data was loaded.
    """
    counts: dict[str, int] = {}
    for schema in pipeline.schemas.values():
        delta = [t for t in _delta_tables(schema) if t not in counts]
        others = [
            t
            for t in schema.data_table_names(seen_data_only=True)
            if t not in delta and t not in counts
        ]
        if others:
            relation = pipeline.dataset(schema=schema.name).row_counts(table_names=others)
            counts.update(relation.fetchall())
        if delta:
            from dlt.common.libs.deltalake import get_delta_tables

            tables = get_delta_tables(pipeline, *delta, schema_name=schema.name)
            for name, table in tables.items():
                counts[name] = table.to_pyarrow_dataset().count_rows()
    return counts


def _delta_tables(schema: Schema) -> list[str]:
    """Delta tables, child tables included: they inherit `table_format` from their root."""
    return [
        name
        for name in schema.data_table_names(seen_data_only=True)
        if get_table_format(schema.tables, name) == "delta"
    ]


def describe_writes(settings: RunSettings) -> str:
    """What a run does to the destination's tables, in one line."""
    kind = destination_type(settings.destination)
    if kind != FILESYSTEM:
        return "merge on id; records deleted in the CRM are deleted (hard_delete on deleted_at)"
    chosen = table_format(settings)
    if chosen:
        return (
            f"{chosen} tables, upsert on id; records deleted in the CRM are deleted;"
            " accounts.tags and pipelines.stages stay in-row as JSON"
        )
    return (
        "Parquet files, append only: each run adds the records it read,"
        " deleted ones flagged by deleted_at (files cannot merge)"
    )


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
    chosen_format = table_format(settings)
    if chosen_format == "delta":
        _require(
            "deltalake",
            "Delta tables need the deltalake package: pip install 'crmsync[filesystem]'",
        )
    with tempfile.TemporaryDirectory(prefix="crmsync-dry-run-") as scratch:
        pipeline = dlt.pipeline(
            pipeline_name=settings.pipeline_name,
            destination=factory,
            dataset_name=settings.dataset_name,
            pipelines_dir=scratch,
        )
        try:
            client = pipeline.destination_client()
        except ConfigFieldMissingException as error:
            raise DestinationSettingError(_missing_message(factory, error)) from error
        target = _describe_target(client.config)
        checked = "not opened (a dry run does not create the DuckDB file)"
        if connect and destination_type(factory) not in _NO_CONNECTION_CHECK:
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
        f"  {'writes':<13}{describe_writes(settings)}",
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
    paths = list(_missing_paths(error.traces, ()))
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


def _missing_paths(traces: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The path of each missing field a user can set; a wholly missing embedded configuration
    (e.g. `credentials`) is one path: it can be given as one value (a connection string)."""
    for field, field_traces in traces.items():
        embedded = [t for t in field_traces if isinstance(t, LookupTraces)]
        if embedded and any(t.resolved_fields_set for t in embedded):
            best = max(embedded, key=lambda t: len(t.resolved_fields_set))
            yield from _missing_paths(best.traces, (*path, field))
            continue
        looked_up = [t for t in field_traces if isinstance(t, LookupTrace)]
        for inner in embedded:
            looked_up.extend(
                t for ts in inner.traces.values() for t in ts if isinstance(t, LookupTrace)
            )
        if any(t.provider == "Environment Variables" for t in looked_up):
            yield (*path, field)
        # else: set by dlt itself (e.g. `local_dir`), never by the user


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
    providers = Container()[PluggableRunContext].providers.providers
    for provider in providers:
        doc = getattr(provider, "_config_doc", None)
        section = (doc or {}).get("destination", {}).get(name) if isinstance(doc, dict) else None
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
