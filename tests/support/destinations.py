"""The destinations the end-to-end suite runs against, behind one small interface.

A test writes its SQL once, in DuckDB's dialect, with `{accounts}`-style placeholders; each
destination says how a table of its dataset is named (or scanned) and runs the query there:
DuckDB as is, PostgreSQL through sqlglot's translation, files through DuckDB over the Parquet
files or Delta tables. `column_types` answers in DuckDB's type names everywhere.

What a destination promises differs, and says so in three attributes a test can branch on:

- `merges`: a re-sync updates rows in place and removes records deleted in the CRM. False for
  plain Parquet files: dlt appends, so a record read twice is there twice, and a deleted one
  stays with `deleted_at` set. `current_ids` reads the current records either way (in an append
  log: each record's latest version, unless it is a deletion), `ids` every row as stored.
- `nested_tables`: lists land as child tables (`pipelines__stages`). False for Delta, where
  crmsync keeps them in-row as JSON (dlt 1.31 cannot delete from Delta tables with children).
- `json_type`: what `column_types` reports for a `json` column; files store JSON as text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import dlt
import duckdb
import sqlglot
from sqlglot import exp

from crmsync.loading.sync import DEFAULT_DATASET, RunSettings
from tests.support.postgres import PostgresServer


@dataclass
class Destination:
    """The interface; subclasses say where the data is and how to read it."""

    workdir: Path
    name: ClassVar[str] = "?"
    merges: ClassVar[bool] = True
    nested_tables: ClassVar[bool] = True
    json_type: ClassVar[str] = "JSON"

    def settings(self) -> RunSettings:
        raise NotImplementedError

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def tables(self) -> set[str]:
        """Every table of the dataset that holds data (dlt's own tables included)."""
        raise NotImplementedError

    def column_types(self, table: str) -> dict[str, str]:
        """Column name -> type, in DuckDB's names (`BIGINT`, `TIMESTAMP WITH TIME ZONE`, ...)."""
        raise NotImplementedError

    def ids(self, table: str) -> list[int]:
        """Every id in `table`, sorted, duplicates kept (so a duplicate shows)."""
        return sorted(row[0] for row in self.query(f"select id from {{{table}}}"))

    def current_ids(self, table: str, include_deleted: bool = False) -> list[int]:
        """The ids of the records `table` holds as current: `ids` where the destination merges;
        in an append log, each record's latest version, unless that version is a deletion
        (`include_deleted`: kept too, as a `--keep-deleted` run keeps them)."""
        if self.merges:
            return self.ids(table)
        return sorted(self.current_values(table, "id", include_deleted))

    def current_values(
        self, table: str, column: str, include_deleted: bool = False
    ) -> dict[int, Any]:
        """`column` of each current record (see `current_ids`), by id."""
        if self.merges:
            return dict(self.query(f"select id, {column} from {{{table}}}"))
        columns = self.column_types(table)
        order = "updated_at desc" + (", _dlt_load_id desc" if "_dlt_load_id" in columns else "")
        live = " and deleted_at is null" if "deleted_at" in columns and not include_deleted else ""
        rows = self.query(
            f"select id, value from (select id, {column} as value,"
            f" {'deleted_at' if live else 'null as deleted_at'},"
            f" row_number() over (partition by id order by {order}) as version from {{{table}}})"
            f" where version = 1{live}"
        )
        return dict(rows)

    def _pipelines_dir(self) -> str:
        return str(self.workdir / "pipelines")


@dataclass
class DuckDBDestination(Destination):
    """The default: `./crmsync.duckdb`, dataset `crm`."""

    name: ClassVar[str] = "duckdb"

    def settings(self) -> RunSettings:
        return RunSettings(pipelines_dir=self._pipelines_dir())

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.workdir / "crmsync.duckdb"), read_only=True) as connection:
            return connection.execute(self._expand(sql)).fetchall()

    def tables(self) -> set[str]:
        rows = self.query(
            "select table_name from information_schema.tables"
            f" where table_schema = '{DEFAULT_DATASET}'"
        )
        return {row[0] for row in rows}

    def column_types(self, table: str) -> dict[str, str]:
        rows = self.query(
            "select column_name, data_type from information_schema.columns"
            f" where table_schema = '{DEFAULT_DATASET}' and table_name = '{table}'"
        )
        return {name: data_type for name, data_type in rows}

    def _expand(self, sql: str) -> str:
        return sql.format_map(_TableNames(lambda table: f"{DEFAULT_DATASET}.{table}"))


_POSTGRES_TYPES = {
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "double precision": "DOUBLE",
    "real": "FLOAT",
    "boolean": "BOOLEAN",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "jsonb": "JSON",
    "json": "JSON",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "timestamp without time zone": "TIMESTAMP",
    "date": "DATE",
    "time without time zone": "TIME",
    "bytea": "BLOB",
}


@dataclass
class PostgresDestination(Destination):
    """A real PostgreSQL server; each test loads into its own schema (dlt's dataset)."""

    server: PostgresServer
    dataset: str = field(default_factory=lambda: f"crm_{uuid.uuid4().hex[:12]}")
    name: ClassVar[str] = "postgres"

    def settings(self) -> RunSettings:
        return RunSettings(
            destination=dlt.destinations.postgres(credentials=self.server.dsn),
            dataset_name=self.dataset,
            pipelines_dir=self._pipelines_dir(),
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self._execute(self._translate(sql))

    def tables(self) -> set[str]:
        rows = self._execute(
            "select table_name from information_schema.tables where table_schema = %s",
            (self.dataset,),
        )
        return {row[0] for row in rows}

    def column_types(self, table: str) -> dict[str, str]:
        rows = self._execute(
            "select column_name, data_type, numeric_precision, numeric_scale"
            " from information_schema.columns where table_schema = %s and table_name = %s",
            (self.dataset, table),
        )
        return {name: _duckdb_type(kind, p, s) for name, kind, p, s in rows}

    def _translate(self, sql: str) -> str:
        """DuckDB SQL to PostgreSQL; JSON paths read dlt's `jsonb` columns as `json`."""
        expanded = sql.format_map(_TableNames(lambda table: f'"{self.dataset}"."{table}"'))
        tree = sqlglot.parse_one(expanded, read="duckdb")

        def jsonb_as_json(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.JSONExtractScalar | exp.JSONExtract) and not isinstance(
                node.this, exp.Cast
            ):
                node.set("this", exp.cast(node.this, "json"))
            return node

        return tree.transform(jsonb_as_json).sql(dialect="postgres")

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.server.fetch(sql, params)


def _duckdb_type(kind: str, precision: int | None, scale: int | None) -> str:
    if kind == "numeric":
        return f"DECIMAL({precision},{scale})" if precision is not None else "DECIMAL"
    return _POSTGRES_TYPES.get(kind, kind.upper())


class NoDataError(LookupError):
    """The table has no data files (a SQL destination would say: no such table)."""


@dataclass
class FilesystemDestination(Destination):
    """Plain Parquet files under `<workdir>/lake`, read back with DuckDB's `read_parquet`."""

    name: ClassVar[str] = "parquet"
    merges: ClassVar[bool] = False
    json_type: ClassVar[str] = "VARCHAR"
    table_format: ClassVar[str | None] = None

    @property
    def lake(self) -> Path:
        return self.workdir / "lake"

    @property
    def dataset_dir(self) -> Path:
        return self.lake / DEFAULT_DATASET

    def settings(self) -> RunSettings:
        return RunSettings(
            destination=dlt.destinations.filesystem(bucket_url=self.lake.as_uri()),
            pipelines_dir=self._pipelines_dir(),
            table_format=self.table_format,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect() as connection:
            return connection.execute(self._expand(connection, sql)).fetchall()

    def tables(self) -> set[str]:
        if not self.dataset_dir.is_dir():
            return set()
        return {p.name for p in self.dataset_dir.iterdir() if self._has_data(p)}

    def column_types(self, table: str) -> dict[str, str]:
        with duckdb.connect() as connection:
            rows = connection.execute(
                f"describe select * from {self._scan(connection, table)}"
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def _expand(self, connection: duckdb.DuckDBPyConnection, sql: str) -> str:
        return sql.format_map(_TableNames(lambda table: self._scan(connection, table)))

    def _scan(self, connection: duckdb.DuckDBPyConnection, table: str) -> str:
        """The FROM expression for `table`: a scan of its files, or a registered Delta table."""
        folder = self.dataset_dir / table
        if (folder / "_delta_log").is_dir():
            from deltalake import DeltaTable

            # DuckDB's `delta` extension is a download; deltalake reads the same table via Arrow
            view = f"delta_{table}"
            connection.register(view, DeltaTable(str(folder)).to_pyarrow_dataset())
            return view
        files = sorted(str(f) for f in folder.glob("*") if f.is_file()) if folder.is_dir() else []
        parquet = [f for f in files if f.endswith(".parquet")]
        jsonl = [f for f in files if ".jsonl" in f]
        if parquet:
            return f"read_parquet({parquet!r}, union_by_name = true)"
        if jsonl:
            return f"read_json({jsonl!r}, format = 'newline_delimited', union_by_name = true)"
        raise NoDataError(f"{table}: no data files in {folder}")

    @staticmethod
    def _has_data(folder: Path) -> bool:
        if (folder / "_delta_log").is_dir():
            return True
        return folder.is_dir() and any(
            f.name.endswith(".parquet") or ".jsonl" in f.name for f in folder.iterdir()
        )


@dataclass
class DeltaDestination(FilesystemDestination):
    """Delta tables under `<workdir>/lake` (dlt's `table_format="delta"`): merge and deletes."""

    name: ClassVar[str] = "delta"
    merges: ClassVar[bool] = True
    nested_tables: ClassVar[bool] = False
    table_format: ClassVar[str | None] = "delta"


class _TableNames(dict[str, str]):
    """`{accounts}` in a query becomes the destination's name (or scan) for that table."""

    def __init__(self, name: Any) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, key: str) -> str:
        return str(self.name(key))
