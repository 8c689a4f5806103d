"""Run crmsync for every CRM account of a tenants file on Apache Airflow 3.

Put this file in the dags folder; the workers need `pip install "crmsync[airflow,postgres]"`
(or the extra of your destination). It makes one task group per tenant of the tenants file
(`CRMSYNC_TENANTS`, else /srv/crmsync/tenants.toml): no dependencies between the groups, so the
executor runs tenants side by side and one tenant's failure fails its group alone. Each tenant
syncs as its own dlt pipeline (`crmsync_<tenant>`), one run at a time (see
`crmsync.scheduling.airflow_dag` for why a tenant's resources are never split into parallel tasks).

The workers read each tenant's credentials from the section its entry names, the dlt way:
`SOURCES__CRM_ACME__USERNAME`, `SOURCES__CRM_ACME__PASSWORD` (or `[sources.crm_acme]` in
`.dlt/secrets.toml` of the worker's working directory, or an Airflow secrets backend mapped to
those variables), and the destination's: `DESTINATION__POSTGRES__CREDENTIALS`.
`crmsync run --tenant acme --dry-run` on a worker checks one tenant's settings without loading.

Retries are Airflow's: two, five minutes apart; a configuration failure (exit code 2: a missing
setting, rejected credentials) fails its task at once. CI parses this file with Airflow
(`make test-airflow`) beside the DAGs it runs.
"""

from __future__ import annotations

import os
from datetime import timedelta

from crmsync.scheduling.airflow_dag import build_dag

dag = build_dag(
    os.environ.get("CRMSYNC_TENANTS", "/srv/crmsync/tenants.toml"),
    dag_id="crmsync_tenants_hourly",
    schedule="@hourly",
    decompose="none",  # or "serialize": one task per resource, one after another
    retries=2,
    retry_delay=timedelta(minutes=5),
)
