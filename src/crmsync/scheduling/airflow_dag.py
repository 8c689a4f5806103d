"""An Airflow DAG for every tenant of a tenants file: `pip install crmsync[airflow]`.

```python
# dags/crmsync_tenants.py
from crmsync.scheduling.airflow_dag import build_dag

dag = build_dag("/srv/crmsync/tenants.toml", schedule="@hourly")
```

One task group per tenant, with no dependencies between groups: the executor runs tenants in
parallel, and one tenant's failure fails its group alone. Within a group, state safety decides
the shape. A tenant is one dlt pipeline, and a run of it writes the whole pipeline state (every
resource's cursor) to the destination, and merges through one staging dataset: two runs of one
tenant at once would each write a state missing the other's cursor (the later one wins, the
earlier's cursor is lost) and share staging tables. So a tenant's runs never overlap:

- `decompose="none"` (the default): one task per tenant syncs all its resources in one run,
  as `crmsync run --tenant NAME` does: one HTTP budget and rate limit for the account, one
  ledger entry, the fastest.
- `decompose="serialize"`: one task per resource, chained one after another (dlt's
  `PipelineTasksGroup` calls this `serialize`), so each resource is retried on its own.

A parallel decomposition of one tenant is refused. `max_active_runs=1` keeps a DAG run from
overlapping the previous one. Every task starts from a fresh working folder restored from the
destination (`crmsync.loading.sync.working_folder`), so any worker, pod or retry can run it.

dlt's `PipelineTasksGroup` itself is not used: it takes a source built when the DAG file is
parsed (reading credentials on the scheduler) and runs plain `pipeline.run`, without crmsync's
run (the ledger, the first read's replace, the shared request budget, the exit codes).

Retries are Airflow's (`retries`, `retry_delay`); a configuration failure (exit code 2: a
missing setting, rejected credentials) fails at once, since retrying cannot help. A task's
failure is crmsync's one line (`tenant acme: contacts: GET /contacts?... answered 503 ...`),
and a task returns the run's JSON result (`crmsync run --json`) as its XCom.

This module imports without Airflow: `group_specs` (tenants → groups and tasks) is plain data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from crmsync.failures import EXIT_CONFIG, Failure, describe
from crmsync.profiles.profile import resource_names
from crmsync.scheduling.tenants import Tenants, load_tenants

Decompose = Literal["none", "serialize"]
DECOMPOSE: tuple[Decompose, ...] = ("none", "serialize")


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    tenant: str
    resources: tuple[str, ...] | None
    """None: the tenant's resources (all of its profile's, or its `resources`)."""


@dataclass(frozen=True)
class GroupSpec:
    group_id: str
    tasks: tuple[TaskSpec, ...]
    """Run one after another, never at once (see the module's docstring)."""


def group_specs(
    tenants: Tenants, decompose: str = "none", only: list[str] | None = None
) -> list[GroupSpec]:
    """One group per tenant (of `only`, if given), its tasks in order."""
    if decompose not in DECOMPOSE:
        raise ValueError(
            f"decompose={decompose!r}: use 'none' (one task per tenant) or 'serialize' (one"
            " task per resource, one after another); a tenant's resources never run in"
            " parallel, since their runs share the tenant's pipeline state and staging tables"
        )
    chosen = [tenants.get(name) for name in only] if only else list(tenants)
    groups = []
    for tenant in chosen:
        if decompose == "none":
            tasks: tuple[TaskSpec, ...] = (TaskSpec("sync", tenant.name, None),)
        else:
            names = tenant.resources or resource_names(tenant.load_profile())
            tasks = tuple(TaskSpec(f"sync_{name}", tenant.name, (name,)) for name in names)
        groups.append(GroupSpec(tenant.name, tasks))
    return groups


class CrmSyncError(Exception):
    """A failed sync: crmsync's one-line message, and the exit code `crmsync run` would end
    with (`crmsync.failures`)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.exit_code = failure.exit_code


def sync_tenant(
    tenants_file: str | Path | None,
    tenant: str,
    resources: list[str] | tuple[str, ...] | None = None,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """One sync of one tenant, as `crmsync run --tenant NAME --json` runs it: the tenants file
    and the tenant's credentials are read here, where the task runs. Returns the JSON result;
    raises `CrmSyncError` with crmsync's one-line message."""
    from crmsync.ledger import RunLedger
    from crmsync.loading.sync import SyncFailed, run_sync
    from crmsync.reading.source import SyncOptions
    from crmsync.reporting.progress import progress
    from crmsync.reporting.run_report import result_document

    known = None
    try:
        known = load_tenants(tenants_file).get(tenant)
        profile = known.load_profile()
        connection = known.connection(profile)
        settings = known.settings()
        sync = SyncOptions(
            resources=tuple(resources) if resources else known.resources,
            full_refresh=full_refresh,
        )
        ledger = RunLedger()
        with progress(ledger, stream=sys.stderr, waiting=lambda: ledger.holding()):
            result = run_sync(connection, settings, sync, profile, ledger=ledger)
    except SyncFailed as error:
        failure = describe(error.__cause__ or error, error.attempts)
        raise CrmSyncError(known.failure(failure) if known else failure) from error
    except Exception as error:
        failure = describe(error)
        raise CrmSyncError(known.failure(failure) if known else failure) from error
    return result_document(result, settings)


def run_task(tenants_file: str, tenant: str, resources: list[str] | None = None) -> dict[str, Any]:
    """The Airflow task: `sync_tenant`, with a configuration failure made final."""
    try:
        return sync_tenant(tenants_file, tenant, resources)
    except CrmSyncError as error:
        print(f"crmsync: {error}", file=sys.stderr, flush=True)
        if error.exit_code == EXIT_CONFIG:
            raise _fail_exception()(str(error)) from None  # retrying cannot help
        raise


def _fail_exception() -> type[Exception]:
    """Airflow's exception that fails a task without its retries (3.1: `airflow.exceptions`;
    later versions also export it from `airflow.sdk.exceptions`)."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:
        from airflow.exceptions import AirflowFailException
    return AirflowFailException  # type: ignore[no-any-return]


def build_dag(
    tenants_file: str | Path,
    dag_id: str = "crmsync_tenants",
    schedule: str | timedelta | None = "@hourly",
    decompose: str = "none",
    tenants: list[str] | None = None,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=5),
    start_date: datetime | None = None,
    pool: str | None = None,
    **dag_kwargs: Any,
) -> Any:
    """The DAG: one task group per tenant of `tenants_file` (or of `tenants`), see the module.

    The tenants file is read here (names, profiles, resources: no secrets) to shape the DAG,
    and again by each task when it runs. `pool` puts every task in that Airflow pool (to cap
    concurrent syncs into one warehouse); the rest goes to Airflow's `DAG`."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, TaskGroup

    path = Path(tenants_file).resolve()
    specs = group_specs(load_tenants(path), decompose, tenants)
    dag_kwargs.setdefault("max_active_runs", 1)
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("tags", ["crmsync"])
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date or datetime(2026, 1, 1),
        default_args={
            "retries": retries,
            "retry_delay": retry_delay,
            **({"pool": pool} if pool else {}),
        },
        **dag_kwargs,
    ) as dag:
        for spec in specs:
            with TaskGroup(group_id=spec.group_id):
                previous = None
                for task in spec.tasks:
                    operator = PythonOperator(
                        task_id=task.task_id,
                        python_callable=run_task,
                        op_kwargs={
                            "tenants_file": str(path),
                            "tenant": task.tenant,
                            "resources": list(task.resources) if task.resources else None,
                        },
                    )
                    if previous is not None:
                        previous >> operator
                    previous = operator
    return dag
