"""`crmsync run --destination X`: settings the dlt way, and `--dry-run`, which checks them first.

A dry run resolves the CRM settings and the destination's configuration, opens and closes a SQL
destination's connection, prints what a run would do and exits 0; or prints one line naming
the missing or wrong setting and exits 2. It never requests anything from the CRM.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dlt
import duckdb
import pytest
from deltalake import DeltaTable

from crmsync.demo_server import DemoServer
from crmsync.failures import EXIT_CONFIG, EXIT_OK
from crmsync.loading.destinations import load_defaults
from crmsync.loading.sync import SyncResult, run_sync
from crmsync.reading.source import SyncOptions
from tests.conftest import connection_to, fast_policy, profile_with, sync
from tests.support.destinations import DeltaDestination, DuckDBDestination
from tests.support.postgres import PostgresServer
from tests.test_cli import CRMSYNC, crm_env


def crmsync(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command in `workdir`, with no destination or CRM setting but those in `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    base.update(DLT_DATA_DIR=str(workdir / "dlt-data"), SOURCES__CRM__HTTP__BACKOFF_FACTOR="0.01")
    return subprocess.run(
        [CRMSYNC, *args],
        cwd=workdir,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == EXIT_CONFIG, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("crmsync: ")
    return lines[0]


def test_dry_run_with_postgres_credentials_connects_and_loads_nothing(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTIALS": postgres_server.dsn}

    done = crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=env)

    assert done.returncode == EXIT_OK, done.stderr
    assert "connection   ok" in done.stdout
    assert f"127.0.0.1:{postgres_server.port}" in done.stdout
    assert postgres_server.password not in done.stdout + done.stderr
    assert crm.requests == []
    schemas = "select count(*) from information_schema.schemata where schema_name = 'crm'"
    assert postgres_server.fetch(schemas) == [(0,)]


def test_dry_run_without_postgres_credentials_names_the_setting(
    crm: DemoServer, workdir: Path
) -> None:
    done = crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=crm_env(crm))

    line = one_line_error(done)
    assert "DESTINATION__POSTGRES__CREDENTIALS" in line
    assert "[destination.postgres]" in line
    assert crm.requests == []


def test_dry_run_names_a_mistyped_setting_and_what_was_meant(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTAILS": postgres_server.dsn}

    done = crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=env)

    line = one_line_error(done)
    assert "DESTINATION__POSTGRES__CREDENTAILS" in line
    assert "did you mean DESTINATION__POSTGRES__CREDENTIALS?" in line


def test_dry_run_names_a_mistyped_setting_in_secrets_toml(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    (workdir / ".dlt").mkdir()
    (workdir / ".dlt" / "secrets.toml").write_text(
        f'[destination.postgres.credentials]\nhost = "127.0.0.1"\nprot = {postgres_server.port}\n'
    )

    done = crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=crm_env(crm))

    line = one_line_error(done)
    assert "prot under [destination.postgres.credentials] in secrets.toml" in line
    assert "did you mean port under" in line


def test_dry_run_with_a_wrong_password_fails_on_connecting(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    wrong = postgres_server.dsn.replace(postgres_server.password, "not-the-password")
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTIALS": wrong}

    done = crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=env)

    line = one_line_error(done)
    assert "cannot connect to postgres" in line
    assert "not-the-password" not in line


def test_dry_run_checks_the_crm_settings_too(workdir: Path) -> None:
    done = crmsync(workdir, "run", "--dry-run", env={})

    assert "SOURCES__CRM__BASE_URL" in one_line_error(done)


def test_dry_run_on_duckdb_creates_no_file(crm: DemoServer, workdir: Path) -> None:
    done = crmsync(workdir, "run", "--dry-run", env=crm_env(crm))

    assert done.returncode == EXIT_OK, done.stderr
    assert "destination  duckdb" in done.stdout
    assert not list(workdir.glob("*.duckdb"))
    assert crm.requests == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "DESTINATION__FILESYSTEM__BUCKET_URL"),
        (
            {"DESTINATION__FILESYSTEM__BUCKET_URI": "file:///tmp/lake"},
            "did you mean DESTINATION__FILESYSTEM__BUCKET_URL?",
        ),
        (
            {
                "DESTINATION__FILESYSTEM__BUCKET_URL": "file:///tmp/lake",
                "DESTINATION__FILESYSTEM__TABLE_FORMAT": "detla",
            },
            "table_format 'detla' is not supported",
        ),
    ],
    ids=["no-bucket", "bucket-typo", "table-format-typo"],
)
def test_dry_run_on_files_names_the_wrong_setting(
    crm: DemoServer, workdir: Path, env: dict[str, str], named: str
) -> None:
    done = crmsync(
        workdir, "run", "--destination", "filesystem", "--dry-run", env={**crm_env(crm), **env}
    )

    assert named in one_line_error(done)


def test_dry_run_of_an_unknown_destination_names_it(crm: DemoServer, workdir: Path) -> None:
    done = crmsync(workdir, "run", "--destination", "snowflak", "--dry-run", env=crm_env(crm))

    assert "unknown destination 'snowflak'" in one_line_error(done)


def test_run_into_postgres_with_credentials_from_the_environment(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTIALS": postgres_server.dsn}

    done = crmsync(
        workdir, "run", "--destination", "postgres", "--dataset-name", "crm_cli", env=env
    )

    assert done.returncode == EXIT_OK, done.stderr
    live = len(crm.store.ids("contacts"))
    counts = postgres_server.fetch("select count(*), count(distinct id) from crm_cli.contacts")
    assert counts == [(live, live)]


def test_run_into_delta_tables_from_config_files(crm: DemoServer, workdir: Path) -> None:
    lake = workdir / "lake"
    (workdir / ".dlt").mkdir()
    (workdir / ".dlt" / "config.toml").write_text(
        f'[destination.filesystem]\nbucket_url = "{lake.as_uri()}"\ntable_format = "delta"\n'
    )
    dry = crmsync(workdir, "run", "--destination", "filesystem", "--dry-run", env=crm_env(crm))
    assert dry.returncode == EXIT_OK, dry.stderr
    assert "delta tables, upsert on id" in dry.stdout
    assert not lake.exists() or not any(lake.iterdir())

    done = crmsync(workdir, "run", "--destination", "filesystem", env=crm_env(crm))

    assert done.returncode == EXIT_OK, done.stderr
    with duckdb.connect() as db:
        db.register("contacts", DeltaTable(str(lake / "crm" / "contacts")).to_pyarrow_dataset())
        ids = [row[0] for row in db.execute("select id from contacts order by id").fetchall()]
    assert ids == sorted(crm.store.ids("contacts"))


def duckdb_global_config(result: SyncResult) -> tuple[object, str]:
    """The `global_config` the run's load resolved, and which config provider gave it."""
    assert result.load_info is not None
    trace = result.load_info.pipeline.last_trace
    assert trace is not None
    (value,) = [
        (t.value, t.provider_name)
        for t in trace.resolved_config_values
        if t.key == "global_config" and t.sections[:2] == ["destination", "duckdb"]
    ]
    return value


@pytest.mark.parametrize(
    ("staged_rows", "memory_limit"),
    [
        ({}, "64MB"),
        ({"contacts": 60, "accounts": 30}, "65MB"),
        ({"contacts": 500_000, "events": 500_000, "accounts": 100}, "80MB"),
        ({"contacts": 10_000_000}, "370MB"),
    ],
    ids=["nothing", "small-load", "a-million-records", "ten-million-contacts"],
)
def test_duckdb_memory_limit_grows_only_with_the_largest_staged_table(
    workdir: Path, staged_rows: dict[str, int], memory_limit: str
) -> None:
    pipeline = dlt.pipeline("crmsync", destination="duckdb", pipelines_dir=str(workdir))

    assert load_defaults(pipeline, staged_rows, "parquet") == {
        "destination": {
            "duckdb": {"credentials": {"global_config": {"memory_limit": memory_limit}}}
        }
    }


def test_duckdb_memory_limit_grows_with_the_largest_load_file_and_the_widest_table(
    workdir: Path,
) -> None:
    pipeline = dlt.pipeline("crmsync", destination="duckdb", pipelines_dir=str(workdir))

    # 64 MB + 100 rows * 32 B + 50 MB file * 4 + 5,000 columns * 64 KiB = 576.5 MB
    defaults = load_defaults(pipeline, {"contacts": 100}, "parquet", [2**20, 50 * 2**20], 5000)

    assert defaults["destination"]["duckdb"]["credentials"]["global_config"] == {
        "memory_limit": "577MB"
    }


@pytest.mark.parametrize(
    ("destination", "file_format"),
    [("postgres", "parquet"), ("duckdb", "jsonl"), ("duckdb", "insert_values")],
)
def test_no_memory_limit_is_set_but_for_parquet_into_duckdb(
    workdir: Path, destination: str, file_format: str
) -> None:
    pipeline = dlt.pipeline("crmsync", destination=destination, pipelines_dir=str(workdir))

    assert load_defaults(pipeline, {"contacts": 1_000_000}, file_format) == {}


@pytest.mark.parametrize("file_format", ["jsonl", "insert_values"])
def test_other_loader_file_formats_load_into_duckdb_exactly(
    crm: DemoServer, workdir: Path, file_format: str
) -> None:
    destination = DuckDBDestination(workdir)
    settings = destination.settings()
    settings.loader_file_format = file_format

    run_sync(connection_to(crm), settings, policy=fast_policy())

    for resource in ("accounts", "contacts", "events", "products", "pipelines"):
        assert destination.ids(resource) == sorted(crm.store.ids(resource)), resource


def test_a_duckdb_load_runs_under_crmsyncs_memory_limit(crm: DemoServer, workdir: Path) -> None:
    result = sync(crm, DuckDBDestination(workdir))

    assert duckdb_global_config(result) == ({"memory_limit": "66MB"}, "crmsync defaults")
    assert DuckDBDestination(workdir).ids("contacts") == sorted(crm.store.ids("contacts"))


def test_a_configured_duckdb_global_config_replaces_the_memory_limit(
    crm: DemoServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"threads": 1}')

    result = sync(crm, DuckDBDestination(workdir), SyncOptions(resources=("contacts",)))

    assert duckdb_global_config(result) == ('{"threads": 1}', "Environment Variables")


@pytest.mark.parametrize("declared", [True, False], ids=["in-list-fields", "undeclared"])
def test_a_list_field_of_a_resource_of_yours_stays_in_its_row_on_delta_if_declared(
    crm: DemoServer, workdir: Path, declared: bool
) -> None:
    profile = profile_with(
        workdir,
        '[[resources]]\nname = "boards"\n'
        'endpoint = { path = "/pipelines", data_selector = "pipelines" }\n'
        + ('list_fields = ["stages"]\n' if declared else ""),
    )
    destination = DeltaDestination(workdir)
    live = crm.store.records("pipelines", include_deleted=False)

    result = sync(crm, destination, SyncOptions(resources=("boards",)), profile=profile)

    assert destination.ids("boards") == sorted(crm.store.ids("pipelines"))
    if declared:
        assert destination.tables() & {"boards", "boards__stages"} == {"boards"}
        stages = destination.query("select stages from {boards} where stages is not null limit 1")
        assert isinstance(json.loads(stages[0][0]), list)
    else:  # a child table, which is Delta too, counted without DuckDB's delta extension
        assert result.table_rows["boards__stages"] == sum(len(r["stages"]) for r in live)
