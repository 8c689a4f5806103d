"""The page look-ahead: pages fetched concurrently, none loaded twice or skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmsync.demo_server import DemoServer
from crmsync.demo_server.app import RequestRecord
from crmsync.source import SyncOptions
from tests.conftest import fast_policy, sync
from tests.support.destinations import DuckDBDestination


@pytest.fixture
def destination(workdir: Path) -> DuckDBDestination:
    """These tests are about the HTTP side; DuckDB alone shows what landed."""
    return DuckDBDestination(workdir)


def most_at_once(requests: list[RequestRecord]) -> int:
    edges = sorted([(r.at, 1) for r in requests] + [(r.finished_at, -1) for r in requests])
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


def test_pages_of_a_resource_are_fetched_concurrently_within_the_budget(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"contacts": 3000}, latency_ms=100)

    sync(
        server,
        destination,
        SyncOptions(resources=("contacts",)),
        policy=fast_policy(max_in_flight=4),
    )

    seen = server.requests_for("contacts")
    assert sorted(int(r.params["page[page]"]) for r in seen) == [1, 2, 3, 4, 5, 6]
    assert 2 <= most_at_once(seen) <= 4
    assert destination.ids("contacts") == sorted(server.store.ids("contacts"))


def test_without_a_total_the_look_ahead_stops_at_the_first_short_page(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm({"events": 3000})

    sync(
        server, destination, SyncOptions(resources=("events",)), policy=fast_policy(max_in_flight=8)
    )

    pages = sorted(int(r.params["page"]) for r in server.requests_for("events"))
    assert pages[:7] == [1, 2, 3, 4, 5, 6, 7]
    assert len(pages) == len(set(pages)) <= 7 + 8
    assert destination.ids("events") == sorted(server.store.ids("events"))


def test_the_budget_caps_requests_in_flight_across_resources(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    server: DemoServer = start_crm(
        {"accounts": 2000, "contacts": 2000, "events": 2000}, latency_ms=60
    )

    sync(server, destination, policy=fast_policy(max_in_flight=3))

    assert most_at_once(server.requests) <= 3
    for resource in ("accounts", "contacts", "events"):
        assert destination.ids(resource) == sorted(server.store.ids(resource))
