"""Edits between two reads show up through the API the way an incremental sync needs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer, Mutation

SIZES = {"accounts": 20, "contacts": 50, "events": 40, "products": 10, "pipelines": 3}
AUTH = (DEFAULT_USERNAME, DEFAULT_PASSWORD)
FROZEN = datetime(2027, 1, 1, tzinfo=UTC)  # after every generated timestamp
FROZEN_TEXT = "2027-01-01T00:00:00Z"


@pytest.fixture
def server() -> Iterator[DemoServer]:
    with DemoServer(sizes=SIZES) as server:
        server.store.set_clock(FROZEN)
        yield server


def page_ids(server: DemoServer, resource: str, **filters: str) -> list[int]:
    size = "limit" if resource == "events" else "page[limit]"
    params = {size: "500", **filters}
    response = requests.get(f"{server.base_url}/{resource}", params=params, auth=AUTH, timeout=5)
    response.raise_for_status()
    return [record["id"] for record in response.json()[resource]]


def by_id(server: DemoServer, resource: str) -> dict[int, dict[str, Any]]:
    return {record["id"]: record for record in server.store.records(resource)}


@pytest.mark.parametrize("resource", ["accounts", "contacts", "products", "pipelines"])
def test_created_updated_and_deleted_records_are_exactly_those_updated_since_the_edit(
    server: DemoServer, resource: str
) -> None:
    before = page_ids(server, resource, updated_since=FROZEN_TEXT, include_deleted="true")

    mutation = server.mutate(resource, create=2, update=1, delete=1)

    size = SIZES[resource]
    assert mutation.created == [size + 1, size + 2]
    assert len(mutation.updated) == len(mutation.deleted) == 1
    touched = sorted(mutation.created + mutation.updated + mutation.deleted)
    assert before == []
    assert page_ids(server, resource, updated_since=FROZEN_TEXT, include_deleted="true") == touched
    assert page_ids(server, resource, updated_since=FROZEN_TEXT) == sorted(
        mutation.created + mutation.updated
    )
    assert mutation.deleted[0] not in page_ids(server, resource)


def test_a_created_record_is_stamped_now_and_references_existing_records(
    server: DemoServer,
) -> None:
    mutation = server.mutate("contacts", create=3)

    records = by_id(server, "contacts")
    for record_id in mutation.created:
        record = records[record_id]
        assert record["created_at"] == record["updated_at"] == FROZEN_TEXT
        assert record.get("deleted_at") is None
        assert record.get("account_id") is None or 1 <= record["account_id"] <= SIZES["accounts"]


def test_an_update_changes_a_field_and_stamps_updated_at(server: DemoServer) -> None:
    old = by_id(server, "accounts")

    mutation = server.mutate("accounts", update=5)

    new = by_id(server, "accounts")
    for record_id in mutation.updated:
        assert new[record_id]["updated_at"] == FROZEN_TEXT
        assert new[record_id]["created_at"] == old[record_id]["created_at"]
        changed = {k for k in new[record_id] if new[record_id][k] != old[record_id].get(k)}
        assert (
            {"updated_at"}
            < changed
            <= {
                "updated_at",
                "employee_count",
                "tags",
                "industry",
            }
        )
    untouched = set(old) - set(mutation.updated)
    assert all(new[i] == old[i] for i in untouched)


def test_a_delete_is_soft_and_stamps_deleted_at_and_updated_at(server: DemoServer) -> None:
    mutation = server.mutate("products", delete=2)

    records = by_id(server, "products")
    for record_id in mutation.deleted:
        assert records[record_id]["deleted_at"] == records[record_id]["updated_at"] == FROZEN_TEXT
    assert set(mutation.deleted) <= server.store.ids("products", include_deleted=True)
    assert not set(mutation.deleted) & server.store.ids("products")


def test_updates_and_deletes_pick_distinct_live_records(server: DemoServer) -> None:
    live_before = server.store.ids("contacts")

    mutation = server.mutate("contacts", update=10, delete=10)

    assert set(mutation.updated) <= live_before
    assert set(mutation.deleted) <= live_before
    assert not set(mutation.updated) & set(mutation.deleted)
    assert mutation.updated == sorted(mutation.updated)
    assert mutation.deleted == sorted(mutation.deleted)


def test_advancing_the_clock_separates_successive_edits(server: DemoServer) -> None:
    first = server.mutate("contacts", update=3)
    server.store.advance_clock(90)
    second = server.mutate("contacts", create=1, update=2)

    later = page_ids(server, "contacts", updated_since="2027-01-01T00:01:30Z")
    assert server.store.now() == "2027-01-01T00:01:30Z"
    assert later == sorted(second.created + second.updated)
    assert page_ids(server, "contacts", updated_since=FROZEN_TEXT) == sorted(
        set(first.updated) | set(second.updated) | set(second.created)
    )


def test_events_can_be_updated_but_not_deleted(server: DemoServer) -> None:
    mutation = server.mutate("events", create=1, update=2)

    assert page_ids(server, "events", updated_since=FROZEN_TEXT) == sorted(
        mutation.created + mutation.updated
    )
    with pytest.raises(ValueError, match="events cannot be deleted"):
        server.mutate("events", delete=1)


def test_editing_more_records_than_are_live_is_refused(server: DemoServer) -> None:
    live = len(server.store.ids("pipelines"))

    with pytest.raises(ValueError, match="cannot edit"):
        server.mutate("pipelines", update=live, delete=1)


@pytest.mark.parametrize("counts", [{"create": -1}, {"update": -2}, {"delete": -3}])
def test_negative_counts_are_refused(server: DemoServer, counts: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        server.mutate("contacts", **counts)


def test_an_unknown_resource_is_refused(server: DemoServer) -> None:
    with pytest.raises(ValueError, match="unknown resource"):
        server.mutate("deals", create=1)


def test_the_same_seed_and_calls_give_the_same_edits() -> None:
    def run() -> tuple[list[Mutation], list[dict[str, Any]]]:
        with DemoServer(sizes=SIZES, seed=11) as server:
            server.store.set_clock(FROZEN)
            mutations = [
                server.mutate("contacts", create=2, update=4, delete=2),
                server.mutate("accounts", update=3),
                server.mutate("contacts", update=1),
            ]
            return mutations, server.store.records("contacts") + server.store.records("accounts")

    assert run() == run()


def test_store_update_merges_fields_and_stamps_updated_at(server: DemoServer) -> None:
    server.store.update("contacts", [3, 7], {"loyalty": {"points": 120}, "title": "CFO"})

    records = by_id(server, "contacts")
    for record_id in (3, 7):
        assert records[record_id]["loyalty"] == {"points": 120}
        assert records[record_id]["title"] == "CFO"
        assert records[record_id]["updated_at"] == FROZEN_TEXT
    served = requests.get(
        f"{server.base_url}/contacts",
        params={"updated_since": FROZEN_TEXT, "include_deleted": "true"},
        auth=AUTH,
        timeout=5,
    ).json()["contacts"]
    assert [(c["id"], c["loyalty"]) for c in served] == [(3, {"points": 120}), (7, {"points": 120})]


def test_store_update_can_backdate_updated_at_itself(server: DemoServer) -> None:
    server.store.update("accounts", [1], {"updated_at": "2026-12-31T23:59:59Z"})

    assert by_id(server, "accounts")[1]["updated_at"] == "2026-12-31T23:59:59Z"
    assert page_ids(server, "accounts", updated_since=FROZEN_TEXT) == []


def test_store_update_of_a_missing_id_changes_nothing(server: DemoServer) -> None:
    before = server.store.records("contacts")

    with pytest.raises(ValueError, match="no record with id 51"):
        server.store.update("contacts", [1, 51], {"title": "x"})

    assert server.store.records("contacts") == before


def test_records_returns_copies(server: DemoServer) -> None:
    server.store.records("contacts")[0]["custom_fields"]["tier"] = "changed"

    assert server.store.records("contacts")[0]["custom_fields"].get("tier") != "changed"


def test_the_clock_is_real_utc_time_unless_frozen(server: DemoServer) -> None:
    server.store.set_clock(
        datetime(2027, 5, 1, 14, 30, 15, 999_999, tzinfo=timezone(timedelta(hours=2)))
    )
    assert server.store.now() == "2027-05-01T12:30:15Z"
    server.store.set_clock(datetime(2027, 5, 1, 14, 30))  # naive means UTC
    assert server.store.now() == "2027-05-01T14:30:00Z"

    server.store.set_clock(None)

    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert abs(
        datetime.fromisoformat(server.store.now()) - datetime.fromisoformat(expected)
    ) <= timedelta(seconds=2)
    with pytest.raises(RuntimeError, match="not frozen"):
        server.store.advance_clock(10)
