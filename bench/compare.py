"""crmsync against plain dlt and against a hand-written loader, on the bundled demo CRM.

Why: crmsync has to earn its place twice over. It must be much faster than the obvious
alternative (the seed's configuration run by dlt's own ``rest_api_source``, "plain dlt")
and not far behind the least a careful engineer could write by hand without dlt
("hand-written", the lower bound). Targets: at 0 ms crmsync >= 10x plain dlt and >= 0.5x
hand-written in rows/s; at 25 ms per request crmsync >= 8x plain dlt. ``--memory``: crmsync's
peak RSS may grow at most 1.2x from 100,000 to 1,000,000 records, and plain dlt's peak on the
standard data must be at least 5x crmsync's at 1,000,000 records (more data than plain dlt
gets, so the comparison favours plain dlt).

How: the demo server runs in a process of its own (``python -m crmsync.demo_server``), so
it never shares the contenders' GIL. Every run of a contender is a fresh child process
(``bench/contenders.py``) in a fresh, empty temporary folder, so that no run profits from
another's warm caches, files or pipeline state, and each has its own peak RSS. Runs are
interleaved (contender after contender, repeat after repeat) so that a noisy neighbour on
the machine hurts all contenders alike rather than one of them.

How to read the numbers (each a median over the runs of one contender at one latency):

- rows/s: rows in the five resources' root tables after the run (child tables such as
  ``accounts__tags`` not counted), divided by the child's wall time as the harness saw it,
  from spawn to exit: interpreter start-up and imports included, as a user pays them.
- requests: API requests the server logged during the run (its ``/_control/requests``
  log, read before and after; control calls are not logged). 25 ms latency makes every
  request cost at least 25 ms, so fewer or concurrent requests pay off there.
- peak RSS: the child's own high-water resident memory (``VmHWM`` in /proc/self/status,
  read by the child as it ends), plus that of crmsync's page-decoding worker (read as the
  run closes it): an upper bound of the memory the run held at once. ``ru_maxrss`` would
  not do, for the child or its worker: Linux carries it across fork and exec (see
  ``contenders.peak_rss_mb``); polling with psutil would miss short spikes.
- runs: a cell whose first run takes over ``SLOW_RUN_SECONDS`` (60) is not repeated, to keep the
  whole benchmark within ~20 minutes; its "median" is that one run. ``--repeat-slow`` repeats
  it too (plain dlt's two minutes a run are the noisiest figure of the table).

Every contender must land the same rows: the server's live records (soft-deleted ones left
out). plain dlt never asks for deleted records; crmsync asks for them and its merge removes
them (``hard_delete`` on ``deleted_at``); the hand-written loader asks for them and drops
them. The live counts come from the server itself (the last non-empty page at page size 1).
Mismatches are printed as warnings under the table.

``--rate-limit 5,10,20``: the server's token bucket limits it to that many requests a second
(``--burst`` at once, 10 by default; ``--rate-headers none,x`` with and without
``X-RateLimit-*`` headers), at 25 ms latency, each run starting with a full bucket. Per run:
wall time; bound/wall, where bound = (pages - burst) / rate is the least time any client needs;
bound/span, the same over the span of the run's requests at the server (first arrival to last
answer: the wall time less start-up and loading, which no pacing can shorten); requests;
429s; wasted requests = requests - pages, where pages is what a client that stops at the last
page needs (the data's records, soft-deleted ones included, in pages of 500; plain dlt, which
reads without them and stops at an empty page, needs a few fewer or more). Targets for
crmsync: bound/wall >= 0.9 and wasted <= 5% of the pages.

Run: ``make bench`` (``--help`` for subsets, ``--quick`` for a fast sanity run),
``make bench-memory`` and ``make bench-rate``. The report is also written to
``bench/results/latest.txt`` (``latest-memory.txt`` for ``--memory``, ``latest-rate.txt`` for
``--rate-limit``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from crm_api import ENDPOINTS, PAGE_SIZE, PASSWORD, USERNAME, Endpoint

BENCH = Path(__file__).resolve().parent
CHILD = BENCH / "contenders.py"
RESULTS = BENCH / "results"
CONTENDERS = ("crmsync", "plain", "hand")
LABELS = {"crmsync": "crmsync", "plain": "plain dlt", "hand": "hand-written"}
STANDARD_SIZES = {
    "accounts": 20_000,
    "contacts": 200_000,
    "events": 200_000,
    "products": 100,
    "pipelines": 10,
}
MEMORY_TOTALS = (100_000, 1_000_000)
"""``--memory``: crmsync's records, split evenly between contacts and events."""
MEMORY_SMALL_SIZES = {"accounts": 100, "products": 100, "pipelines": 10}
QUICK_SCALE = 0.02
SLOW_RUN_SECONDS = 60.0
CHILD_TIMEOUT_SECONDS = 1800
HTTP_TIMEOUT_SECONDS = 60
CHILD_ENV = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
"""dlt's telemetry would try to reach the internet after each run; this machine has no route."""


@dataclass(frozen=True)
class Run:
    contender: str
    latency_ms: int
    wall_seconds: float
    rows: dict[str, int]
    requests: int
    client_requests: int | None
    peak_rss_mb: float
    throttled: int = 0
    """Requests the server answered 429."""
    request_span: float = 0.0
    """Seconds from the first request's arrival at the server to the last one's answer."""

    @property
    def rows_per_second(self) -> float:
        return sum(self.rows.values()) / self.wall_seconds


@dataclass
class Cell:
    """The runs of one contender at one latency."""

    contender: str
    latency_ms: int
    runs: list[Run] = field(default_factory=list)
    repeat_slow: bool = False

    def median(self, metric: str) -> float:
        return statistics.median(getattr(run, metric) for run in self.runs)

    @property
    def wants_repeat(self) -> bool:
        return self.repeat_slow or not self.runs or self.runs[0].wall_seconds <= SLOW_RUN_SECONDS


# --- the demo server ---


@contextlib.contextmanager
def demo_server(sizes: dict[str, int]) -> Iterator[str]:
    """Starts the bundled CRM with ``sizes`` records; yields its base URL."""
    command = [sys.executable, "-m", "crmsync.demo_server", "--port", "0"]
    command += [arg for name, count in sizes.items() for arg in (f"--{name}", str(count))]
    command += ["--username", USERNAME, "--password", PASSWORD]
    progress(f"starting the demo server with {format_sizes(sizes)}")
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"the demo server did not start: {line!r}")
        progress(f"  listening after {time.perf_counter() - started:.1f} s")
        yield line.removeprefix("listening on ")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def control(base_url: str, method: str, path: str, body: object = None) -> requests.Response:
    response = requests.request(
        method,
        f"{base_url}/_control/{path}",
        json=body,
        auth=(USERNAME, PASSWORD),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    return response


def set_latency(base_url: str, latency_ms: int) -> None:
    control(base_url, "POST", "latency", {"latency_ms": latency_ms})


def requests_log(base_url: str) -> list[dict[str, Any]]:
    """Every API request the server logged, in arrival order."""
    log: list[dict[str, Any]] = orjson.loads(control(base_url, "GET", "requests").content)
    return log


def set_rate_limit(base_url: str, rate: float, burst: int, headers: str | None) -> None:
    """A fresh, full bucket (rate 0: none)."""
    control(base_url, "POST", "rate_limit", {"rate": rate, "burst": burst, "headers": headers})


def pages_needed(base_url: str) -> int:
    """Pages of ``PAGE_SIZE`` a client that stops at the last one needs, soft-deleted records
    included: ``meta.total`` where there is one; ``/events`` (never deleted, no total) also
    needs the short page that ends it."""
    pages = 0
    with requests.Session() as session:
        session.auth = (USERNAME, PASSWORD)
        for name, endpoint in ENDPOINTS.items():
            if name == "events":
                pages += count_by_probing(session, base_url, name) // PAGE_SIZE + 1
                continue
            params = {endpoint.page_param: 1, endpoint.limit_param: 1, "include_deleted": "true"}
            response = session.get(
                base_url + endpoint.path, params=params, timeout=HTTP_TIMEOUT_SECONDS
            )
            response.raise_for_status()
            pages += max(1, -(-orjson.loads(response.content)["meta"]["total"] // PAGE_SIZE))
    return pages


def live_counts(base_url: str) -> dict[str, int]:
    """Records each list endpoint serves without ``include_deleted`` (~40 requests each)."""
    with requests.Session() as session:
        session.auth = (USERNAME, PASSWORD)
        return {name: count_by_probing(session, base_url, name) for name in ENDPOINTS}


def count_by_probing(session: requests.Session, base_url: str, name: str) -> int:
    """The last non-empty page at page size 1, by doubling then bisecting."""
    endpoint = ENDPOINTS[name]
    low, high = 0, 1  # page `low` has a record (or is 0); page `high` is still to be probed
    while has_record(session, base_url, name, endpoint, high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if has_record(session, base_url, name, endpoint, middle):
            low = middle
        else:
            high = middle
    return low


def has_record(
    session: requests.Session, base_url: str, name: str, endpoint: Endpoint, page: int
) -> bool:
    params = {endpoint.page_param: page, endpoint.limit_param: 1}
    response = session.get(base_url + endpoint.path, params=params, timeout=HTTP_TIMEOUT_SECONDS)
    response.raise_for_status()
    return bool(orjson.loads(response.content)[name])


# --- running contenders ---


def run_contender(contender: str, base_url: str, latency_ms: int) -> Run:
    """One run in a fresh child process and a fresh empty folder."""
    with tempfile.TemporaryDirectory(prefix=f"crmsync-bench-{contender}-") as workdir:
        logged_before = len(requests_log(base_url))
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, str(CHILD), contender, base_url],
            cwd=workdir,
            env=CHILD_ENV,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_SECONDS,
        )
        wall_seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{contender} failed (exit {child.returncode}):\n{child.stderr[-4000:]}")
    report = orjson.loads(child.stdout.splitlines()[-1])
    logged = requests_log(base_url)[logged_before:]
    statuses = [entry["status"] for entry in logged]
    return Run(
        contender=contender,
        latency_ms=latency_ms,
        wall_seconds=wall_seconds,
        rows=report["rows"],
        requests=len(statuses),
        client_requests=report["client_requests"],
        peak_rss_mb=report["peak_rss_mb"],
        throttled=statuses.count(429),
        request_span=max(entry["finished_at"] for entry in logged) - logged[0]["at"],
    )


def run_cells(
    base_url: str,
    contenders: Sequence[str],
    latencies: Sequence[int],
    repeats: int,
    repeat_slow: bool = False,
) -> list[Cell]:
    """All runs, interleaved: per latency, each repeat runs every contender once."""
    cells = []
    for latency_ms in latencies:
        set_latency(base_url, latency_ms)
        row = [Cell(contender, latency_ms, repeat_slow=repeat_slow) for contender in contenders]
        for repeat in range(1, repeats + 1):
            for cell in row:
                if cell.wants_repeat:
                    cell.runs.append(run_with_progress(cell, base_url, f"{repeat}/{repeats}"))
        cells += row
    return cells


def run_with_progress(cell: Cell, base_url: str, which: str) -> Run:
    progress(f"{LABELS[cell.contender]} at {cell.latency_ms} ms, run {which} ...")
    run = run_contender(cell.contender, base_url, cell.latency_ms)
    progress(
        f"  {run.wall_seconds:.1f} s, {run.rows_per_second:,.0f} rows/s, "
        f"{run.requests} requests, peak RSS {run.peak_rss_mb:,.0f} MB"
    )
    return run


# --- the report ---


def table(cells: Sequence[Cell]) -> list[str]:
    lines = [
        f"{'latency':>7}  {'contender':<12}  {'runs':>4}  {'rows/s':>9}  {'wall s':>7}  "
        f"{'requests':>8}  {'peak RSS MB':>11}  {'rows':>9}",
    ]
    for cell in cells:
        rows = statistics.median(sum(run.rows.values()) for run in cell.runs)
        lines.append(
            f"{cell.latency_ms:>4} ms  {LABELS[cell.contender]:<12}  {len(cell.runs):>4}  "
            f"{cell.median('rows_per_second'):>9,.0f}  {cell.median('wall_seconds'):>7.1f}  "
            f"{cell.median('requests'):>8,.0f}  {cell.median('peak_rss_mb'):>11,.0f}  "
            f"{rows:>9,.0f}"
        )
    return lines


TARGETS = {(0, "plain"): 10.0, (0, "hand"): 0.5, (25, "plain"): 8.0}
"""(latency in ms, the contender crmsync is compared with): least ratio of their rows/s."""


def ratios(cells: Sequence[Cell]) -> list[str]:
    speed = {(cell.latency_ms, cell.contender): cell.median("rows_per_second") for cell in cells}
    lines = []
    for latency_ms, other in sorted(speed, key=order):
        if other == "crmsync" or (latency_ms, "crmsync") not in speed:
            continue
        ratio = speed[latency_ms, "crmsync"] / speed[latency_ms, other]
        target = TARGETS.get((latency_ms, other))
        verdict = f"   target >= {target:g}x: {pass_fail(ratio >= target)}" if target else ""
        lines.append(
            f"{latency_ms:>4} ms  crmsync / {LABELS[other]:<12} rows/s: {ratio:6.2f}x{verdict}"
        )
    return lines


def order(key: tuple[int, str]) -> tuple[int, int]:
    return key[0], CONTENDERS.index(key[1])


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def row_checks(cells: Sequence[Cell], live: dict[str, int]) -> list[str]:
    """Each contender's landed rows against the server's live counts, warning loudly if off."""
    lines = [f"server's live records: {format_sizes(live)}"]
    for contender in dict.fromkeys(cell.contender for cell in cells):
        runs = [run for cell in cells if cell.contender == contender for run in cell.runs]
        row_warnings = [warning for run in runs if (warning := rows_warning(run, live))]
        lines += row_warnings or [f"{LABELS[contender]}: every run landed exactly those"]
        lines += [warning for run in runs if (warning := requests_warning(run))]
    return lines


def rows_warning(run: Run, live: dict[str, int]) -> str | None:
    landed = {name: run.rows.get(name, 0) - count for name, count in live.items()}
    differences = ", ".join(f"{name} {delta:+,}" for name, delta in landed.items() if delta)
    if not differences:
        return None
    return (
        f"!!! WARNING: {LABELS[run.contender]} at {run.latency_ms} ms landed other row counts "
        f"than the server's live records: {differences}"
    )


def requests_warning(run: Run) -> str | None:
    """The contender's own request count (crmsync's ledger, say) should match the server's."""
    if run.client_requests is None or run.client_requests == run.requests:
        return None
    return (
        f"!!! WARNING: {LABELS[run.contender]} at {run.latency_ms} ms counted "
        f"{run.client_requests} requests, the server saw {run.requests}"
    )


def memory_lines(small: Cell, large: Cell, plain: Cell, totals: Sequence[int]) -> list[str]:
    small_peak, large_peak = small.median("peak_rss_mb"), large.median("peak_rss_mb")
    plain_peak = plain.median("peak_rss_mb")
    growth, advantage = large_peak / small_peak, plain_peak / large_peak
    return [
        f"crmsync peak RSS at {totals[0]:,} records: {small_peak:,.0f} MB",
        f"crmsync peak RSS at {totals[1]:,} records: {large_peak:,.0f} MB",
        f"plain dlt peak RSS on the standard data: {plain_peak:,.0f} MB",
        f"peak({totals[1]:,}) / peak({totals[0]:,}): {growth:.2f}x   "
        f"target <= 1.2x: {pass_fail(growth <= 1.2)}",
        f"plain dlt peak / crmsync peak at {totals[1]:,}: {advantage:.2f}x   "
        f"target >= 5x: {pass_fail(advantage >= 5)}",
    ]


def header(title: str, data: str) -> list[str]:
    commit = subprocess.run(
        ["git", "-C", str(BENCH), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [f"{title} — {when}, commit {commit or '?'}, {os.cpu_count()} CPUs", data]


def publish(lines: list[str], file_name: str) -> None:
    text = "\n".join(lines) + "\n"
    sys.stdout.write("\n" + text)
    sys.stdout.flush()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / file_name).write_text(text, encoding="utf-8")
    progress(f"written to {(RESULTS / file_name).relative_to(BENCH.parent)}")


# --- the two modes ---


def benchmark(args: argparse.Namespace) -> None:
    sizes = scaled(STANDARD_SIZES, args.scale)
    with demo_server(sizes) as base_url:
        live = live_counts(base_url)
        cells = run_cells(base_url, args.contenders, args.latencies, args.repeats, args.repeat_slow)
    lines = header("crmsync benchmark", f"data: {format_sizes(sizes)}")
    lines += ["", *table(cells), "", *ratios(cells), "", *row_checks(cells, live)]
    publish(lines, "latest.txt")


def memory_benchmark(args: argparse.Namespace) -> None:
    totals = [round(total * args.scale) for total in MEMORY_TOTALS]
    crmsync_cells = []
    for total in totals:
        sizes = scaled(MEMORY_SMALL_SIZES, args.scale) | {
            "contacts": total // 2,
            "events": total - total // 2,
        }
        with demo_server(sizes) as base_url:
            crmsync_cells += run_cells(base_url, ["crmsync"], [0], args.repeats)
    with demo_server(scaled(STANDARD_SIZES, args.scale)) as base_url:
        (plain,) = run_cells(base_url, ["plain"], [0], args.repeats, args.repeat_slow)
    cells = [*crmsync_cells, plain]
    data = (
        f"data: crmsync at {totals[0]:,} and {totals[1]:,} records (half contacts, half events),"
        f" plain dlt at {format_sizes(scaled(STANDARD_SIZES, args.scale))}"
    )
    lines = header("crmsync memory benchmark", data)
    lines += ["", *table(cells), "", *memory_lines(*crmsync_cells, plain, totals)]
    publish(lines, "latest-memory.txt")


RATE_LATENCY_MS = 25
BOUND_TARGET = 0.9
WASTED_TARGET = 0.05


def rate_benchmark(args: argparse.Namespace) -> None:
    sizes = scaled(STANDARD_SIZES, args.scale)
    with demo_server(sizes) as base_url:
        live = live_counts(base_url)
        pages = pages_needed(base_url)
        set_latency(base_url, RATE_LATENCY_MS)
        lines = [
            f"{'rate':>4}  {'headers':<7}  {'contender':<12}  {'wall s':>7}  {'bound s':>7}  "
            f"{'bound/wall':>10}  {'bound/span':>10}  {'requests':>8}  {'429s':>5}  "
            f"{'wasted':>6}  {'wasted %':>8}",
        ]
        runs = []
        for rate in args.rate_limit:
            for style in args.rate_headers:
                headers = None if style == "none" else style
                bound = (pages - args.burst) / rate
                for contender in args.contenders:
                    set_rate_limit(base_url, rate, args.burst, headers)
                    progress(f"{LABELS[contender]} at {rate:g} req/s, headers {style} ...")
                    run = run_contender(contender, base_url, RATE_LATENCY_MS)
                    runs.append(run)
                    wasted = run.requests - pages
                    verdict = ""
                    if contender == "crmsync":
                        ok = bound / run.wall_seconds >= BOUND_TARGET
                        ok = ok and wasted <= WASTED_TARGET * pages
                        verdict = f"  {pass_fail(ok)}"
                    line = (
                        f"{rate:>4g}  {style:<7}  {LABELS[contender]:<12}  "
                        f"{run.wall_seconds:>7.1f}  {bound:>7.1f}  "
                        f"{bound / run.wall_seconds:>10.2f}  {bound / run.request_span:>10.2f}  "
                        f"{run.requests:>8,}  "
                        f"{run.throttled:>5,}  {wasted:>6,}  {wasted / pages:>8.1%}{verdict}"
                    )
                    progress("  " + line)
                    lines.append(line)
        set_rate_limit(base_url, 0, 1, None)
    data = (
        f"data: {format_sizes(sizes)}; {pages:,} pages; burst {args.burst}; "
        f"{RATE_LATENCY_MS} ms latency"
    )
    lines = [*header("crmsync rate-limit benchmark", data), "", *lines]
    lines += [
        "",
        f"target for crmsync: bound/wall >= {BOUND_TARGET} and wasted <= {WASTED_TARGET:.0%}",
        "",
    ]
    for contender in dict.fromkeys(run.contender for run in runs):
        row_warnings = [
            w for run in runs if run.contender == contender and (w := rows_warning(run, live))
        ]
        lines += row_warnings or [
            f"{LABELS[contender]}: every run landed the server's live records"
        ]
    publish(lines, "latest-rate.txt")


# --- plumbing ---


def scaled(sizes: dict[str, int], scale: float) -> dict[str, int]:
    return {name: max(1, round(count * scale)) for name, count in sizes.items()}


def format_sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{count:,} {name}" for name, count in sizes.items())


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def contender_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or not set(names) <= set(CONTENDERS):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {','.join(CONTENDERS)}")
    return names


def rate_list(text: str) -> list[float]:
    rates = [float(value) for value in text.split(",")]
    if min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates are requests a second > 0")
    return rates


def header_styles(text: str) -> list[str]:
    styles = [value.strip() for value in text.split(",")]
    if not set(styles) <= {"none", "x", "ietf", "both"}:
        raise argparse.ArgumentTypeError("a comma-separated subset of none,x,ietf,both")
    return styles


def latency_list(text: str) -> list[int]:
    latencies = [int(value) for value in text.split(",")]
    if min(latencies) < 0:
        raise argparse.ArgumentTypeError("latencies are milliseconds >= 0")
    return latencies


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="crmsync against plain dlt and a hand-written loader (see the docstring)."
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="peak RSS of crmsync at 100k and 1M records and of plain dlt instead "
        "(ignores --contenders and --latencies)",
    )
    parser.add_argument(
        "--rate-limit",
        type=rate_list,
        help="rate-limited runs at these requests/s instead (e.g. 5,10,20; 25 ms latency)",
    )
    parser.add_argument("--burst", type=int, default=10, help="the rate limit's burst")
    parser.add_argument(
        "--rate-headers",
        type=header_styles,
        default=["none"],
        help="with --rate-limit: none, x (X-RateLimit-*), ietf (RateLimit-*), both; "
        "a list runs each",
    )
    parser.add_argument("--contenders", type=contender_list, default=list(CONTENDERS))
    parser.add_argument(
        "--latencies", type=latency_list, default=[0, 25], help="server latency per request, ms"
    )
    parser.add_argument("--repeats", type=int, help="runs per contender and latency (default 3)")
    parser.add_argument("--records-scale", type=float, help="multiplies every record count")
    parser.add_argument(
        "--repeat-slow",
        action="store_true",
        help=f"repeat runs slower than {SLOW_RUN_SECONDS:.0f} s too (plain dlt: ~2 min each)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a sanity run: records scale {QUICK_SCALE} and 1 run each, unless given",
    )
    args = parser.parse_args(argv)
    args.scale = args.records_scale or (QUICK_SCALE if args.quick else 1.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.memory:
        memory_benchmark(args)
    elif args.rate_limit:
        rate_benchmark(args)
    else:
        benchmark(args)
    progress(f"done in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
