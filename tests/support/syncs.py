"""Helpers of the tests that sync in-process: the bundled CRM's sizes, a test-sized HTTP policy,
one sync of a server into a destination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer
from crmsync.loading.sync import SyncResult, run_sync
from crmsync.profiles.connection import CrmConnection
from crmsync.profiles.profile import Profile, load_profile
from crmsync.reading.source import SyncOptions
from crmsync.transport.http_policy import HttpPolicy
from tests.support.destinations import DuckDBDestination

SMALL_SIZES = {"accounts": 30, "contacts": 60, "events": 90, "products": 12, "pipelines": 8}
RESOURCES = ("accounts", "contacts", "events", "products", "pipelines")


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
