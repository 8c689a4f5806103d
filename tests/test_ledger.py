"""The run ledger's completeness rule: distinct records against the smallest total reported."""

from __future__ import annotations

import pytest

from crmsync.ledger import IncompleteReadError, ResourceObserver, RunLedger


def observer(replaces: bool = False, strict: bool = False) -> tuple[ResourceObserver, list[str]]:
    held: list[str] = []
    watcher = RunLedger(strict=strict).observer("contacts", "/contacts")
    watcher.replaces = replaces
    watcher.hold_cursor = lambda: held.append("held")
    return watcher, held


def test_a_list_that_grew_while_read_is_complete_with_every_record_it_held_at_first() -> None:
    """1,000 records when page 1 was cut, 1,010 by page 2: ten entered behind the reader."""
    watcher, held = observer()
    watcher.page_read(500, 1000)
    watcher.page_read(500, 1010)
    watcher.repeats_dropped(10)
    watcher.page_read(10, 1010)
    watcher.read_finished()

    tally = watcher.tally
    assert (tally.reported_total, tally.distinct_rows, tally.complete) == (1000, 1000, True)
    assert (tally.list_moved, tally.outcome, held) == (True, "ok", [])


def test_records_served_twice_count_once() -> None:
    watcher, held = observer()
    watcher.page_read(500, 1000)
    watcher.repeats_dropped(20)
    watcher.page_read(500, 1000)
    watcher.read_finished()

    assert (watcher.tally.complete, watcher.tally.outcome, held) == (False, "incomplete", ["held"])


@pytest.mark.parametrize(
    ("replaces", "strict"), [(True, False), (False, True)], ids=["replaces", "strict"]
)
def test_an_incomplete_read_fails_where_it_would_replace_or_under_strict(
    replaces: bool, strict: bool
) -> None:
    watcher, held = observer(replaces=replaces, strict=strict)
    watcher.page_read(499, 1000)

    with pytest.raises(IncompleteReadError, match="held 499 distinct records"):
        watcher.read_finished()
    assert held == []


def test_a_page_fetched_again_marks_the_list_as_moved() -> None:
    watcher, _ = observer()
    watcher.page_read(500, 700)
    watcher.page_refetched()
    watcher.page_read(200, 700)
    watcher.read_finished()

    tally = watcher.tally
    assert (tally.refetched, tally.list_moved, tally.complete) == (1, True, True)
    (row,) = watcher.ledger.rows()
    assert (row["refetched"], row["list_moved"], row["complete"]) == (1, True, True)
    assert "total_grew" not in row
