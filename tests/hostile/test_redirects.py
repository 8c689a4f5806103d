"""Redirects: followed within one attempt and one slot of the run's budget, never with the
credentials to another origin, and at most `max_redirects` hops.

Before, each hop was a new attempt waiting for a budget slot while its first attempt held one:
with `max_in_flight = 1`, the first redirect waited for itself for ever.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from crmsync.failures import EXIT_OK, EXIT_SOURCE
from tests.support.hostile import Answer, Exchange, HostileServer, serve_contacts
from tests.support.hostile_runs import last_line, loaded_ids, run_contacts


def redirect_to(target: Callable[[], str]) -> Answer:
    """Answers `302` to the same path and query at `target()`'s base URL."""

    def answer(exchange: Exchange) -> None:
        exchange.send(302, b"", Location=target() + exchange.path)

    return answer


SMALL_PAGES = """
[[resources]]
name = "contacts"
[resources.endpoint.paginator]
type = "crm_page_number"
page_param = "page[page]"
limit_param = "page[limit]"
limit = 2
"""
"""Two records a page: 40 records are 20 pages, more than the budget's slots, read ahead
concurrently."""


@pytest.mark.parametrize(
    ("records", "max_in_flight"), [(3, 1), (40, 8)], ids=["2-pages-1-slot", "20-pages-8-slots"]
)
def test_a_redirect_to_another_origin_is_followed_without_the_credentials(
    hostile: Callable[[Answer], HostileServer], workdir: Path, records: int, max_in_flight: int
) -> None:
    data = hostile(serve_contacts(records))
    moved = hostile(redirect_to(lambda: data.base_url))
    (workdir / "crmsync.toml").write_text(SMALL_PAGES)

    done = run_contacts(
        workdir, moved.base_url, "--config", "crmsync.toml", max_in_flight=str(max_in_flight)
    )

    assert done.returncode == EXIT_OK, done.stderr
    assert loaded_ids(workdir) == list(range(1, records + 1))
    assert sorted(s.path for s in data.seen) == sorted(s.path for s in moved.seen)
    assert all("Authorization" in s.headers for s in moved.seen)
    assert not any("Authorization" in s.headers for s in data.seen)


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
