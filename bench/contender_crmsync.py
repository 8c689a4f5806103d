"""Contender (a): crmsync, through its public Python API only (``run_sync``)."""

from __future__ import annotations

from pathlib import Path

from crm_api import PASSWORD, USERNAME

from crmsync.source import CrmConnection
from crmsync.sync import RunSettings, run_sync

DATABASE = "crmsync.duckdb"
"""run_sync's duckdb destination writes ``<pipeline name>.duckdb`` in the working folder."""
SCHEMA = "crm"


def run(base_url: str, workdir: Path) -> int:
    """Syncs every resource; returns the requests crmsync's own ledger counted."""
    result = run_sync(
        CrmConnection(base_url, USERNAME, PASSWORD),
        RunSettings(destination="duckdb", pipelines_dir=str(workdir / "pipelines")),
    )
    return sum(tally.requests for tally in result.ledger.tallies.values())
