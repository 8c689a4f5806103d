"""Whole runs: the run ledger, recovery after `kill -9`, and that no secret is ever written."""

from __future__ import annotations

import base64
import signal
import time
import uuid
from pathlib import Path

import pytest

from crmsync.demo_server import DEFAULT_USERNAME, DemoServer, Fault
from crmsync.failures import EXIT_OK, EXIT_SOURCE
from crmsync.loading.sync import SyncFailed
from crmsync.reading.source import SyncOptions
from tests.support.cli import crm_env, run_crmsync, start_crmsync
from tests.support.destinations import DuckDBDestination
from tests.support.postgres import PostgresServer
from tests.support.syncs import RESOURCES, sync

SECRET = "Leak-Canary-7f3a9c2e"


def test_the_run_ledger_is_stored_beside_the_data(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    crm.faults.add(Fault("/contacts", "status", status=429, retry_after="0"))

    sync(crm, destination)
    sync(crm, destination, SyncOptions(full_refresh=True))  # empties the data's tables alone

    rows = destination.query(
        "select resource, requests, retries, throttled, pages, rows, refetched, list_moved,"
        " reported_total, complete, outcome from {_crmsync_runs} order by finished_at, resource"
    )
    first_run = {row[0]: row[1:] for row in rows[:5]}
    assert first_run["contacts"] == (2, 1, 1, 1, 60, 0, False, 60, True, "ok")
    assert first_run["events"] == (1, 0, 0, 1, 90, 0, False, None, None, "ok")
    assert len(rows) == 10
    assert len({row[0] for row in destination.query("select run_id from {_crmsync_runs}")}) == 2
    # each run's ledger commits in the load of its data: one load a run
    loads = {row[0] for row in destination.query("select load_id from {_dlt_loads}")}
    ledger_loads = destination.query("select distinct _dlt_load_id from {_crmsync_runs}")
    assert len(loads) == 2 and {row[0] for row in ledger_loads} == loads


def test_a_failed_run_is_recorded_in_the_ledger_as_failed(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    crm.faults.add(Fault("/contacts", "status", status=500, times=None))

    with pytest.raises(SyncFailed):
        sync(crm, destination, SyncOptions(resources=("contacts", "products")))

    rows = dict(destination.query("select resource, outcome from {_crmsync_runs}"))
    assert rows["contacts"] == "failed"


def test_the_password_appears_nowhere_the_run_wrote(start_crm: object, workdir: Path) -> None:
    server: DemoServer = start_crm(password=SECRET)  # type: ignore[operator]
    outputs = []
    kept = ("--working-dir", str(workdir / "dlt-working-folder"))
    done = run_crmsync(workdir, "run", *kept, env=crm_env(server, password=SECRET))
    assert done.returncode == EXIT_OK, done.stderr
    outputs.append(done.stdout + done.stderr)
    server.faults.add(Fault("/contacts", "status", status=500, times=None))
    for args in (("run", *kept), ("run", "--debug", *kept), ("check",)):
        failed = run_crmsync(workdir, *args, env=crm_env(server, password=SECRET))
        assert failed.returncode == EXIT_SOURCE
        outputs.append(failed.stdout + failed.stderr)

    basic = base64.b64encode(f"{DEFAULT_USERNAME}:{SECRET}".encode())
    needles = (SECRET.encode(), basic)
    assert not [o for o in outputs for n in needles if n.decode() in o]
    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in written)
    assert len(written) > 10
    assert [str(p) for p in written for n in needles if n in p.read_bytes()] == []


@pytest.mark.parametrize(
    "after_requests", [2, 9, 18], ids=["early-extract", "mid-extract", "after-last-request"]
)
def test_a_rerun_after_kill_9_completes_with_exact_counts(
    start_crm: object, workdir: Path, after_requests: int
) -> None:
    sizes = {"accounts": 1500, "contacts": 3000, "events": 3000, "products": 40, "pipelines": 3}
    # 3 + 6 + 7 + 1 + 1 = 18 requests in all: events end on an empty page, the others on meta
    server: DemoServer = start_crm(sizes, latency_ms=40)  # type: ignore[operator]
    victim = start_crmsync(workdir, "run", env=crm_env(server))
    # no deadline: the run ends by itself, and then was not killed mid-run, which fails below
    while len(server.requests) < after_requests and victim.poll() is None:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    server.latency_ms = 0

    done = run_crmsync(workdir, "run", env=crm_env(server))

    assert done.returncode == EXIT_OK, done.stderr
    destination = DuckDBDestination(workdir)
    for resource in RESOURCES:
        assert destination.ids(resource) == sorted(server.store.ids(resource)), resource


PRECISE_OCCURRED_AT = """
[[resources]]
name = "events"
[resources.columns]
occurred_at = { data_type = "timestamp", timezone = true, precision = 3 }
"""
"""A hint the Arrow tables do not follow (they hold microseconds): a difference dlt warns of."""


def test_a_run_into_postgres_without_its_parquet_driver_prints_no_dlt_warning(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    """dlt takes Parquet for PostgreSQL only with the ADBC driver (not among crmsync's
    dependencies); asked for it without the driver, it warned of each table on every run."""
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTIALS": postgres_server.dsn}
    dataset = ("--dataset-name", f"crm_{uuid.uuid4().hex[:12]}")

    done = run_crmsync(workdir, "run", "--destination", "postgres", *dataset, env=env)

    assert done.returncode == EXIT_OK, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    assert f"  {'contacts':<28}{len(crm.store.ids('contacts')):>10,}" in done.stdout


@pytest.mark.parametrize(
    ("overlay", "warnings"),
    [
        (None, []),
        (PRECISE_OCCURRED_AT, ["In resource: events, when merging arrow schema with dlt schema"]),
    ],
    ids=["default", "hint-arrow-does-not-follow"],
)
def test_a_default_run_prints_no_dlt_warning_and_a_real_one_still_shows(
    crm: DemoServer, workdir: Path, overlay: str | None, warnings: list[str]
) -> None:
    """dlt's logger prints to stderr itself (it does not propagate to `caplog`). Two runs: the
    ledger's own extract and accounts' null addresses once made dlt warn on every run, and the
    `json` payload of events, held in Arrow as text, on every default one."""
    options = []
    if overlay is not None:
        (workdir / "overlay.toml").write_text(overlay)
        options = ["--config", str(workdir / "overlay.toml")]

    runs = [run_crmsync(workdir, "run", *options, env=crm_env(crm)) for _ in range(2)]

    for done in runs:
        assert done.returncode == EXIT_OK, done.stderr
    printed = [line for line in runs[0].stderr.splitlines() if "WARNING" in line]
    assert [w for w in warnings if not any(w in line for line in printed)] == [], printed
    if not warnings:
        assert printed == []
        assert "WARNING" not in runs[1].stderr, runs[1].stderr
