"""dlt's Arrow hint warning: which resources expect it, and the dlt behaviour that is pinned."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from crmsync.reading.arrow_pages import arrow_type
from crmsync.reading.json_text_hints import (
    ARROW_HINTS_WARNING,
    JSON_TEXT_WARNINGS,
    arrow_only_differs_in_json,
)

PAYLOAD = {"data_type": "json"}
ID = {"data_type": "bigint", "primary_key": True, "nullable": False}


@pytest.mark.parametrize(
    ("columns", "required", "expected"),
    [
        ({"id": ID, "payload": PAYLOAD}, {"id"}, True),
        (
            {"id": ID, "at": {"data_type": "timestamp", "timezone": True}, "payload": PAYLOAD},
            {"id"},
            True,
        ),
        ({"id": ID}, {"id"}, False),
        ({"id": ID, "payload": PAYLOAD}, set(), False),
        ({"at": {"data_type": "timestamp", "precision": 3}, "payload": PAYLOAD}, set(), False),
        ({"on": {"data_type": "date"}, "payload": PAYLOAD}, set(), False),
        (
            {"price": {"data_type": "decimal", "precision": 10, "scale": 2}, "payload": PAYLOAD},
            set(),
            True,
        ),
    ],
    ids=["json", "timestamp", "no-json", "nullable", "precision", "unmapped-type", "decimal"],
)
def test_only_json_columns_may_differ(
    columns: dict[str, dict[str, Any]], required: set[str], expected: bool
) -> None:
    assert arrow_only_differs_in_json(columns, arrow_type, required) is expected


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
    resource = dlt.resource([table], name=name, columns={"payload": PAYLOAD})
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
