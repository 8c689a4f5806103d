"""The example profiles (`profiles/examples/`) run end to end, as a user runs them: `crmsync run
--profile FILE --base-url URL` against a test server in that vendor's API shape, over real HTTP
into DuckDB. Full load, an incremental second run, deletions, and no token anywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmsync.failures import EXIT_OK
from tests.support.api_shapes import SeenRequest, ShapeServer
from tests.support.cli import run_crmsync
from tests.support.destinations import DuckDBDestination
from tests.support.hubspot_like import TOKEN as HUBSPOT_TOKEN
from tests.support.hubspot_like import HubSpotLike, epoch_ms
from tests.support.pipedrive_like import TIME_FORMAT, PipedriveLike
from tests.support.pipedrive_like import TOKEN as PIPEDRIVE_TOKEN

EXAMPLES = Path(__file__).resolve().parents[1] / "profiles" / "examples"
LOOKBACK = 60


def pipedrive_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Shape:
    """What a test needs to know of one example: its server, secret, tables and rules."""

    name: str
    server: Callable[[], ShapeServer]
    secret_env: str
    token: str
    paths: dict[str, str]
    """Resource (= table) name to its list path."""
    columns: dict[str, tuple[str, ...]]
    """Per table, the columns compared with the server's records (`row`)."""
    row: Callable[[str, dict[str, Any]], tuple[Any, ...]]
    cursor_param: str
    cursor: Callable[[str, dict[str, Any]], str]
    """A record's cursor field, as the table stores it."""
    expected_start: Callable[[str], str]
    """The start param's value for a cursor value, lookback applied, in the API's format."""
    changes: dict[str, tuple[str, dict[str, Any]]]
    """Per resource, one record's id and the fields an edit changes."""
    deletions: dict[str, Any]
    """Per resource that mirrors deletions, the id of the record to delete."""
    first_load: Callable[[Path, ShapeServer], None]
    """What this API's first full load shows besides its rows (asserted after it)."""

    def credentials_sent(self, seen: SeenRequest) -> bool:
        if self.name == "pipedrive":
            return seen.query.get("api_token") == self.token and "authorization" not in seen.headers
        return (
            seen.headers.get("authorization") == f"Bearer {self.token}"
            and self.token not in seen.target
        )


def pipedrive_row(resource: str, record: dict[str, Any]) -> tuple[Any, ...]:
    if resource == "persons":
        return (
            record["name"],
            record["org_id"],
            record["owner_id"],
            pipedrive_time(record["update_time"]),
        )
    return (record["title"], record["value"], record["person_id"], record["status"])


def hubspot_row(resource: str, record: dict[str, Any]) -> tuple[Any, ...]:
    names = {
        "contacts": ("email", "firstname", "lastname", "phone", "lifecyclestage"),
        "companies": ("name", "domain", "numberofemployees", "industry"),
    }[resource]
    return (*(record["properties"][name] for name in names), record["archived"])


def pipedrive_first_load(workdir: Path, server: ShapeServer) -> None:
    """Pipedrive's emails land as a child table, and its pages go by offset."""
    emails = DuckDBDestination(workdir).query(
        "select p.id, e.value, e.primary from {persons} p"
        " join {persons__email} e on e._dlt_parent_id = p._dlt_id"
    )
    assert sorted(emails) == [(n, f"person{n}@example.com", True) for n in range(1, 1151)]
    starts = sorted(int(seen.query["start"]) for seen in server.requests_to("/v1/persons"))
    assert starts[:12] == list(range(0, 1200, 100))
    assert {seen.query["limit"] for seen in server.requests_to("/v1/persons")} == {"100"}


def hubspot_first_load(workdir: Path, server: ShapeServer) -> None:
    """HubSpot's string ids across a digit boundary load whole, paged by `after`."""
    ids = [row[0] for row in DuckDBDestination(workdir).query("select id from {contacts}")]
    assert sorted(ids, key=int) == [str(n) for n in range(99_601, 100_551)]
    listed = server.requests_to("/crm/v3/objects/contacts")
    afters = [seen.query.get("after") for seen in listed if "archived" not in seen.query]
    assert afters[0] is None and len(set(afters)) == len(afters) == 10


SHAPES = [
    Shape(
        name="pipedrive",
        server=lambda: PipedriveLike(persons=1150, deals=420),
        secret_env="SOURCES__CRM__API_KEY",
        token=PIPEDRIVE_TOKEN,
        paths={"persons": "/v1/persons", "deals": "/v1/deals"},
        columns={
            "persons": ("name", "org_id", "owner_id", "update_time"),
            "deals": ("title", "value", "person_id", "status"),
        },
        row=pipedrive_row,
        cursor_param="since_timestamp",
        cursor=lambda resource, record: record["update_time"],
        expected_start=lambda last: (pipedrive_time(last) - timedelta(seconds=LOOKBACK)).strftime(
            TIME_FORMAT
        ),
        changes={"persons": (5, {"name": "Ada Changed"}), "deals": (9, {"value": 1234.5})},
        deletions={"deals": 11},
        first_load=pipedrive_first_load,
    ),
    Shape(
        name="hubspot",
        server=lambda: HubSpotLike(contacts=950, companies=230),
        secret_env="SOURCES__CRM__TOKEN",
        token=HUBSPOT_TOKEN,
        paths={"contacts": "/crm/v3/objects/contacts", "companies": "/crm/v3/objects/companies"},
        columns={
            "contacts": (
                "properties__email",
                "properties__firstname",
                "properties__lastname",
                "properties__phone",
                "properties__lifecyclestage",
                "archived",
            ),
            "companies": (
                "properties__name",
                "properties__domain",
                "properties__numberofemployees",
                "properties__industry",
                "archived",
            ),
        },
        row=hubspot_row,
        cursor_param="since",
        cursor=lambda resource, record: record["properties"][
            {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate"}[resource]
        ],
        expected_start=lambda last: str(epoch_ms(last) - LOOKBACK * 1000),
        changes={
            "contacts": ("99650", {"firstname": "Grace Changed", "phone": "+49 30 1"}),
            "companies": ("150", {"name": "Company Changed"}),
        },
        deletions={"contacts": "100001", "companies": "120"},
        first_load=hubspot_first_load,
    ),
]


@pytest.fixture(params=SHAPES, ids=[shape.name for shape in SHAPES])
def shape(request: pytest.FixtureRequest) -> Shape:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server(shape: Shape) -> Iterator[ShapeServer]:
    with shape.server() as running:
        yield running


def sync(
    workdir: Path, shape: Shape, server: ShapeServer, *options: str, token: str | None = None
) -> Any:
    profile = EXAMPLES / f"{shape.name}.toml"
    return run_crmsync(
        workdir,
        "run",
        "--profile",
        str(profile),
        "--base-url",
        server.url,
        "--lookback",
        str(LOOKBACK),
        *options,
        env={shape.secret_env: token or shape.token},
    )


def table_rows(workdir: Path, shape: Shape, resource: str) -> dict[Any, tuple[Any, ...]]:
    columns = ", ".join(shape.columns[resource])
    rows = DuckDBDestination(workdir).query(f"select id, {columns} from {{{resource}}}")
    return {row[0]: tuple(row[1:]) for row in rows}


def server_rows(shape: Shape, server: ShapeServer, resource: str) -> dict[Any, tuple[Any, ...]]:
    live = server.live_ids(resource)
    return {key: shape.row(resource, server.records[resource][key]) for key in live}


def test_a_full_load_then_runs_that_read_only_changes_and_remove_what_the_crm_deleted(
    workdir: Path, shape: Shape, server: ShapeServer
) -> None:
    """Three runs (once five tests, each starting with the same full load): the first lands
    every live record with its values, and what `Shape.first_load` says; the second, after
    edits, asks for changes since the cursor in the API's format; the third, after deletions,
    removes the deleted records."""
    first = sync(workdir, shape, server)

    assert first.returncode == EXIT_OK, first.stderr
    for resource, path in shape.paths.items():
        assert table_rows(workdir, shape, resource) == server_rows(shape, server, resource)
        seen = server.requests_to(path)
        assert seen and all(shape.credentials_sent(request) for request in seen), resource
        assert all(shape.cursor_param not in request.query for request in seen), resource
    shape.first_load(workdir, server)

    last_seen = {
        resource: max(shape.cursor(resource, r) for r in server.records[resource].values())
        for resource in shape.paths
    }
    for resource, (key, fields) in shape.changes.items():
        server.update(resource, key, **fields)
    server.clear_requests()

    second = sync(workdir, shape, server)

    assert second.returncode == EXIT_OK, second.stderr
    for resource, path in shape.paths.items():
        seen = [r for r in server.requests_to(path) if r.query.get("archived") != "true"]
        assert {r.query.get(shape.cursor_param) for r in seen} == {
            shape.expected_start(last_seen[resource])
        }, resource
        assert sum(r.rows for r in seen) < 50, resource  # the changes, not a full read
        assert table_rows(workdir, shape, resource) == server_rows(shape, server, resource)
        key, _ = shape.changes[resource]
        assert table_rows(workdir, shape, resource)[key] == shape.row(
            resource, server.records[resource][key]
        )

    for resource, key in shape.deletions.items():
        assert key in table_rows(workdir, shape, resource)
        server.remove(resource, key)

    third = sync(workdir, shape, server)

    assert third.returncode == EXIT_OK, third.stderr
    for resource, key in shape.deletions.items():
        rows = table_rows(workdir, shape, resource)
        assert key not in rows, resource
        assert sorted(rows) == sorted(server.live_ids(resource))


def test_the_token_appears_nowhere_the_runs_wrote(
    workdir: Path, shape: Shape, server: ShapeServer
) -> None:
    kept = ("--working-dir", str(workdir / "dlt-working-folder"))
    done = sync(workdir, shape, server, *kept)
    assert done.returncode == EXIT_OK, done.stderr
    outputs = [done.stdout + done.stderr]
    server.fail_status = 500
    for options in ((), ("--debug",)):
        failed = sync(workdir, shape, server, *kept, *options)
        assert failed.returncode != EXIT_OK
        outputs.append(failed.stdout + failed.stderr)
    for command in ("check", "run --dry-run"):
        checked = run_crmsync(
            workdir,
            *command.split(),
            "--profile",
            str(EXAMPLES / f"{shape.name}.toml"),
            "--base-url",
            server.url,
            env={shape.secret_env: shape.token},
        )
        outputs.append(checked.stdout + checked.stderr)
    server.fail_status = None
    wrong = sync(workdir, shape, server, token=shape.token + "-wrong")
    assert wrong.returncode == 2
    outputs.append(wrong.stdout + wrong.stderr)

    assert [o for o in outputs if shape.token in o] == []
    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in written) and len(written) > 10
    assert [str(p) for p in written if shape.token.encode() in p.read_bytes()] == []
