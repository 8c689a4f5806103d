"""CI's Airflow step (`make test-airflow`, run by .ci/run after `make test`), in .venv-airflow.

Real parts only: three bundled CRMs (`crmsync serve`, each its own seed, sizes and login) stand
for three customers' accounts; a real PostgreSQL (tests/support/postgres.py, installed if
missing); Airflow 3 with its own SQLite metadata database; the DAGs are
`crmsync.scheduling.airflow_dag`'s, run by `airflow dags test`:

1. `crmsync_tenants` (acme, globex: one task per tenant) and `crmsync_serialized` (initech: one
   task per resource, chained) load each tenant into its own dataset: exact counts per table.
2. The CRMs change (created, updated, soft-deleted contacts); the same DAGs again: exact counts,
   and the second run read only the changes (its ledger rows).
3. `crmsync_failing` (acme, and badco whose password is wrong): badco's group fails with
   crmsync's one-line message, acme's succeeds.

Exits non-zero with a message on the first mismatch; prints its run time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.postgres import PostgresServer  # noqa: E402

BIN = Path(sys.executable).parent
RESOURCES = {  # the page and size params of each list (shared/crm-api.md)
    "accounts": ("page[page]", "page[limit]"),
    "contacts": ("page[page]", "page[limit]"),
    "events": ("page", "limit"),
    "products": ("page[page]", "page[limit]"),
    "pipelines": ("page[page]", "page[limit]"),
}
TENANTS = {
    "acme": {"seed": 11, "accounts": 40, "contacts": 120, "events": 300, "products": 9},
    "globex": {"seed": 12, "accounts": 75, "contacts": 260, "events": 640, "products": 14},
    "initech": {"seed": 13, "accounts": 25, "contacts": 610, "events": 150, "products": 5},
}
DAG_FILE = """
import os
import re
from datetime import timedelta
from crmsync.scheduling.airflow_dag import build_dag

TENANTS = os.environ["CRMSYNC_TENANTS"]
tenants = build_dag(TENANTS, "crmsync_tenants", schedule=None, tenants=["acme", "globex"])
serialized = build_dag(
    TENANTS, "crmsync_serialized", schedule=None, decompose="serialize", tenants=["initech"]
)
failing = build_dag(  # a retry would show within seconds: exit 2 must not be retried
    TENANTS, "crmsync_failing", schedule=None, tenants=["badco", "acme"],
    retry_delay=timedelta(seconds=1),
)
"""


class Mismatch(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def serve(name: str, sizes: dict[str, int]) -> tuple[subprocess.Popen[str], str]:
    options = [f"--{k}={v}" for k, v in sizes.items()]
    process = subprocess.Popen(
        [
            str(BIN / "crmsync"),
            "serve",
            "--port=0",
            f"--username={name}-api",
            f"--password={name}-secret-pw",
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    check(line.startswith("listening on "), f"crmsync serve printed {line!r}")
    return process, line.removeprefix("listening on ")


def live_ids(base_url: str, tenant: str, resource: str) -> set[int]:
    """Every record the CRM serves without include_deleted: what the table must hold."""
    ids: set[int] = set()
    page = 1
    page_param, size_param = RESOURCES[resource]
    while True:
        response = requests.get(
            f"{base_url}/{resource}",
            params={page_param: page, size_param: 500},
            auth=(f"{tenant}-api", f"{tenant}-secret-pw"),
            timeout=30,
        )
        response.raise_for_status()
        records = response.json()[resource]
        ids.update(record["id"] for record in records)
        if len(records) < 500:
            return ids
        page += 1


def dags_test(dag_id: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", dag_id],
        env=env,
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(
        f"  airflow dags test {dag_id}: exit {done.returncode}, {time.monotonic() - started:.1f}s",
        flush=True,
    )
    return done


def runs(postgres: PostgresServer, dataset: str) -> list[dict[str, Any]]:
    rows = postgres.fetch(
        f"select run_id, resource, rows, outcome, finished_at from {dataset}._crmsync_runs"
        " order by finished_at"
    )
    keys = ("run_id", "resource", "rows", "outcome", "finished_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def count(postgres: PostgresServer, table: str) -> int:
    return int(postgres.fetch(f"select count(*) from {table}")[0][0])  # type: ignore[call-overload]


def check_counts(postgres: PostgresServer, urls: dict[str, str], tenant: str) -> None:
    for resource in RESOURCES:
        expected = len(live_ids(urls[tenant], tenant, resource))
        got = count(postgres, f"crm_{tenant}.{resource}")
        check(got == expected, f"{tenant}: {resource} holds {got} rows, the CRM {expected}")
    print(f"  {tenant}: exact counts in crm_{tenant}", flush=True)


def main() -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="crmsync-airflow-"))
    servers: dict[str, subprocess.Popen[str]] = {}
    urls: dict[str, str] = {}
    postgres = PostgresServer().start()
    try:
        for tenant, sizes in TENANTS.items():
            servers[tenant], urls[tenant] = serve(tenant, sizes)
        tenants_file = work / "tenants.toml"
        tenants_file.write_text(
            '[defaults]\ndestination = "postgres"\n'
            + "".join(f'[tenants.{t}]\nbase_url = "{urls[t]}"\n' for t in TENANTS)
            + f'[tenants.badco]\nbase_url = "{urls["acme"]}"\n'
        )
        (work / "dags").mkdir()
        (work / "dags" / "crmsync_dags.py").write_text(DAG_FILE)
        example = ROOT / "examples" / "schedule_with_airflow.py"
        (work / "dags" / "schedule_with_airflow.py").write_text(example.read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "AIRFLOW"))}
        env.update(
            AIRFLOW_HOME=str(work),
            AIRFLOW__CORE__DAGS_FOLDER=str(work / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            DLT_DATA_DIR=str(work / "dlt-data"),
            CRMSYNC_TENANTS=str(tenants_file),
            DESTINATION__POSTGRES__CREDENTIALS=postgres.dsn,
            SOURCES__CRM_BADCO__USERNAME="acme-api",
            SOURCES__CRM_BADCO__PASSWORD="wrong-secret-pw",
        )
        for tenant in TENANTS:
            env[f"SOURCES__CRM_{tenant.upper()}__USERNAME"] = f"{tenant}-api"
            env[f"SOURCES__CRM_{tenant.upper()}__PASSWORD"] = f"{tenant}-secret-pw"
        migrated = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
        )
        check(migrated.returncode == 0, f"airflow db migrate failed:\n{migrated.stderr[-3000:]}")
        listed = subprocess.run(
            [str(BIN / "airflow"), "dags", "list", "--local", "--output", "plain"],
            env=env,
            capture_output=True,
            text=True,
        )
        dag_ids = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
        expected = {
            "crmsync_tenants",
            "crmsync_serialized",
            "crmsync_failing",
            "crmsync_tenants_hourly",
        }
        check(expected <= dag_ids, f"DAGs missing: {listed.stdout}\n{listed.stderr[-3000:]}")
        print("  the DAGs and examples/schedule_with_airflow.py parse", flush=True)

        print("first run:", flush=True)
        for dag_id in ("crmsync_tenants", "crmsync_serialized"):
            done = dags_test(dag_id, env)
            check(done.returncode == 0, f"{dag_id} failed:\n{done.stdout[-5000:]}")
        for tenant in TENANTS:
            check_counts(postgres, urls, tenant)
        first = {t: runs(postgres, f"crm_{t}") for t in TENANTS}
        check(len({r["run_id"] for r in first["initech"]}) == 5, "initech: not 5 serialized runs")
        check(len({r["run_id"] for r in first["acme"]}) == 1, "acme: not one run")

        print("second run, after changes:", flush=True)
        for tenant in TENANTS:
            subprocess.run(
                [
                    str(BIN / "crmsync"),
                    "mutate",
                    f"--base-url={urls[tenant]}",
                    f"--username={tenant}-api",
                    f"--password={tenant}-secret-pw",
                    "--resource=contacts",
                    "--create=5",
                    "--update=3",
                    "--delete=2",
                ],
                check=True,
                capture_output=True,
            )
        for dag_id in ("crmsync_tenants", "crmsync_serialized"):
            done = dags_test(dag_id, env)
            check(done.returncode == 0, f"{dag_id} failed:\n{done.stdout[-5000:]}")
        for tenant in TENANTS:
            check_counts(postgres, urls, tenant)
            later = runs(postgres, f"crm_{tenant}")[len(first[tenant]) :]
            read = {r["resource"]: r["rows"] for r in later}
            full = TENANTS[tenant]["contacts"]
            check(
                10 <= read["contacts"] < full,
                f"{tenant}: the second run read {read['contacts']} contacts of {full}: not"
                " incremental",
            )
            print(f"  {tenant}: second run read {read['contacts']} contacts (10 changed)")

        print("a tenant with a wrong password:", flush=True)
        done = dags_test("crmsync_failing", env)
        output = done.stdout + done.stderr
        # resources are read in parallel: whichever is refused first names itself and its request
        line = re.compile(r"crmsync: tenant badco: (\w+): GET /\1\?")
        attempts = [x for x in output.splitlines() if line.search(x)]
        check(bool(attempts), f"no one-line failure for badco in:\n{output[-5000:]}")
        message = attempts[0]
        tries = len({r["run_id"] for r in runs(postgres, "crm_badco")})  # one ledger per try
        check(tries == 1, f"badco's task was tried {tries} times: exit 2 is not retried")
        check("401" in message and "SOURCES__CRM_BADCO__USERNAME" in message, message)
        check("wrong-secret-pw" not in output, "the password was printed")
        acme_runs = runs(postgres, "crm_acme")
        check(
            acme_runs[-1]["outcome"] == "ok" and len(acme_runs) > len(first["acme"]) + 5,
            "acme did not sync beside the failing tenant",
        )
        print(f"  badco failed alone: {message.strip()[message.find('crmsync:') :]}")
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(timeout=30)
        postgres.stop()
    print(f"Airflow CI step passed in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except Mismatch as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
