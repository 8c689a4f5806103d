"""Another process can edit records, inject faults, set latency and read the request log."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer, Fault, control

SIZES = {"accounts": 10, "contacts": 30, "events": 20, "products": 5, "pipelines": 2}
AUTH = (DEFAULT_USERNAME, DEFAULT_PASSWORD)


@pytest.fixture
def server() -> Iterator[DemoServer]:
    with DemoServer(sizes=SIZES) as server:
        yield server


def post(server: DemoServer, path: str, body: Any) -> requests.Response:
    return requests.post(f"{server.base_url}{path}", json=body, auth=AUTH, timeout=5)


def test_mutate_returns_the_touched_ids_and_edits_the_store(server: DemoServer) -> None:
    result = control.mutate(
        server.base_url,
        DEFAULT_USERNAME,
        DEFAULT_PASSWORD,
        "contacts",
        create=2,
        update=3,
        delete=1,
    )

    assert set(result) == {"created", "updated", "deleted"}
    assert result["created"] == [31, 32]
    assert len(result["updated"]) == 3
    assert len(result["deleted"]) == 1
    assert server.store.ids("contacts", include_deleted=True) == set(range(1, 33))
    assert result["deleted"][0] not in server.store.ids("contacts")


def test_mutate_over_http_matches_mutate_in_process() -> None:
    with DemoServer(sizes=SIZES) as remote, DemoServer(sizes=SIZES) as local:
        over_http = post(remote, "/_control/mutate", {"resource": "accounts", "update": 4})
        in_process = local.mutate("accounts", update=4)

    assert over_http.status_code == 200
    assert over_http.json() == dataclasses.asdict(in_process)


def test_add_fault_arms_the_fault_for_the_next_request(server: DemoServer) -> None:
    fault = Fault("/events", "status", status=429, retry_after="1", times=2)

    control.add_fault(server.base_url, DEFAULT_USERNAME, DEFAULT_PASSWORD, fault)

    statuses = [
        requests.get(f"{server.base_url}/events", auth=AUTH, timeout=5).status_code
        for _ in range(3)
    ]
    assert statuses == [429, 429, 200]


def test_delete_faults_disarms_every_fault(server: DemoServer) -> None:
    server.faults.add(Fault("/contacts", "status", times=None))

    response = requests.delete(f"{server.base_url}/_control/faults", auth=AUTH, timeout=5)

    assert response.status_code == 204
    assert response.content == b""
    assert requests.get(f"{server.base_url}/contacts", auth=AUTH, timeout=5).status_code == 200


def test_latency_sets_the_delay_added_to_api_requests(server: DemoServer) -> None:
    response = post(server, "/_control/latency", {"latency_ms": 120})

    assert response.status_code == 204
    assert server.latency_ms == 120
    waits: list[float] = []
    server.sleep = waits.append
    assert requests.get(f"{server.base_url}/products", auth=AUTH, timeout=5).status_code == 200
    assert waits == [0.12]


def test_requests_lists_api_requests_but_not_control_requests(server: DemoServer) -> None:
    requests.get(f"{server.base_url}/products", params={"page[limit]": 2}, auth=AUTH, timeout=5)
    post(server, "/_control/latency", {"latency_ms": 0})

    response = requests.get(f"{server.base_url}/_control/requests", auth=AUTH, timeout=5)

    assert response.status_code == 200
    (entry,) = response.json()
    assert set(entry) == {
        "at",
        "finished_at",
        "method",
        "path",
        "resource",
        "params",
        "status",
        "fault",
        "rows",
    }
    assert (entry["method"], entry["path"], entry["resource"], entry["status"]) == (
        "GET",
        "/products",
        "products",
        200,
    )
    assert (entry["params"], entry["fault"], entry["rows"]) == ({"page[limit]": "2"}, None, 2)
    assert entry == dataclasses.asdict(server.requests[0])


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/_control/mutate", {"resource": "deals", "create": 1}, "resource must be one of"),
        ("/_control/mutate", {"resource": "contacts", "create": "2"}, "create must be an integer"),
        ("/_control/mutate", {"resource": "events", "delete": 1}, "events cannot be deleted"),
        ("/_control/mutate", [1, 2], "must be a JSON object"),
        ("/_control/faults", {"path": "/contacts", "kind": "explode"}, "unknown fault kind"),
        ("/_control/faults", {"path": "/contacts"}, "kind"),
        ("/_control/faults", {"path": "/x", "kind": "drop", "colour": 1}, "colour"),
        ("/_control/latency", {"latency_ms": -5}, "latency_ms must be a number >= 0"),
        ("/_control/latency", {"latency_ms": True}, "latency_ms must be a number >= 0"),
    ],
)
def test_a_bad_control_request_answers_400_and_changes_nothing(
    server: DemoServer, path: str, body: Any, message: str
) -> None:
    before = server.store.records("contacts")

    response = post(server, path, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert message in response.json()["error"]["message"]
    assert server.store.records("contacts") == before
    assert requests.get(f"{server.base_url}/contacts", auth=AUTH, timeout=5).status_code == 200


def test_a_body_that_is_not_json_answers_400(server: DemoServer) -> None:
    response = requests.post(
        f"{server.base_url}/_control/mutate", data=b"{not json", auth=AUTH, timeout=5
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_an_unknown_control_path_answers_404_and_a_wrong_method_405(server: DemoServer) -> None:
    unknown = requests.get(f"{server.base_url}/_control/nothing", auth=AUTH, timeout=5)
    wrong = requests.get(f"{server.base_url}/_control/faults", auth=AUTH, timeout=5)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST, DELETE"


def test_control_requests_need_the_credentials(server: DemoServer) -> None:
    response = requests.post(
        f"{server.base_url}/_control/mutate",
        json={"resource": "contacts", "create": 1},
        auth=("demo", "wrong"),
        timeout=5,
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="crm"'
    assert server.store.ids("contacts", include_deleted=True) == set(range(1, 31))


def test_the_control_client_raises_on_a_refused_call(server: DemoServer) -> None:
    with pytest.raises(requests.HTTPError):
        control.mutate(server.base_url, DEFAULT_USERNAME, "wrong", "contacts", create=1)
