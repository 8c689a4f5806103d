"""Each reliance of crmsync on dlt behaviour no public API offers (`crmsync.dlt_internals`),
pinned: every test fails when dlt changes what crmsync relies on."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
import urllib3
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.schema.typing import MERGE_DISPOSITION_HINTS
from dlt.sources.helpers.rest_client.paginators import SinglePagePaginator
from dlt.sources.rest_api import rest_api_resources
from requests.adapters import HTTPAdapter

from crmsync.dlt_internals import (
    ARROW_HINTS_WARNING,
    DEDUPLICATED_HINT,
    JSON_TEXT_WARNINGS,
    SharedThroughConfig,
    active_pipeline,
    missing_settings,
    place_in_extracted_package,
    resource_steps,
)

BASE_URL = "http://crm.test"
SRC = Path(__file__).resolve().parents[1] / "src"


class _CannedPages(HTTPAdapter):
    """Answers without a network: `/things` lists two things, each thing's details one record."""

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        path = str(request.path_url)
        page = (
            b'[{"id": 1}, {"id": 2}]'
            if path == "/things"
            else b'[{"detail": "%s"}]' % (path.encode())
        )
        body = urllib3.HTTPResponse(
            body=io.BytesIO(page),
            status=200,
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )
        return self.build_response(request, body)


class _CannedSession(requests.Session):
    """Answers from `_CannedPages`, counting the deep copies made of it and noting the thread
    each request is sent from."""

    def __init__(self) -> None:
        super().__init__()
        self.copies = 0
        self.threads: list[str] = []
        self.mount("http://", _CannedPages())

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.threads.append(threading.current_thread().name)
        return super().send(request, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> _CannedSession:
        self.copies += 1
        return self


class _Tally:
    def __init__(self) -> None:
        self.pages = 0


class _SharedTally(SharedThroughConfig, _Tally):
    pass


class _Counting(SinglePagePaginator):
    """A paginator that counts the pages it sees into `tally`, as crmsync's count into the
    run's ledger."""

    def __init__(self, tally: _Tally) -> None:
        super().__init__()
        self.tally = tally

    def update_state(self, response: requests.Response, data: list[Any] | None = None) -> None:
        self.tally.pages += 1
        super().update_state(response, data)


def _read(session: requests.Session, details_paginator: Any = "single_page") -> list[Any]:
    things = {"name": "things", "endpoint": {"path": "/things", "paginator": "single_page"}}
    details = {
        "name": "details",
        "endpoint": {
            "path": "/things/{resources.things.id}/details",
            "paginator": details_paginator,
        },
    }
    config: Any = {
        "client": {"base_url": BASE_URL, "session": session},
        "resources": [things, details],
    }
    resources = {r.name: r for r in rest_api_resources(config)}
    return list(resources["details"])


def test_rest_api_deep_copies_the_config_it_is_given() -> None:
    """So the session (which holds locks, and cannot be copied) must survive `deepcopy`."""
    session = _CannedSession()

    _read(session)

    assert session.copies >= 1


def test_rest_api_reads_each_parent_record_with_a_copy_of_the_paginator() -> None:
    """So what a paginator shares with the run (crmsync's ledger observer, its look-ahead)
    would count into copies."""
    tally = _Tally()

    details = _read(_CannedSession(), _Counting(tally))

    assert len(details) == 2
    assert tally.pages == 0


def test_what_a_copied_paginator_shares_through_config_stays_the_runs() -> None:
    tally = _SharedTally()

    _read(_CannedSession(), _Counting(tally))

    assert tally.pages == 2


def test_the_active_pipeline_is_the_one_last_made(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(pipeline_name="crmsync_pin", pipelines_dir=str(tmp_path))

    assert active_pipeline() is pipeline


def test_without_a_pipeline_none_is_active_and_none_is_made() -> None:
    code = (
        "from crmsync.dlt_internals import active_pipeline;"
        "print(active_pipeline() is None, active_pipeline() is None)"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )

    assert done.stdout.split() == ["True", "True"]


def _missing(tmp_path: Path) -> ConfigFieldMissingException:
    pipeline = dlt.pipeline(
        pipeline_name="crmsync_pin", destination="postgres", pipelines_dir=str(tmp_path)
    )
    with pytest.raises(ConfigFieldMissingException) as raised:
        pipeline.destination_client()
    return raised.value


def test_wholly_missing_credentials_are_one_setting(workdir: Path) -> None:
    assert missing_settings(_missing(workdir)) == [("credentials",)]


def test_partly_set_credentials_name_each_missing_field(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS__HOST", "db.example.com")

    assert sorted(missing_settings(_missing(workdir))) == [
        ("credentials", "database"),
        ("credentials", "password"),
        ("credentials", "username"),
    ]


def test_the_public_deduplicated_option_is_the_hint() -> None:
    assert MERGE_DISPOSITION_HINTS["deduplicated"] == DEDUPLICATED_HINT


@pytest.mark.parametrize(("hinted", "rows"), [(True, 2), (False, 1)])
def test_a_merge_hinted_deduplicated_skips_its_dedup_pass(
    tmp_path: Path, hinted: bool, rows: int
) -> None:
    """A load of one key twice: both rows land when the hint says each key is there once."""
    pipeline = dlt.pipeline(
        pipeline_name="crmsync_pin",
        destination=dlt.destinations.duckdb(str(tmp_path / "things.duckdb")),
        dataset_name="pin",
        pipelines_dir=str(tmp_path),
    )
    things = dlt.resource(
        [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}],
        name="things",
        primary_key="id",
        write_disposition="merge",
    )
    if hinted:
        things.apply_hints(additional_table_hints={DEDUPLICATED_HINT: True})

    pipeline.run(things)

    with pipeline.sql_client() as client:
        assert client.execute_sql("select count(*) from things")[0][0] == rows


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def dlt_warnings() -> Iterator[list[str]]:
    """What dlt's logger lets through (it prints itself and does not propagate)."""
    logger = logging.getLogger("dlt")
    handler = _Captured()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def _extract_json_as_text(workdir: Path, name: str) -> None:
    table = pa.table({"id": [1], "payload": ['{"a": 1}']})
    resource = dlt.resource([table], name=name, columns={"payload": {"data_type": "json"}})
    pipeline = dlt.pipeline(f"pin_{name}", pipelines_dir=str(workdir), destination="duckdb")
    pipeline.extract(resource)


def test_dlt_warns_of_json_held_as_text_in_the_words_matched(
    workdir: Path, dlt_warnings: list[str]
) -> None:
    """Pins dlt: when this fails, dlt reads JSON text as `json` (drop the filter) or words the
    warning otherwise (update `ARROW_HINTS_WARNING`)."""
    _extract_json_as_text(workdir, "unregistered")

    expected = ARROW_HINTS_WARNING.format(resource="unregistered")
    assert [m for m in dlt_warnings if m.startswith(expected)] != [], dlt_warnings


def test_a_registered_resource_s_warning_is_dropped_and_no_other(
    workdir: Path, dlt_warnings: list[str]
) -> None:
    JSON_TEXT_WARNINGS.expect("registered", True)
    try:
        _extract_json_as_text(workdir, "registered")
        _extract_json_as_text(workdir, "other")
    finally:
        JSON_TEXT_WARNINGS.expect("registered", False)

    assert [m.split(",")[0] for m in dlt_warnings] == ["In resource: other"]


@pytest.mark.parametrize("parallelize_after", [False, True], ids=["rest-api-flag", "after-build"])
def test_rest_api_parallelized_reads_on_the_main_thread_unless_parallelized_once_built(
    parallelize_after: bool, tmp_path: Path
) -> None:
    """dlt 1.31's rest_api drops `parallelized` (the parallel wrapper is replaced by the clone
    binding makes); `crmsync.reading.source._take_parallelized` calls `parallelize` on the
    built resource instead. When the flag works, the workaround can go."""
    session = _CannedSession()
    things = {"name": "things", "parallelized": True, "endpoint": {"path": "/things"}}
    config: Any = {"client": {"base_url": BASE_URL, "session": session}, "resources": [things]}
    (resource,) = rest_api_resources(config)
    if parallelize_after:
        resource.parallelize()

    dlt.pipeline("pinned_parallel", pipelines_dir=str(tmp_path)).extract(resource)

    on_main = [name == threading.main_thread().name for name in session.threads]
    assert on_main == [not parallelize_after]


def test_a_parquet_file_placed_in_an_extracted_package_loads_with_it(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        "placed",
        destination=dlt.destinations.duckdb(str(tmp_path / "placed.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    pipeline.extract([{"id": 1}], table_name="records")
    (load_id,) = pipeline.list_extracted_load_packages()
    pipeline.default_schema.update_table(
        {"name": "notes", "columns": {"note": {"name": "note", "data_type": "text"}}}
    )
    path = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note": ["placed", "too"]}), path)

    place_in_extracted_package(pipeline, load_id, "notes", str(path))
    pipeline.normalize()
    info = pipeline.load()

    with pipeline.sql_client() as client:
        notes = client.execute_sql("select note from notes order by note")
        records = client.execute_sql("select id from records")
    assert notes == [("placed",), ("too",)] and records == [(1,)]
    assert info.loads_ids == [load_id] and not path.exists()


def test_a_step_added_to_a_resource_is_among_its_steps_once_resources_are_selected() -> None:
    @dlt.source
    def two() -> Any:
        return [dlt.resource([1], name="one"), dlt.resource([2], name="other")]

    def step(item: Any) -> Any:
        return item

    source = two()
    source.resources["one"].add_map(step)

    selected = source.with_resources("one")

    assert step in [getattr(s, "_f", s) for s in resource_steps(selected.resources["one"])]
