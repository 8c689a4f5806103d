"""The soak: many syncs of a CRM that changes while it is read, with faults and killed runs;
two quiet syncs at the end leave the destination equal to the CRM, value for value.

`make test` runs a short soak (`CRMSYNC_SOAK_SYNCS`, default 6 syncs; `CRMSYNC_SOAK_SEED`);
`make soak` a long one.
Pages of 100 records make each incremental read several pages long, so that pages are
fetched ahead, retried and answered out of order while the list moves under them. The
lookback is 1 s and the changes between two syncs are made more than that before the read
begins, so a record a sync misses is not caught by the next one's lookback by luck.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from crmsync.demo_server import DemoServer, Fault
from crmsync.loading.sync import RunSettings, SyncFailed, run_sync
from crmsync.profiles.profile import Profile, load_profile
from crmsync.reading.source import SyncOptions
from tests.support.cli import crm_env, start_crmsync
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import RESOURCES, connection_to, fast_policy

SYNCS = int(os.environ.get("CRMSYNC_SOAK_SYNCS", "6"))
LOOKBACK = 1.0
SIZES = {"accounts": 700, "contacts": 1600, "events": 1200, "products": 300, "pipelines": 30}
PAGES_OF_100 = """
[resource_defaults.endpoint.paginator]
type = "crm_page_number"
page_param = "page[page]"
limit_param = "page[limit]"
limit = 100

[[resources]]
name = "events"
endpoint = { paginator = { type = "crm_page_number", limit_param = "limit", limit = 100 } }
"""
COMPARED = {
    "accounts": ("updated_at", "employee_count", "industry"),
    "contacts": ("updated_at", "lifecycle_stage", "title", "phone"),
    "events": ("updated_at",),
    "products": ("updated_at", "price", "active"),
    "pipelines": ("updated_at", "name"),
}
"""The fields the demo CRM's edits change (`demo_server.data.changes`), and the stamp."""
FAULTS = (
    Fault("", "malformed"),
    Fault("", "status", status=503),
    Fault("", "status", status=429, retry_after="0"),
    Fault("", "drop"),
)


@dataclass
class Churn:
    """Edits the CRM while it is read: before half the page requests, a few records of the
    resource being read change, most of them ahead of the reader's position."""

    server: DemoServer
    rng: random.Random
    edits: int = 0

    def __call__(self, resource: str, page: int, params: dict[str, str]) -> None:
        if self.rng.random() < 0.5:
            delete = 0 if resource == "events" else self.rng.randint(0, 1)
            self.server.mutate(resource, create=self.rng.randint(0, 1), update=5, delete=delete)
            self.edits += 1
        time.sleep(self.rng.random() * 0.004)  # shuffles the order concurrent pages answer in


def crm_values(server: DemoServer, resource: str) -> dict[int, tuple[Any, ...]]:
    fields = COMPARED[resource]
    return {
        record["id"]: tuple(_as_loaded(name, record.get(name)) for name in fields)
        for record in server.store.records(resource, include_deleted=False)
    }


def _as_loaded(name: str, value: Any) -> Any:
    if name == "updated_at":
        return datetime.fromisoformat(value).timestamp()
    if name == "price":
        return Decimal(value)
    return value


def destination_values(destination: DuckDBDestination, resource: str) -> dict[int, tuple[Any, ...]]:
    columns = ", ".join(
        "epoch(updated_at)" if name == "updated_at" else name for name in COMPARED[resource]
    )
    rows = destination.query(f"select id, {columns} from {{{resource}}}")
    return {row[0]: tuple(row[1:]) for row in rows}


def killed_run(server: DemoServer, workdir: Path, config: Path, after: float) -> None:
    """A `crmsync run` in its own process, killed with SIGKILL `after` seconds in."""
    victim = start_crmsync(
        workdir, "run", "--config", str(config), "--lookback", str(LOOKBACK), env=crm_env(server)
    )
    try:
        victim.wait(timeout=after)
    except subprocess.TimeoutExpired:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def quiet_sync(server: DemoServer, profile: Profile, **policy: Any) -> None:
    run_sync(
        connection_to(server),
        RunSettings(),
        SyncOptions(lookback_seconds=LOOKBACK),
        profile=profile,
        policy=fast_policy(**policy),
    )


def test_many_syncs_under_change_faults_and_kills_end_equal_to_the_crm(
    start_crm: Any, workdir: Path
) -> None:
    server: DemoServer = start_crm(SIZES, latency_ms=5)
    rng = random.Random(int(os.environ.get("CRMSYNC_SOAK_SEED", "20261201")))
    config = workdir / "crmsync.toml"
    config.write_text(PAGES_OF_100)
    profile = load_profile(config)
    destination = DuckDBDestination(workdir)
    churn = Churn(server, rng)
    kills = failures = 0
    served: list[int] = []
    after_a_loaded_sync: list[bool] = []
    loaded = False

    for number in range(SYNCS):
        for resource in RESOURCES:  # between syncs: enough changes for several pages
            delete = 0 if resource == "events" else 5
            update = int(SIZES[resource] * rng.uniform(0.05, 0.15))
            server.mutate(resource, create=20, update=update, delete=delete)
        for fault in rng.sample(FAULTS, 3):
            path, page = f"/{rng.choice(RESOURCES)}", rng.randint(1, 3)
            server.faults.add(dataclasses.replace(fault, path=path, page=page))
        time.sleep(LOOKBACK + 0.2)  # those changes are older than the read's start - lookback
        server.before_page = churn
        server.clear_requests()
        after_a_loaded_sync.append(loaded)
        if number % 4 == 3:
            killed_run(server, workdir, config, after=rng.uniform(1.0, 3.0))
            kills += 1
            loaded = False
        else:
            try:
                quiet_sync(server, profile, max_in_flight=6)
                loaded = True
            except SyncFailed:
                failures += 1
                loaded = False
        served.append(sum(r.rows for r in server.requests))
        server.before_page = None
        server.faults.clear()

    for _ in range(2):
        quiet_sync(server, profile)

    for resource in RESOURCES:
        assert destination_values(destination, resource) == crm_values(server, resource), resource
    assert churn.edits > SYNCS  # the list did move during the reads
    # a list that moves each sync is not re-read whole; a sync after a killed or failed one
    # reads that one's window again too, which may come to more than half of the first read
    assert max(served[1:]) < served[0]
    assert max(n for n, after in zip(served, after_a_loaded_sync, strict=True) if after) < (
        served[0] / 2
    )
    assert failures <= SYNCS // 2
    print(
        f"soak: {SYNCS} syncs, {churn.edits} edits during reads, {kills} killed,"
        f" {failures} failed; records served per sync: {served}"
    )
