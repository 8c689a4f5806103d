"""Which resources expect dlt's Arrow hint warning (its filter is pinned in test_dlt_internals)."""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.reading.arrow_pages import arrow_type
from crmsync.reading.json_text_hints import arrow_only_differs_in_json

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
