"""Delta tables after a load: the deletions dlt 1.31 leaves undone, and rows counted without
DuckDB's `delta` extension. Tables in any other format pass through unchanged."""

from __future__ import annotations

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.utils import get_first_column_name_with_prop, get_table_format


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
