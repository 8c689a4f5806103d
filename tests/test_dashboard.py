"""`dlt pipeline crmsync show`: dlt 1.31's workspace dashboard, a marimo app, sees a crmsync run.

`show` needs `dlt[hub]`, marimo and ibis (`pip install "crmsync[dashboard]"`; `make test`
installs it). It is interactive, a web app on localhost:2718: the test runs it as a user
would after `crmsync run`, waits until it serves the dashboard, then stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from crmsync.demo_server import DemoServer
from crmsync.failures import EXIT_OK
from tests.support.cli import crm_env, run_crmsync

DASHBOARD = "http://localhost:2718"

pytest.importorskip("marimo", reason="the dashboard extra: pip install 'crmsync[dashboard]'")


def test_dlt_pipeline_show_serves_the_dashboard_after_a_run(crm: DemoServer, workdir: Path) -> None:
    assert run_crmsync(workdir, "run", env=crm_env(crm)).returncode == EXIT_OK
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "DLT_DATA_DIR": str(workdir / "dlt-data"),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),  # dlt starts `marimo`
    }
    show = subprocess.Popen(
        [str(Path(bin_dir) / "dlt"), "pipeline", "crmsync", "show"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its marimo server is stopped with it
    )
    try:
        page = _wait_for_page(show)
    finally:
        os.killpg(show.pid, signal.SIGTERM)
        output = show.communicate(timeout=30)[0]

    assert "<title>dlt workspace dashboard" in page, output
    assert f"URL: {DASHBOARD}" in output, output
    assert "No local pipeline state" not in output


def _wait_for_page(show: subprocess.Popen[str], timeout: float = 120) -> str:
    """The dashboard's page once it serves one (or the process's end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and show.poll() is None:
        try:
            response = requests.get(DASHBOARD, timeout=5)
            if response.status_code == 200:
                return response.text
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    return ""
