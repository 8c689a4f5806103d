"""The DAG factory's parts that need no Airflow: tenants → task groups, and the task's sync.

The DAG itself runs under Airflow in CI's own step (`make test-airflow`, .ci/airflow_dag_test.py),
in its own virtual environment: this suite never imports Airflow.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from crmsync.demo_server import DemoServer
from crmsync.failures import EXIT_CONFIG
from crmsync.scheduling.airflow_dag import (
    CrmSyncError,
    GroupSpec,
    TaskSpec,
    group_specs,
    sync_tenant,
)
from crmsync.scheduling.tenants import load_tenants

TENANTS = """
[tenants.acme]
resources = ["contacts", "events"]
[tenants.globex]
profile = "globex.toml"
[tenants.initech]
"""
GLOBEX_PROFILE = """
[[resources]]
name = "deals"
endpoint = { path = "/deals", data_selector = "deals" }
"""


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    (tmp_path / "globex.toml").write_text(GLOBEX_PROFILE)
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    return path


def test_one_group_per_tenant_with_one_task_that_syncs_all_its_resources(
    tenants_file: Path,
) -> None:
    groups = group_specs(load_tenants(tenants_file))

    assert groups == [
        GroupSpec("acme", (TaskSpec("sync", "acme", None),)),
        GroupSpec("globex", (TaskSpec("sync", "globex", None),)),
        GroupSpec("initech", (TaskSpec("sync", "initech", None),)),
    ]


def test_serialize_makes_one_task_per_resource_of_the_tenants_profile(tenants_file: Path) -> None:
    groups = group_specs(load_tenants(tenants_file), "serialize", only=["acme", "globex"])

    assert [(g.group_id, [t.task_id for t in g.tasks]) for g in groups] == [
        ("acme", ["sync_contacts", "sync_events"]),
        ("globex", ["sync_deals"]),  # its profile is its whole CRM
    ]
    assert groups[0].tasks[1] == TaskSpec("sync_events", "acme", ("events",))


@pytest.mark.parametrize("decompose", ["parallel", "parallel-isolated"])
def test_a_parallel_decomposition_of_one_tenant_is_refused(
    tenants_file: Path, decompose: str
) -> None:
    with pytest.raises(ValueError, match="never run in parallel, since their runs share"):
        group_specs(load_tenants(tenants_file), decompose)


def test_the_factory_imports_without_airflow() -> None:
    code = (
        "import sys, crmsync.scheduling.airflow_dag;"
        " assert 'airflow' not in sys.modules, 'airflow imported at import time'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr


def test_a_task_syncs_its_tenant_and_returns_the_json_result(
    start_crm: Callable[..., DemoServer], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = start_crm(username="acme-api", password="acme-pw")
    (workdir / "tenants.toml").write_text(f'[tenants.acme]\nbase_url = "{crm.base_url}"\n')
    monkeypatch.setenv("SOURCES__CRM_ACME__USERNAME", "acme-api")
    monkeypatch.setenv("SOURCES__CRM_ACME__PASSWORD", "acme-pw")

    result = sync_tenant(None, "acme", ["contacts"])

    live = len(crm.store.ids("contacts"))
    assert (result["outcome"], result["dataset"]) == ("ok", "crm_acme")
    assert result["tables"]["contacts"]["rows"] == live
    with duckdb.connect(str(workdir / "crmsync_acme.duckdb"), read_only=True) as db:
        assert db.execute("select count(*) from crm_acme.contacts").fetchone() == (live,)


def test_a_task_fails_with_crmsyncs_one_line_and_exit_code(
    start_crm: Callable[..., DemoServer], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = start_crm(username="acme-api", password="acme-pw")
    (workdir / "tenants.toml").write_text(f'[tenants.acme]\nbase_url = "{crm.base_url}"\n')
    monkeypatch.setenv("SOURCES__CRM_ACME__USERNAME", "acme-api")
    monkeypatch.setenv("SOURCES__CRM_ACME__PASSWORD", "not-the-pw")
    monkeypatch.setenv("SOURCES__CRM__HTTP__BACKOFF_FACTOR", "0.01")

    with pytest.raises(CrmSyncError) as error:
        sync_tenant(None, "acme", ["contacts"])

    assert error.value.exit_code == EXIT_CONFIG
    message = str(error.value)
    assert message.startswith("tenant acme: contacts: GET /contacts?"), message
    assert "401" in message and "SOURCES__CRM_ACME__USERNAME" in message
    assert "not-the-pw" not in message
