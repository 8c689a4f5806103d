"""Fixtures shared by the suite: the bundled CRM on loopback and a scratch working folder.

Every test that syncs runs in its own folder (the DuckDB file, dlt's pipeline state) with
credentials in the environment, the way a user's scheduler would provide them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer
from crmsync.http_policy import HttpPolicy
from crmsync.source import CrmConnection, SyncOptions
from crmsync.sync import RunSettings, SyncResult, run_sync

SMALL_SIZES = {"accounts": 30, "contacts": 60, "events": 90, "products": 12, "pipelines": 3}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    for key in ("SOURCES__CRM__BASE_URL", "SOURCES__CRM__USERNAME", "SOURCES__CRM__PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


@pytest.fixture
def start_crm() -> Iterator[Callable[..., DemoServer]]:
    servers: list[DemoServer] = []

    def start(sizes: dict[str, int] | None = None, **kwargs: Any) -> DemoServer:
        server = DemoServer(sizes=sizes or SMALL_SIZES, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def crm(start_crm: Callable[..., DemoServer]) -> DemoServer:
    return start_crm()


@pytest.fixture
def crm_env(crm: DemoServer, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> DemoServer:
    """The bundled CRM, with its URL and credentials where a user would put them."""
    monkeypatch.setenv("SOURCES__CRM__BASE_URL", crm.base_url)
    monkeypatch.setenv("SOURCES__CRM__USERNAME", DEFAULT_USERNAME)
    monkeypatch.setenv("SOURCES__CRM__PASSWORD", DEFAULT_PASSWORD)
    return crm


def connection_to(server: DemoServer, password: str = DEFAULT_PASSWORD) -> CrmConnection:
    return CrmConnection(server.base_url, DEFAULT_USERNAME, password)


def fast_policy(**overrides: Any) -> HttpPolicy:
    """The seed's policy with test-sized waits: same attempts, milliseconds of backoff."""
    policy = HttpPolicy()
    policy.backoff_factor = 0.01
    policy.max_retry_delay = 2.0
    policy.read_timeout = 5.0
    for key, value in overrides.items():
        setattr(policy, key, value)
    return policy


def sync(
    server: DemoServer,
    workdir: Path,
    options: SyncOptions | None = None,
    settings: RunSettings | None = None,
    **kwargs: Any,
) -> SyncResult:
    kwargs.setdefault("policy", fast_policy())
    settings = settings or RunSettings(pipelines_dir=str(workdir / "pipelines"))
    return run_sync(connection_to(server), settings, options, **kwargs)


def query(workdir: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def ids_in(workdir: Path, table: str) -> set[int]:
    return {row[0] for row in query(workdir, f"select id from crm.{table}")}
