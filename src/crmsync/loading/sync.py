"""One sync run: the pipeline, the source, the load, and the ledger stored beside the data."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
from dlt.common import logger
from dlt.common.pipeline import LoadInfo, get_dlt_pipelines_dir
from dlt.common.schema import Schema
from dlt.common.schema.typing import C_DLT_ID, C_DLT_LOAD_ID, TColumnSchema
from dlt.common.schema.utils import new_table
from dlt.extract import DltSource
from dlt.extract.exceptions import PipeException
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.helpers import pipeline_drop

from crmsync.dlt_internals import place_in_extracted_package
from crmsync.failures import causes
from crmsync.ledger import RUNS_COLUMNS, RUNS_TABLE, RunLedger
from crmsync.loading.delta import settle, table_row_counts
from crmsync.loading.destinations import adapt_source, load_defaults
from crmsync.profiles.config_defaults import defaults
from crmsync.profiles.connection import CrmConnection
from crmsync.profiles.profile import Profile, built_in_profile, list_fields
from crmsync.reading.arrow_pages import arrow_type, row_keys
from crmsync.reading.child_tables import enable_child_tables, place_child_tables
from crmsync.reading.page_reader import PageReader
from crmsync.reading.source import SyncOptions, crm_source
from crmsync.transport.http_policy import HttpPolicy, load_policy

DEFAULT_PIPELINE = "crmsync"
DEFAULT_DATASET = "crm"
RUN_DEFAULTS = {"normalize": {"parquet_normalizer": {"add_dlt_load_id": True}}}
"""Arrow tables get `_dlt_load_id` as dict rows do (their `_dlt_id` comes with them)."""
EXTRACT_DEFAULTS = {"data_writer": {"disable_compression": True}}
"""dlt gzips the files extract writes for normalize to read back within the run: CPU spent on
files that never leave the machine. The load files normalize writes keep dlt's default."""


@dataclass
class RunSettings:
    destination: Any = "duckdb"
    dataset_name: str = DEFAULT_DATASET
    pipeline_name: str = DEFAULT_PIPELINE
    pipelines_dir: str | None = None
    loader_file_format: str | None = None
    table_format: str | None = None
    """`delta` on the filesystem destination (else `table_format` under its config section)."""


@dataclass
class SyncResult:
    ledger: RunLedger
    row_counts: dict[str, int] = field(default_factory=dict)
    """Rows this run loaded per table (deletions included: they are rows that delete)."""
    table_rows: dict[str, int] = field(default_factory=dict)
    """Rows in each table of the dataset once the run was loaded."""
    load_info: LoadInfo | None = None

    @property
    def loaded(self) -> list[str]:
        """Resources whose read finished, and whose records this run loaded."""
        return [
            t.resource for t in self.ledger.tallies.values() if t.outcome in ("ok", "incomplete")
        ]

    @property
    def unfinished(self) -> list[str]:
        """Resources the request quota cut short: nothing of them was loaded, their cursors
        stayed, and the next run reads them again."""
        return self.ledger.unfinished

    @property
    def data_tables(self) -> dict[str, int]:
        return {t: n for t, n in sorted(self.table_rows.items()) if not t.startswith("_")}


class SyncFailed(Exception):
    """The run failed; `ledger` holds what it did until then, `__cause__` why."""

    def __init__(self, ledger: RunLedger, attempts: int) -> None:
        super().__init__("sync failed")
        self.ledger = ledger
        self.attempts = attempts


@contextmanager
def working_folder(settings: RunSettings) -> Iterator[str]:
    """dlt's working folder for one run: the given one, else a fresh one.

    dlt keeps a copy of the pipeline state (the cursors) in a working folder and another in the
    destination. A working folder that outlives its destination — `crmsync.duckdb` deleted, a
    new dataset — would make the next run read only the changes since a cursor whose data is
    gone. A fresh folder makes dlt restore the state from the destination itself, so the
    cursors always belong to the data they describe.
    """
    if settings.pipelines_dir:
        yield settings.pipelines_dir
        return
    with tempfile.TemporaryDirectory(prefix="crmsync-") as folder:
        try:
            yield folder
        finally:
            _publish(Path(folder) / settings.pipeline_name)


LOADED_DATA_FILES = ("*.parquet", "*.jsonl", "*.insert_values", "*.gz")
"""The data files of the run's load packages: already in the destination, and as large as the
load, so the copy for dlt's tools leaves them out (it keeps state, schemas, trace, package info)."""


def _publish(pipeline_folder: Path) -> None:
    """Leaves a copy of the run's working folder where dlt's own tools look for it
    (`dlt pipeline crmsync info`, `trace`, `schema`, `show`). The next run still starts from a
    fresh folder, restored from the destination: the copy is for reading, never for resuming."""
    if not pipeline_folder.is_dir():
        return
    target = Path(get_dlt_pipelines_dir()) / pipeline_folder.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pipeline_folder, target, ignore=shutil.ignore_patterns(*LOADED_DATA_FILES))


def make_pipeline(settings: RunSettings, pipelines_dir: str) -> dlt.Pipeline:
    """dlt's pipeline for `settings`, working in `pipelines_dir`: the one way a run, a reset, a
    tenant's last run and a dry run make it, so that they all name the same pipeline."""
    return dlt.pipeline(
        pipeline_name=settings.pipeline_name,
        destination=settings.destination,
        dataset_name=settings.dataset_name,
        pipelines_dir=pipelines_dir,
    )


def run_sync(
    connection: CrmConnection,
    settings: RunSettings | None = None,
    sync: SyncOptions | None = None,
    profile: Profile | None = None,
    policy: HttpPolicy | None = None,
    ledger: RunLedger | None = None,
) -> SyncResult:
    settings = settings or RunSettings()
    sync = sync or SyncOptions()
    policy = policy or load_policy()
    ledger = ledger or RunLedger(strict=sync.strict)
    with working_folder(settings) as pipelines_dir, defaults(RUN_DEFAULTS):
        return _run(
            make_pipeline(settings, pipelines_dir),
            connection,
            settings,
            sync,
            profile,
            policy,
            ledger,
        )


def _run(
    pipeline: dlt.Pipeline,
    connection: CrmConnection,
    settings: RunSettings,
    sync: SyncOptions,
    profile: Profile | None,
    policy: HttpPolicy,
    ledger: RunLedger,
) -> SyncResult:
    reader = PageReader(policy, ledger, sync.page_processes if sync.arrow_pages else 0)
    pacer = reader.session.budget.pacer
    ledger.holding = lambda: pacer.holding
    ledger.full_refresh = sync.full_refresh
    try:
        pipeline.sync_destination()
        source = crm_source(connection, reader, profile, sync)
        fields = list_fields(profile or built_in_profile())
        source = adapt_source(source, settings.destination, settings.table_format, fields)
        file_format = _file_format(pipeline, settings)
        _declare_runs_table(source.schema)
        enable_child_tables(source)
        _extract(pipeline, source, sync, file_format, policy, ledger)
        place_child_tables(pipeline, source)
        _leave_out(pipeline, source, ledger.unfinished)
    finally:
        reader.close()
        ledger.learnt_rate, ledger.paced_seconds = pacer.rate, pacer.waited_seconds
    ledger.finish()
    try:
        staged_rows = _normalize_with_ledger(pipeline, ledger, file_format)
        file_bytes, columns = _load_file_bytes(pipeline), _widest_table(pipeline)
        with defaults(load_defaults(pipeline, staged_rows, file_format, file_bytes, columns)):
            info = pipeline.load()
    except PipelineStepFailed as error:
        ledger.finish(ledger.resources)
        raise SyncFailed(ledger, policy.max_retries + 1) from error
    settle(pipeline)
    table_rows = table_row_counts(pipeline)
    return SyncResult(ledger, staged_rows, table_rows, info)


class NothingToReset(ValueError):
    """No sync has loaded into this destination and dataset yet."""


def reset_resources(
    settings: RunSettings, resources: Sequence[str], confirm: Callable[[list[str]], bool]
) -> list[str]:
    """Drops the tables and the cursors of `resources`, so that their next sync is a full one.

    dlt's own drop (what `dlt pipeline drop` runs) does it as a load of its own: the tables
    go and the resources' state is reset in the destination together. `confirm` is shown the
    tables first; returns the tables dropped (none if not confirmed).
    """
    with working_folder(settings) as pipelines_dir:
        pipeline = make_pipeline(settings, pipelines_dir)
        pipeline.sync_destination()
        if not pipeline.default_schema_name:
            raise NothingToReset(
                f"nothing to reset: no sync has loaded into {settings.destination}, dataset"
                f" {settings.dataset_name} yet"
            )
        drop = pipeline_drop(pipeline, resources=list(resources))
        tables = sorted(drop.info["tables"])
        if not confirm(tables):
            return []
        drop()
        return tables


def _extract(
    pipeline: dlt.Pipeline,
    source: DltSource,
    sync: SyncOptions,
    file_format: str | None,
    policy: HttpPolicy,
    ledger: RunLedger,
) -> None:
    try:
        with defaults(EXTRACT_DEFAULTS):
            pipeline.extract(
                source,
                refresh="drop_data" if sync.full_refresh else None,
                loader_file_format=file_format,  # type: ignore[arg-type]
            )
    except PipelineStepFailed as error:
        failed = {e.pipe_name for e in causes(error) if isinstance(e, PipeException)}
        ledger.finish(failed or ledger.resources)
        _store_ledger(pipeline, ledger, file_format)
        raise SyncFailed(ledger, policy.max_retries + 1) from error


def _leave_out(pipeline: dlt.Pipeline, source: DltSource, resources: Sequence[str]) -> None:
    """Removes the records of `resources`, reads the request quota cut short, from the load
    just extracted: none of a partial read lands, so no table is replaced with part of its
    records (dlt truncates only the tables a load has files for), and the cursor the read held
    (`ResourceObserver.quota_reached`) is the one its next run starts from."""
    tables = set()
    for name in resources:
        table = source.resources[name].table_name if name in source.resources else name
        tables.add(
            source.schema.naming.normalize_table_identifier(
                table if isinstance(table, str) else name
            )
        )
    if not tables:
        return
    for load_id in pipeline.list_extracted_load_packages():
        for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]:
            table = job.job_file_info.table_name
            if table in tables or any(table.startswith(f"{t}__") for t in tables):
                Path(job.file_path).unlink()


def _normalize_with_ledger(
    pipeline: dlt.Pipeline, ledger: RunLedger, file_format: str | None
) -> dict[str, int]:
    """Normalizes the data with this run's ledger in its package; the rows per table staged.

    The ledger is only known once the data is extracted: its rows join the data's package as a
    Parquet file of `_crmsync_runs` (`place_in_extracted_package`), so that they commit with the
    data in one load. A second extract, as on a failed run (`_store_ledger`), would be a second
    package, with its own normalize and load (0.4 s of every run, measured); and one extract of
    both would empty `_crmsync_runs` on a full refresh, as dlt's `drop_data` applies to every
    resource of the call, while the placed file is no resource's.
    """
    extracted = pipeline.list_extracted_load_packages()
    if not extracted:  # nothing extracted at all: the ledger is a package of its own
        _extract_ledger(pipeline, ledger, file_format)
    else:
        with tempfile.TemporaryDirectory(prefix="crmsync-ledger-") as folder:
            path = str(Path(folder) / f"{RUNS_TABLE}.parquet")
            pq.write_table(_ledger_table(ledger, load_id=extracted[-1]), path)
            place_in_extracted_package(pipeline, extracted[-1], RUNS_TABLE, path)
    pipeline.normalize()
    return _staged_rows(pipeline)


def _ledger_table(ledger: RunLedger, load_id: str | None = None) -> pa.Table:
    """The ledger's rows as an Arrow table in `RUNS_COLUMNS`' types, each with a row key as
    dlt's normalizer gives one (`_crmsync_runs` tables it made require it), and with
    `load_id`, the load it joins, where it is placed rather than extracted."""
    rows = ledger.rows()
    fields = [
        pa.field(name, arrow_type(column), column.get("nullable", True))
        for name, column in RUNS_COLUMNS.items()
    ]
    arrays = [pa.array([row[f.name] for row in rows], f.type) for f in fields]
    fields.append(pa.field(C_DLT_ID, pa.string(), nullable=False))
    arrays.append(row_keys(len(rows)))
    if load_id is not None:
        fields.append(pa.field(C_DLT_LOAD_ID, pa.string(), nullable=False))
        arrays.append(pa.array([load_id] * len(rows), pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _declare_runs_table(schema: Schema) -> None:
    """`_crmsync_runs` in the data's schema before the extract, as the ledger's own extract would
    declare it (with the load id and row key dlt's normalizer gives its rows): the ledger's
    rows, placed in the package once extracted, need their table in the schema the package was
    extracted with (a schema changed after it makes dlt warn that the two differ). The table
    belongs to no resource, so that `drop_data` (a full refresh) leaves its rows."""
    if RUNS_TABLE in schema.tables:
        return
    columns = [cast(TColumnSchema, {"name": n, **c}) for n, c in RUNS_COLUMNS.items()]
    columns.append({"name": C_DLT_LOAD_ID, "data_type": "text", "nullable": False})
    columns.append(
        {"name": C_DLT_ID, "data_type": "text", "nullable": False, "unique": True, "row_key": True}
    )
    schema.update_table(new_table(RUNS_TABLE, write_disposition="append", columns=columns))


def _staged_rows(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows per table in the load just normalized."""
    normalize_info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    return dict(normalize_info.row_counts) if normalize_info else {}


def _load_file_bytes(pipeline: dlt.Pipeline) -> list[int]:
    """The size on disk of each file the load will read."""
    return [
        job.file_size
        for load_id in pipeline.list_normalized_load_packages()
        for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]
    ]


def _widest_table(pipeline: dlt.Pipeline) -> int:
    """The columns of the pipeline's widest table."""
    return max(
        (len(t["columns"]) for s in pipeline.schemas.values() for t in s.data_tables()),
        default=0,
    )


def _file_format(pipeline: dlt.Pipeline, settings: RunSettings) -> str | None:
    """Parquet where the destination takes it: the fast path's tables pass straight through,
    and DuckDB's default (SQL inserts) needs gigabytes of memory for a large CRM.

    A destination may take a format only with an optional driver (PostgreSQL takes Parquet
    through ADBC): its capabilities' selector says which formats it takes here. Parquet asked
    of it without the driver, dlt would warn of every table on every run, then fall back."""
    if settings.loader_file_format:
        return settings.loader_file_format
    capabilities = pipeline.destination.capabilities()
    supported = capabilities.supported_loader_file_formats
    if capabilities.loader_file_format_selector is not None:
        _, supported = capabilities.loader_file_format_selector(
            capabilities.preferred_loader_file_format,
            supported,
            table_schema={"name": RUNS_TABLE, "columns": {}},
        )
    return "parquet" if "parquet" in supported else None


def _extract_ledger(pipeline: dlt.Pipeline, ledger: RunLedger, file_format: str | None) -> None:
    """The ledger as a load package of its own, in the run's file format (a `_crmsync_runs` of
    the filesystem destination holds one format, as the placed ledger's rows are Parquet)."""
    pipeline.extract(
        _ledger_table(ledger),
        table_name=RUNS_TABLE,
        write_disposition="append",
        columns=RUNS_COLUMNS,
        loader_file_format=file_format,  # type: ignore[arg-type]
        schema=pipeline.default_schema if pipeline.default_schema_name else None,  # type: ignore[arg-type]
    )


def _store_ledger(pipeline: dlt.Pipeline, ledger: RunLedger, file_format: str | None) -> None:
    """Appends a failed run's ledger to `_crmsync_runs`; a failure here never hides the run's."""
    try:
        _extract_ledger(pipeline, ledger, file_format)
        pipeline.normalize()
        pipeline.load()
    except PipelineStepFailed as error:
        logger.warning(f"could not store the run ledger in {RUNS_TABLE}: {error.exception}")
