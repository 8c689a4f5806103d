"""The `crmsync` command as a user runs it: a separate process, its output and exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer, Fault
from crmsync.failures import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE
from tests.support.cli import CRMSYNC, SECRET, cli_env, crm_env, run_crmsync
from tests.support.syncs import RESOURCES
from tests.support.terminal import run_in_terminal, screen


@pytest.mark.parametrize("options", [[], ["--page-processes", "0"]], ids=["default", "in-process"])
def test_run_loads_five_tables_and_prints_rows_per_table(
    crm: DemoServer, workdir: Path, options: list[str]
) -> None:
    done = run_crmsync(workdir, "run", *options, env=crm_env(crm))

    assert done.returncode == EXIT_OK, done.stderr
    for resource in ("accounts", "contacts", "events", "products", "pipelines"):
        live = len(crm.store.ids(resource))
        assert f"  {resource:<28}{live:>10,}" in done.stdout, done.stdout
    assert "Elapsed:" in done.stdout
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as db:
        assert db.execute("select count(*) from crm.contacts").fetchone() == (
            len(crm.store.ids("contacts")),
        )


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({"SOURCES__CRM__BASE_URL"}, ["SOURCES__CRM__USERNAME", "SOURCES__CRM__PASSWORD"]),
        ({"SOURCES__CRM__BASE_URL", "SOURCES__CRM__USERNAME"}, ["SOURCES__CRM__PASSWORD"]),
        ({"SOURCES__CRM__USERNAME", "SOURCES__CRM__PASSWORD"}, ["SOURCES__CRM__BASE_URL"]),
        ({"SOURCES__CRM__BASE_URL", "SOURCES__CRM__PASSWORD"}, ["SOURCES__CRM__USERNAME"]),
    ],
    ids=["no-credentials", "no-password", "no-base-url", "a-bare-username-is-not-the-login"],
)
def test_a_missing_setting_is_named_in_one_line_with_exit_2(
    crm: DemoServer, workdir: Path, present: set[str], missing: list[str]
) -> None:
    """dlt would take a bare USERNAME (often the OS login) for the CRM's: it never does."""
    env = {k: v for k, v in crm_env(crm).items() if k in present}
    env.update(USERNAME=DEFAULT_USERNAME, LOGNAME=DEFAULT_USERNAME)

    done = run_crmsync(workdir, "run", env=env)

    assert done.returncode == EXIT_CONFIG
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("crmsync: missing CRM setting")
    for key in missing:
        assert key in done.stderr
    assert crm.requests == []


def test_settings_from_dot_dlt_files_are_used(crm: DemoServer, workdir: Path) -> None:
    (workdir / ".dlt").mkdir()
    (workdir / ".dlt" / "config.toml").write_text(f'[sources.crm]\nbase_url = "{crm.base_url}"\n')
    (workdir / ".dlt" / "secrets.toml").write_text(
        f'[sources.crm]\nusername = "{DEFAULT_USERNAME}"\npassword = "{DEFAULT_PASSWORD}"\n'
    )

    done = run_crmsync(workdir, "run", "--resources", "products")

    assert done.returncode == EXIT_OK, done.stderr
    assert {r.resource for r in crm.requests} == {"products"}


def test_wrong_credentials_fail_with_401_in_one_line_without_the_password(
    start_crm: object, workdir: Path
) -> None:
    server = start_crm(password="the-right-one")  # type: ignore[operator]

    done = run_crmsync(workdir, "run", env=crm_env(server, password=SECRET))

    assert done.returncode == EXIT_CONFIG
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("crmsync: ")
    assert "answered 401 Unauthorized" in message
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("password", "exit_code", "line"),
    [
        (DEFAULT_PASSWORD, EXIT_OK, r"OK    \w+"),
        (SECRET, EXIT_CONFIG, r"FAIL  \w+: .*answered 401.*"),
    ],
    ids=["ok", "wrong-credentials"],
)
def test_check_reads_page_1_of_each_resource_and_reports_ok_or_fail_with_the_reason(
    crm: DemoServer, workdir: Path, password: str, exit_code: int, line: str
) -> None:
    done = run_crmsync(workdir, "check", env=crm_env(crm, password=password))

    assert done.returncode == exit_code, done.stderr
    lines = done.stdout.splitlines()
    assert [re.fullmatch(line, shown) is not None for shown in lines] == [True] * 5, lines
    assert [shown.split()[1].rstrip(":") for shown in lines] == list(RESOURCES)
    assert [r.params.get("page[limit]") or r.params.get("limit") for r in crm.requests] == ["1"] * 5
    assert SECRET not in done.stdout + done.stderr


def test_a_config_file_adds_a_resource_and_changes_another(crm: DemoServer, workdir: Path) -> None:
    config = workdir / "crmsync.toml"
    config.write_text(
        """
[[resources]]
name = "contacts"
[resources.endpoint.paginator]
type = "crm_page_number"
page_param = "page[page]"
limit_param = "page[limit]"
limit = 25

[[resources]]
name = "activity"
endpoint = { path = "/events", data_selector = "events" }
"""
    )

    done = run_crmsync(
        workdir,
        "run",
        "--config",
        str(config),
        "--resources",
        "contacts,activity",
        env=crm_env(crm),
    )

    assert done.returncode == EXIT_OK, done.stderr
    contacts = crm.requests_for("contacts")
    assert {r.params["page[limit]"] for r in contacts} == {"25"}
    assert len(contacts) == -(-60 // 25)
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as db:
        activity = db.execute("select count(*) from crm.activity").fetchone()
    assert activity == (len(crm.store.ids("events")),)


def test_demo_starts_the_bundled_crm_and_loads_five_tables(workdir: Path) -> None:
    done = run_crmsync(workdir, "demo")

    assert done.returncode == EXIT_OK, done.stderr
    for resource in ("accounts", "contacts", "events", "products", "pipelines"):
        assert f"  {resource:<28}" in done.stdout
    assert (workdir / "crmsync.duckdb").exists()


@pytest.mark.parametrize("file_deleted", [True, False], ids=["new-file", "same-file"])
def test_a_second_run_reads_only_changes_unless_the_destination_file_is_new(
    crm: DemoServer, workdir: Path, file_deleted: bool
) -> None:
    """The cursors live with the data: a deleted DuckDB file means a full sync, not a delta."""
    assert run_crmsync(workdir, "run", env=crm_env(crm)).returncode == EXIT_OK
    if file_deleted:
        (workdir / "crmsync.duckdb").unlink()
    crm.clear_requests()

    done = run_crmsync(workdir, "run", env=crm_env(crm))

    assert done.returncode == EXIT_OK, done.stderr
    since = {r.params.get("updated_since") for r in crm.requests}
    if file_deleted:
        assert since == {None}  # every resource read whole
    else:
        assert None not in since  # every resource read from its cursor
    with duckdb.connect(str(workdir / "crmsync.duckdb"), read_only=True) as db:
        count = db.execute("select count(*) from crm.contacts").fetchone()
    assert count == (len(crm.store.ids("contacts")),)


def test_run_json_prints_the_summary_and_ledger_as_one_object(
    crm: DemoServer, workdir: Path
) -> None:
    done = run_crmsync(workdir, "run", "--json", env=crm_env(crm))

    assert done.returncode == EXIT_OK, done.stderr
    document = json.loads(done.stdout)
    assert (document["outcome"], document["destination"], document["dataset"]) == (
        "ok",
        "duckdb",
        "crm",
    )
    assert document["tables"]["contacts"]["rows"] == len(crm.store.ids("contacts"))
    ledger = {r["resource"]: r for r in document["resources"]}
    assert set(ledger) == {"accounts", "contacts", "events", "products", "pipelines"}
    assert (ledger["contacts"]["outcome"], ledger["contacts"]["complete"]) == ("ok", True)
    assert ledger["events"]["complete"] is None


def test_run_json_reports_a_failure_with_its_message_and_exit_code(
    crm: DemoServer, workdir: Path
) -> None:
    crm.faults.add(Fault("/contacts", "status", status=404, times=None))

    done = run_crmsync(workdir, "run", "--json", "--resources", "contacts", env=crm_env(crm))

    document = json.loads(done.stdout)
    assert done.returncode == document["exit_code"] == EXIT_SOURCE
    assert document["outcome"] == "failed"
    assert done.stderr.splitlines()[-1] == f"crmsync: {document['message']}"
    assert document["message"].startswith("contacts: GET /contacts?")
    assert [r["outcome"] for r in document["resources"]] == ["failed"]


def test_dlt_s_own_commands_see_the_last_run(crm: DemoServer, workdir: Path) -> None:
    assert run_crmsync(workdir, "run", env=crm_env(crm)).returncode == EXIT_OK
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt-data")}
    dlt_cli = str(Path(sys.executable).parent / "dlt")

    def dlt_pipeline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [dlt_cli, "pipeline", "crmsync", *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    info, trace, schema = dlt_pipeline("info"), dlt_pipeline("trace"), dlt_pipeline("schema")

    assert (info.returncode, trace.returncode, schema.returncode) == (0, 0, 0), info.stderr
    assert "dataset_name: crm" in info.stdout
    assert "Run started at" in trace.stdout and "load" in trace.stdout
    assert "contacts:" in schema.stdout
    assert DEFAULT_PASSWORD not in info.stdout + trace.stdout + schema.stdout


def test_progress_lines_are_written_at_an_interval_when_the_output_is_a_log(
    start_crm: Any, workdir: Path
) -> None:
    server: DemoServer = start_crm({"contacts": 3000}, latency_ms=150)

    done = run_crmsync(
        workdir,
        "run",
        "--resources",
        "contacts",
        "--progress-interval",
        "0.2",
        "--page-processes",
        "0",
        env={**crm_env(server), "SOURCES__CRM__HTTP__MAX_IN_FLIGHT": "1"},
    )

    assert done.returncode == EXIT_OK, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("crmsync: contacts")]
    assert [line for line in lines if re.search(r"/3,000 rows \(\d+%\)", line)], done.stderr
    for line in lines:
        assert re.fullmatch(
            r"crmsync: contacts [\d,]+(/[\d,]+ rows \(\d+%\)| rows), \d+ pages, [\d,]+ rows/s",
            line,
        ), line


def test_live_progress_fits_an_80_column_terminal(start_crm: Any, workdir: Path) -> None:
    server: DemoServer = start_crm({"contacts": 3000, "events": 2000}, latency_ms=100)
    env = cli_env(workdir, {**crm_env(server), "SOURCES__CRM__HTTP__MAX_IN_FLIGHT": "1"})

    code, output = run_in_terminal([CRMSYNC, "run"], workdir, env, columns=80)

    assert code == EXIT_OK, output
    shown = screen(output, columns=80, rows=60)
    bars = [line for line in shown if "rows/s" in line]
    assert [line for line in bars if line.startswith("contacts") and "100%" in line], shown
    assert not [line for line in bars if "WARNING" in line], shown  # logs above, not inside


def test_a_command_freezes_what_the_imports_made_so_that_the_exit_does_not_walk_it() -> None:
    """Python's exit collects every object still tracked; after `import dlt` that is 0.4 s, on
    a process whose end frees them anyway. The command freezes them as it starts."""
    code = (
        "import gc, sys; from crmsync.cli import main;"
        " main(['run', '--help'], standalone_mode=False, prog_name='crmsync');"
        " print(gc.get_freeze_count(), file=sys.stderr)"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert int(done.stderr.split()[-1]) > 50_000  # 96,000 with dlt 1.31
