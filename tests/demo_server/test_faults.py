"""Injected faults reach exactly the requests they target, and are logged as such."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer, Fault

SIZES = {"accounts": 5, "contacts": 40, "events": 20, "products": 5, "pipelines": 2}
AUTH = (DEFAULT_USERNAME, DEFAULT_PASSWORD)


@pytest.fixture
def server() -> Iterator[DemoServer]:
    with DemoServer(sizes=SIZES) as server:
        yield server


def get(
    server: DemoServer, path: str = "/contacts", params: dict[str, Any] | None = None, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    return requests.get(f"{server.base_url}{path}", params=params, auth=AUTH, **kwargs)


def live_contacts(server: DemoServer) -> int:
    return len(server.store.ids("contacts"))


def log(server: DemoServer) -> list[tuple[str, int, str | None, int]]:
    return [(entry.path, entry.status, entry.fault, entry.rows) for entry in server.requests]


@pytest.mark.parametrize(
    ("status", "code", "phrase"),
    [
        (503, "service_unavailable", "Service Unavailable"),
        (500, "internal_server_error", "Internal Server Error"),
        (502, "bad_gateway", "Bad Gateway"),
        (504, "gateway_timeout", "Gateway Timeout"),
        (429, "too_many_requests", "Too Many Requests"),
        (403, "forbidden", "Forbidden"),
    ],
)
def test_a_status_fault_answers_that_status_with_the_error_body_once(
    server: DemoServer, status: int, code: str, phrase: str
) -> None:
    server.faults.add(Fault("/contacts", "status", status=status))

    faulted = get(server)
    healthy = get(server)

    assert faulted.status_code == status
    assert faulted.json() == {"error": {"code": code, "message": f"injected fault: {phrase}"}}
    assert "Retry-After" not in faulted.headers
    assert healthy.status_code == 200
    assert log(server) == [
        ("/contacts", status, "status", 0),
        ("/contacts", 200, None, live_contacts(server)),
    ]


@pytest.mark.parametrize("retry_after", ["0", "2", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_status_fault_sends_retry_after_verbatim(server: DemoServer, retry_after: str) -> None:
    server.faults.add(Fault("/events", "status", status=429, retry_after=retry_after))

    response = get(server, "/events")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == retry_after


def test_an_injected_401_names_the_realm_like_a_real_one(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status", status=401))

    response = get(server)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="crm"'


def test_a_drop_fault_closes_the_connection_without_an_answer(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "drop"))

    with pytest.raises(requests.ConnectionError):
        get(server)
    healthy = get(server)

    assert healthy.status_code == 200
    assert log(server) == [
        ("/contacts", 0, "drop", 0),
        ("/contacts", 200, None, live_contacts(server)),
    ]


def test_a_malformed_fault_answers_200_json_with_a_cut_body(server: DemoServer) -> None:
    healthy = get(server, params={"page[limit]": 5}).content
    server.faults.add(Fault("/contacts", "malformed"))

    response = get(server, params={"page[limit]": 5})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == healthy[: len(healthy) // 2]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    assert log(server)[-1] == ("/contacts", 200, "malformed", 0)


def test_a_hang_fault_outlasts_a_shorter_client_timeout_and_is_logged_when_it_gives_up(
    server: DemoServer,
) -> None:
    server.faults.add(Fault("/contacts", "hang", seconds=0.5))

    with pytest.raises(requests.ReadTimeout):
        get(server, timeout=0.2)
    retry = get(server)

    assert retry.status_code == 200
    assert log(server) == [
        ("/contacts", 0, "hang", 0),
        ("/contacts", 200, None, live_contacts(server)),
    ]


def test_a_hang_fault_answers_normally_to_a_patient_client(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "hang", seconds=0.5))

    response = get(server, timeout=5)

    assert response.status_code == 200
    assert len(response.json()["contacts"]) == live_contacts(server)
    assert log(server) == [("/contacts", 200, "hang", live_contacts(server))]


def test_a_hang_fault_of_zero_seconds_answers_at_once(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "hang"))

    assert get(server).status_code == 200
    assert log(server) == [("/contacts", 200, "hang", live_contacts(server))]


def test_a_short_page_fault_leaves_out_the_last_record_and_keeps_meta_truthful(
    server: DemoServer,
) -> None:
    server.faults.add(Fault("/contacts", "short_page"))
    params = {"page[limit]": 10, "include_deleted": "true"}

    short = get(server, params=params).json()
    full = get(server, params=params).json()

    assert [c["id"] for c in short["contacts"]] == list(range(1, 10))
    assert [c["id"] for c in full["contacts"]] == list(range(1, 11))
    assert short["meta"] == full["meta"] == {"page": 1, "limit": 10, "total": 40}
    assert log(server) == [("/contacts", 200, "short_page", 9), ("/contacts", 200, None, 10)]


def test_an_unordered_fault_serves_the_page_in_descending_id_order(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "unordered"))
    params = {"page[limit]": 10, "include_deleted": "true"}

    unordered = get(server, params=params).json()

    assert [c["id"] for c in unordered["contacts"]] == list(range(10, 0, -1))
    assert log(server) == [("/contacts", 200, "unordered", 10)]


def test_times_counts_the_faulted_requests(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status", times=3))

    statuses = [get(server).status_code for _ in range(4)]

    assert statuses == [503, 503, 503, 200]


def test_times_none_faults_every_request_until_cleared(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status", status=500, times=None))

    statuses = [get(server).status_code for _ in range(5)]
    server.faults.clear()

    assert statuses == [500] * 5
    assert get(server).status_code == 200


@pytest.mark.parametrize(
    ("path", "page_param", "limit_param"),
    [("/contacts", "page[page]", "page[limit]"), ("/events", "page", "limit")],
)
def test_a_page_fault_hits_only_that_page(
    server: DemoServer, path: str, page_param: str, limit_param: str
) -> None:
    server.faults.add(Fault(path, "status", page=2))

    statuses = [
        get(server, path, {page_param: p, limit_param: 5}).status_code for p in (1, 3, 2, 2)
    ]

    assert statuses == [200, 200, 503, 200]


def test_a_page_1_fault_hits_a_request_without_a_page_param(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status", page=1))

    assert get(server).status_code == 503


def test_faults_fire_in_the_order_they_were_added(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status", status=502))
    server.faults.add(Fault("/contacts", "status", status=429, times=2))
    server.faults.add(Fault("/contacts", "status", status=504))

    statuses = [get(server).status_code for _ in range(5)]

    assert statuses == [502, 429, 429, 504, 200]


def test_a_fault_matches_its_exact_path_only(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status"))

    assert get(server, "/accounts").status_code == 200
    assert get(server, "/contacts/").status_code == 404
    assert get(server, "/contacts").status_code == 503


def test_an_unauthorized_request_does_not_use_up_a_fault(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status"))

    rejected = requests.get(f"{server.base_url}/contacts", timeout=5)

    assert rejected.status_code == 401
    assert get(server).status_code == 503


def test_a_fault_is_not_changed_by_firing(server: DemoServer) -> None:
    fault = Fault("/contacts", "status", times=2)
    server.faults.add(fault)

    get(server)
    get(server)

    assert fault == Fault("/contacts", "status", times=2)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "explode"},
        {"kind": "status", "times": 0},
        {"kind": "status", "status": 999},
        {"kind": "hang", "seconds": -1},
    ],
)
def test_an_impossible_fault_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fault("/contacts", **fields)
