"""The scheduling example imports without its orchestrator and its sync function syncs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import pytest

from crmsync.demo_server import DemoServer, Fault
from crmsync.failures import EXIT_CONFIG, EXIT_SOURCE
from tests.test_cli import crm_env

EXAMPLE = Path(__file__).parent.parent / "examples" / "schedule_with_airflow.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schedule_with_airflow", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_imports_cleanly_without_airflow() -> None:
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        " assert 'airflow' not in sys.modules, 'airflow imported at import time'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr


def test_the_example_sync_function_syncs_incrementally(
    crm: DemoServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in crm_env(crm).items():
        monkeypatch.setenv(key, value)
    example = load_example()
    live = len(crm.store.ids("contacts"))

    first = example.sync_crm(pipelines_dir=str(workdir / "pipelines"))
    crm.store.mutate("contacts", update=2, delete=1)
    second = example.sync_crm(pipelines_dir=str(workdir / "pipelines"))

    assert (first["contacts"], second["contacts"]) == (live, live - 1)
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as db:
        ids = [row[0] for row in db.execute("select id from crm.contacts order by id").fetchall()]
    assert ids == sorted(crm.store.ids("contacts"))


def test_the_example_reports_failures_with_crmsyncs_exit_codes(
    crm: DemoServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example()

    with pytest.raises(example.CrmSyncError) as missing:
        example.sync_crm(pipelines_dir=str(workdir / "pipelines"))
    assert missing.value.exit_code == EXIT_CONFIG
    assert "SOURCES__CRM__BASE_URL" in str(missing.value)

    for key, value in crm_env(crm).items():
        monkeypatch.setenv(key, value)
    crm.faults.add(Fault("/contacts", "status", status=500, times=None))
    monkeypatch.setenv("SOURCES__CRM__HTTP__BACKOFF_FACTOR", "0.01")
    with pytest.raises(example.CrmSyncError) as failed:
        example.sync_crm(pipelines_dir=str(workdir / "pipelines"))
    assert failed.value.exit_code == EXIT_SOURCE
