"""Contender (c): a hand-written loader with no dlt, the lower bound for the other two.

One keep-alive ``requests.Session``, ``orjson`` to parse, ``pyarrow`` to build columns and
DuckDB to store them. Resources are read one after the other, pages in order, with
``include_deleted=true`` as crmsync reads them; soft-deleted records are then left out, which
is what crmsync's merge with ``hard_delete`` leaves in its tables. Nested objects become
``parent__child`` columns (one level); lists, deeper objects and ``payload`` are stored as
JSON text. No schema hints, no state, no incremental cursor: the least work that lands the
same tables. A 429 is waited out for its ``Retry-After`` and the page asked for again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import requests
from crm_api import ENDPOINTS, PAGE_SIZE, PASSWORD, USERNAME

DATABASE = "hand.duckdb"
SCHEMA = "crm"
PAGES_PER_BATCH = 20
"""Pages gathered into one Arrow table (10,000 records): fewer, larger inserts into DuckDB."""
TIMEOUT_SECONDS = 60
JSON_COLUMNS = frozenset({"payload"})
INCLUDE_DELETED = {"include_deleted": "true"}


def run(base_url: str, workdir: Path) -> int:
    """Loads every resource; returns the requests it made."""
    requests_made = 0
    with requests.Session() as session, duckdb.connect(str(workdir / DATABASE)) as db:
        session.auth = (USERNAME, PASSWORD)
        db.execute(f"CREATE SCHEMA {SCHEMA}")
        for name in ENDPOINTS:
            requests_made += load_resource(session, db, base_url, name)
    return requests_made


def load_resource(
    session: requests.Session, db: duckdb.DuckDBPyConnection, base_url: str, name: str
) -> int:
    """Loads one resource in batches of pages; returns how many pages it requested."""
    pages = 0
    batch: list[dict[str, Any]] = []
    for records in read_pages(session, base_url, name):
        pages += 1
        batch.extend(flatten(record) for record in records if record.get("deleted_at") is None)
        if pages % PAGES_PER_BATCH == 0:
            insert(db, name, batch)
            batch = []
    insert(db, name, batch)
    return pages


def read_pages(
    session: requests.Session, base_url: str, name: str
) -> Iterator[list[dict[str, Any]]]:
    """Every page in order; the last is the first with fewer records than asked for."""
    endpoint = ENDPOINTS[name]
    page = 1
    while True:
        params = {endpoint.page_param: page, endpoint.limit_param: PAGE_SIZE, **INCLUDE_DELETED}
        response = session.get(base_url + endpoint.path, params=params, timeout=TIMEOUT_SECONDS)
        if response.status_code == 429:  # the same page again, as soon as the CRM says
            time.sleep(int(response.headers.get("Retry-After", "1")))
            continue
        response.raise_for_status()
        records: list[dict[str, Any]] = orjson.loads(response.content)[name]
        yield records
        if len(records) < PAGE_SIZE:
            return
        page += 1


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and key not in JSON_COLUMNS:
            for child, child_value in value.items():
                row[f"{key}__{child}"] = as_scalar(child_value)
        else:
            row[key] = orjson.dumps(value).decode() if key in JSON_COLUMNS else as_scalar(value)
    return row


def as_scalar(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, list | dict) else value


def insert(db: duckdb.DuckDBPyConnection, name: str, rows: list[dict[str, Any]]) -> None:
    """Appends rows to ``SCHEMA.name``, creating the table or adding columns as needed."""
    if not rows:
        return
    batch = arrow_table(rows)
    table = f'{SCHEMA}."{name}"'
    db.register("batch", batch)
    try:
        existing = {column for (column, *_) in db.execute(f"DESCRIBE {table}").fetchall()}
    except duckdb.CatalogException:
        db.execute(f"CREATE TABLE {table} AS SELECT * FROM batch")
    else:
        for column, column_type, *_ in db.execute("DESCRIBE SELECT * FROM batch").fetchall():
            if column not in existing:
                db.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {column_type}')
        db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM batch")
    finally:
        db.unregister("batch")


def arrow_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Columns for every key any row has (records may omit nullable fields).

    A column with only nulls in this batch is typed text, so DuckDB does not create it with
    its NULL type, which no later batch could insert values into.
    """
    keys = dict.fromkeys(key for row in rows for key in row)
    columns = {key: pa.array([row.get(key) for row in rows]) for key in keys}
    return pa.table(
        {
            key: column.cast(pa.string()) if pa.types.is_null(column.type) else column
            for key, column in columns.items()
        }
    )
