"""Wide records, huge fields and huge pages load into DuckDB under crmsync's memory limit,
which grows with the bytes and columns of the load, not only its rows (`load_defaults`)."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import pytest

from crmsync.reading.source import SyncOptions
from tests.hostile_values import RecordServer, record
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import fast_policy, sync


def text(size: int, seed: int) -> str:
    """`size` characters that do not compress away (Parquet would shrink a repeated pattern)."""
    return base64.b64encode(random.Random(seed).randbytes(size * 3 // 4 + 3)).decode()[:size]


CASES: dict[str, list[dict[str, Any]]] = {
    "5000-custom-fields": [
        record(i, custom_fields={f"field_{k}": i * k for k in range(5000)}) for i in range(1, 101)
    ],
    "30-MB-field": [record(1, note=text(30_000_000, 1)), record(2, note="short")],
    "50-MB-page": [record(i, note=text(100_000, i)) for i in range(1, 501)],
}


@pytest.mark.parametrize("records", list(CASES.values()), ids=list(CASES))
def test_wide_and_long_records_load_whole(workdir: Path, records: list[dict[str, Any]]) -> None:
    db = DuckDBDestination(workdir)
    with RecordServer("contacts", records).running() as server:
        result = sync(
            server,  # type: ignore[arg-type]
            db,
            SyncOptions(resources=("contacts",)),
            policy=fast_policy(read_timeout=60.0),
        )

    assert result.table_rows["contacts"] == len(records)
    columns = db.column_types("contacts")
    if "note" in columns:
        lengths = db.query("select id, length(note) from crm.contacts order by id")
        assert lengths == [(r["id"], len(r["note"])) for r in records]
    else:
        assert sum(name.startswith("custom_fields__field_") for name in columns) == 5000
        assert db.query("select custom_fields__field_4999 from crm.contacts where id = 100") == [
            (100 * 4999,)
        ]
