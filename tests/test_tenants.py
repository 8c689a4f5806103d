"""Many CRM accounts, one tenants file: `crmsync run --tenant NAME` and `crmsync tenants`.

Two bundled CRMs of different sizes and logins stand for two customers' accounts; each tenant
loads into its own DuckDB file (`crmsync_<name>.duckdb`) and dataset, as its own pipeline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from crmsync.demo_server import DemoServer
from crmsync.failures import EXIT_CONFIG, EXIT_OK
from crmsync.scheduling.tenants import TenantsFileError, load_tenants
from tests.support.cli import SECRET, run_crmsync

ACME = {"accounts": 20, "contacts": 45, "events": 70, "products": 9, "pipelines": 3}
GLOBEX = {"accounts": 33, "contacts": 81, "events": 120, "products": 14, "pipelines": 6}
TENANTS_TOML = """
[tenants.acme]
base_url = "{acme}"
secrets = "sources.crm_acme"

[tenants.globex]
secrets = "sources.crm_globex"
dataset = "globex_crm"
"""


@pytest.fixture
def acme(start_crm: Callable[..., DemoServer]) -> DemoServer:
    return start_crm(ACME, seed=11, username="acme-api", password="acme-" + SECRET)


@pytest.fixture
def globex(start_crm: Callable[..., DemoServer]) -> DemoServer:
    return start_crm(GLOBEX, seed=12, username="globex-api", password="globex-" + SECRET)


@pytest.fixture
def tenants_env(workdir: Path, acme: DemoServer, globex: DemoServer) -> dict[str, str]:
    """The tenants file in the working folder, each tenant's login under its own section
    (globex's base URL there too, acme's in the file)."""
    (workdir / "tenants.toml").write_text(TENANTS_TOML.format(acme=acme.base_url))
    return {
        "SOURCES__CRM_ACME__USERNAME": "acme-api",
        "SOURCES__CRM_ACME__PASSWORD": "acme-" + SECRET,
        "SOURCES__CRM_GLOBEX__USERNAME": "globex-api",
        "SOURCES__CRM_GLOBEX__PASSWORD": "globex-" + SECRET,
        "SOURCES__CRM_GLOBEX__BASE_URL": globex.base_url,
    }


def count(workdir: Path, database: str, table: str) -> int:
    with duckdb.connect(str(workdir / database), read_only=True) as db:
        row = db.execute(f"select count(*) from {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_each_tenant_loads_its_own_crm_as_its_own_pipeline_never_sharing_a_cursor_and_is_listed(
    workdir: Path, acme: DemoServer, globex: DemoServer, tenants_env: dict[str, str]
) -> None:
    """One sequence of runs (once three tests, each running acme first): `tenants` before any
    run and after acme's first; acme again after changes, from its cursor; then globex's first
    run, a full one; each tenant in its own file, dataset and pipeline."""
    before = run_crmsync(workdir, "tenants", env=tenants_env)
    first = run_crmsync(workdir, "run", "--tenant", "acme", "--json", env=tenants_env)
    assert first.returncode == EXIT_OK, first.stderr

    after = run_crmsync(workdir, "tenants", env=tenants_env)

    assert before.returncode == after.returncode == EXIT_OK, after.stderr
    rows = {line.split()[0]: line for line in after.stdout.splitlines()[1:]}
    assert after.stdout.splitlines()[0].split() == [
        "tenant",
        "destination",
        "dataset",
        "CRM",
        "last",
        "run",
    ]
    assert [line.split()[-1] for line in before.stdout.splitlines()[1:]] == ["never", "never"]
    assert rows["acme"].split()[1:4] == ["duckdb", "crm_acme", acme.base_url]
    synced = sum(ACME.values())
    assert rows["acme"].endswith(f" ok, 5 resources, {synced:,} rows"), rows["acme"]
    assert rows["globex"].endswith(" never")
    assert not (workdir / "crmsync_globex.duckdb").exists()  # listing creates no database
    assert SECRET not in after.stdout + after.stderr

    acme.mutate("contacts", update=2, delete=1)
    acme.clear_requests()
    again = run_crmsync(workdir, "run", "--tenant", "acme", "--json", env=tenants_env)

    second = run_crmsync(workdir, "run", "--tenant", "globex", "--json", env=tenants_env)

    assert (again.returncode, second.returncode) == (EXIT_OK, EXIT_OK), again.stderr + second.stderr
    assert None not in {r.params.get("updated_since") for r in acme.requests}
    assert {r.params.get("updated_since") for r in globex.requests} == {None}
    live_acme = len(acme.store.ids("contacts"))
    live_globex = len(globex.store.ids("contacts"))
    assert live_acme != live_globex
    assert json.loads(again.stdout)["tables"]["contacts"]["rows"] == live_acme
    for server, database, dataset in [
        (acme, "crmsync_acme.duckdb", "crm_acme"),
        (globex, "crmsync_globex.duckdb", "globex_crm"),
    ]:
        for resource in ("accounts", "contacts", "events", "products", "pipelines"):
            live = len(server.store.ids(resource))
            assert count(workdir, database, f"{dataset}.{resource}") == live, (database, resource)
        with duckdb.connect(str(workdir / database), read_only=True) as db:
            pipelines = db.execute(
                f"select distinct pipeline_name from {dataset}._dlt_pipeline_state"
            ).fetchall()
        assert pipelines == [(database.removesuffix(".duckdb"),)]
    assert json.loads(first.stdout)["dataset"] == "crm_acme"
    assert json.loads(second.stdout)["dataset"] == "globex_crm"
    assert not (workdir / "crmsync.duckdb").exists()
    published = sorted(p.name for p in (workdir / "dlt-data" / "pipelines").iterdir())
    assert published == ["crmsync_acme", "crmsync_globex"]


def test_one_tenants_bad_credentials_fail_only_it(
    workdir: Path, acme: DemoServer, globex: DemoServer, tenants_env: dict[str, str]
) -> None:
    env = {**tenants_env, "SOURCES__CRM_ACME__PASSWORD": "wrong-" + SECRET}

    failed = run_crmsync(workdir, "run", "--tenant", "acme", env=env)
    synced = run_crmsync(workdir, "run", "--tenant", "globex", env=env)

    assert failed.returncode == EXIT_CONFIG
    last = failed.stderr.splitlines()[-1]
    # resources read in parallel: whichever is refused first is named, with its request
    assert re.match(r"crmsync: tenant acme: (\w+): GET /\1\?", last), last
    assert "401" in last and "SOURCES__CRM_ACME__USERNAME" in last, last
    assert "SOURCES__CRM__USERNAME" not in last
    assert SECRET not in failed.stdout + failed.stderr + synced.stdout + synced.stderr
    assert synced.returncode == EXIT_OK, synced.stderr
    live = len(globex.store.ids("contacts"))
    assert count(workdir, "crmsync_globex.duckdb", "globex_crm.contacts") == live
    with duckdb.connect(str(workdir / "crmsync_acme.duckdb"), read_only=True) as db:
        tables = db.execute(
            "select table_name from information_schema.tables where table_schema = 'crm_acme'"
        ).fetchall()
    assert [t for (t,) in tables if not t.startswith("_")] == []  # only the failed run's ledger
    listed = run_crmsync(workdir, "tenants", env=env)
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert " 5 not ok, 5 resources, 0 rows" in rows["acme"], listed.stdout
    assert " ok, 5 resources, " in rows["globex"], listed.stdout


def test_a_tenants_missing_login_names_its_own_section(
    workdir: Path, tenants_env: dict[str, str]
) -> None:
    env = {k: v for k, v in tenants_env.items() if "GLOBEX__PASSWORD" not in k}

    done = run_crmsync(workdir, "run", "--tenant", "globex", env=env)

    assert done.returncode == EXIT_CONFIG
    assert done.stderr.splitlines()[-1] == (
        "crmsync: tenant globex: missing CRM setting (basic auth): set"
        " SOURCES__CRM_GLOBEX__PASSWORD (or password under [sources.crm_globex] in"
        " .dlt/secrets.toml)"
    )


@pytest.mark.parametrize("option", ["--dataset-name=x", "--destination=postgres", "--base-url=x"])
def test_options_the_tenants_file_sets_are_refused_with_tenant(
    workdir: Path, tenants_env: dict[str, str], option: str
) -> None:
    done = run_crmsync(workdir, "run", "--tenant", "acme", option, env=tenants_env)

    assert done.returncode == EXIT_CONFIG
    name = option.split("=")[0]
    assert done.stderr.splitlines()[-1] == (
        f"crmsync: {name} cannot be combined with --tenant: the tenants file sets it per tenant"
    )


def test_an_unknown_tenant_names_the_known_ones(workdir: Path, tenants_env: dict[str, str]) -> None:
    done = run_crmsync(workdir, "run", "--tenant", "initech", env=tenants_env)

    assert done.returncode == EXIT_CONFIG
    assert done.stderr.splitlines()[-1] == (
        "crmsync: tenants.toml: no tenant 'initech'; its tenants: acme, globex"
    )


def test_a_tenant_inherits_defaults_and_takes_its_own_names(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text("")
    path = tmp_path / "tenants.toml"
    path.write_text(
        '[defaults]\ndestination = "postgres"\n'
        '[tenants.acme]\nprofile = "acme.toml"\nresources = ["contacts"]\n'
        '[tenants.globex]\ndestination = "duckdb"\npipeline = "globex_sync"\n'
    )

    acme, globex = load_tenants(path)

    assert (acme.secrets, acme.dataset, acme.pipeline, acme.destination) == (
        "sources.crm_acme",
        "crm_acme",
        "crmsync_acme",
        "postgres",
    )
    assert (acme.profile, acme.resources) == (tmp_path / "acme.toml", ("contacts",))
    assert (globex.destination, globex.pipeline, globex.profile) == ("duckdb", "globex_sync", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.acme]\nbaseurl = 'x'\n", "tenant acme: unknown key 'baseurl'; known: base_url,"),
        ("[tenants.Acme]\n", "tenant Acme: a tenant's name is lowercase letters, digits and _"),
        ("[tenants.acme]\nsecrets = 'crm'\n", "tenant acme: secrets must name a config section"),
        ("[tenants.acme]\nresources = 'contacts'\n", "tenant acme: resources must be a list"),
        ("[tenants.acme]\nprofile = 'nope.toml'\n", "tenant acme: profile "),
        ("[defaults]\ndataset = 'crm'\n[tenants.a]\n", "[defaults]: dataset is one tenant's own"),
        ("[tenant.acme]\n", "unknown table 'tenant'; use [tenants.NAME]"),
        ("", "no tenants; add a [tenants.NAME] table"),
        ("[tenants.a]\npipeline='p'\n[tenants.b]\npipeline='p'\n", "tenants a and b share the"),
        (
            "[tenants.a]\ndataset='crm'\n[tenants.b]\ndataset='crm'\n",
            "tenants a and b both load into dataset 'crm' of duckdb",
        ),
        ("[tenants.acme\n", "not a readable TOML file"),
    ],
)
def test_a_mistake_in_the_tenants_file_is_one_line_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(text)

    with pytest.raises(TenantsFileError) as error:
        load_tenants(path)

    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_a_missing_tenants_file_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError) as error:
        load_tenants(tmp_path / "none.toml")

    assert str(error.value) == (
        f"{tmp_path / 'none.toml'}: no tenants file; create it (see README, 'Many CRM accounts')"
        " or pass --tenants FILE (or set CRMSYNC_TENANTS)"
    )
