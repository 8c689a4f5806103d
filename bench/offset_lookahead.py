"""rows/s of an offset-paged resource with and without crmsync's page look-ahead.

Why: an offset-paged CRM (Pipedrive's shape: `start`/`limit`, a has-more flag, no total) read
one page after another pays the link's latency once per page; the look-ahead fetches the next
offsets concurrently (a window that doubles with every full page, up to `max_in_flight`).

How: the Pipedrive-shaped test server (`tests/support/pipedrive_like.py`) runs in a process
of its own at 25 ms per request (``--latency-ms``), serving ``--records`` persons; the same
`crm_offset` paginator loads them through crmsync's `rest_api_source` into a fresh DuckDB
file, once with the session's look-ahead and once without, after one unmeasured warm-up
run. Runs alternate (with, without, with, ...) so that a noisy neighbour hurts both alike;
each figure is the median of ``--repeats`` runs: rows loaded / wall time of
`pipeline.run` (extract, normalize, load). The ratio is with / without.

Run: ``make bench-offset`` (``python bench/offset_lookahead.py --help``); the report is also
written to ``bench/results/latest-offset.txt``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt

from crmsync import rest_api_source
from crmsync.reading.lookahead import ReadContext
from crmsync.reading.offset_pagination import OffsetPaginator
from crmsync.reading.page_reader import PageReader
from crmsync.transport.http_policy import load_policy

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
TOKEN = "pd-token-3f9c2e7a1b"
"""The test server's API token (`tests.support.pipedrive_like.TOKEN`)."""
HAS_MORE = "additional_data.pagination.more_items_in_collection"


@contextmanager
def pipedrive_server(records: int, latency_ms: float) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.pipedrive_like", str(records), str(latency_ms)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait()


def run_once(base_url: str, page_size: int, ahead: bool, folder: Path) -> tuple[int, float]:
    """(rows loaded, seconds) of one load of all persons."""
    reader = PageReader(load_policy())
    session = reader.session
    paginator = OffsetPaginator(
        limit=page_size,
        offset_param="start",
        has_more_path=HAS_MORE,
        # a first read of a list in id order keeps its positions: no view filters
        context=ReadContext(lookahead=reader.lookahead if ahead else None, view_filters=[]),
    )
    config: Any = {
        "client": {
            "base_url": base_url,
            "session": session,
            "auth": {"type": "api_key", "name": "api_token", "api_key": TOKEN, "location": "query"},
        },
        "resources": [
            {
                "name": "persons",
                "primary_key": "id",
                "write_disposition": "replace",
                "endpoint": {
                    "path": "/v1/persons",
                    "data_selector": "data",
                    "paginator": paginator,
                },
            }
        ],
    }
    pipeline = dlt.pipeline(
        f"offsets_{'ahead' if ahead else 'plain'}",
        pipelines_dir=str(folder / "pipelines"),
        destination=dlt.destinations.duckdb(str(folder / "bench.duckdb")),
        dataset_name="crm",
    )
    began = time.perf_counter()
    pipeline.run(rest_api_source(config))
    seconds = time.perf_counter() - began
    reader.close()
    with pipeline.sql_client() as client:
        rows = int(client.execute_sql("select count(*) from persons")[0][0])
    return rows, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=100, help="Pipedrive's default")
    parser.add_argument("--latency-ms", type=float, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    figures: dict[bool, list[float]] = {True: [], False: []}
    with pipedrive_server(args.records, args.latency_ms) as base_url:
        with tempfile.TemporaryDirectory() as warm:
            run_once(base_url, args.page_size, True, Path(warm))
        for repeat in range(args.repeats):
            for ahead in (True, False):
                with tempfile.TemporaryDirectory() as folder:
                    rows, seconds = run_once(base_url, args.page_size, ahead, Path(folder))
                if rows != args.records:
                    raise SystemExit(f"loaded {rows} rows of {args.records}")
                figures[ahead].append(rows / seconds)
                label = "with" if ahead else "without"
                print(
                    f"run {repeat + 1} {label} look-ahead: {rows / seconds:,.0f} rows/s",
                    file=sys.stderr,
                )
    with_ahead, without = (statistics.median(figures[flag]) for flag in (True, False))
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"offset look-ahead — {datetime.now(UTC):%Y-%m-%d %H:%M UTC}, commit {commit or '?'},"
        f" {os.cpu_count()} CPUs",
        f"{args.records:,} records in pages of {args.page_size} ({HAS_MORE}, no total),"
        f" {args.latency_ms:g} ms per request, median of {args.repeats} runs",
        f"  with look-ahead     {with_ahead:>10,.0f} rows/s",
        f"  without look-ahead  {without:>10,.0f} rows/s",
        f"  ratio               {with_ahead / without:>10.2f}x",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest-offset.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
