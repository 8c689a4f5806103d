"""The five list endpoints answer exactly as the API contract says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer

SIZES = {"accounts": 30, "contacts": 120, "events": 150, "products": 12, "pipelines": 3}
AUTH = (DEFAULT_USERNAME, DEFAULT_PASSWORD)
# resource, page param, size param, has a meta block
ENDPOINTS = [
    ("accounts", "page[page]", "page[limit]", True),
    ("contacts", "page[page]", "page[limit]", True),
    ("products", "page[page]", "page[limit]", True),
    ("pipelines", "page[page]", "page[limit]", True),
    ("events", "page", "limit", False),
]
RESOURCE_IDS = [endpoint[0] for endpoint in ENDPOINTS]
DELETABLE = ["accounts", "contacts", "products", "pipelines"]


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    with DemoServer(sizes=SIZES) as server:
        for resource in DELETABLE:  # small sizes may generate no soft-deleted record
            server.mutate(resource, delete=1)
        yield server


def get(server: DemoServer, path: str, params: dict[str, Any] | None = None) -> requests.Response:
    return requests.get(f"{server.base_url}{path}", params=params, auth=AUTH, timeout=5)


def ids_of(response: requests.Response, resource: str) -> list[int]:
    return [record["id"] for record in response.json()[resource]]


def deleted_ids(server: DemoServer, resource: str) -> set[int]:
    return server.store.ids(resource, include_deleted=True) - server.store.ids(resource)


@pytest.mark.parametrize(
    ("resource", "page_param", "limit_param", "has_meta"), ENDPOINTS, ids=RESOURCE_IDS
)
def test_body_holds_records_under_the_envelope_key_and_meta_only_where_the_contract_has_it(
    server: DemoServer, resource: str, page_param: str, limit_param: str, has_meta: bool
) -> None:
    params = {page_param: 1, limit_param: 500, "include_deleted": "true"}
    response = get(server, f"/{resource}", params)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    if has_meta:
        assert set(body) == {resource, "meta"}
        assert body["meta"] == {"page": 1, "limit": 500, "total": SIZES[resource]}
    else:
        assert set(body) == {resource}
    assert ids_of(response, resource) == list(range(1, SIZES[resource] + 1))


@pytest.mark.parametrize(
    ("resource", "page_param", "limit_param", "has_meta"), ENDPOINTS, ids=RESOURCE_IDS
)
@pytest.mark.parametrize(("limit", "page"), [(1, 1), (1, 2), (100, 1), (100, 2), (500, 1)])
def test_a_page_is_the_id_ordered_slice_at_that_page_and_size(
    server: DemoServer,
    resource: str,
    page_param: str,
    limit_param: str,
    has_meta: bool,
    limit: int,
    page: int,
) -> None:
    params = {page_param: page, limit_param: limit, "include_deleted": "true"}
    response = get(server, f"/{resource}", params)

    all_ids = list(range(1, SIZES[resource] + 1))
    assert response.status_code == 200
    assert ids_of(response, resource) == all_ids[(page - 1) * limit : page * limit]
    if has_meta:
        assert response.json()["meta"] == {"page": page, "limit": limit, "total": SIZES[resource]}


@pytest.mark.parametrize(
    ("resource", "page_param", "limit_param", "has_meta"), ENDPOINTS, ids=RESOURCE_IDS
)
def test_without_page_params_the_first_100_records_are_served(
    server: DemoServer, resource: str, page_param: str, limit_param: str, has_meta: bool
) -> None:
    response = get(server, f"/{resource}", {"include_deleted": "true"})

    assert ids_of(response, resource) == list(range(1, min(100, SIZES[resource]) + 1))
    if has_meta:
        assert response.json()["meta"] == {"page": 1, "limit": 100, "total": SIZES[resource]}


@pytest.mark.parametrize(
    ("resource", "page_param", "limit_param", "has_meta"), ENDPOINTS, ids=RESOURCE_IDS
)
@pytest.mark.parametrize(
    ("which", "value"),
    [
        ("page", "0"),
        ("page", "-1"),
        ("page", "x"),
        ("page", ""),
        ("limit", "0"),
        ("limit", "501"),
        ("limit", "-1"),
        ("limit", "x"),
        ("limit", "1.5"),
    ],
)
def test_an_invalid_page_or_size_answers_400_naming_the_parameter(
    server: DemoServer,
    resource: str,
    page_param: str,
    limit_param: str,
    has_meta: bool,
    which: str,
    value: str,
) -> None:
    name = page_param if which == "page" else limit_param
    response = get(server, f"/{resource}", {name: value})

    assert response.status_code == 400
    bounds = "at least 1" if which == "page" else "between 1 and 500"
    assert response.json() == {
        "error": {
            "code": "invalid_parameter",
            "message": f"{name} must be an integer {bounds}, got {value!r}",
        }
    }


@pytest.mark.parametrize(
    ("resource", "page_param", "limit_param", "has_meta"), ENDPOINTS, ids=RESOURCE_IDS
)
def test_a_page_past_the_end_answers_200_with_an_empty_list(
    server: DemoServer, resource: str, page_param: str, limit_param: str, has_meta: bool
) -> None:
    response = get(server, f"/{resource}", {page_param: 99, limit_param: 500})

    assert response.status_code == 200
    assert response.json()[resource] == []
    if has_meta:
        total = len(server.store.ids(resource))
        assert response.json()["meta"] == {"page": 99, "limit": 500, "total": total}


@pytest.mark.parametrize("resource", DELETABLE)
def test_soft_deleted_records_are_served_only_with_include_deleted_true(
    server: DemoServer, resource: str
) -> None:
    limit = {"page[limit]": 500}
    everything = list(range(1, SIZES[resource] + 1))
    deleted = deleted_ids(server, resource)
    assert deleted

    live = get(server, f"/{resource}", limit)
    assert ids_of(live, resource) == [i for i in everything if i not in deleted]
    assert live.json()["meta"]["total"] == SIZES[resource] - len(deleted)
    for value in ("false", "1", "yes"):
        assert ids_of(
            get(server, f"/{resource}", {**limit, "include_deleted": value}), resource
        ) == [i for i in everything if i not in deleted]
    for value in ("true", "TRUE", "True"):
        assert (
            ids_of(get(server, f"/{resource}", {**limit, "include_deleted": value}), resource)
            == everything
        )


def test_events_are_never_soft_deleted(server: DemoServer) -> None:
    response = get(server, "/events", {"limit": 500})

    assert ids_of(response, "events") == list(range(1, SIZES["events"] + 1))
    assert all("deleted_at" not in event for event in response.json()["events"])


@pytest.mark.parametrize(
    ("suffix", "inclusive"),
    [("Z", True), ("+00:00", True), (".000Z", True), (".000001Z", False), (".5+00:00", False)],
)
@pytest.mark.parametrize(
    ("resource", "page_param", "limit_param", "has_meta"), ENDPOINTS, ids=RESOURCE_IDS
)
def test_updated_since_keeps_records_updated_at_or_after_it(
    server: DemoServer,
    resource: str,
    page_param: str,
    limit_param: str,
    has_meta: bool,
    suffix: str,
    inclusive: bool,
) -> None:
    records = server.store.records(resource)
    stamps = sorted(record["updated_at"] for record in records)
    cut = stamps[len(stamps) // 2]
    since = cut.removesuffix("Z") + suffix
    expected = [
        record["id"]
        for record in records
        if (record["updated_at"] >= cut if inclusive else record["updated_at"] > cut)
    ]

    response = get(
        server,
        f"/{resource}",
        {limit_param: 500, "updated_since": since, "include_deleted": "true"},
    )

    assert response.status_code == 200
    assert ids_of(response, resource) == expected
    if has_meta:
        assert response.json()["meta"]["total"] == len(expected)


def test_updated_since_with_another_offset_means_the_same_instant(server: DemoServer) -> None:
    in_utc = get(server, "/contacts", {"updated_since": "2025-06-01T10:00:00Z", "page[limit]": 500})
    in_berlin = get(
        server, "/contacts", {"updated_since": "2025-06-01T12:00:00+02:00", "page[limit]": 500}
    )
    an_hour_later = get(
        server, "/contacts", {"updated_since": "2025-06-01T12:00:00+01:00", "page[limit]": 500}
    )

    assert ids_of(in_berlin, "contacts") == ids_of(in_utc, "contacts")
    expected_later = [
        record["id"]
        for record in server.store.records("contacts", include_deleted=False)
        if record["updated_at"] >= "2025-06-01T11:00:00Z"
    ]
    assert ids_of(an_hour_later, "contacts") == expected_later


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("0001-01-01T00:00:00Z", list(range(1, 151))),
        ("1969-12-31T23:59:59-05:00", list(range(1, 151))),
        ("9999-12-31T23:59:59.5Z", []),
        ("9999-12-31T20:00:00-05:00", []),
    ],
)
def test_updated_since_at_the_ends_of_time_keeps_everything_or_nothing(
    server: DemoServer, since: str, expected: list[int]
) -> None:
    response = get(server, "/events", {"updated_since": since, "limit": 500})

    assert response.status_code == 200
    assert ids_of(response, "events") == expected


def test_a_huge_page_number_is_past_the_end(server: DemoServer) -> None:
    response = get(server, "/contacts", {"page[page]": "9" * 18})

    assert response.status_code == 200
    assert response.json()["contacts"] == []


def test_updated_since_and_include_deleted_combine(server: DemoServer) -> None:
    cut = "2025-01-01T00:00:00Z"
    records = server.store.records("contacts")
    params = {"updated_since": cut, "page[limit]": 500}

    live = get(server, "/contacts", params)
    with_deleted = get(server, "/contacts", {**params, "include_deleted": "true"})

    recent = [r for r in records if r["updated_at"] >= cut]
    assert ids_of(with_deleted, "contacts") == [r["id"] for r in recent]
    assert ids_of(live, "contacts") == [r["id"] for r in recent if r.get("deleted_at") is None]


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-13-01T00:00:00Z", "2026-03-01T12:00:00", "2026-03-01", ""],
)
def test_an_unparsable_or_offsetless_updated_since_answers_400(
    server: DemoServer, value: str
) -> None:
    response = get(server, "/events", {"updated_since": value})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_parameter",
            "message": f"updated_since must be an RFC 3339 timestamp with an offset, got {value!r}",
        }
    }


def test_unknown_query_parameters_are_ignored(server: DemoServer) -> None:
    plain = get(server, "/contacts", {"page[limit]": 7})
    noisy = get(server, "/contacts", {"page[limit]": 7, "sort": "-id", "fields": "email"})

    assert noisy.status_code == 200
    assert noisy.json() == plain.json()


def test_events_take_page_and_limit_not_the_bracketed_params(server: DemoServer) -> None:
    bracketed = get(server, "/events", {"page[page]": 2, "page[limit]": 3})
    plain = get(server, "/events", {"page": 2, "limit": 3})

    assert ids_of(bracketed, "events") == list(range(1, 101))
    assert ids_of(plain, "events") == [4, 5, 6]


def test_the_last_value_of_a_repeated_parameter_wins(server: DemoServer) -> None:
    response = requests.get(
        f"{server.base_url}/contacts?page[limit]=2&page[limit]=3&include_deleted=true",
        auth=AUTH,
        timeout=5,
    )

    assert ids_of(response, "contacts") == [1, 2, 3]


def test_served_records_equal_the_stored_ones(server: DemoServer) -> None:
    response = get(server, "/accounts", {"page[limit]": 500, "include_deleted": "true"})

    assert response.json()["accounts"] == server.store.records("accounts")


def test_every_request_is_logged_with_its_params_status_and_row_count(server: DemoServer) -> None:
    server.clear_requests()

    get(server, "/contacts", {"page[page]": 2, "page[limit]": 50, "include_deleted": "true"})
    get(server, "/events", {"limit": 0})

    entries = server.requests
    assert [(e.method, e.path, e.resource, e.status, e.fault, e.rows) for e in entries] == [
        ("GET", "/contacts", "contacts", 200, None, 50),
        ("GET", "/events", "events", 400, None, 0),
    ]
    assert entries[0].params == {"page[page]": "2", "page[limit]": "50", "include_deleted": "true"}
    assert entries[0].at <= entries[0].finished_at <= entries[1].at
    assert server.requests_for("events") == [entries[1]]


def test_latency_is_added_to_every_request_and_counted_from_arrival(server: DemoServer) -> None:
    server.clear_requests()
    server.latency_ms = 150
    waits: list[tuple[float, float]] = []
    server.sleep = lambda seconds: waits.append((seconds, time.time()))
    try:
        response = get(server, "/products")
    finally:
        server.latency_ms = 0

    assert response.status_code == 200
    ((seconds, waited_at),) = waits
    assert seconds == 0.15
    (entry,) = server.requests
    assert entry.at <= waited_at <= entry.finished_at
