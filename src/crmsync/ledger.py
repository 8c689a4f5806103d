"""The run ledger: what each resource cost the CRM, and whether its read was complete.

Users of rate-limited CRMs ask "how many requests did that sync make, how often were we
throttled, how long did we wait". The HTTP policy tells the ledger about every attempt and
every wait; the paginator tells it about every page. One ledger lives for one run; it is shown
in the end-of-run summary and stored as the `_crmsync_runs` table beside the data.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dlt.common import logger

from crmsync.dlt_internals import SharedThroughConfig

RUNS_TABLE = "_crmsync_runs"
RUNS_COLUMNS: dict[str, dict[str, Any]] = {
    "run_id": {"data_type": "text", "nullable": False},
    "started_at": {"data_type": "timestamp"},
    "finished_at": {"data_type": "timestamp"},
    "resource": {"data_type": "text"},
    "path": {"data_type": "text"},
    "requests": {"data_type": "bigint"},
    "retries": {"data_type": "bigint"},
    "throttled": {"data_type": "bigint"},
    "wait_seconds": {"data_type": "double"},
    "pages": {"data_type": "bigint"},
    "rows": {"data_type": "bigint"},
    "repeats": {"data_type": "bigint"},
    "refetched": {"data_type": "bigint"},
    "wasted": {"data_type": "bigint"},
    "list_moved": {"data_type": "bool"},
    "reads_in_full": {"data_type": "bool"},
    "reported_total": {"data_type": "bigint"},
    "learnt_rate": {"data_type": "double"},
    "paced_seconds": {"data_type": "double"},
    "complete": {"data_type": "bool"},
    "outcome": {"data_type": "text"},
}
"""`reported_total` and `complete` stay null for resources without `meta`: typed up front."""


class IncompleteReadError(Exception):
    """The CRM reported more records than its pages held: fatal under `--strict`, and for a
    read that would replace its table (a first read, `--full-refresh`)."""

    def __init__(self, resource: str, path: str, reported: int, fetched: int) -> None:
        self.resource = resource
        self.path = path
        self.reported = reported
        self.fetched = fetched
        super().__init__(
            f"{resource}: GET {path} reported meta.total={reported} but its pages held "
            f"{fetched} distinct records"
        )


QUOTA_REACHED = "quota reached"
"""The outcome of a read the run's request quota cut short: nothing of it is loaded, its cursor
stays, and the next run reads it again."""


class QuotaCutReplaceError(Exception):
    """The request quota ran out during a `--full-refresh`: dlt's refresh empties every table
    of the run, loaded or not, so the run loads nothing rather than lose a table's records."""

    def __init__(self, resource: str, max_requests: int) -> None:
        self.resource = resource
        super().__init__(
            f"{resource}: the run's quota of {max_requests} requests (max_requests) ran out"
            " before this read, which replaces its table (--full-refresh), had finished"
        )


@dataclass
class ResourceTally:
    resource: str
    path: str
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    wait_seconds: float = 0.0
    pages: int = 0
    rows: int = 0
    repeats: int = 0
    """Records served again after a page shift and dropped (`RepeatedRecordFilter`)."""
    refetched: int = 0
    """Pages fetched ahead, then fetched again: the list had moved since (`PageNumberPaginator`)."""
    total_grew: bool = False
    reported_total: int | None = None
    """The smallest `meta.total` the read's pages reported: the list's size as the read began
    (the contract's lists only grow), every one of whose records the read must have served."""
    outcome: str = "not run"
    reads_in_full: bool = False
    """The CRM filters this resource by no cursor: every run reads it whole, and merges."""

    @property
    def list_moved(self) -> bool:
        """Records entered the list while it was read: a total grew, a record came twice, or a
        page fetched ahead was out of date."""
        return self.total_grew or self.repeats > 0 or self.refetched > 0

    @property
    def wasted(self) -> int:
        """Requests that brought no page the read used: retries (429s included), pages fetched
        ahead past the end or fetched again."""
        return max(0, self.requests - self.pages)

    @property
    def distinct_rows(self) -> int:
        return self.rows - self.repeats

    @property
    def complete(self) -> bool | None:
        """None where the CRM reports no total for this resource."""
        if self.reported_total is None:
            return None
        return self.distinct_rows >= self.reported_total


@dataclass
class RunLedger:
    """Counters per resource, keyed by its name. The HTTP layer counts a request under the
    resource its paginator named (`crmsync.reading.page_observer`), else under its URL path."""

    strict: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tallies: dict[str, ResourceTally] = field(default_factory=dict)
    learnt_rate: float | None = None
    """Requests per second the run was paced to (`crmsync.transport.pacing`); None if never
    paced."""
    paced_seconds: float = 0.0
    """Seconds requests ready to go were held back for the CRM's rate limit."""
    full_refresh: bool = False
    """The run replaces every table it reads (`--full-refresh`)."""
    holding: Callable[[], bool] = field(default=lambda: False, repr=False)
    """Whether requests are being held back for the rate limit right now."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)
    _observers: dict[str, ResourceObserver] = field(default_factory=dict, repr=False)

    def track(self, resource: str, path: str) -> ResourceTally:
        with self._lock:
            tally = self.tallies.setdefault(resource, ResourceTally(resource, path))
            tally.outcome = "running"
            return tally

    def attempt(self, resource: str | None, path: str) -> None:
        with self._lock:
            tally = self._tally(resource, path)
            tally.requests += 1

    def retry(self, resource: str | None, path: str, wait_seconds: float, throttled: bool) -> None:
        with self._lock:
            tally = self._tally(resource, path)
            tally.retries += 1
            tally.wait_seconds += wait_seconds
            if throttled:
                tally.throttled += 1

    def observer(self, resource: str, path: str) -> ResourceObserver:
        observer = ResourceObserver(self, self.track(resource, path))
        self._observers[resource] = observer
        return observer

    def observer_of(self, resource: str | None, url_path: str) -> ResourceObserver | None:
        """The observer of `resource`, else of the read whose requests go to `url_path` (the
        endpoint's path, or a base URL's path followed by it), if the run tracks one."""
        with self._lock:
            if resource in self._observers:
                return self._observers[resource]
            paths = {o.tally.path: o for o in self._observers.values()}
            suffixes = [p for p in paths if p.startswith("/") and url_path.endswith(p)]
        return paths[max(suffixes, key=len)] if suffixes else None

    @property
    def unfinished(self) -> list[str]:
        """The resources whose read the request quota cut short, for the next run to finish."""
        with self._lock:
            return [t.resource for t in self.tallies.values() if t.outcome == QUOTA_REACHED]

    @property
    def resources(self) -> set[str]:
        return {tally.resource for tally in self.tallies.values()}

    def finish(self, failed_resources: set[str] | None = None) -> None:
        """Settle every outcome once the run has ended, successfully or not."""
        failed = failed_resources or set()
        with self._lock:
            for tally in self.tallies.values():
                if tally.resource in failed:
                    tally.outcome = "failed"
                elif tally.outcome == "running":
                    tally.outcome = "not finished"

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self._started

    def rows(self) -> list[dict[str, Any]]:
        """The ledger as rows of the `_crmsync_runs` table."""
        finished_at = datetime.now(UTC)
        with self._lock:
            return [
                {
                    "run_id": self.run_id,
                    "started_at": self.started_at,
                    "finished_at": finished_at,
                    **{k: v for k, v in asdict(tally).items() if k in RUNS_COLUMNS},
                    "list_moved": tally.list_moved,
                    "reads_in_full": tally.reads_in_full,
                    "wasted": tally.wasted,
                    "complete": tally.complete,
                    "learnt_rate": self.learnt_rate,
                    "paced_seconds": round(self.paced_seconds, 3),
                }
                for tally in self.tallies.values()
            ]

    def _tally(self, resource: str | None, path: str) -> ResourceTally:
        """The named resource's tally; for a request no paginator named, the first resource
        on its path, else one for the path itself."""
        if resource is not None and resource in self.tallies:
            return self.tallies[resource]
        tally = next((t for t in self.tallies.values() if t.path == path), None)
        if tally is None:
            tally = self.tallies[path] = ResourceTally(resource=path, path=path)
        return tally


@dataclass
class ResourceObserver(SharedThroughConfig):
    """The paginator's view of the ledger: one resource's pages, repeats and completeness.

    An incomplete read fails where it would replace the table (`replaces`) or under `--strict`;
    otherwise it loads what it read and calls `hold_cursor`, so the next run reads the same
    window again instead of moving past the records this one missed. A read the request quota
    cuts short (`quota_reached`) holds its cursor the same way, and loads nothing.
    """

    ledger: RunLedger
    tally: ResourceTally
    replaces: bool = False
    hold_cursor: Callable[[], None] | None = None

    @property
    def cut(self) -> bool:
        """The request quota cut this read short."""
        return self.tally.outcome == QUOTA_REACHED

    def quota_reached(self, max_requests: int) -> None:
        """The run's request quota is spent before this read finished: it ends now, its cursor
        held, and the run leaves its records out of the load (`crmsync.loading.sync`), so a table it
        would replace stays as it was. Under `--full-refresh` it fails instead
        (`QuotaCutReplaceError`) and the run loads nothing: dlt's refresh empties every table
        of the run, loaded or not."""
        if self.cut:
            return
        self.tally.outcome = QUOTA_REACHED
        if self.ledger.full_refresh:
            raise QuotaCutReplaceError(self.tally.resource, max_requests)
        if self.hold_cursor is not None:
            self.hold_cursor()

    def page_read(self, rows: int, total: int | None) -> None:
        if self.cut:
            return  # the empty page that ends a read cut short
        with self.ledger._lock:
            tally = self.tally
            tally.pages += 1
            tally.rows += rows
            if total is not None:
                if tally.reported_total is not None and total != tally.reported_total:
                    tally.total_grew = True
                if tally.reported_total is None or total < tally.reported_total:
                    tally.reported_total = total

    def page_refetched(self) -> None:
        with self.ledger._lock:
            self.tally.refetched += 1

    def repeats_dropped(self, count: int) -> None:
        with self.ledger._lock:
            self.tally.repeats += count

    def read_finished(self) -> None:
        tally = self.tally
        if self.cut:
            return
        if tally.complete is False:
            error = IncompleteReadError(
                tally.resource, tally.path, tally.reported_total or 0, tally.distinct_rows
            )
            tally.outcome = "incomplete"
            if self.ledger.strict or self.replaces:
                raise error
            if self.hold_cursor is not None:
                self.hold_cursor()
            logger.warning(f"{error}; the next run reads the same window again")
            return
        tally.outcome = "ok"
