"""The `crmsync` command run as a user runs it: a separate process in a scratch folder, with no
CRM or destination setting but those a test gives it.

The one runner of the suite: `run_crmsync` waits for the command, `start_crmsync` leaves it
running (to kill it); both build the same environment (`cli_env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer

CRMSYNC = str(Path(sys.executable).parent / "crmsync")
SECRET = "s3cr3t-Pa55word-never-printed"


def cli_env(workdir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its CRM and destination settings, dlt's data folder in
    `workdir`, test-sized backoff, then `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    base["DLT_DATA_DIR"] = str(workdir / "dlt-data")
    base["SOURCES__CRM__HTTP__BACKOFF_FACTOR"] = "0.01"
    return {**base, **(env or {})}


def run_crmsync(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str = "",
) -> subprocess.CompletedProcess[str]:
    """`crmsync *args` in `workdir`, to its end; its output captured."""
    return subprocess.run(
        [CRMSYNC, *args],
        cwd=workdir,
        env=cli_env(workdir, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start_crmsync(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`crmsync *args` in `workdir`, left running (its output dropped)."""
    return subprocess.Popen(
        [CRMSYNC, *args],
        cwd=workdir,
        env=cli_env(workdir, env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def crm_env(server: DemoServer, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    """The settings that point the command at the bundled CRM `server`."""
    return {
        "SOURCES__CRM__BASE_URL": server.base_url,
        "SOURCES__CRM__USERNAME": DEFAULT_USERNAME,
        "SOURCES__CRM__PASSWORD": password,
    }
