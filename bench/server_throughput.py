"""How fast the demo CRM serves records, so sync benchmarks know it is not their bottleneck.

Starts ``python -m crmsync.demo_server`` with the benchmark's data set (20,000 accounts,
200,000 contacts, 200,000 events), then pulls every page of ``/contacts`` at the largest
page size, once over one keep-alive session and once from four threads.

Run: ``PYTHONPATH=src .venv/bin/python bench/server_throughput.py``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import requests

SIZES = {"accounts": 20_000, "contacts": 200_000, "events": 200_000}
PAGE_SIZE = 500
THREADS = 4
AUTH = ("demo", "demo-password")
SRC = Path(__file__).resolve().parent.parent / "src"


def start_server() -> tuple[subprocess.Popen[str], str, float]:
    """The server process, its base URL, and the seconds until it listened."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "crmsync.demo_server", "--port", "0"]
    command += [arg for name, count in SIZES.items() for arg in (f"--{name}", str(count))]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    elapsed = time.perf_counter() - started
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.removeprefix("listening on "), elapsed


def fetch_pages(session: requests.Session, base_url: str, first: int, step: int) -> int:
    """Records in pages first, first + step, ... up to the first short page."""
    served, page = 0, first
    while True:
        response = session.get(
            f"{base_url}/contacts",
            params={"page[page]": page, "page[limit]": PAGE_SIZE},
            timeout=30,
        )
        response.raise_for_status()
        rows = len(orjson.loads(response.content)["contacts"])  # keep client parsing cheap
        served += rows
        if rows < PAGE_SIZE:
            return served
        page += step


def one_session(base_url: str) -> tuple[int, float]:
    started = time.perf_counter()
    with requests.Session() as session:
        session.auth = AUTH
        served = fetch_pages(session, base_url, 1, 1)
    return served, time.perf_counter() - started


def threaded(base_url: str) -> tuple[int, float]:
    totals = [0] * THREADS

    def work(index: int) -> None:
        with requests.Session() as session:
            session.auth = AUTH
            totals[index] = fetch_pages(session, base_url, index + 1, THREADS)

    workers = [threading.Thread(target=work, args=(index,)) for index in range(THREADS)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(totals), time.perf_counter() - started


def page_build_ms(base_url: str) -> str:
    """Median and 95th percentile from the server's own request log (arrival to answer ready)."""
    log = requests.get(f"{base_url}/_control/requests", auth=AUTH, timeout=30).json()
    times = sorted((entry["finished_at"] - entry["at"]) * 1000 for entry in log)
    return f"median {statistics.median(times):.2f} ms, p95 {times[int(len(times) * 0.95)]:.2f} ms"


def main() -> None:
    process, base_url, startup = start_server()
    try:
        print(f"server start-up (generating {sum(SIZES.values()):,} records): {startup:.2f} s")
        for label, run in (("1 keep-alive session", one_session), (f"{THREADS} threads", threaded)):
            served, seconds = run(base_url)
            rate = served / seconds
            print(f"{label}: {served:,} contacts in {seconds:.2f} s = {rate:,.0f} records/s")
        print(f"server time to build a {PAGE_SIZE}-record page: {page_build_ms(base_url)}")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
