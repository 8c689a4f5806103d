"""Contender (a): crmsync, as a user runs it: its command line, ``crmsync run --json``.

Its page-decoding worker's peak memory is read as the worker is closed, while it still runs
(``helpers_peak_kb``), so that the table shows what the whole run held.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import orjson
from contenders import vm_hwm_kb
from crm_api import PASSWORD, USERNAME

from crmsync import cli
from crmsync.reading import page_decoding

DATABASE = "crmsync.duckdb"
"""crmsync's duckdb destination writes ``<pipeline name>.duckdb`` in the working folder."""
SCHEMA = "crm"


def run(base_url: str, workdir: Path) -> int:
    """Syncs every resource; returns the requests crmsync's own ledger counted."""
    os.environ.update({"SOURCES__CRM__USERNAME": USERNAME, "SOURCES__CRM__PASSWORD": PASSWORD})
    arguments = ["run", "--base-url", base_url, "--working-dir", str(workdir / "pipelines")]
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        cli.main([*arguments, "--json"], standalone_mode=False)
    return sum(resource["requests"] for resource in orjson.loads(summary.getvalue())["resources"])


_worker_peaks_kb: list[int] = []
_close_worker = page_decoding._Worker.close


def _close_and_measure(worker: page_decoding._Worker) -> None:
    with contextlib.suppress(FileNotFoundError, StopIteration):  # a worker already gone
        _worker_peaks_kb.append(vm_hwm_kb(worker._process.pid))
    _close_worker(worker)


page_decoding._Worker.close = _close_and_measure  # type: ignore[method-assign]


def helpers_peak_kb() -> int:
    return sum(_worker_peaks_kb)
