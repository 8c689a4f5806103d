"""Many CRM accounts, one definition: the tenants file, and each tenant's own dlt pipeline.

```toml
# tenants.toml
[defaults]                         # optional: what every tenant inherits
destination = "postgres"

[tenants.acme]
base_url = "https://acme.crm.example.com/api/v1"  # else base_url under its secrets section
secrets = "sources.crm_acme"       # username/password from here (default sources.crm_<name>)
dataset = "crm_acme"               # default crm_<name>
profile = "profiles/acme.toml"     # optional: laid over the built-in resources
resources = ["accounts", "contacts"]  # optional: a subset
```

A tenant is its own pipeline, `crmsync_<name>` (its state, its cursors, its working folder,
its staging dataset), loading into its own dataset, so two tenants never share a cursor or a
staging table, and one tenant's failure is its run's alone. Relative paths (`profile`) are
relative to the tenants file. The file holds no secrets: credentials stay where dlt reads
them, under the section the tenant names.
"""

from __future__ import annotations

import re
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException

from crmsync.failures import Failure
from crmsync.ledger import RUNS_TABLE
from crmsync.loading.sync import DEFAULT_PIPELINE, RunSettings, make_pipeline
from crmsync.profiles.connection import SECRET_NAMES, SECTION, CrmConnection, env_name
from crmsync.profiles.profile import Profile, load_profile

DEFAULT_TENANTS_FILE = "tenants.toml"
TENANTS_ENV = "CRMSYNC_TENANTS"
NAME = re.compile(r"[a-z][a-z0-9_]*")
SECTION_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
KEYS = {"base_url", "secrets", "dataset", "destination", "profile", "resources", "pipeline"}


class TenantsFileError(ConfigurationException):
    """The tenants file is missing, unreadable, or has a wrong key or value (exit code 2)."""


@dataclass(frozen=True)
class Tenant:
    name: str
    secrets: str
    """The config section holding `username` and `password` (and `base_url` if not here)."""
    dataset: str
    destination: str = "duckdb"
    base_url: str | None = None
    profile: Path | None = None
    """The tenant's CRM profile (what `--profile` takes); None for the bundled CRM's."""
    resources: tuple[str, ...] | None = None
    pipeline: str = ""

    def connection(self, profile: Profile) -> CrmConnection:
        return CrmConnection.from_config(self.base_url, profile.get("client"), self.secrets)

    def settings(self, working_dir: str | None = None) -> RunSettings:
        return RunSettings(self.destination, self.dataset, self.pipeline, working_dir)

    def load_profile(self) -> Profile:
        return load_profile(profile=self.profile)

    def configured_base_url(self) -> str | None:
        """The base URL this tenant's runs use, without reading any secret."""
        value = self.base_url or dlt.config.get(f"{self.secrets}.base_url")
        return str(value) if value else None

    def failure(self, failure: Failure) -> Failure:
        """A failure's message with this tenant's settings named instead of `sources.crm`'s
        (a 401's advice names `SOURCES__CRM_ACME__USERNAME`, not `SOURCES__CRM__USERNAME`)."""
        message = failure.message
        for key in ("username", "password", "base_url", *SECRET_NAMES):
            message = message.replace(env_name(SECTION, key), env_name(self.secrets, key))
        return Failure(failure.exit_code, f"tenant {self.name}: {message}")


@dataclass(frozen=True)
class Tenants:
    path: Path
    tenants: dict[str, Tenant] = field(default_factory=dict)

    def get(self, name: str) -> Tenant:
        tenant = self.tenants.get(name)
        if tenant is None:
            known = ", ".join(self.tenants) or "none"
            raise TenantsFileError(f"{self.path}: no tenant {name!r}; its tenants: {known}")
        return tenant

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self.tenants.values())


def tenants_path(path: str | Path | None) -> Path:
    return Path(path) if path else Path(DEFAULT_TENANTS_FILE)


def load_tenants(path: str | Path | None = None) -> Tenants:
    """The tenants file (`tenants.toml` in the working directory unless named), each key
    checked: a mistake is one line naming the file, the tenant and the key."""
    file = tenants_path(path)
    try:
        document = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise TenantsFileError(
            f"{file}: no tenants file; create it (see README, 'Many CRM accounts') or pass"
            f" --tenants FILE (or set {TENANTS_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise TenantsFileError(f"{file}: not a readable TOML file: {error}") from None
    unknown = sorted(set(document) - {"defaults", "tenants"})
    if unknown:
        raise TenantsFileError(f"{file}: unknown table {unknown[0]!r}; use [tenants.NAME]")
    defaults = _table(document.get("defaults", {}), f"{file}: [defaults]")
    for key in sorted(set(defaults) & {"base_url", "secrets", "dataset", "pipeline"}):
        raise TenantsFileError(f"{file}: [defaults]: {key} is one tenant's own; set it per tenant")
    entries = _table(document.get("tenants", {}), f"{file}: [tenants]")
    if not entries:
        raise TenantsFileError(f"{file}: no tenants; add a [tenants.NAME] table")
    tenants = {}
    pipelines: dict[str, str] = {}
    for name, entry in entries.items():
        tenant = _tenant(file, name, {**defaults, **_table(entry, f"{file}: tenant {name}")})
        if tenant.pipeline in pipelines:
            raise TenantsFileError(
                f"{file}: tenants {pipelines[tenant.pipeline]} and {name} share the pipeline"
                f" {tenant.pipeline!r}: each needs its own (its own state and cursors)"
            )
        pipelines[tenant.pipeline] = name
        tenants[name] = tenant
    _refuse_shared_datasets(file, list(tenants.values()))
    return Tenants(file, tenants)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TenantsFileError(f"{where} must be a table")
    return value


def _tenant(file: Path, name: str, entry: dict[str, Any]) -> Tenant:
    where = f"{file}: tenant {name}"
    if not NAME.fullmatch(name):
        raise TenantsFileError(
            f"{where}: a tenant's name is lowercase letters, digits and _, starting with a letter"
        )
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise TenantsFileError(
            f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(KEYS))}"
        )
    for key in sorted(set(entry) - {"resources"}):
        if not isinstance(entry[key], str) or not entry[key]:
            raise TenantsFileError(f"{where}: {key} must be a non-empty string")
    secrets = entry.get("secrets", f"sources.crm_{name}")
    if not SECTION_NAME.fullmatch(secrets):
        raise TenantsFileError(
            f"{where}: secrets must name a config section, e.g. 'sources.crm_{name}'"
        )
    resources = entry.get("resources")
    if resources is not None and (
        not isinstance(resources, list)
        or not resources
        or not all(isinstance(r, str) and r for r in resources)
    ):
        raise TenantsFileError(f"{where}: resources must be a list of resource names")
    profile = entry.get("profile")
    profile_path = (file.parent / profile) if profile else None
    if profile_path is not None and not profile_path.is_file():
        raise TenantsFileError(f"{where}: profile {str(profile_path)!r} is not a file")
    for key in ("dataset", "pipeline"):
        if key in entry and not NAME.fullmatch(entry[key]):
            raise TenantsFileError(
                f"{where}: {key} is lowercase letters, digits and _, starting with a letter"
            )
    return Tenant(
        name=name,
        secrets=secrets,
        dataset=entry.get("dataset", f"crm_{name}"),
        destination=entry.get("destination", "duckdb"),
        base_url=entry.get("base_url"),
        profile=profile_path,
        resources=tuple(resources) if resources else None,
        pipeline=entry.get("pipeline", f"{DEFAULT_PIPELINE}_{name}"),
    )


def _refuse_shared_datasets(file: Path, tenants: list[Tenant]) -> None:
    """Two tenants loading one dataset of one destination would merge into the same tables."""
    seen: dict[tuple[str, str], str] = {}
    for tenant in tenants:
        key = (tenant.destination, tenant.dataset)
        if key in seen:
            raise TenantsFileError(
                f"{file}: tenants {seen[key]} and {tenant.name} both load into dataset"
                f" {tenant.dataset!r} of {tenant.destination}: give each its own dataset"
            )
        seen[key] = tenant.name


@dataclass(frozen=True)
class LastRun:
    """A tenant's latest run, from the `_crmsync_runs` ledger in its destination."""

    run_id: str
    finished_at: datetime
    resources: int
    rows: int
    failed: int
    """Resources whose outcome was not `ok`."""

    @property
    def outcome(self) -> str:
        return "ok" if self.failed == 0 else f"{self.failed} not ok"


def last_run(tenant: Tenant) -> LastRun | None:
    """Reads the tenant's ledger from its destination; None before its first run. Nothing is
    written: the pipeline works in a throw-away folder, restored from the destination."""
    with tempfile.TemporaryDirectory(prefix="crmsync-tenants-") as folder:
        pipeline = make_pipeline(tenant.settings(), folder)
        if _duckdb_file_missing(pipeline):
            return None  # opening it would create it
        pipeline.sync_destination()
        if not any(RUNS_TABLE in schema.tables for schema in pipeline.schemas.values()):
            return None
        rows = (
            pipeline.dataset()
            .query(
                "select run_id, max(finished_at) as finished_at, count(*) as resources,"
                " coalesce(sum(rows), 0) as rows,"
                " sum(case when outcome = 'ok' then 0 else 1 end) as failed"
                f" from {RUNS_TABLE} group by run_id order by finished_at desc limit 1"
            )
            .fetchall()
        )
    if not rows:
        return None
    run_id, finished_at, resources, row_count, failed = rows[0]
    return LastRun(str(run_id), finished_at, int(resources), int(row_count), int(failed))


def _duckdb_file_missing(pipeline: dlt.Pipeline) -> bool:
    if pipeline.destination is None or pipeline.destination.destination_name != "duckdb":
        return False
    client = pipeline.destination_client()  # not entered: that would open (and create) it
    database = getattr(client.config.credentials, "database", None)
    return isinstance(database, str) and database != ":memory:" and not Path(database).exists()
