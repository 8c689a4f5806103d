"""The one dlt warning a crmsync run expects, and the rule that tells it from a real one.

dlt holds a `json` column in Arrow as JSON text: that is what its own normalizer writes and what
`dlt.common.libs.pyarrow.get_py_arrow_datatype` gives for `json`. Yet its extract reads a text
column back as `text` and, finding the resource's `json` hint, logs a `WARNING` ("several
column hints were different ... It is up to destination to coerce") on every run that loads a
`json` column from Arrow tables (the bundled contract's `events.payload`), although nothing is
coerced: the column lands as `json`, its values as they came. No Arrow type reads back as `json`
but a nested one (a struct, which would type every payload alike), and a `text` column cannot
become `json` later, so the warning is dropped here instead — for a resource only when every
other hinted column of its Arrow tables reads back exactly as hinted (`arrow_only_differs_in_json`),
so that a real difference, such as a timestamp hinted with `precision = 3`, still warns. The
filter itself, which matches dlt's words, is `crmsync.dlt_internals.JSON_TEXT_WARNINGS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

_COMPARED = ("data_type", "precision", "scale", "timezone")


def arrow_only_differs_in_json(
    columns: Mapping[str, Mapping[str, Any]],
    arrow_type: Callable[[Mapping[str, Any]], pa.DataType | None],
    required: set[str],
) -> bool:
    """Whether the Arrow tables of a resource with these column hints (`columns`, as dlt
    computes them) differ from the hints, as dlt's extract compares them, in `json` columns
    alone: there is one, and every other hinted column has the type `arrow_type` gives it and
    reads back with the same hints, and a column dlt holds not nullable is `required`."""
    json_columns = [name for name, hint in columns.items() if hint.get("data_type") == "json"]
    if not json_columns:
        return False
    for name, hint in columns.items():
        if name in json_columns:
            continue
        if hint.get("nullable") is False and name not in required:
            return False
        if hint.get("data_type") is None:
            continue
        target = arrow_type(hint)
        if target is None:
            return False
        read_back: Mapping[str, Any] = get_column_type_from_py_arrow(target)
        for key in _COMPARED:
            if key in hint and key in read_back and hint[key] != read_back[key]:
                return False
    return True
