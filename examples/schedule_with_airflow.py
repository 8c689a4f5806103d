"""Run crmsync on a schedule with Apache Airflow 3.

This module imports only crmsync; Airflow is imported when `build_dag()` is called, so the file
imports cleanly (and `sync_crm` is usable) where Airflow is not installed. In Airflow, put this
file next to a two-line DAG file in the dags folder (or copy both into one file):

    from schedule_with_airflow import build_dag

    dag = build_dag(schedule="@hourly", destination="postgres")

The worker needs `pip install crmsync[postgres]` (or the extra of your destination) and the
settings the dlt way: `SOURCES__CRM__BASE_URL`, `SOURCES__CRM__USERNAME`,
`SOURCES__CRM__PASSWORD`, `DESTINATION__POSTGRES__CREDENTIALS` as environment variables of
the worker, or `.dlt/secrets.toml` in its working directory. `crmsync run --destination postgres
--dry-run` on the worker checks them without loading.

Each run is incremental: the cursor lives in the destination, so any worker can run the next
one. Runs of one DAG must not overlap (`max_active_runs=1`): two syncs would merge the same
records concurrently. A configuration failure (exit code 2: a missing setting, rejected
credentials) fails the task without retries; a CRM or destination failure is retried.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crmsync.connection import CrmConnection
from crmsync.failures import EXIT_CONFIG, describe
from crmsync.source import SyncOptions
from crmsync.sync import DEFAULT_DATASET, RunSettings, SyncFailed, run_sync


class CrmSyncError(Exception):
    """A failed sync, with crmsync's exit code and its one-line message."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def sync_crm(
    destination: str = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    pipelines_dir: str | None = None,
    full_refresh: bool = False,
) -> dict[str, int]:
    """One sync, as `crmsync run` does it; rows per table after the run, or `CrmSyncError`."""
    try:
        connection = CrmConnection.from_config()
        result = run_sync(
            connection,
            RunSettings(
                destination=destination, dataset_name=dataset_name, pipelines_dir=pipelines_dir
            ),
            SyncOptions(full_refresh=full_refresh),
        )
    except SyncFailed as error:
        failure = describe(error.__cause__ or error, error.attempts)
        raise CrmSyncError(failure.exit_code, failure.message) from error
    except Exception as error:
        failure = describe(error)
        raise CrmSyncError(failure.exit_code, failure.message) from error
    return result.data_tables


def build_dag(
    dag_id: str = "crmsync",
    schedule: str | timedelta = "@hourly",
    destination: str = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    retries: int = 2,
) -> Any:
    """An Airflow DAG with one task that runs `sync_crm`; call it from a file in the dags folder."""
    from datetime import datetime

    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowFailException

    def run() -> dict[str, int]:
        try:
            return sync_crm(destination=destination, dataset_name=dataset_name)
        except CrmSyncError as error:
            if error.exit_code == EXIT_CONFIG:
                raise AirflowFailException(str(error)) from error  # retrying will not help
            raise

    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": retries, "retry_delay": timedelta(minutes=5)},
        tags=["crmsync"],
    ) as dag:
        PythonOperator(task_id="sync_crm", python_callable=run)
    return dag
