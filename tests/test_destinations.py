"""`crmsync run --destination X`: settings the dlt way, and `--dry-run`, which checks them first.

A dry run resolves the CRM settings and the destination's configuration, opens and closes a SQL
destination's connection, prints what a run would do and exits 0; or prints one line naming
the missing or wrong setting and exits 2. It never requests anything from the CRM.
"""

from __future__ import annotations

import json
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
from tests.support.cli import crm_env, run_crmsync
from tests.support.destinations import DeltaDestination, DuckDBDestination
from tests.support.postgres import PostgresServer
from tests.support.syncs import connection_to, fast_policy, profile_with, sync


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

    done = run_crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=env)

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
    done = run_crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=crm_env(crm))

    line = one_line_error(done)
    assert "DESTINATION__POSTGRES__CREDENTIALS" in line
    assert "[destination.postgres]" in line
    assert crm.requests == []


@pytest.mark.parametrize(
    ("in_secrets_toml", "named", "meant"),
    [
        (
            False,
            "DESTINATION__POSTGRES__CREDENTAILS",
            "did you mean DESTINATION__POSTGRES__CREDENTIALS?",
        ),
        (
            True,
            "prot under [destination.postgres.credentials] in secrets.toml",
            "did you mean port under",
        ),
    ],
    ids=["in-the-environment", "in-secrets-toml"],
)
def test_dry_run_names_a_mistyped_setting_and_what_was_meant(
    crm: DemoServer,
    workdir: Path,
    postgres_server: PostgresServer,
    in_secrets_toml: bool,
    named: str,
    meant: str,
) -> None:
    env = crm_env(crm)
    if in_secrets_toml:
        (workdir / ".dlt").mkdir()
        (workdir / ".dlt" / "secrets.toml").write_text(
            "[destination.postgres.credentials]\n"
            f'host = "127.0.0.1"\nprot = {postgres_server.port}\n'
        )
    else:
        env["DESTINATION__POSTGRES__CREDENTAILS"] = postgres_server.dsn

    done = run_crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=env)

    line = one_line_error(done)
    assert named in line
    assert meant in line


def test_dry_run_with_a_wrong_password_fails_on_connecting(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    wrong = postgres_server.dsn.replace(postgres_server.password, "not-the-password")
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTIALS": wrong}

    done = run_crmsync(workdir, "run", "--destination", "postgres", "--dry-run", env=env)

    line = one_line_error(done)
    assert "cannot connect to postgres" in line
    assert "not-the-password" not in line


def test_dry_run_checks_the_crm_settings_too(workdir: Path) -> None:
    done = run_crmsync(workdir, "run", "--dry-run", env={})

    assert "SOURCES__CRM__BASE_URL" in one_line_error(done)


def test_dry_run_on_duckdb_creates_no_file(crm: DemoServer, workdir: Path) -> None:
    done = run_crmsync(workdir, "run", "--dry-run", env=crm_env(crm))

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
    done = run_crmsync(
        workdir, "run", "--destination", "filesystem", "--dry-run", env={**crm_env(crm), **env}
    )

    assert named in one_line_error(done)


def test_dry_run_of_an_unknown_destination_names_it(crm: DemoServer, workdir: Path) -> None:
    done = run_crmsync(workdir, "run", "--destination", "snowflak", "--dry-run", env=crm_env(crm))

    assert "unknown destination 'snowflak'" in one_line_error(done)


def test_run_into_postgres_with_credentials_from_the_environment(
    crm: DemoServer, workdir: Path, postgres_server: PostgresServer
) -> None:
    env = {**crm_env(crm), "DESTINATION__POSTGRES__CREDENTIALS": postgres_server.dsn}

    done = run_crmsync(
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
    dry = run_crmsync(workdir, "run", "--destination", "filesystem", "--dry-run", env=crm_env(crm))
    assert dry.returncode == EXIT_OK, dry.stderr
    assert "delta tables, upsert on id" in dry.stdout
    assert not lake.exists() or not any(lake.iterdir())

    done = run_crmsync(workdir, "run", "--destination", "filesystem", env=crm_env(crm))

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
    ("staged_rows", "file_bytes", "columns", "memory_limit"),
    [
        ({}, [], 0, "64MB"),
        ({"contacts": 60, "accounts": 30}, [], 0, "65MB"),
        ({"contacts": 500_000, "events": 500_000, "accounts": 100}, [], 0, "80MB"),
        ({"contacts": 10_000_000}, [], 0, "370MB"),
        # 64 MB + 100 rows * 32 B + 50 MB file * 4 + 5,000 columns * 64 KiB = 576.5 MB
        ({"contacts": 100}, [2**20, 50 * 2**20], 5000, "577MB"),
    ],
    ids=[
        "nothing",
        "small-load",
        "a-million-records",
        "ten-million-contacts",
        "a-large-file-and-a-wide-table",
    ],
)
def test_duckdb_memory_limit_grows_with_the_largest_table_load_file_and_width(
    workdir: Path,
    staged_rows: dict[str, int],
    file_bytes: list[int],
    columns: int,
    memory_limit: str,
) -> None:
    pipeline = dlt.pipeline("crmsync", destination="duckdb", pipelines_dir=str(workdir))

    assert load_defaults(pipeline, staged_rows, "parquet", file_bytes, columns) == {
        "destination": {
            "duckdb": {"credentials": {"global_config": {"memory_limit": memory_limit}}}
        }
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


@pytest.mark.parametrize(
    ("global_config", "resources", "resolved"),
    [
        (None, None, ({"memory_limit": "66MB"}, "crmsync defaults")),
        ('{"threads": 1}', ("contacts",), ('{"threads": 1}', "Environment Variables")),
    ],
    ids=["crmsync-s-memory-limit", "configured-replaces-it"],
)
def test_a_duckdb_load_runs_under_crmsyncs_memory_limit_unless_configured(
    crm: DemoServer,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    global_config: str | None,
    resources: tuple[str, ...] | None,
    resolved: tuple[object, str],
) -> None:
    if global_config is not None:
        monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", global_config)

    result = sync(crm, DuckDBDestination(workdir), SyncOptions(resources=resources))

    assert duckdb_global_config(result) == resolved
    assert DuckDBDestination(workdir).ids("contacts") == sorted(crm.store.ids("contacts"))


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
