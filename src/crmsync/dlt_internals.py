"""Every reliance of crmsync on dlt behaviour that no public dlt API offers, each pinned by a
test in `tests/test_dlt_internals.py` that fails when dlt changes it.

Everywhere else crmsync uses dlt's public API only. Each name here says what it relies on and
why nothing public does the same; when dlt offers it, the name goes and its callers use that.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Self, cast

import dlt
from dlt.common.configuration.container import Container
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    LookupTrace,
    LookupTraces,
)
from dlt.common.configuration.providers import EnvironProvider
from dlt.common.normalizers.json.helpers import get_nested_row_hash

# dlt's relational normalizer's own rules (its column names, nesting level, root key), which
# `crmsync.reading.child_tables` follows so that its child tables are the normalizer's; the
# equality of the two is pinned by `tests/test_arrow_pages.py`
from dlt.common.normalizers.json.helpers import get_table_nesting_level as get_table_nesting_level
from dlt.common.normalizers.json.helpers import is_nested_type as is_nested_type
from dlt.common.normalizers.json.helpers import requires_root_key as requires_root_key
from dlt.common.normalizers.json.relational import DataItemNormalizer as DataItemNormalizer
from dlt.common.pipeline import PipelineContext
from dlt.common.storages.load_package import PackageStorage, ParsedLoadJobFileName
from dlt.common.utils import uniq_id
from dlt.extract import DltResource


class SharedThroughConfig:
    """An object of the run that crmsync hands rest_api inside its config (the HTTP session and
    its look-ahead, a resource's ledger observer, the incremental `convert` hook): any copy
    rest_api makes of it is the object itself.

    rest_api deep-copies the whole config it is given to validate it (the session holds locks
    and a thread pool, which cannot be copied), and reads each parent record of a dependent
    resource with a deep copy of the resource's paginator (what crmsync's paginators share with
    the run, its ledger observer and look-ahead, would count into copies). No option keeps a
    value out of either copy; `copy.deepcopy` returns what `__deepcopy__` returns.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


def active_pipeline() -> dlt.Pipeline | None:
    """The pipeline a source is being made for (the one last created or run), else None.

    `dlt.current.pipeline()` creates a pipeline when none is active: a source made outside any
    pipeline (the drop-in `rest_api_source`, a test) would make one, with a working folder. dlt's
    pipeline context says whether one is active without making one.
    """
    context = Container()[PipelineContext]
    if not context.is_active():
        return None
    return cast(dlt.Pipeline, context.pipeline())


DEDUPLICATED_HINT = "x-stage-data-deduplicated"
"""The table hint that a load holds each primary key once: dlt's delete-insert merge then skips
its dedup pass.

dlt's public form of it, the `deduplicated` key of a merge write disposition, is accepted only
beside `strategy = "delete-insert"` (rest_api's config validation refuses it alone). Naming the
strategy would pin it in the schema for every destination, and change the merge where the
destination's default is another (Delta tables upsert). The hint alone leaves each destination
its default strategy; only delete-insert reads it."""

ENVIRONMENT = EnvironProvider().name
"""The name dlt's lookup traces give the environment variables."""


def missing_settings(error: ConfigFieldMissingException) -> list[tuple[str, ...]]:
    """The path of each missing field of `error` that a user can set, below the configuration
    that was resolved (`("credentials",)`, `("credentials", "password")`).

    dlt's message lists every place it looked, for every field, as a block of text; crmsync names
    one setting per missing field. Only the exception's lookup traces hold which fields were
    missing where, and their shape (nested `LookupTraces` per embedded configuration, the
    provider's name per lookup) is dlt's own, undocumented.
    """
    return list(_missing_paths(error.traces, ()))


def _missing_paths(traces: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """A wholly missing embedded configuration (e.g. `credentials`) is one path: it can be
    given as one value (a connection string)."""
    for field, field_traces in traces.items():
        embedded = [t for t in field_traces if isinstance(t, LookupTraces)]
        if embedded and any(t.resolved_fields_set for t in embedded):
            best = max(embedded, key=lambda t: len(t.resolved_fields_set))
            yield from _missing_paths(best.traces, (*path, field))
            continue
        looked_up = [t for t in field_traces if isinstance(t, LookupTrace)]
        for inner in embedded:
            looked_up.extend(
                t for ts in inner.traces.values() for t in ts if isinstance(t, LookupTrace)
            )
        if any(t.provider == ENVIRONMENT for t in looked_up):
            yield (*path, field)
        # else: set by dlt itself (e.g. `local_dir`), never by the user


ARROW_HINTS_WARNING = (
    "In resource: {resource}, when merging arrow schema with dlt schema, several column hints"
    " were different."
)
"""How dlt's extract (`ArrowExtractor._compute_tables`) begins the warning, pinned by a test."""


class JsonTextWarnings(logging.Filter):
    """Drops dlt's Arrow hint warning for the resources registered with `expect`."""

    def __init__(self) -> None:
        super().__init__()
        self._expected: set[str] = set()
        self._lock = threading.Lock()

    def expect(self, resource: str, expected: bool) -> None:
        """Whether `resource`'s warning is the `json` one alone (set as each source is built)."""
        with self._lock:
            (self._expected.add if expected else self._expected.discard)(resource)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        message = record.getMessage()
        with self._lock:
            return not any(
                message.startswith(ARROW_HINTS_WARNING.format(resource=name))
                for name in self._expected
            )


JSON_TEXT_WARNINGS = JsonTextWarnings()
logging.getLogger("dlt").addFilter(JSON_TEXT_WARNINGS)  # dlt's logger, by its default name


def place_in_extracted_package(pipeline: dlt.Pipeline, load_id: str, table: str, path: str) -> None:
    """Moves the Parquet file at `path` into the extracted load package `load_id` as a file of
    `table`, named as extract names its files: dlt's normalize imports it as it imports the
    Parquet files extract wrote, and the load commits it with them.

    dlt 1.31 has no public way to add rows to a package once extracted. Extracting them would
    need a resource for their table (extract's metrics name the resource of each table written,
    and a nested table's schema refuses one), and a second extract is a second package, which
    the loader commits apart, and which costs a sync a second normalize and load.
    """
    package = pipeline.get_load_package_info(load_id).package_path
    name = ParsedLoadJobFileName(table, uniq_id(), 0, "parquet").file_name()
    shutil.move(path, os.path.join(package, PackageStorage.NEW_JOBS_FOLDER, name))


def resource_steps(resource: DltResource) -> list[Any]:
    """The steps of `resource`'s pipe (`add_step`), as the resource is extracted; dlt keeps them
    on its private `_pipe`, and a step added to a resource is copied with it when dlt selects
    resources."""
    return list(resource._pipe.steps)


nested_row_hash = get_nested_row_hash
"""dlt's key of a child row (its parent's key, its table and its index in the list, hashed), so
that a record's child rows built from Arrow keep the keys dlt's normalizer gives them."""
