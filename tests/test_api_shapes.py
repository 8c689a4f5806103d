"""The test servers in other CRMs' shapes (`tests/support/pipedrive_like.py`, `hubspot_like.py`)
answer as their vendors' docs say: credentials, pages, filters, deletions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.hubspot_like import DEFAULT_PROPERTIES, HubSpotLike, epoch_ms
from tests.support.hubspot_like import TOKEN as HUBSPOT_TOKEN
from tests.support.pipedrive_like import TOKEN as PIPEDRIVE_TOKEN
from tests.support.pipedrive_like import PipedriveLike


@pytest.fixture
def pipedrive() -> Iterator[PipedriveLike]:
    with PipedriveLike(persons=250, deals=30) as server:
        yield server


@pytest.fixture
def hubspot() -> Iterator[HubSpotLike]:
    with HubSpotLike(contacts=420, companies=12) as server:
        yield server


def pipedrive_get(server: PipedriveLike, path: str, **params: Any) -> requests.Response:
    return requests.get(
        server.url + path, params={"api_token": PIPEDRIVE_TOKEN, **params}, timeout=5
    )


def hubspot_get(server: HubSpotLike, path: str, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {HUBSPOT_TOKEN}"}
    return requests.get(server.url + path, params=params, headers=headers, timeout=5)


@pytest.mark.parametrize(
    ("shape", "credentials"),
    [
        ("pipedrive", {}),
        ("pipedrive", {"params": {"api_token": "wrong"}}),
        ("pipedrive", {"headers": {"Authorization": f"Bearer {PIPEDRIVE_TOKEN}"}}),
        ("hubspot", {}),
        ("hubspot", {"headers": {"Authorization": "Bearer wrong"}}),
        ("hubspot", {"params": {"hapikey": HUBSPOT_TOKEN}}),
    ],
    ids=[
        "pipedrive-none",
        "pipedrive-wrong",
        "pipedrive-in-a-header",
        "hubspot-none",
        "hubspot-wrong",
        "hubspot-in-the-query",
    ],
)
def test_missing_or_misplaced_credentials_are_a_401(
    request: pytest.FixtureRequest, shape: str, credentials: dict[str, Any]
) -> None:
    server = request.getfixturevalue(shape)
    path = {"pipedrive": "/v1/persons", "hubspot": "/crm/v3/objects/contacts"}[shape]

    answer = requests.get(server.url + path, timeout=5, **credentials)

    assert answer.status_code == 401
    assert [seen.status for seen in server.seen] == [401]


def test_pipedrive_pages_by_offset_until_no_more_items_then_null(pipedrive: PipedriveLike) -> None:
    ids, start, pages = [], 0, []
    while True:
        body = pipedrive_get(pipedrive, "/v1/persons", start=start, limit=100).json()
        pagination = body["additional_data"]["pagination"]
        pages.append((pagination["start"], pagination.get("next_start")))
        ids += [record["id"] for record in body["data"]]
        if not pagination["more_items_in_collection"]:
            break
        start = pagination["next_start"]
    past_end = pipedrive_get(pipedrive, "/v1/persons", start=300, limit=100).json()

    assert ids == list(range(1, 251))
    assert pages == [(0, 100), (100, 200), (200, None)]
    assert past_end["data"] is None and past_end["success"] is True


def test_pipedrive_reads_changes_since_a_utc_time_deletions_included(
    pipedrive: PipedriveLike,
) -> None:
    pipedrive.update("persons", 7, name="Changed")
    pipedrive.remove("deals", 3)
    since = "2026-01-01 00:00:00"

    persons = pipedrive_get(pipedrive, "/v1/persons", since_timestamp=since).json()["data"]
    deals = pipedrive_get(pipedrive, "/v1/deals", since_timestamp=since).json()["data"]
    full = pipedrive_get(pipedrive, "/v1/deals", limit=500).json()["data"]
    rejected = pipedrive_get(pipedrive, "/v1/persons", since_timestamp="2026-01-01T00:00:00Z")

    assert [(p["id"], p["name"], p["update_time"]) for p in persons] == [
        (7, "Changed", "2026-01-01 00:00:01")
    ]
    assert [(d["id"], d["deleted"], d["status"]) for d in deals] == [(3, True, "deleted")]
    assert [d["id"] for d in full] == pipedrive.live_ids("deals") == [*range(1, 3), *range(4, 31)]
    assert rejected.status_code == 400


def test_hubspot_pages_by_cursor_with_properties_asked_for(hubspot: HubSpotLike) -> None:
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 100, "properties": "phone"}
    links = []
    while True:
        body = hubspot_get(hubspot, "/crm/v3/objects/contacts", **params).json()
        ids += [record["id"] for record in body["results"]]
        if "paging" not in body:
            break
        params["after"] = body["paging"]["next"]["after"]
        links.append(body["paging"]["next"]["link"])
    first = hubspot_get(hubspot, "/crm/v3/objects/contacts", limit=1).json()["results"][0]

    assert ids == [str(n) for n in range(99_601, 100_021)]
    assert len(links) == 4 and requests.get(links[0], timeout=5).status_code == 401
    assert set(first["properties"]) == set(DEFAULT_PROPERTIES["contacts"])
    assert set(body["results"][0]["properties"]) >= {"phone", "email"}


def test_hubspot_lists_archived_records_apart_and_filters_by_epoch_ms(
    hubspot: HubSpotLike,
) -> None:
    hubspot.update("contacts", "99700", firstname="Changed")
    hubspot.remove("contacts", "100000")
    since = str(epoch_ms("2026-01-01T00:00:00.000Z"))

    changed = hubspot_get(hubspot, "/crm/v3/objects/contacts", since=since).json()["results"]
    archived = hubspot_get(hubspot, "/crm/v3/objects/contacts", archived="true").json()
    live = hubspot_get(hubspot, "/crm/v3/objects/contacts", limit=100).json()["results"]
    rejected = hubspot_get(hubspot, "/crm/v3/objects/contacts", since="2026-01-01")

    assert [(c["id"], c["properties"]["firstname"]) for c in changed] == [("99700", "Changed")]
    assert [(c["id"], c["archived"], c["archivedAt"]) for c in archived["results"]] == [
        ("100000", True, "2026-01-01T00:00:02.000Z")
    ]
    assert "100000" not in hubspot.live_ids("contacts")
    assert [c["archived"] for c in live] == [False] * 100
    assert rejected.status_code == 400
