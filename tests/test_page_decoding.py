"""Pages decoded in a worker process arrive as the tables the in-process path makes, or as
dicts wherever a table cannot stand for them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from crmsync.reading.arrow_pages import TypedPages
from crmsync.reading.first_read import DeletedRecordFilter
from crmsync.reading.page import Page
from crmsync.reading.page_decoding import MalformedBody, ProcessDecoder

COLUMNS: dict[str, Any] = {
    "id": {"data_type": "bigint", "nullable": False},
    "updated_at": {"data_type": "timestamp", "timezone": True},
    "payload": {"data_type": "json"},
}
PAGE = {
    "contacts": [
        {"id": 1, "updated_at": "2024-05-01T09:00:00Z", "payload": {"a": [1]}, "x": {"y": 2}},
        {"id": 2, "updated_at": "2024-05-02T09:00:00Z", "payload": None, "x": {"y": None}},
    ],
    "meta": {"page": 1, "limit": 500, "total": 2},
}
WITH_LISTS = {"contacts": [{"id": 3, "stages": [{"id": 1}]}], "meta": {"total": 1}}
"""A list of objects: dlt makes a child table of it, which only its normalizer makes."""


@pytest.fixture
def decoder() -> Iterator[ProcessDecoder]:
    decoder = ProcessDecoder()
    decoder.register("http://127.0.0.1:9/api/contacts", "contacts", COLUMNS)
    yield decoder
    decoder.close()


def without_row_keys(table: pa.Table) -> pa.Table:
    return table.drop_columns(["_dlt_id"])


def test_a_worker_decodes_a_page_into_the_table_the_in_process_path_makes(
    decoder: ProcessDecoder,
) -> None:
    decoded = decoder("/api/contacts", orjson.dumps(PAGE))

    in_process = TypedPages(COLUMNS)(Page.of(orjson.loads(orjson.dumps(PAGE))["contacts"]))
    table = decoded["contacts"].records
    assert decoded["meta"] == PAGE["meta"]
    assert without_row_keys(table).equals(without_row_keys(in_process))
    assert table.column("_dlt_id").null_count == 0
    assert decoded["contacts"].served == 2


def test_a_worker_drops_the_soft_deleted_records_of_a_first_read(decoder: ProcessDecoder) -> None:
    columns = {**COLUMNS, "deleted_at": {"data_type": "timestamp", "hard_delete": True}}
    decoder.register("http://h/accounts", "accounts", columns, DeletedRecordFilter(columns))
    page = {
        "accounts": [{"id": 1, "deleted_at": None}, {"id": 2, "deleted_at": "2024-05-01T09:00:00Z"}]
    }

    decoded = decoder("/accounts", orjson.dumps(page))

    table = decoded["accounts"].records
    assert table.column("id").to_pylist() == [1]
    assert decoded["accounts"].served == 2  # what the CRM served, as the paginator counts


def test_a_resource_whose_pages_hold_lists_goes_on_as_dicts_for_good(
    decoder: ProcessDecoder,
) -> None:
    assert decoder("/api/contacts", orjson.dumps(WITH_LISTS)) == WITH_LISTS
    assert decoder("/api/contacts", orjson.dumps(PAGE)) == PAGE


@pytest.mark.parametrize("path", ["/contacts", "/api/events"])
def test_pages_of_unregistered_paths_are_decoded_as_dicts(
    decoder: ProcessDecoder, path: str
) -> None:
    assert decoder(path, orjson.dumps(PAGE)) == PAGE


def test_a_body_that_is_not_json_is_malformed_wherever_it_is_decoded(
    decoder: ProcessDecoder,
) -> None:
    with pytest.raises(MalformedBody, match="unexpected end of data"):
        decoder("/api/contacts", b'{"contacts": [1,')
    with pytest.raises(MalformedBody, match="unexpected end of data"):
        decoder("/elsewhere", b'{"contacts": [1,')


def test_pages_are_decoded_in_process_once_the_worker_is_gone(decoder: ProcessDecoder) -> None:
    for worker in decoder._workers:
        worker._process.kill()
        worker._process.wait()

    assert decoder("/api/contacts", orjson.dumps(PAGE)) == PAGE


def test_the_worker_never_runs_the_callers_script_again(tmp_path: Path) -> None:
    """A script without a main guard: a `multiprocessing` worker would import it anew."""
    script = tmp_path / "no_main_guard.py"
    script.write_text(
        "from pathlib import Path\n"
        "from crmsync.reading.page_decoding import ProcessDecoder\n"
        f"with open({str(tmp_path / 'runs')!r}, 'a') as runs:\n"
        "    runs.write('run\\n')\n"
        "decoder = ProcessDecoder()\n"
        "decoder.register('http://h/contacts', 'contacts', {})\n"
        "table = decoder('/contacts', b'{\"contacts\": [{\"id\": 1}]}')['contacts'].records\n"
        "print(table.num_rows)\n"
        "decoder.close()\n"
    )

    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout == "1\n"
    assert (tmp_path / "runs").read_text() == "run\n"


def test_pages_are_decoded_in_process_when_no_worker_can_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    decoder = ProcessDecoder()
    decoder.register("http://127.0.0.1:9/api/contacts", "contacts", COLUMNS)

    assert decoder("/api/contacts", orjson.dumps(PAGE)) == PAGE
    decoder.close()
