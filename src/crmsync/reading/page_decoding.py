"""Where a page's body becomes records: in this thread as dicts, or in a worker process as Arrow.

Decoding JSON and typing its records as an Arrow table (`crmsync.reading.arrow_pages`) is most of
the CPU a page costs, and all of it holds the interpreter lock, which the thread that runs dlt's
extract needs too: on two cores, a sync was bound by that one lock while the second core
idled. A `ProcessDecoder` sends each page body of the resources registered with it to a worker
process, which returns the envelope with the records already a typed table, passed back in
Arrow's IPC format (a copy of its buffers, no per-record work). rest_api then selects a table
where it selected a list: `{"contacts": Page(<table of 500 rows>, served=500), "meta": {...}}`
(`crmsync.reading.page`).

The worker is `python -m crmsync.reading.page_decoding`, speaking length-prefixed pickles over its
stdin and stdout, rather than a `multiprocessing` pool: a spawned pool re-imports the caller's
`__main__`, which in a script that calls `run_sync` without a main guard would run the script
again, and a forked one would copy the locks of the run's threads. A resource whose pages
Arrow cannot hold as dlt would (lists, which dlt makes child tables) falls back to dicts from
its first such page on, decoded here, as does every page once a worker has gone.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from itertools import count
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import orjson
import pyarrow as pa

from crmsync.reading.arrow_pages import TypedPages
from crmsync.reading.first_read import DeletedRecordFilter
from crmsync.reading.page import Page
from crmsync.transport.json_body import loads

_LENGTH = struct.Struct("!I")
_PageForm = tuple[str, dict[str, Any], DeletedRecordFilter | None]
"""What a worker needs to know of a resource's pages: records key, column hints, deletions."""


class MalformedBody(ValueError):
    """The body is not JSON; the message is orjson's."""


class WorkerGone(RuntimeError):
    """The worker process exited or its pipe broke; pages are decoded in-process from then on."""


class DictDecoder:
    """orjson, in the thread that received the page."""

    def __call__(self, path: str, body: bytes) -> Any:
        try:
            return loads(body)
        except orjson.JSONDecodeError as error:
            raise MalformedBody(str(error)) from None

    def close(self) -> None:
        pass


class ProcessDecoder(DictDecoder):
    """Registered resources' pages decoded and typed in worker processes, started at once so
    that their imports overlap the run's set-up."""

    def __init__(self, processes: int = 1) -> None:
        self._workers: list[_Worker] = []
        for _ in range(max(1, processes)):
            with contextlib.suppress(OSError):  # no interpreter to start: decode in-process
                self._workers.append(_Worker())
        self._turn = count()
        self._forms: dict[str, _PageForm] = {}
        self._lock = threading.Lock()

    def register(
        self,
        url: str,
        records_key: str,
        columns: dict[str, Any],
        deleted: DeletedRecordFilter | None = None,
    ) -> None:
        """Pages of `url` (any query) hold their records under `records_key`; `deleted` drops
        soft-deleted records in the worker (a first read's, `crmsync.reading.first_read`)."""
        with self._lock:
            self._forms[urlsplit(url).path] = (records_key, columns, deleted)

    def __call__(self, path: str, body: bytes) -> Any:
        form = self._forms.get(path)
        if form is None or not self._workers:
            return super().__call__(path, body)
        records_key = form[0]
        worker = self._workers[next(self._turn) % len(self._workers)]
        try:
            envelope, records = worker.decode(body, path, form)
        except WorkerGone:
            return super().__call__(path, body)
        if envelope is None:
            if records is not None:
                raise MalformedBody(records)
            with self._lock:
                self._forms.pop(path, None)
            return super().__call__(path, body)
        if records is not None:
            table = pa.ipc.open_stream(records).read_all()
            envelope[records_key] = Page(table, served=envelope[records_key])
        return envelope

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


class _Worker:
    """One `python -m crmsync.reading.page_decoding` process and the futures of its pending
    pages."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "crmsync.reading.page_decoding"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        self._pending: dict[int, Future[tuple[Any, Any]]] = {}
        self._ids = count()
        self._send_lock = threading.Lock()
        self._gone = False
        self._reader = threading.Thread(target=self._read, name="crmsync-page-worker", daemon=True)
        self._reader.start()

    def decode(self, body: bytes, path: str, form: _PageForm) -> tuple[Any, Any]:
        future: Future[tuple[Any, Any]] = Future()
        with self._send_lock:
            if self._gone:
                raise WorkerGone()
            request_id = next(self._ids)
            self._pending[request_id] = future
            try:
                _send(self._process.stdin, (request_id, body, path, form))
            except OSError:
                self._pending.pop(request_id, None)
                self._gone = True
                raise WorkerGone() from None
        return future.result()

    def close(self) -> None:
        with self._send_lock:
            self._gone = True
            with contextlib.suppress(OSError):
                if self._process.stdin:
                    self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)
        if self._process.stdout:
            self._process.stdout.close()

    def _read(self) -> None:
        try:
            while (message := _receive(self._process.stdout)) is not None:
                request_id, envelope, records = message
                future = self._pending.pop(request_id, None)
                if future is not None:
                    future.set_result((envelope, records))
        finally:
            with self._send_lock:
                self._gone = True
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(WorkerGone())


def _send(stream: IO[bytes] | None, message: Any) -> None:
    if stream is None:
        raise OSError("no pipe")
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: IO[bytes] | None) -> Any:
    if stream is None:
        return None
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


_typed_by_path: dict[str, TypedPages] = {}
"""A worker's `TypedPages`, one per resource path (a resource's form does not change in a run)."""


def decode_page(
    body: bytes, path: str, form: _PageForm
) -> tuple[dict[str, Any] | None, bytes | str | None]:
    """In a worker: `(envelope with the count of its records, the records as Arrow IPC)`;
    `(envelope, None)` when there are no records to type; `(None, None)` when Arrow cannot hold
    them as dlt would; `(None, message)` when the body is not JSON."""
    records_key, columns, deleted = form
    try:
        envelope = loads(body)
    except orjson.JSONDecodeError as error:
        return None, str(error)
    records = envelope.get(records_key) if isinstance(envelope, dict) else None
    if not isinstance(records, list) or not records:
        return envelope, None
    typed = _typed_by_path.get(path)
    if typed is None:
        typed = _typed_by_path[path] = TypedPages(columns)
    table = typed.table(records)
    if table is None:
        return None, None
    page = Page(table, len(records))
    if deleted is not None:
        page = deleted(page)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(page.records)
    envelope[records_key] = len(records)
    return envelope, sink.getvalue().to_pybytes()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The worker's loop: a page in, its decoding out, until the run closes the pipe."""
    while (message := _receive(requests)) is not None:
        request_id, body, path, form = message
        _send(answers, (request_id, *decode_page(body, path, form)))


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
