"""Fixtures shared by the suite: the bundled CRM on loopback, a scratch folder, destinations.

Every test that syncs runs in its own folder (the DuckDB file, dlt's pipeline state), the way
a user's scheduler would run crmsync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer
from crmsync.loading.sync import SyncResult, run_sync
from crmsync.profiles.connection import CrmConnection
from crmsync.profiles.profile import Profile, load_profile
from crmsync.reading.page import Page
from crmsync.reading.page_decoding import ProcessDecoder
from crmsync.reading.source import SyncOptions
from crmsync.transport.http_policy import HttpPolicy
from tests.support.destinations import (
    DeltaDestination,
    Destination,
    DuckDBDestination,
    FilesystemDestination,
    PostgresDestination,
)
from tests.support.postgres import PostgresServer

SMALL_SIZES = {"accounts": 30, "contacts": 60, "events": 90, "products": 12, "pipelines": 8}
RESOURCES = ("accounts", "contacts", "events", "products", "pipelines")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session, installed and started on first use, then removed."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["duckdb", "postgres", "parquet", "delta"])
def destination(request: pytest.FixtureRequest, workdir: Path) -> Destination:
    """Every destination the end-to-end suite proves the same guarantees on."""
    if request.param == "postgres":
        return PostgresDestination(workdir, request.getfixturevalue("postgres_server"))
    kinds: dict[str, type[Destination]] = {
        "duckdb": DuckDBDestination,
        "parquet": FilesystemDestination,
        "delta": DeltaDestination,
    }
    return kinds[request.param](workdir)


def profile_with(folder: Path, overlay: str) -> Profile:
    """The built-in profile with `overlay`, a `--config` file's TOML, laid over it."""
    path = folder / "crmsync.toml"
    path.write_text(overlay)
    return load_profile(path)


def connection_to(server: DemoServer, password: str = DEFAULT_PASSWORD) -> CrmConnection:
    return CrmConnection.basic(server.base_url, DEFAULT_USERNAME, password)


def fast_policy(**overrides: Any) -> HttpPolicy:
    """The seed's policy with test-sized waits: the same attempts, milliseconds of backoff."""
    policy = HttpPolicy()
    policy.backoff_factor = 0.01
    policy.max_retry_delay = 2.0
    policy.read_timeout = 5.0
    for key, value in overrides.items():
        setattr(policy, key, value)
    return policy


def sync(
    server: DemoServer,
    destination: DuckDBDestination,
    options: SyncOptions | None = None,
    **kwargs: Any,
) -> SyncResult:
    kwargs.setdefault("policy", fast_policy())
    return run_sync(connection_to(server), destination.settings(), options, **kwargs)


@pytest.fixture
def pages_as_tables(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the pages worker processes decoded into tables during the test."""
    paths: list[str] = []
    decode = ProcessDecoder.__call__

    def counting(self: ProcessDecoder, path: str, body: bytes) -> Any:
        decoded = decode(self, path, body)
        if any(isinstance(value, Page) for value in decoded.values()):
            paths.append(path)
        return decoded

    monkeypatch.setattr(ProcessDecoder, "__call__", counting)
    return paths
