"""A `200` that is JSON but not a page of the contract's shape (`{"contacts": [...], "meta":
{...}}`) is a broken page: retried like a body that is not JSON, then the run fails and loads
nothing. Before, rest_api's data selector found no records in it, and an empty read ended
with exit 0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from crmsync.failures import EXIT_SOURCE
from tests.support.hostile import Answer, Exchange, HostileServer
from tests.support.hostile_runs import last_line, loaded_ids, run_contacts

NOT_PAGES = {
    "null": (b"null", "null, not an object"),
    "top-level-list": (b'[{"id": 1}]', "a list, not an object"),
    "no-envelope-key": (b'{"meta": {}}', "no 'contacts' key"),
    "envelope-holds-an-object": (
        b'{"contacts": {"id": 1}}',
        "'contacts' holds an object, not a list",
    ),
}


def answer_with(body: bytes) -> Answer:
    def answer(exchange: Exchange) -> None:
        exchange.send(200, body)

    return answer


@pytest.mark.parametrize(("body", "reason"), NOT_PAGES.values(), ids=NOT_PAGES.keys())
def test_a_page_of_another_shape_is_retried_then_fails_the_run(
    hostile: Callable[[Answer], HostileServer], workdir: Path, body: bytes, reason: str
) -> None:
    crm = hostile(answer_with(body))

    done = run_contacts(workdir, crm.base_url)

    assert done.returncode == EXIT_SOURCE, done.stderr
    assert last_line(done) == (
        f"crmsync: contacts: GET {_first_page(crm)} answered 200 with a body that is not a"
        f" page of records ({reason}) after 4 attempts; the CRM is failing, try again later"
    )
    assert len(crm.seen) == 4
    assert loaded_ids(workdir) == []


def _first_page(crm: HostileServer) -> str:
    return unquote(crm.seen[0].path)
