"""Contender (a): crmsync, through its public Python API only (``run_sync``).

Its page-decoding worker's peak memory is read as the worker is closed, while it still runs
(``helpers_peak_kb``), so that the table shows what the whole run held.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from contenders import vm_hwm_kb
from crm_api import PASSWORD, USERNAME

from crmsync.loading.sync import RunSettings, run_sync
from crmsync.profiles.connection import CrmConnection
from crmsync.reading import page_decoding

DATABASE = "crmsync.duckdb"
"""run_sync's duckdb destination writes ``<pipeline name>.duckdb`` in the working folder."""
SCHEMA = "crm"


def run(base_url: str, workdir: Path) -> int:
    """Syncs every resource; returns the requests crmsync's own ledger counted."""
    result = run_sync(
        CrmConnection.basic(base_url, USERNAME, PASSWORD),
        RunSettings(destination="duckdb", pipelines_dir=str(workdir / "pipelines")),
    )
    return sum(tally.requests for tally in result.ledger.tallies.values())


_worker_peaks_kb: list[int] = []
_close_worker = page_decoding._Worker.close


def _close_and_measure(worker: page_decoding._Worker) -> None:
    with contextlib.suppress(FileNotFoundError, StopIteration):  # a worker already gone
        _worker_peaks_kb.append(vm_hwm_kb(worker._process.pid))
    _close_worker(worker)


page_decoding._Worker.close = _close_and_measure  # type: ignore[method-assign]


def helpers_peak_kb() -> int:
    return sum(_worker_peaks_kb)
