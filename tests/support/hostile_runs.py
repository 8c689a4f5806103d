"""Helpers of the hostile-CRM tests: run `crmsync run` against a one-behaviour server as a user
would (a separate process), read what the destination holds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb

from tests.support.cli import run_crmsync

USERNAME = "api-user"
PASSWORD = "env-Pa55word-never-printed"
SAFETY_TIMEOUT = 120.0
"""Generous: a run that has not ended by then hangs. Never a figure the tests assert."""


def run_contacts(
    workdir: Path, base_url: str, *options: str, **http: str
) -> subprocess.CompletedProcess[str]:
    """`crmsync run --base-url base_url --resources contacts`, `http` as
    `[sources.crm.http]` settings (`request_deadline="1"`)."""
    env = {"SOURCES__CRM__USERNAME": USERNAME, "SOURCES__CRM__PASSWORD": PASSWORD}
    env.update({f"SOURCES__CRM__HTTP__{key.upper()}": value for key, value in http.items()})
    return run_crmsync(
        workdir,
        "run",
        "--base-url",
        base_url,
        "--resources",
        "contacts",
        *options,
        env=env,
        timeout=SAFETY_TIMEOUT,
    )


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def loaded_ids(workdir: Path) -> list[int]:
    """The ids in the `contacts` table; none when the run created no table (or no file)."""
    path = workdir / "crmsync.duckdb"
    if not path.exists():
        return []
    with duckdb.connect(str(path), read_only=True) as db:
        found = db.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = 'crm' and table_name = 'contacts'"
        ).fetchone()
        if not found or not found[0]:
            return []
        return [row[0] for row in db.execute("select id from crm.contacts order by id").fetchall()]
