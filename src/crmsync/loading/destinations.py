"""What crmsync decides per dlt destination: how a run writes there, and how DuckDB loads.

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

What a load leaves for crmsync to finish on Delta is in `crmsync.loading.delta`; the dry run that
checks a destination's settings in `crmsync.reporting.dry_run`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.extract import DltSource

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


def table_format(destination: Any, chosen: str | None) -> str | None:
    """`chosen` (`RunSettings.table_format`), else `table_format` under the destination's config
    section."""
    value = chosen
    if value is None:
        value = dlt.config.get(_config_key(destination, "table_format"))
    if value is None:
        return None
    name = resolve(destination).destination_name
    key = f"DESTINATION__{name.upper()}__TABLE_FORMAT (or table_format under [destination.{name}])"
    if destination_type(destination) != FILESYSTEM:
        raise DestinationSettingError(f"table_format is a filesystem setting; remove {key}")
    if value not in TABLE_FORMATS:
        raise DestinationSettingError(
            f"table_format {value!r} is not supported: set {key} to"
            f" {' or '.join(TABLE_FORMATS)}, or leave it out for Parquet files"
        )
    return str(value)


def adapt_source(
    source: DltSource,
    destination: Any,
    chosen_format: str | None,
    list_fields: Mapping[str, tuple[str, ...]],
) -> DltSource:
    """Lays the destination's needs over the source's hints; other destinations: unchanged.
    `list_fields` (the profile's) stay in-row, as JSON, on Delta tables."""
    if destination_type(destination) != FILESYSTEM:
        return source
    chosen = table_format(destination, chosen_format)
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


def describe_writes(destination: Any, chosen_format: str | None) -> str:
    """What a run does to the destination's tables, in one line."""
    kind = destination_type(destination)
    if kind != FILESYSTEM:
        return "merge on id; records deleted in the CRM are deleted (hard_delete on deleted_at)"
    chosen = table_format(destination, chosen_format)
    if chosen:
        return (
            f"{chosen} tables, upsert on id; records deleted in the CRM are deleted;"
            " accounts.tags and pipelines.stages stay in-row as JSON"
        )
    return (
        "Parquet files, append only: each run adds the records it read,"
        " deleted ones flagged by deleted_at (files cannot merge)"
    )
