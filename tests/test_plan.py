"""The plan: a profile read once into what each resource is, without editing the profile."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
import requests

from crmsync.profiles.cursor_format import CursorFormatError, cursor_format
from crmsync.profiles.plan import plan_resources
from crmsync.profiles.profile import built_in_profile
from crmsync.reading.page_observer import ObservedPaginator
from crmsync.transport.http_policy import RequestTag, resource_of

MOMENT = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "written"),
    [
        ("rfc3339", "2026-03-01T12:00:05Z"),
        ("epoch_seconds", 1772366405),
        ("epoch_milliseconds", 1772366405000),
        ("%Y-%m-%d %H:%M:%S", "2026-03-01 12:00:05"),
    ],
)
def test_a_cursor_format_writes_and_reads_back_the_same_instant(spec: str, written: object) -> None:
    form = cursor_format(spec)

    assert form.render(MOMENT) == written
    assert form.parse(written) == MOMENT
    assert form.parse(str(written)) == MOMENT
    assert form.parse_record_value("2026-03-01T13:00:05+01:00") == MOMENT


@pytest.mark.parametrize("spec", ["unix", 5, "%"[:0]])
def test_an_unknown_cursor_format_is_refused(spec: object) -> None:
    with pytest.raises(CursorFormatError, match="is not one of rfc3339"):
        cursor_format(spec)


def test_plans_are_read_without_editing_the_profile() -> None:
    profile = built_in_profile()
    profile["resources"][1]["deleted_listing"] = {"params": {"archived": "true"}}
    before = copy.deepcopy(profile)

    plans = {plan.name: plan for plan in plan_resources(profile)}

    assert profile == before
    contacts = plans["contacts"]
    assert (contacts.path, contacts.records_key, contacts.id_kind) == (
        "/contacts",
        "contacts",
        "bigint",
    )
    assert contacts.ordered and contacts.filters_by_cursor
    assert contacts.hard_delete_columns == ["deleted_at"]
    assert "ordered_by_primary_key" not in contacts.config
    assert "deleted_listing" not in contacts.config
    assert plans["accounts"].list_fields == ("tags",)
    assert plans["events"].config["endpoint"]["paginator"]["limit_param"] == "limit"
    listing = contacts.listing()
    assert listing is not None and listing.name == "contacts__deleted"
    assert listing.config["table_name"] == "contacts"
    assert listing.config["endpoint"]["params"] == {"include_deleted": "true", "archived": "true"}
    assert "incremental" not in listing.config["endpoint"] and plans["accounts"].listing() is None


def test_a_nested_cursor_with_a_format_gets_a_timestamp_column() -> None:
    profile = {
        "resources": [
            {
                "name": "people",
                "endpoint": {
                    "incremental": {
                        "cursor_path": "properties.changed",
                        "start_param": "since",
                        "cursor_format": "epoch_milliseconds",
                    }
                },
            }
        ]
    }

    (plan,) = plan_resources(profile)

    assert plan.cursor is not None and plan.cursor.parse and plan.cursor.nested
    assert plan.cursor.column == "properties__changed"
    assert plan.columns["properties__changed"]["data_type"] == "timestamp"
    assert "cursor_format" not in plan.config["endpoint"]["incremental"]
    assert plan.path == "people"


class _Pages:
    """A paginator that ends after two pages and reports nothing itself."""

    def __init__(self) -> None:
        self.pages = 0
        self.has_next_page = True

    def init_request(self, request: requests.Request) -> None:
        request.params = {"page": 1}

    def update_state(self, response: requests.Response, data: list[object] | None = None) -> None:
        self.pages += 1
        self.has_next_page = self.pages < 2

    def update_request(self, request: requests.Request) -> None:
        request.params = {"page": 2}


class _Observer:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def page_read(self, rows: int, total: int | None) -> None:
        self.seen.append((rows, total))

    def page_refetched(self) -> None:
        self.seen.append("refetched")

    def read_finished(self) -> None:
        self.seen.append("finished")


def test_any_paginator_names_its_requests_and_reports_its_pages() -> None:
    observer = _Observer()
    paginator = ObservedPaginator(_Pages(), "people", observer)  # type: ignore[arg-type]
    request = requests.Request("GET", "http://crm.test/people")

    paginator.init_request(request)
    prepared = requests.Session().prepare_request(request)
    paginator.update_state(requests.Response(), [{"id": 1}, {"id": 2}])
    paginator.update_request(request)
    paginator.update_state(requests.Response(), [{"id": 3}])

    assert resource_of(prepared) == "people"
    assert (
        resource_of(requests.Session().prepare_request(requests.Request("GET", "http://x"))) is None
    )
    assert RequestTag("people")(requests.Response()) is None
    assert observer.seen == [(2, None), (1, None), "finished"]
    assert not paginator.has_next_page
