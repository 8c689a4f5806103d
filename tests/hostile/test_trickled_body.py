"""A response trickled a byte at a time, its body or its status line and headers:
`read_timeout` (per socket read) never trips, so only the total deadline per request
(`request_deadline`) ends the attempt."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crmsync.failures import EXIT_SOURCE
from tests.support.hostile import Answer, Exchange, HostileServer
from tests.support.hostile_runs import last_line, loaded_ids, run_contacts

BYTE_EVERY = 0.05
"""Seconds between two bytes: far below any read timeout."""


def trickle_forever(exchange: Exchange) -> None:
    """Headers at once, then a body (a plausible page's start, then spaces) that never ends."""
    exchange.send_response(200)
    exchange.send_header("Content-Type", "application/json")
    exchange.send_header("Content-Length", str(10**9))
    exchange.end_headers()
    for byte in itertools.chain(b'{"contacts": [', itertools.repeat(ord(" "))):
        exchange.wfile.write(bytes([byte]))
        time.sleep(BYTE_EVERY)


def trickle_headers(exchange: Exchange) -> None:
    """A status line, then header lines that never end, a byte every half second."""
    head = itertools.chain(b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X-Pad: 0\r\n"))
    for byte in head:
        exchange.wfile.write(bytes([byte]))
        exchange.wfile.flush()
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("trickle", "deadline"),
    # the deadline caps each read's timeout too: the headers' must outlast a byte's wait
    [(trickle_forever, "1"), (trickle_headers, "1")],
    ids=["body", "headers"],
)
def test_a_response_that_never_ends_times_out_at_the_deadline_and_loads_nothing(
    hostile: Callable[[Answer], HostileServer], workdir: Path, trickle: Answer, deadline: str
) -> None:
    crm = hostile(trickle)

    done = run_contacts(workdir, crm.base_url, request_deadline=deadline, read_timeout="5")

    assert done.returncode == EXIT_SOURCE, done.stderr
    assert re.fullmatch(
        r"crmsync: contacts: GET /contacts\?\S*page\[page\]=1\S* timed out after 4 attempts;"
        r" the CRM is slow or unreachable \(timeouts: \[sources\.crm\.http\] request_deadline,"
        r" read_timeout, connect_timeout\)",
        last_line(done),
    ), last_line(done)
    assert len(crm.seen) == 4
    assert loaded_ids(workdir) == []
