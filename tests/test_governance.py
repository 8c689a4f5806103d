"""What lands, under control: excluded and hashed fields, schema contracts, true history."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from crmsync.demo_server import DemoServer
from crmsync.failures import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE, describe
from crmsync.loading.sync import SyncFailed
from crmsync.profiles.profile import Profile
from crmsync.reading.source import SyncOptions
from tests.support.cli import crm_env, run_crmsync
from tests.support.destinations import Destination, DuckDBDestination, PostgresDestination
from tests.support.syncs import profile_with, sync

HASH_KEY = "pepper-for-tests"


@pytest.fixture(params=["duckdb", "postgres"])
def sql_destination(request: pytest.FixtureRequest, workdir: Path) -> Destination:
    if request.param == "postgres":
        return PostgresDestination(workdir, request.getfixturevalue("postgres_server"))
    return DuckDBDestination(workdir)


def digest(value: str) -> str:
    return hmac.new(HASH_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


POLICY = """
[[resources]]
name = "contacts"
exclude_columns = ["phone", "custom_fields.*"]
hash_columns = ["email"]

[[resources]]
name = "accounts"
exclude_columns = ["address.street", "custom_fields.tier*"]
hash_columns = ["domain"]
"""


def test_excluded_fields_never_land_and_hashed_ones_land_as_their_hmac(
    crm: DemoServer,
    sql_destination: Destination,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__CRM__HASH_KEY", HASH_KEY)
    profile = profile_with(tmp_path, POLICY)
    options = SyncOptions(resources=("accounts", "contacts"))
    settings = sql_destination.settings()

    sync(crm, sql_destination, options, profile=profile)  # type: ignore[arg-type]

    contacts = sql_destination.column_types("contacts")
    assert "phone" not in contacts
    assert not [c for c in contacts if c.startswith("custom_fields")]
    assert contacts["email"] == "VARCHAR"
    accounts = sql_destination.column_types("accounts")
    assert "address__street" not in accounts and "address__city" in accounts
    assert not [c for c in accounts if c.startswith("custom_fields__tier")]
    emails = dict(sql_destination.query("select id, email from {contacts}"))
    live = {r["id"]: r.get("email") for r in crm.store.records("contacts", False)}
    assert emails == {i: None if e is None else digest(e) for i, e in live.items()}
    assert None in emails.values() or all(live.values())
    phones = [r["phone"] for r in crm.store.records("contacts") if r.get("phone")]
    kept = Path(settings.pipelines_dir or "")
    written = b"".join(p.read_bytes() for p in kept.rglob("*") if p.is_file())
    assert phones and not [p for p in phones if p.encode() in written]


def test_hashing_without_a_key_is_a_configuration_error(
    crm: DemoServer, tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCES__CRM__HASH_KEY", raising=False)
    profile = profile_with(tmp_path, POLICY)

    with pytest.raises(Exception) as raised:
        sync(crm, DuckDBDestination(workdir), profile=profile)

    failure = describe(raised.value)
    assert (failure.exit_code, failure.message) == (
        EXIT_CONFIG,
        "accounts: hash_columns needs a key: set SOURCES__CRM__HASH_KEY (or hash_key under"
        " [sources.crm] in .dlt/secrets.toml)",
    )


@pytest.mark.parametrize(
    "overlay",
    [
        '[[resources]]\nname = "contacts"\nschema_contract = "freeze"\n',
        '[[resources]]\nname = "contacts"\nschema_contract = { columns = "freeze" }\n',
        '[resource_defaults]\nschema_contract = { columns = "freeze" }\n',
    ],
    ids=["resource", "resource-columns", "default-columns"],
)
def test_under_freeze_a_new_field_stops_the_run_before_anything_loads(
    crm: DemoServer, workdir: Path, tmp_path: Path, overlay: str
) -> None:
    destination = DuckDBDestination(workdir)
    profile = profile_with(tmp_path, overlay)
    options = SyncOptions(resources=("contacts",))
    sync(crm, destination, options)  # dlt's `freeze` of tables refuses a table's first load
    crm.store.update("contacts", [3], {"loyalty_level": "gold", "title": "changed"})

    with pytest.raises(SyncFailed) as raised:
        sync(crm, destination, options, profile=profile)

    failure = describe(raised.value.__cause__ or raised.value)
    assert (failure.exit_code, failure.message) == (
        EXIT_SOURCE,
        "contacts: the CRM sent a new field `loyalty_level`, which the schema contract `freeze`"
        " refuses; nothing was loaded. Declare it in the resource's columns, or relax"
        " schema_contract in your profile",
    )
    assert "loyalty_level" not in destination.column_types("contacts")
    assert destination.query("select title from {contacts} where id = 3") != [("changed",)]


HISTORY = """
[[resources]]
name = "accounts"
write_disposition = { disposition = "merge", strategy = "scd2" }
"""


def versions(destination: Destination) -> tuple[int, int]:
    """(all versions, open versions) of accounts."""
    ((total, open_),) = destination.query(
        "select count(*), count(*) filter (where _dlt_valid_to is null) from {accounts}"
    )
    return total, open_


def history_sync(server: DemoServer, destination: Destination, profile: Profile) -> Any:
    return sync(server, destination, SyncOptions(resources=("accounts",)), profile=profile)  # type: ignore[arg-type]


def test_history_keeps_records_absent_from_an_incremental_read_open(
    start_crm: Any, sql_destination: Destination, tmp_path: Path
) -> None:
    server: DemoServer = start_crm({"accounts": 600})
    profile = profile_with(tmp_path, HISTORY)
    history_sync(server, sql_destination, profile)
    live_before = len(server.store.ids("accounts"))
    assert versions(sql_destination) == (live_before, live_before)
    changed = server.mutate("accounts", create=10, update=25, delete=5)

    history_sync(server, sql_destination, profile)
    history_sync(server, sql_destination, profile)  # the same window again: no new version

    live = server.store.ids("accounts")
    assert len(live) == live_before + 10 - 5
    assert versions(sql_destination) == (live_before + 10 + 25, len(live))
    open_ids = {
        row[0]
        for row in sql_destination.query("select id from {accounts} where _dlt_valid_to is null")
    }
    assert open_ids == live
    closed = {
        row[0]
        for row in sql_destination.query(
            "select id from {accounts} where _dlt_valid_to is not null"
        )
    }
    assert closed == set(changed.updated) | set(changed.deleted)
    ((tags,),) = sql_destination.query(
        "select count(*) from {accounts__tags} t join {accounts} a"
        " on t._dlt_parent_id = a._dlt_id where a._dlt_valid_to is null"
    )
    assert tags == sum(len(r["tags"]) for r in server.store.records("accounts", False))


def stored_state(destination: DuckDBDestination, resource: str) -> dict[str, Any]:
    pipeline = dlt.attach("crmsync", pipelines_dir=destination.settings().pipelines_dir)
    state: dict[str, Any] = pipeline.state["sources"]["crm"]["resources"][resource]
    return state


def test_a_backfill_re_reads_its_window_and_leaves_the_cursor_as_it_was(
    crm: DemoServer, workdir: Path
) -> None:
    destination = DuckDBDestination(workdir)
    options = SyncOptions(resources=("contacts",))
    sync(crm, destination, options)
    sync(crm, destination, options)
    cursor = stored_state(destination, "contacts")
    crm.store.set_clock(datetime(2030, 1, 1, 10, tzinfo=UTC))
    crm.store.update("contacts", [1, 2], {"title": "in the window"})
    crm.store.set_clock(datetime(2030, 1, 2, 10, tzinfo=UTC))
    crm.store.update("contacts", [3], {"title": "after the window"})
    crm.clear_requests()

    window = SyncOptions(
        resources=("contacts",), since="2030-01-01T00:00:00Z", until="2030-01-02T00:00:00Z"
    )
    sync(crm, destination, window)

    assert {r.params.get("updated_since") for r in crm.requests} == {"2030-01-01T00:00:00Z"}
    titles = dict(destination.query("select id, title from {contacts} where id in (1, 2, 3)"))
    assert titles[1] == titles[2] == "in the window"
    assert titles[3] != "after the window"
    assert stored_state(destination, "contacts") == cursor


def test_reset_drops_one_resource_so_that_its_next_sync_is_a_full_one(
    crm: DemoServer, workdir: Path
) -> None:
    assert run_crmsync(workdir, "run", env=crm_env(crm)).returncode == EXIT_OK
    destination = DuckDBDestination(workdir)

    asked = run_crmsync(workdir, "reset", "--resources", "contacts", input="n\n")
    done = run_crmsync(workdir, "reset", "--resources", "contacts", "--yes")

    assert asked.returncode == 1 and "Drop contacts from duckdb, dataset crm?" in asked.stderr
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout == "dropped contacts; the next sync of contacts is a full one\n"
    assert "contacts" not in destination.tables() and "accounts" in destination.tables()
    crm.clear_requests()
    assert run_crmsync(workdir, "run", env=crm_env(crm)).returncode == EXIT_OK
    assert {r.params.get("updated_since") for r in crm.requests_for("contacts")} == {None}
    assert None not in {r.params.get("updated_since") for r in crm.requests_for("accounts")}
    assert destination.current_ids("contacts") == sorted(crm.store.ids("contacts"))


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        (
            '[[resources]]\nname = "contacts"\nexclude_colums = ["phone"]\n',
            "resource contacts: unknown key 'exclude_colums' (did you mean 'exclude_columns'?)",
        ),
        (
            '[[resources]]\nname = "contacts"\nhash_columns = "email"\n',
            "resource contacts: `hash_columns` must be a list of field paths, got 'email'",
        ),
        (
            '[[resources]]\nname = "contacts"\nexclude_columns = ["custom_*.x"]\n',
            "resource contacts: 'custom_*.x' is not a field path: names joined by dots, `*` only"
            " at the end",
        ),
        (
            '[[resources]]\nname = "deals"\nschema_contract = { columns = "frozen" }\n',
            "resource deals: schema_contract.columns 'frozen' is not one of discard_row,"
            " discard_value, evolve, freeze",
        ),
        (
            '[resource_defaults]\nendpoint = { paginater = { type = "page_number" } }\n',
            "resource_defaults: endpoint: unknown key 'paginater' (did you mean 'paginator'?)",
        ),
        (
            '[[resources]]\nname = "contacts"\nordered_by_primary_key = "no"\n',
            "resource contacts: ordered_by_primary_key must be true or false",
        ),
    ],
    ids=["unknown-key", "not-a-list", "bad-path", "bad-contract", "endpoint-key", "not-a-flag"],
)
def test_a_bad_key_or_value_in_a_profile_is_one_line_naming_file_resource_and_key(
    crm: DemoServer, workdir: Path, overlay: str, message: str
) -> None:
    (workdir / "crmsync.toml").write_text(overlay)

    done = run_crmsync(workdir, "run", "--config", "crmsync.toml", env=crm_env(crm))

    assert (done.returncode, done.stderr) == (EXIT_CONFIG, f"crmsync: crmsync.toml: {message}\n")
    assert crm.requests == []
