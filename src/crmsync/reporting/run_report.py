"""A run's result as one JSON object, for orchestrators and scripts (`crmsync run --json`).

Sample (trimmed):

    {"outcome": "ok", "destination": "duckdb", "dataset": "crm",
     "tables": {"contacts": {"rows": 1169, "this_run": 1200}},
     "run_id": "9f...", "elapsed_seconds": 1.6,
     "resources": [{"resource": "contacts", "requests": 3, "pages": 3, "rows": 1200,
                    "complete": true, "list_moved": false, "outcome": "ok", ...}]}

A run the request quota cut short has `"outcome": "quota reached"`, its `exit_code` (5),
`message` and the `unfinished` resources. A failed run has `"outcome": "failed"`, the
one-line `message` and the `exit_code` the process ends with; its `resources` say how far
each got.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from crmsync.failures import Failure
from crmsync.ledger import RunLedger
from crmsync.loading.sync import RunSettings, SyncResult


def ledger_document(ledger: RunLedger) -> dict[str, Any]:
    resources = []
    for tally in ledger.tallies.values():
        resources.append(
            {
                **asdict(tally),
                "complete": tally.complete,
                "list_moved": tally.list_moved,
                "wasted": tally.wasted,
            }
        )
    return {
        "run_id": ledger.run_id,
        "started_at": ledger.started_at.isoformat(),
        "elapsed_seconds": round(ledger.elapsed_seconds, 3),
        "learnt_rate": ledger.learnt_rate,
        "paced_seconds": round(ledger.paced_seconds, 3),
        "resources": resources,
    }


def result_document(
    result: SyncResult, settings: RunSettings, quota: Failure | None = None
) -> dict[str, Any]:
    """`quota`: the run's request quota cut it short (`crmsync.failures.quota_reached`)."""
    tables = {
        table: {"rows": rows, "this_run": result.row_counts.get(table, 0)}
        for table, rows in result.data_tables.items()
    }
    ended: dict[str, Any] = {"outcome": "ok"}
    if quota is not None:
        ended = {
            "outcome": "quota reached",
            "exit_code": quota.exit_code,
            "message": quota.message,
            "unfinished": result.unfinished,
        }
    return {
        **ended,
        "destination": str(settings.destination),
        "dataset": settings.dataset_name,
        "tables": tables,
        **ledger_document(result.ledger),
    }


def failure_document(failure: Failure, ledger: RunLedger | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "outcome": "failed",
        "exit_code": failure.exit_code,
        "message": failure.message,
    }
    return {**document, **(ledger_document(ledger) if ledger is not None else {})}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=False)
