"""The destinations the end-to-end suite runs against, behind one small interface.

A test writes its SQL once with `{accounts}`-style placeholders; each destination says how a
table of the `crm` dataset is named in its own SQL dialect and how to run a query there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from crmsync.sync import RunSettings


@dataclass
class DuckDBDestination:
    """The default: `./crmsync.duckdb`, dataset `crm`."""

    workdir: Path
    name: str = "duckdb"
    merges: bool = True

    def settings(self) -> RunSettings:
        return RunSettings(pipelines_dir=str(self.workdir / "pipelines"))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.workdir / "crmsync.duckdb"), read_only=True) as connection:
            return connection.execute(self._expand(sql)).fetchall()

    def tables(self) -> set[str]:
        rows = self.query(
            "select table_name from information_schema.tables where table_schema = 'crm'"
        )
        return {row[0] for row in rows}

    def column_types(self, table: str) -> dict[str, str]:
        rows = self.query(
            "select column_name, data_type from information_schema.columns"
            f" where table_schema = 'crm' and table_name = '{table}'"
        )
        return {name: data_type for name, data_type in rows}

    def _expand(self, sql: str) -> str:
        return sql.format_map(_TableNames("crm."))

    def ids(self, table: str) -> list[int]:
        """Every id in `table`, sorted, duplicates kept (so a duplicate shows)."""
        return sorted(row[0] for row in self.query(f"select id from {{{table}}}"))


class _TableNames(dict[str, str]):
    """`{accounts}` in a query becomes the destination's name for that table."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __missing__(self, key: str) -> str:
        return f"{self.prefix}{key}"
