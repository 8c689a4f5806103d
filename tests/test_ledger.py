"""The run ledger's completeness rule: distinct records against the smallest total reported."""

from __future__ import annotations

import pytest

from crmsync.ledger import (
    RUNS_COLUMNS,
    IncompleteReadError,
    QuotaCutReplaceError,
    ResourceObserver,
    RunLedger,
)


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


def test_attempts_and_retries_count_under_the_named_resource_else_its_path() -> None:
    ledger = RunLedger()
    ledger.track("contacts", "/contacts")
    ledger.attempt("contacts", "/contacts")
    ledger.retry("contacts", "/contacts", 1.5, throttled=True)
    ledger.attempt(None, "/contacts")  # a request no paginator named: its path's resource
    ledger.retry(None, "/contacts", 0.5, throttled=False)
    ledger.attempt(None, "/health")  # a path no resource reads: a tally of its own

    contacts, health = ledger.tallies["contacts"], ledger.tallies["/health"]
    assert (contacts.requests, contacts.retries, contacts.throttled) == (2, 2, 1)
    assert contacts.wait_seconds == 2.0
    assert (health.resource, health.requests) == ("/health", 1)


def test_a_request_finds_its_read_by_name_or_by_the_longest_path_it_ends_with() -> None:
    ledger = RunLedger()
    contacts = ledger.observer("contacts", "/contacts")
    archived = ledger.observer("contacts__deleted", "/archived/contacts")

    assert ledger.observer_of("contacts__deleted", "/anything") is archived
    assert ledger.observer_of(None, "/api/v1/contacts") is contacts
    assert ledger.observer_of(None, "/api/v1/archived/contacts") is archived
    assert ledger.observer_of(None, "/api/v1/accounts") is None


def test_finishing_settles_every_outcome_and_the_quota_cut_reads_are_left_for_the_next_run() -> (
    None
):
    ledger = RunLedger()
    done, failed, cut = (ledger.observer(n, f"/{n}") for n in ("products", "contacts", "events"))
    ledger.track("accounts", "/accounts")  # started, never finished
    done.page_read(3, 3)
    done.read_finished()
    cut.quota_reached(10)

    ledger.finish(failed_resources={"contacts"})

    outcomes = {name: tally.outcome for name, tally in ledger.tallies.items()}
    assert outcomes == {
        "products": "ok",
        "contacts": "failed",
        "events": "quota reached",
        "accounts": "not finished",
    }
    assert ledger.unfinished == ["events"]
    assert failed.tally.outcome == "failed"


def test_a_quota_cut_full_refresh_fails_instead_of_holding_its_cursor() -> None:
    ledger = RunLedger(full_refresh=True)
    watcher = ledger.observer("contacts", "/contacts")
    held: list[str] = []
    watcher.hold_cursor = lambda: held.append("held")

    with pytest.raises(QuotaCutReplaceError, match="contacts: the run's quota of 10 requests"):
        watcher.quota_reached(10)
    watcher.page_read(0, None)  # the empty page that ends the read counts nothing

    assert (watcher.tally.pages, held) == (0, [])


def test_each_resource_is_one_row_of_the_runs_table_with_its_derived_figures() -> None:
    ledger = RunLedger(learnt_rate=4.25, paced_seconds=1.23456)
    contacts = ledger.observer("contacts", "/contacts")
    events = ledger.observer("events", "/events")
    for _ in range(3):
        ledger.attempt("contacts", "/contacts")
    contacts.page_read(500, 700)
    contacts.page_read(200, 710)
    contacts.read_finished()
    ledger.attempt("events", "/events")
    events.page_read(90, None)
    events.read_finished()

    rows = {row["resource"]: row for row in ledger.rows()}

    assert set(rows) == {"contacts", "events"}
    assert set(rows["contacts"]) == set(RUNS_COLUMNS)
    assert {row["run_id"] for row in rows.values()} == {ledger.run_id}
    contacts_row, events_row = rows["contacts"], rows["events"]
    assert (contacts_row["requests"], contacts_row["pages"], contacts_row["wasted"]) == (3, 2, 1)
    assert (contacts_row["reported_total"], contacts_row["list_moved"]) == (700, True)
    assert (contacts_row["complete"], events_row["complete"]) == (True, None)
    assert (events_row["learnt_rate"], events_row["paced_seconds"]) == (4.25, 1.235)
