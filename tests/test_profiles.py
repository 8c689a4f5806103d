"""A CRM that is not the contract's, described by a profile file: auth, cursor formats, deletes,
resources without a filter, and the ledger for any profile (`crmsync.profiles.plan`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crmsync.failures import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE
from crmsync.loading.sync import SyncResult, run_sync
from crmsync.profiles.connection import CrmConnection
from crmsync.profiles.cursor_format import cursor_format
from crmsync.profiles.profile import load_profile
from crmsync.profiles.profile_check import ProfileError
from crmsync.reading.source import SyncOptions
from tests.support.cli import run_crmsync
from tests.support.destinations import DuckDBDestination
from tests.support.shaped_crm import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    TOKEN,
    USERNAME,
    ShapedCrm,
)
from tests.support.syncs import fast_policy

AUTHS = {
    "basic": ('{ type = "basic" }', {"USERNAME": USERNAME, "PASSWORD": PASSWORD}),
    "bearer": ('{ type = "bearer" }', {"TOKEN": TOKEN}),
    "api_key_header": ('{ type = "api_key", name = "X-Api-Key" }', {"API_KEY": TOKEN}),
    "api_key_query": (
        '{ type = "api_key", name = "api_token", location = "query" }',
        {"API_KEY": TOKEN},
    ),
    "oauth2_client_credentials": (
        '{ type = "oauth2_client_credentials", access_token_url = "{base}/oauth/token" }',
        {"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET},
    ),
}
SECRETS = (TOKEN, PASSWORD, CLIENT_SECRET)


def profile_text(
    base_url: str,
    auth: str = "bearer",
    incremental: str = 'incremental = { cursor_path = "properties.changed", '
    'start_param = "changed_since", cursor_format = "%Y-%m-%d %H:%M:%S" }',
    columns: str = "",
    extra: str = "",
    deleted_flag: str = "is_deleted",
) -> str:
    auth_table = AUTHS[auth][0].replace("{base}", base_url)
    return f"""
[client]
base_url = "{base_url}"
auth = {auth_table}

[resource_defaults]
primary_key = "id"
write_disposition = "merge"
ordered_by_primary_key = true

[resource_defaults.endpoint]
paginator.type = "crm_page_number"
paginator.limit_param = "per_page"
paginator.limit = 50
paginator.total_path = "paging.total"
data_selector = "items"

[[resources]]
name = "people"
{extra}

[resources.endpoint]
path = "/people"
{incremental}

[resources.columns]
{deleted_flag} = {{ data_type = "bool", hard_delete = true }}
{columns}
"""


@pytest.fixture
def shaped() -> Iterator[ShapedCrm]:
    with ShapedCrm(cursor_format="%Y-%m-%d %H:%M:%S") as crm:
        yield crm


def secrets_env(auth: str) -> dict[str, str]:
    return {f"SOURCES__CRM__{key}": value for key, value in AUTHS[auth][1].items()}


@pytest.fixture
def with_secrets(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_for(auth: str) -> None:
        for key, value in secrets_env(auth).items():
            monkeypatch.setenv(key, value)

    return set_for


def sync_profile(
    crm: ShapedCrm, workdir: Path, text: str, options: SyncOptions | None = None
) -> SyncResult:
    path = workdir / "shaped.toml"
    path.write_text(text)
    profile = load_profile(profile=path)
    connection = CrmConnection.from_config(client=profile["client"])
    settings = DuckDBDestination(workdir).settings()
    return run_sync(connection, settings, options, profile, fast_policy())


def written_files(folder: Path) -> Iterator[bytes]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path.read_bytes()


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_each_auth_type_reads_its_secrets_and_leaks_none(
    auth: str, workdir: Path, shaped: ShapedCrm
) -> None:
    shaped.auth = auth
    (workdir / "shaped.toml").write_text(profile_text(shaped.base_url, auth))

    done = run_crmsync(workdir, "run", "--profile", "shaped.toml", env=secrets_env(auth))

    assert done.returncode == EXIT_OK, done.stderr
    people = DuckDBDestination(workdir).query("SELECT id FROM crm.people ORDER BY id")
    assert [row[0] for row in people] == list(range(1, 121))
    assert all("/accounts" not in seen for seen, _ in shaped.seen)  # the profile's CRM alone
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr
        assert not any(secret.encode() in data for data in written_files(workdir)), secret


@pytest.mark.parametrize(
    ("auth", "names"),
    [("bearer", "SOURCES__CRM__TOKEN"), ("oauth2_client_credentials", "SOURCES__CRM__CLIENT_ID")],
)
def test_a_missing_secret_names_what_to_set_in_one_line(
    auth: str, names: str, workdir: Path, shaped: ShapedCrm
) -> None:
    (workdir / "shaped.toml").write_text(profile_text(shaped.base_url, auth))

    done = run_crmsync(workdir, "run", "--profile", "shaped.toml")

    assert done.returncode == EXIT_CONFIG
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"crmsync: missing CRM setting ({auth} auth): set {names} ")
    assert shaped.seen == []


def test_an_api_key_in_the_query_is_redacted_in_a_failure(workdir: Path, shaped: ShapedCrm) -> None:
    shaped.auth = "api_key_query"
    text = profile_text(shaped.base_url, "api_key_query").replace('"/people"', '"/missing"')
    (workdir / "shaped.toml").write_text(text)

    done = run_crmsync(workdir, "run", "--profile", "shaped.toml", env=secrets_env(shaped.auth))

    assert done.returncode == EXIT_SOURCE
    assert "GET /missing" in done.stderr and "404" in done.stderr
    assert "api_token=***" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_check_reads_the_first_page_with_the_profile_s_auth(
    workdir: Path, shaped: ShapedCrm
) -> None:
    (workdir / "shaped.toml").write_text(profile_text(shaped.base_url, "bearer"))

    done = run_crmsync(workdir, "check", "--profile", "shaped.toml", env=secrets_env("bearer"))

    assert (done.returncode, done.stdout) == (EXIT_OK, "OK    people\n")
    assert shaped.requests_to("/people") == [{"page": "1", "per_page": "1"}]


@pytest.mark.parametrize(
    "spec", ["rfc3339", "%Y-%m-%d %H:%M:%S", "epoch_seconds", "epoch_milliseconds"]
)
@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles"])
def test_the_cursor_is_sent_in_the_crm_s_format_whatever_the_machine_s_zone(
    spec: str,
    zone: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    with_secrets: Any,
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    with_secrets("bearer")
    incremental = (
        'incremental = { cursor_path = "properties.changed", start_param = "changed_since",'
        f" cursor_format = {spec!r} }}".replace("'", '"')
    )
    with ShapedCrm(cursor_format=spec) as crm:
        text = profile_text(crm.base_url, incremental=incremental)
        sync_profile(crm, workdir, text)
        crm.change(7, name="renamed")
        crm.seen.clear()

        second = sync_profile(crm, workdir, text)

    newest_before = crm.people[120].changed
    expected = cursor_format(spec).render(newest_before - timedelta(seconds=60))
    assert crm.requests_to("/people")[0]["changed_since"] == str(expected)
    landed = DuckDBDestination(workdir).query(
        "SELECT properties__name, properties__changed FROM crm.people WHERE id = 7"
    )
    assert landed[0][0] == "renamed"
    assert landed[0][1] == crm.people[7].changed
    assert second.row_counts.get("people") == 3  # 7, and 119 and 120 within the lookback


@pytest.fixture(autouse=True)
def _zone_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_unparseable_cursor_value_fails_naming_the_record_and_value(
    workdir: Path, shaped: ShapedCrm, with_secrets: Any
) -> None:
    with_secrets("bearer")
    text = profile_text(shaped.base_url).replace('"%Y-%m-%d %H:%M:%S"', '"%d.%m.%Y %H:%M"')
    (workdir / "shaped.toml").write_text(text)

    done = run_crmsync(workdir, "run", "--profile", "shaped.toml", env=secrets_env("bearer"))

    assert done.returncode == EXIT_SOURCE
    failure = done.stderr.splitlines()[-1]
    assert failure.startswith("crmsync: people: record 1 of GET /people?per_page=50&page=1 (id 1):")
    value = "properties.changed '2026-01-01 09:01:00'"
    assert f"{value} is not the pattern '%d.%m.%Y %H:%M' nor RFC 3339" in failure


def test_hard_delete_from_resource_defaults_removes_deleted_rows(
    workdir: Path, shaped: ShapedCrm, with_secrets: Any
) -> None:
    with_secrets("bearer")
    text = profile_text(shaped.base_url).replace(
        'is_deleted = { data_type = "bool", hard_delete = true }', ""
    )
    text = text.replace(
        "[resource_defaults.endpoint]",
        '[resource_defaults.columns]\nis_deleted = { data_type = "bool", hard_delete = true }\n\n'
        "[resource_defaults.endpoint]",
    )
    sync_profile(shaped, workdir, text)
    shaped.change(5, is_deleted=True)

    sync_profile(shaped, workdir, text)

    ids = [r[0] for r in DuckDBDestination(workdir).query("SELECT id FROM crm.people")]
    assert sorted(ids) == [n for n in range(1, 121) if n != 5]


def test_a_deleted_listing_removes_archived_records_from_the_same_table(
    workdir: Path, shaped: ShapedCrm, with_secrets: Any
) -> None:
    with_secrets("bearer")
    text = profile_text(
        shaped.base_url,
        extra='deleted_listing = { params = { archived = "true" } }',
        deleted_flag="archived",
    )
    first = sync_profile(shaped, workdir, text)
    assert [p.get("archived") for p in shaped.requests_to("/people")] == [None, None, None]
    shaped.change(9, archived=True)
    shaped.change(10, archived=True)
    shaped.seen.clear()

    second = sync_profile(shaped, workdir, text)

    ids = [r[0] for r in DuckDBDestination(workdir).query("SELECT id FROM crm.people")]
    assert sorted(ids) == [n for n in range(1, 121) if n not in (9, 10)]
    assert [p.get("archived") for p in shaped.requests_to("/people")] == [None, "true"]
    assert set(first.ledger.tallies) == {"people"}
    assert second.ledger.tallies["people__deleted"].rows == 2


def test_a_resource_without_a_filter_is_read_in_full_and_merged_and_says_so(
    workdir: Path, shaped: ShapedCrm
) -> None:
    (workdir / "shaped.toml").write_text(profile_text(shaped.base_url, incremental=""))
    env = secrets_env("bearer")
    run_crmsync(workdir, "run", "--profile", "shaped.toml", env=env)
    shaped.change(3, name="changed")
    shaped.seen.clear()

    done = run_crmsync(workdir, "run", "--profile", "shaped.toml", env=env)

    assert done.returncode == EXIT_OK, done.stderr
    assert len(shaped.requests_to("/people")) == 3
    assert "people: the CRM filters it by no cursor: read in full, merged" in done.stdout
    rows = DuckDBDestination(workdir).query("SELECT count(*) FROM crm.people")
    assert rows == [(120,)]


def test_two_resources_on_one_path_have_a_ledger_row_each(
    workdir: Path, shaped: ShapedCrm, with_secrets: Any
) -> None:
    with_secrets("bearer")
    text = profile_text(shaped.base_url) + (
        '\n[[resources]]\nname = "early_people"\n'
        'endpoint = { path = "/people", params = { per_page = 50 }, '
        'paginator = { type = "single_page" } }\n'
    )

    result = sync_profile(shaped, workdir, text)

    people, early = result.ledger.tallies["people"], result.ledger.tallies["early_people"]
    assert (people.requests, people.pages, people.rows, people.outcome) == (3, 3, 120, "ok")
    assert (early.requests, early.pages, early.rows, early.outcome) == (1, 1, 50, "ok")
    assert people.complete is True and early.complete is None


@pytest.mark.parametrize(
    "paginator",
    [
        '{ type = "json_link", next_url_path = "paging.next" }',
        '{ type = "header_link" }',
    ],
    ids=["json-link", "link-header"],
)
def test_a_next_url_paginator_reads_every_page_one_by_one(
    paginator: str, workdir: Path, shaped: ShapedCrm, with_secrets: Any
) -> None:
    with_secrets("bearer")
    text = profile_text(shaped.base_url, incremental="").replace(
        "[resources.endpoint]", f"[resources.endpoint]\npaginator = {paginator}"
    )

    result = sync_profile(shaped, workdir, text)

    ids = [r[0] for r in DuckDBDestination(workdir).query("SELECT id FROM crm.people ORDER BY id")]
    assert ids == list(range(1, 121))
    assert [p.get("page") for p in shaped.requests_to("/people")] == [None, "2", "3"]
    tally = result.ledger.tallies["people"]
    assert (tally.requests, tally.pages, tally.rows, tally.outcome) == (3, 3, 120, "ok")
    assert tally.complete is None and tally.reads_in_full


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[resources]]\nname = "people"\n'
            'endpoint = { paginator = { type = "page_number", limit_param = "n", limit = 5 } }',
            "resource people: endpoint: paginator: page_number is dlt's (total_path counts pages,"
            ' no limit/limit_param); use type = "crm_page_number"',
        ),
        (
            '[client]\nauth = { type = "bearer", token = "x" }\n[[resources]]\nname = "p"',
            "client.auth: token is a secret: set it in .dlt/secrets.toml",
        ),
        (
            '[client]\nauth = { type = "digest" }\n[[resources]]\nname = "p"',
            "client.auth: type 'digest' is not one of api_key, basic, bearer,"
            " oauth2_client_credentials",
        ),
        (
            '[[resources]]\nname = "people"\n'
            'endpoint = { incremental = { cursor_path = "x", start_parm = "since" } }',
            "resource people: endpoint: incremental: unknown key 'start_parm'"
            " (did you mean 'start_param'?)",
        ),
        (
            '[[resources]]\nname = "people"\n'
            'endpoint = { incremental = { cursor_path = "x", cursor_format = "unix" } }',
            "resource people: endpoint: incremental: cursor_format 'unix' is not one of",
        ),
        (
            '[[resources]]\nname = "people"\ndeleted_listing = { archived = "true" }',
            "resource people: deleted_listing must be a table of params",
        ),
        ("[client]\n", "resources must be a list of tables"),
        (
            "[resource_defaults.columns]\ndeleted_at = { hard_delete = true }\n"
            '[[resources]]\nname = "people"\ncolumns = { archived = { hard_delete = true } }',
            "resource people: columns deleted_at and archived are both hard_delete; dlt deletes"
            " by one column per table",
        ),
    ],
    ids=[
        "dlt-page-number",
        "secret",
        "auth-type",
        "incremental-key",
        "format",
        "listing",
        "empty",
        "two-deletes",
    ],
)
def test_a_profile_mistake_is_one_line_naming_file_resource_and_key(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(text)

    with pytest.raises(ProfileError) as raised:
        load_profile(profile=path)

    assert str(raised.value).startswith(f"{path}: {message}")
    assert "\n" not in str(raised.value)
