"""Basic auth guards every request; unknown paths and methods get the contract's errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer

SIZES = {"accounts": 5, "contacts": 5, "events": 5, "products": 5, "pipelines": 2}
AUTH = (DEFAULT_USERNAME, DEFAULT_PASSWORD)
UNAUTHORIZED_BODY = {"error": {"code": "unauthorized", "message": "missing or invalid credentials"}}


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    with DemoServer(sizes=SIZES) as server:
        yield server


def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(b"demo:wrong-password"),
        basic(b"someone:demo-password"),
        basic(b"demo:demo-password-and-more"),
        basic(b"demo"),
        "Bearer demo-password",
        "Basic not*base64",
        "Basic",
    ],
    ids=[
        "missing",
        "wrong-password",
        "wrong-user",
        "longer",
        "no-colon",
        "bearer",
        "garbage",
        "empty",
    ],
)
@pytest.mark.parametrize("path", ["/contacts", "/events", "/nowhere", "/_control/requests"])
def test_missing_or_wrong_credentials_answer_401_with_the_realm_and_error_body(
    server: DemoServer, authorization: str | None, path: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(f"{server.base_url}{path}", headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="crm"'
    assert response.json() == UNAUTHORIZED_BODY
    assert "password" not in response.text


def test_the_scheme_name_is_case_insensitive(server: DemoServer) -> None:
    token = base64.b64encode(b"demo:demo-password").decode()
    response = requests.get(
        f"{server.base_url}/contacts", headers={"Authorization": f"basic {token}"}, timeout=5
    )

    assert response.status_code == 200


def test_a_rejected_request_is_logged_with_status_401(server: DemoServer) -> None:
    server.clear_requests()

    requests.get(f"{server.base_url}/accounts", auth=("demo", "nope"), timeout=5)

    assert [(e.path, e.resource, e.status) for e in server.requests] == [
        ("/accounts", "accounts", 401)
    ]


def test_the_configured_credentials_are_the_only_ones_accepted() -> None:
    with DemoServer(
        sizes=SIZES, username="ops@example.com", password="tøken:with:colons"
    ) as server:
        url = f"{server.base_url}/products"
        ok = requests.get(
            url,
            headers={"Authorization": basic("ops@example.com:tøken:with:colons".encode())},
            timeout=5,
        )
        default = requests.get(url, auth=AUTH, timeout=5)

    assert ok.status_code == 200
    assert default.status_code == 401


@pytest.mark.parametrize("path", ["/nowhere", "/contacts/", "/contacts/1", "/Contacts", "/"])
def test_an_unknown_path_answers_404_not_found(server: DemoServer, path: str) -> None:
    response = requests.get(f"{server.base_url}{path}", auth=AUTH, timeout=5)

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": f"no resource at {path}"}}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_list_endpoints_answer_only_get(server: DemoServer, method: str) -> None:
    response = requests.request(method, f"{server.base_url}/contacts", auth=AUTH, timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_responses_are_http_1_1_and_keep_the_connection_open(server: DemoServer) -> None:
    with requests.Session() as session:
        session.auth = AUTH
        first = session.get(f"{server.base_url}/contacts", timeout=5)
        second = session.get(f"{server.base_url}/accounts", timeout=5)

    for response in (first, second):
        assert response.raw.version == 11
        assert "Connection" not in response.headers


def test_stop_closes_idle_keep_alive_connections() -> None:
    server = DemoServer(sizes=SIZES).start()
    url = f"{server.base_url}/contacts"
    with requests.Session() as session:
        session.auth = AUTH
        assert session.get(url, timeout=5).status_code == 200
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, timeout=5)


def test_base_url_names_the_bound_port() -> None:
    with DemoServer(sizes=SIZES) as server:
        host, port = server.base_url.removeprefix("http://").split(":")

    assert host == "127.0.0.1"
    assert 0 < int(port) < 65536
