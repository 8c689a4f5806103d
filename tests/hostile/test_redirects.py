"""Redirects: followed within one attempt and one slot of the run's budget, never with the
credentials to another origin, and at most `max_redirects` hops.

Before, each hop was a new attempt waiting for a budget slot while its first attempt held one:
with `max_in_flight = 1`, the first redirect waited for itself for ever.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from crmsync.failures import EXIT_OK, EXIT_SOURCE
from tests.hostile.conftest import last_line, loaded_ids, run_contacts
from tests.support.hostile import Answer, Exchange, HostileServer, serve_contacts


def redirect_to(target: Callable[[], str]) -> Answer:
    """Answers `302` to the same path and query at `target()`'s base URL."""

    def answer(exchange: Exchange) -> None:
        exchange.send(302, b"", Location=target() + exchange.path)

    return answer


def test_a_redirect_to_another_origin_is_followed_without_the_credentials(
    hostile: Callable[[Answer], HostileServer], workdir: Path
) -> None:
    data = hostile(serve_contacts)
    moved = hostile(redirect_to(lambda: data.base_url))

    done = run_contacts(workdir, moved.base_url, max_in_flight="1")

    assert done.returncode == EXIT_OK, done.stderr
    assert loaded_ids(workdir) == [1, 2, 3]
    assert len(moved.seen) == len(data.seen) == 1
    assert "Authorization" in moved.seen[0].headers
    assert "Authorization" not in data.seen[0].headers
    assert data.seen[0].path == moved.seen[0].path


def test_a_redirect_loop_fails_the_run_after_max_redirects_hops(
    hostile: Callable[[Answer], HostileServer], workdir: Path
) -> None:
    ping: HostileServer
    pong = hostile(redirect_to(lambda: ping.base_url))
    ping = hostile(redirect_to(lambda: pong.base_url))

    done = run_contacts(workdir, ping.base_url, max_in_flight="1", max_redirects="5")

    assert done.returncode == EXIT_SOURCE, done.stderr
    assert re.fullmatch(
        r"crmsync: contacts: GET /contacts\?\S*page\[page\]=1\S* was redirected more than 5"
        rf" times \(last to {re.escape(ping.base_url)}/contacts\?\S+\); check the base URL,"
        r" or the proxy or load balancer in front of the CRM",
        last_line(done),
    ), last_line(done)
    assert (len(ping.seen), len(pong.seen)) == (3, 3)  # the request and 5 hops, no retry
    assert loaded_ids(workdir) == []
