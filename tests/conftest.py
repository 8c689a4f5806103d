"""Fixtures shared by the suite: the bundled CRM on loopback, a scratch folder, destinations.

Every test that syncs runs in its own folder (the DuckDB file, dlt's pipeline state), the way
a user's scheduler would run crmsync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crmsync.demo_server import DemoServer
from crmsync.reading.page import Page
from crmsync.reading.page_decoding import ProcessDecoder
from tests.support.destinations import (
    DeltaDestination,
    Destination,
    DuckDBDestination,
    FilesystemDestination,
    PostgresDestination,
)
from tests.support.postgres import PostgresServer
from tests.support.syncs import SMALL_SIZES


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


DESTINATIONS = ("duckdb", "postgres", "parquet", "delta")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "destinations(*names): the destinations the `destination` fixture takes in this test"
        " or module (default: all of DESTINATIONS)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`destination` takes each of DESTINATIONS, or those a `destinations` mark names: a module
    about the HTTP side says `pytestmark = pytest.mark.destinations("duckdb")`."""
    parametrized = [m.args[0] for m in metafunc.definition.iter_markers("parametrize")]
    if "destination" in metafunc.fixturenames and not any(
        "destination" in (names.split(",") if isinstance(names, str) else names)
        for names in parametrized
    ):
        marker = metafunc.definition.get_closest_marker("destinations")
        metafunc.parametrize("destination", marker.args if marker else DESTINATIONS, indirect=True)


@pytest.fixture
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


STARTED_FIRST = (
    "tests/test_soak.py",
    "tests/test_profiles_e2e.py",
    "tests/test_tenants.py",
    "tests/test_sync.py",
    "tests/test_quota.py",
    "tests/test_arrow_pages.py",
    "tests/hostile_values/test_large_values.py",
)
"""The modules of the longest tests (`--durations`): run first, so that what the last of
`-n auto`'s workers runs alone at the end is short tests, not a 30-second one."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """STARTED_FIRST's modules first, in that order; the others after, as collected."""

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0]
        return STARTED_FIRST.index(module) if module in STARTED_FIRST else len(STARTED_FIRST)

    items.sort(key=rank)
