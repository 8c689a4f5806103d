"""Every value a hostile CRM sends lands, under a documented name and type, or the run fails in
one line naming the record: end to end, over HTTP to `RecordServer`, into DuckDB.

Each test runs on the three paths a page can take: dicts through dlt's normalizer
(`arrow_pages=False`), Arrow tables made in the run's process (`page_processes=0`) and in a
worker process (`page_processes=1`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from crmsync.failures import EXIT_SOURCE, describe
from crmsync.loading.sync import SyncFailed, SyncResult
from crmsync.reading.source import SyncOptions
from tests.hostile_values import RecordServer, record
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import profile_with, sync

PAGES_OF_TWO = """
[[resources]]
name = "contacts"
[resources.endpoint]
path = "/contacts"
data_selector = "contacts"

[resources.endpoint.paginator]
type = "crm_page_number"
page_param = "page[page]"
limit_param = "page[limit]"
limit = 2
"""
PATHS = {
    "dicts": SyncOptions(resources=("contacts",), arrow_pages=False),
    "arrow": SyncOptions(resources=("contacts",), page_processes=0),
    "worker": SyncOptions(resources=("contacts",), page_processes=1),
}


@pytest.fixture(params=list(PATHS))
def options(request: pytest.FixtureRequest) -> SyncOptions:
    return PATHS[request.param]


@pytest.fixture
def db(workdir: Path) -> DuckDBDestination:
    return DuckDBDestination(workdir)


def load(
    workdir: Path, db: DuckDBDestination, options: SyncOptions, records: list[dict[str, Any]]
) -> SyncResult:
    with RecordServer("contacts", records).running() as server:
        return sync(server, db, options, profile=profile_with(workdir, PAGES_OF_TWO))  # type: ignore[arg-type]


def failure(workdir: Path, db: DuckDBDestination, options: SyncOptions, records: Any) -> str:
    with pytest.raises(SyncFailed) as raised:
        load(workdir, db, options, records)
    failed = describe(raised.value)
    assert failed.exit_code == EXIT_SOURCE, failed
    assert "\n" not in failed.message
    return failed.message


def rows(db: DuckDBDestination, columns: str) -> list[tuple[Any, ...]]:
    return db.query(f"select id, {columns} from crm.contacts order by id")


def test_a_field_whose_type_changes_between_pages_loads_as_dlt_variant_columns(
    workdir: Path, db: DuckDBDestination, options: SyncOptions
) -> None:
    scores: list[Any] = [5, 6, "high", None, 2.5, 7]
    load(workdir, db, options, [record(i, score=s) for i, s in enumerate(scores, start=1)])

    types = db.column_types("contacts")
    assert (types["score"], types["score__v_text"], types["score__v_double"]) == (
        "BIGINT",
        "VARCHAR",
        "DOUBLE",
    )
    assert rows(db, "score, score__v_text, score__v_double") == [
        (1, 5, None, None),
        (2, 6, None, None),
        (3, None, "high", None),
        (4, None, None, None),
        (5, None, None, 2.5),
        (6, 7, None, None),
    ]


TYPE_CHANGES: dict[str, tuple[str, list[list[Any]], dict[str, str], list[tuple[Any, ...]]]] = {
    # field, its values in each run, then what plain dlt makes of them (its normalizer, dicts):
    # the first value types a new column; a value it cannot coerce to it goes to a variant
    "int-then-float-in-a-page": (
        "score",
        [[5, 2.5, 3.0, 7]],
        {"score": "BIGINT", "score__v_double": "DOUBLE"},
        [(1, 5, None), (2, None, 2.5), (3, 3, None), (4, 7, None)],
    ),
    "float-then-int-in-a-page": (
        "score",
        [[2.5, 5, 7, 3.0]],
        {"score": "DOUBLE"},
        [(1, 2.5), (2, 5.0), (3, 7.0), (4, 3.0)],
    ),
    "hinted-bigint": (
        "account_id",
        [[5, 2.5, 3.0, 7]],
        {"account_id": "BIGINT", "account_id__v_double": "DOUBLE"},
        [(1, 5, None), (2, None, 2.5), (3, 3, None), (4, 7, None)],
    ),
    "int-then-float-across-runs": (
        "score",
        [[5, 6], [2.5, 3.0, "high"]],
        {"score": "BIGINT", "score__v_double": "DOUBLE", "score__v_text": "VARCHAR"},
        [
            (1, 5, None, None),
            (2, 6, None, None),
            (3, None, 2.5, None),
            (4, 3, None, None),
            (5, None, None, "high"),
        ],
    ),
    "float-then-int-across-runs": (
        "score",
        [[2.5], [5, 3.5]],
        {"score": "DOUBLE"},
        [(1, 2.5), (2, 5.0), (3, 3.5)],
    ),
}


@pytest.mark.parametrize("case", list(TYPE_CHANGES))
def test_ints_and_floats_mixed_load_as_plain_dlt_loads_them(
    workdir: Path, db: DuckDBDestination, options: SyncOptions, case: str
) -> None:
    field, runs, types, expected = TYPE_CHANGES[case]
    first = 1
    for values in runs:
        load(workdir, db, options, [record(i, **{field: v}) for i, v in enumerate(values, first)])
        first += len(values)

    landed = {n: t for n, t in db.column_types("contacts").items() if n.startswith(field)}
    assert landed == types
    assert rows(db, ", ".join(types)) == expected


def test_every_rfc_3339_form_of_a_timestamp_lands_as_that_instant(
    workdir: Path, db: DuckDBDestination, options: SyncOptions
) -> None:
    forms = [
        "2026-03-01T10:00:00Z",
        "2026-03-01t10:00:00z",
        "2026-03-01T12:00:00+02:00",
        "2026-03-01 10:00:00Z",
        "2026-03-01T10:00:00.123456789Z",
        "2026-03-01T05:30:00-04:30",
    ]
    records = [record(i, created_at=f, updated_at=f) for i, f in enumerate(forms, start=1)]

    load(workdir, db, options, records)

    ten = datetime(2026, 3, 1, 10, tzinfo=UTC)
    expected = [ten, ten, ten, ten, ten.replace(microsecond=123456), ten]
    landed = rows(db, "created_at, updated_at")
    assert [(c.astimezone(UTC), u.astimezone(UTC)) for _, c, u in landed] == [
        (e, e) for e in expected
    ]
    assert not any(name.endswith("__v_text") for name in db.column_types("contacts"))


def test_a_timestamp_that_is_no_timestamp_lands_as_dlt_text_variant(
    workdir: Path, db: DuckDBDestination, options: SyncOptions
) -> None:
    load(workdir, db, options, [record(1), record(2, created_at="yesterday"), record(3)])

    ten = datetime(2026, 3, 1, 10, tzinfo=UTC)
    landed = rows(db, "created_at, created_at__v_text")
    assert [(i, c and c.astimezone(UTC), text) for i, c, text in landed] == [
        (1, ten, None),
        (2, None, "yesterday"),
        (3, ten, None),
    ]


@pytest.mark.parametrize("value", ["yesterday", "2026-03-01T10:00:00"], ids=["word", "no-zone"])
def test_a_cursor_value_that_is_no_timestamp_fails_naming_resource_record_and_value(
    workdir: Path, db: DuckDBDestination, options: SyncOptions, value: str
) -> None:
    records = [record(1), record(2), record(3), record(4, updated_at=value)]

    message = failure(workdir, db, options, records)

    assert message == (
        "contacts: record 2 of GET /contacts?include_deleted=true&page[limit]=2&page[page]=2"
        f" (id 4): updated_at {value!r} is not an RFC 3339 timestamp, and the incremental"
        " cursor needs one; fix the record in the CRM"
    )


@pytest.mark.parametrize("missing", [{}, {"id": None}], ids=["no-id", "null-id"])
def test_a_record_without_an_id_fails_naming_resource_and_record(
    workdir: Path, db: DuckDBDestination, options: SyncOptions, missing: dict[str, Any]
) -> None:
    nameless = {k: v for k, v in record(0).items() if k != "id"} | missing
    records = [record(1), record(2), record(3), nameless]

    message = failure(workdir, db, options, records)

    assert message == (
        "contacts: record 2 of GET /contacts?include_deleted=true&page[limit]=2&page[page]=2:"
        " id is missing, and every record needs one"
    )


def test_reserved_empty_and_clashing_field_names_land_under_their_own_names(
    workdir: Path, db: DuckDBDestination, options: SyncOptions
) -> None:
    records = [
        record(1, _dlt_id="same", email="a@x", custom_fields={"": "e", "Tier": "T", "tier": "t"}),
        record(2, _dlt_id="same", Email="B@X", email="b@x", **{"": "top"}),
        record(3, Email="C@X"),
    ]

    load(workdir, db, options, records)

    landed = rows(
        db,
        "crm_dlt_id, email, email_2, _empty, custom_fields___empty,"
        " custom_fields__tier, custom_fields__tier_2",
    )
    assert landed == [
        (1, "same", "a@x", None, None, "e", "t", "T"),
        (2, "same", "b@x", "B@X", "top", None, None, None),
        (3, None, "C@X", None, None, None, None, None),
    ]
    assert len({key for (key,) in db.query("select _dlt_id from crm.contacts")}) == 3


def test_integers_beyond_64_bits_land_exactly_as_decimal_38_0(
    workdir: Path, db: DuckDBDestination, options: SyncOptions
) -> None:
    wide = [10**30 + 7, 2**63, -(2**63) - 1]
    records = [record(i, custom_fields={"big": v}) for i, v in enumerate(wide, start=1)]

    load(workdir, db, options, records)

    assert db.column_types("contacts")["custom_fields__big"] == "DECIMAL(38,0)"
    assert rows(db, "custom_fields__big") == [(i, Decimal(v)) for i, v in enumerate(wide, 1)]


WIDE = [2**63, 10**30 + 7]
"""Beyond 64 bits: dlt's normalizer would put the first in a `bigint` column, and fail to
load it; the second, beyond a decimal's 28 digits of precision, it makes a variant of."""


@pytest.mark.parametrize(
    "runs", [[[5, 6, *WIDE]], [[5, 6], WIDE]], ids=["earlier-page", "previous-run"]
)
def test_an_integer_beyond_64_bits_in_a_bigint_column_lands_exactly_in_its_variant(
    workdir: Path, db: DuckDBDestination, options: SyncOptions, runs: list[list[int]]
) -> None:
    first = 1
    for values in runs:
        records = [record(i, custom_fields={"big": v}) for i, v in enumerate(values, first)]
        load(workdir, db, options, records)
        first += len(values)

    types = db.column_types("contacts")
    assert (types["custom_fields__big"], types["custom_fields__big__v_wei"]) == (
        "BIGINT",
        "DECIMAL(38,0)",
    )
    assert rows(db, "custom_fields__big, custom_fields__big__v_wei") == [
        (1, 5, None),
        (2, 6, None),
        (3, None, Decimal(WIDE[0])),
        (4, None, Decimal(WIDE[1])),
    ]


def test_an_id_beyond_64_bits_fails_naming_resource_record_and_field(
    workdir: Path, db: DuckDBDestination, options: SyncOptions
) -> None:
    message = failure(workdir, db, options, [record(1), record(2**63)])

    assert message == (
        "contacts: record 2 of GET /contacts?include_deleted=true&page[limit]=2&page[page]=1:"
        " id 9223372036854775808 is beyond the 64-bit range of its bigint column"
    )
