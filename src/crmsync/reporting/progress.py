"""Signs of life during a sync: live bars on a terminal, plain lines in an orchestrator's log.

On a terminal, rich draws one line per resource that fits the terminal's width (rich redraws in
place, where hand-written `\\r` lines wrap and scroll): rows read, percent and ETA where the CRM
reports a total, rows per second, and `waiting for rate limit` while the CRM holds requests
back. When the output is not a terminal, one plain line per resource is written every
`interval` seconds instead (15 s by default), e.g.

    crmsync: contacts 120,500/200,000 rows (60%), 241 pages, 8,310 rows/s
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from crmsync.ledger import ResourceTally, RunLedger

REFRESH_SECONDS = 0.5
PLAIN_INTERVAL_SECONDS = 15.0


@contextmanager
def progress(
    ledger: RunLedger,
    stream: TextIO | None = None,
    waiting: Callable[[], bool] = lambda: False,
    interval: float = PLAIN_INTERVAL_SECONDS,
) -> Iterator[None]:
    """Shows the ledger's resources while the block runs; `waiting` tells whether requests
    are being held back for the CRM's rate limit."""
    stream = stream or sys.stderr
    if stream.isatty():
        with _live(ledger, stream, waiting):
            yield
    else:
        with _plain(ledger, stream, waiting, interval):
            yield


@contextmanager
def _live(ledger: RunLedger, stream: TextIO, waiting: Callable[[], bool]) -> Iterator[None]:
    bars = Progress(
        TextColumn("{task.description:<10.10}"),
        BarColumn(bar_width=None),
        TaskProgressColumn(),
        TextColumn("{task.completed:>9,.0f} rows"),
        TextColumn("{task.fields[speed]:>11}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[state]}"),
        console=Console(file=stream),
        refresh_per_second=1 / REFRESH_SECONDS,
        expand=True,
    )
    tasks: dict[str, TaskID] = {}

    def update() -> None:
        for tally in list(ledger.tallies.values()):
            if tally.resource not in tasks:
                tasks[tally.resource] = bars.add_task(
                    tally.resource, total=None, speed="", state=""
                )
            bars.update(
                tasks[tally.resource],
                completed=tally.rows,
                total=tally.reported_total,
                speed=f"{_rate(tally, ledger):,.0f} rows/s",
                state=_state(tally, waiting),
            )

    with bars, _logs_above(bars):
        try:
            with _every(REFRESH_SECONDS, update):
                yield
        finally:
            update()  # the last figures, before the bars stop


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the moment: rich's proxy while bars are live."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def _logs_above(bars: Progress) -> Iterator[None]:
    """dlt's log lines go through the live display, above the bars, instead of into them.

    dlt's logger keeps the stream its handler was made with (it reuses a handler the `dlt`
    logger already has, or makes one on the `sys.stderr` of that moment), which rich cannot
    redirect; a handler on the current `sys.stderr` follows rich's redirection."""
    dlt_logger = logging.getLogger("dlt")
    handlers = [h for h in dlt_logger.handlers if isinstance(h, logging.StreamHandler)]
    if not handlers:
        handlers = [logging.StreamHandler()]
        dlt_logger.addHandler(handlers[0])
    streams = [handler.setStream(_CurrentStderr()) for handler in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            if stream is not None:
                handler.setStream(stream)


@contextmanager
def _plain(
    ledger: RunLedger, stream: TextIO, waiting: Callable[[], bool], interval: float
) -> Iterator[None]:
    def report() -> None:
        for tally in list(ledger.tallies.values()):
            if tally.outcome == "running":
                print(f"crmsync: {plain_line(tally, ledger, waiting)}", file=stream, flush=True)

    with _every(interval, report):
        yield


@contextmanager
def _every(seconds: float, action: Callable[[], None]) -> Iterator[None]:
    """Runs `action` every `seconds` in a thread of its own while the block runs."""
    done = threading.Event()

    def repeat() -> None:
        while not done.wait(seconds):
            action()

    thread = threading.Thread(target=repeat, daemon=True, name="crmsync-progress")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def plain_line(tally: ResourceTally, ledger: RunLedger, waiting: Callable[[], bool]) -> str:
    total = tally.reported_total
    rows = (
        f"{tally.rows:,}/{total:,} rows ({tally.rows / total:.0%})"
        if total
        else f"{tally.rows:,} rows"
    )
    state = _state(tally, waiting)
    return f"{tally.resource} {rows}, {tally.pages:,} pages, {_rate(tally, ledger):,.0f} rows/s" + (
        f", {state}" if state else ""
    )


def _rate(tally: ResourceTally, ledger: RunLedger) -> float:
    return tally.rows / max(ledger.elapsed_seconds, 1e-3)


def _state(tally: ResourceTally, waiting: Callable[[], bool]) -> str:
    if tally.outcome not in ("running", "not run"):
        return tally.outcome
    return "waiting for rate limit" if waiting() else ""
