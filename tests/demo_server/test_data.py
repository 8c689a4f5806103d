"""Generated records are reproducible, valid by the contract, and as untidy as real ones."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from crmsync.demo_server import DEFAULT_SIZES, CrmStore

SIZES = {"accounts": 300, "contacts": 2000, "events": 2000, "products": 200, "pipelines": 12}
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
DELETABLE = ["accounts", "contacts", "products", "pipelines"]
RESOURCES = [*DELETABLE, "events"]


@pytest.fixture(scope="module")
def store() -> CrmStore:
    return CrmStore(SIZES, seed=7)


def test_default_sizes_are_the_documented_ones() -> None:
    assert DEFAULT_SIZES == {
        "accounts": 250,
        "contacts": 1200,
        "events": 3000,
        "products": 60,
        "pipelines": 4,
    }
    assert {r: len(CrmStore(seed=7).ids(r, include_deleted=True)) for r in RESOURCES} == {
        r: DEFAULT_SIZES[r] for r in RESOURCES
    }


def test_the_same_seed_generates_identical_records(store: CrmStore) -> None:
    again = CrmStore(SIZES, seed=7)

    assert all(again.records(r) == store.records(r) for r in RESOURCES)


def test_a_different_seed_generates_different_records(store: CrmStore) -> None:
    other = CrmStore(SIZES, seed=8)

    assert all(other.records(r) != store.records(r) for r in RESOURCES)


def test_a_resource_does_not_depend_on_the_size_of_an_unrelated_one(store: CrmStore) -> None:
    other = CrmStore({**SIZES, "events": 5, "pipelines": 1}, seed=7)

    assert other.records("products") == store.records("products")


@pytest.mark.parametrize("resource", RESOURCES)
def test_ids_are_contiguous_from_1(store: CrmStore, resource: str) -> None:
    assert [r["id"] for r in store.records(resource)] == list(range(1, SIZES[resource] + 1))


@pytest.mark.parametrize("resource", RESOURCES)
def test_timestamps_are_utc_seconds_in_range_and_created_before_updated(
    store: CrmStore, resource: str
) -> None:
    for record in store.records(resource):
        stamps = [record["created_at"], record["updated_at"]]
        stamps += [record["deleted_at"]] if record.get("deleted_at") else []
        stamps += [record["occurred_at"]] if resource == "events" else []
        assert all(STAMP.fullmatch(s) for s in stamps), record
        assert all("2024-01-01T00:00:00Z" <= s <= "2026-06-30T23:59:59Z" for s in stamps)
        assert record["created_at"] <= record["updated_at"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_created_at_rises_with_the_id(store: CrmStore, resource: str) -> None:
    created = [r["created_at"] for r in store.records(resource)]

    assert created == sorted(created)


@pytest.mark.parametrize("resource", ["accounts", "contacts", "events"])
def test_some_records_share_an_updated_at_as_after_a_bulk_edit(
    store: CrmStore, resource: str
) -> None:
    counts = Counter(r["updated_at"] for r in store.records(resource))

    assert max(counts.values()) >= 3


@pytest.mark.parametrize("resource", ["accounts", "contacts", "products"])
def test_about_3_percent_start_soft_deleted_with_deleted_at_as_their_last_update(
    store: CrmStore, resource: str
) -> None:
    deleted = [r for r in store.records(resource) if r.get("deleted_at") is not None]

    assert 0.01 <= len(deleted) / SIZES[resource] <= 0.05
    assert all(r["deleted_at"] == r["updated_at"] for r in deleted)


@pytest.mark.parametrize("resource", DELETABLE)
def test_live_records_carry_deleted_at_as_null_or_not_at_all(
    store: CrmStore, resource: str
) -> None:
    live = [r for r in store.records(resource) if r.get("deleted_at") is None]

    assert {"deleted_at" in r for r in live} == {True, False}


def test_events_are_never_deleted_and_have_no_deleted_at(store: CrmStore) -> None:
    assert all("deleted_at" not in r for r in store.records("events"))


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        ("accounts", "domain"),
        ("accounts", "industry"),
        ("accounts", "employee_count"),
        ("accounts", "annual_revenue"),
        ("accounts", "owner_id"),
        ("accounts", "address"),
        ("contacts", "account_id"),
        ("contacts", "first_name"),
        ("contacts", "last_name"),
        ("contacts", "email"),
        ("contacts", "phone"),
        ("contacts", "title"),
        ("contacts", "lifecycle_stage"),
        ("events", "contact_id"),
        ("events", "account_id"),
    ],
)
def test_a_nullable_field_is_sometimes_set_sometimes_null_and_sometimes_absent(
    store: CrmStore, resource: str, field: str
) -> None:
    states = Counter(
        "absent" if field not in r else "null" if r[field] is None else "set"
        for r in store.records(resource)
    )

    assert set(states) == {"absent", "null", "set"}
    assert states["set"] > states["null"] + states["absent"]


def test_names_mix_scripts_and_punctuation(store: CrmStore) -> None:
    names = {r["name"] for r in store.records("accounts")}
    names |= {r.get("first_name") for r in store.records("contacts")}
    names |= {r.get("last_name") for r in store.records("contacts")}

    assert {"Müller & Söhne GmbH", "株式会社サンプル", "Émilie", "Zoë", "O'Brien"} <= names


def test_custom_fields_vary_per_record_and_some_are_empty(store: CrmStore) -> None:
    fields = [r["custom_fields"] for r in store.records("contacts")]
    keys = Counter(frozenset(f) for f in fields)
    types = {key: {type(f[key]) for f in fields if key in f} for key in set().union(*fields)}

    assert frozenset() in keys
    assert len(keys) > 20
    assert types == {
        "tier": {str},
        "score": {int},
        "is_partner": {bool},
        "region": {str},
        "renewal_date": {str},
        "note": {str},
    }
    assert any(any(ord(ch) > 0xFFFF for ch in f.get("note", "")) for f in fields)  # emoji


def test_some_contacts_carry_a_field_outside_the_contract(store: CrmStore) -> None:
    extra = [r for r in store.records("contacts") if "linkedin_url" in r]

    assert 0 < len(extra) < SIZES["contacts"]


def test_references_point_at_existing_records(store: CrmStore) -> None:
    accounts = store.ids("accounts", include_deleted=True)
    contacts = store.ids("contacts", include_deleted=True)

    assert {r.get("account_id") for r in store.records("contacts")} - {None} <= accounts
    assert {r.get("account_id") for r in store.records("events")} - {None} <= accounts
    assert {r.get("contact_id") for r in store.records("events")} - {None} <= contacts


def test_an_event_payload_has_the_shape_of_its_type(store: CrmStore) -> None:
    shapes = {
        "email_sent": {"subject": str, "template_id": int},
        "email_opened": {"subject": str, "client": str},
        "call": {"duration_seconds": int, "outcome": str},
        "meeting": {"title": str, "attendees": list},
        "note": {"text": str},
    }
    events = store.records("events")

    assert {e["type"] for e in events} == set(shapes)
    for event in events:
        shape = shapes[event["type"]]
        assert {k: type(v) for k, v in event["payload"].items()} == shape
        assert event["occurred_at"] <= event["created_at"]


def test_accounts_have_up_to_four_tags_and_a_full_address_when_set(store: CrmStore) -> None:
    accounts = store.records("accounts")

    assert {len(a["tags"]) for a in accounts} == {0, 1, 2, 3, 4}
    addresses = [a["address"] for a in accounts if a.get("address")]
    assert all(set(a) == {"street", "city", "postal_code", "country"} for a in addresses)


def test_products_have_decimal_string_prices_and_iso_currencies(store: CrmStore) -> None:
    products = store.records("products")

    assert all(re.fullmatch(r"\d+\.\d{2}", p["price"]) for p in products)
    assert {p["currency"] for p in products} <= {"USD", "EUR", "GBP", "JPY", "CHF", "SEK"}
    assert {p["active"] for p in products} == {True, False}
    assert len({p["sku"] for p in products}) == len(products)


def test_pipelines_have_three_to_seven_ordered_stages_and_one_default(store: CrmStore) -> None:
    pipelines = store.records("pipelines")

    assert [p["is_default"] for p in pipelines] == [True] + [False] * (SIZES["pipelines"] - 1)
    for pipeline in pipelines:
        stages = pipeline["stages"]
        assert 3 <= len(stages) <= 7
        assert [s["position"] for s in stages] == list(range(1, len(stages) + 1))
        assert all(set(s) == {"id", "name", "position", "probability"} for s in stages)
        assert all(isinstance(s["probability"], float) for s in stages)
    assert len({p["name"] for p in pipelines}) == SIZES["pipelines"]


@pytest.mark.parametrize(
    ("sizes", "message"),
    [({"deals": 3}, "unknown resource"), ({"contacts": -1}, "must not be negative")],
)
def test_impossible_sizes_are_refused(sizes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CrmStore(sizes)


def test_sizes_not_given_keep_their_defaults() -> None:
    store = CrmStore({"contacts": 3, "events": 0})

    assert len(store.ids("contacts", include_deleted=True)) == 3
    assert store.ids("events", include_deleted=True) == set()
    assert len(store.ids("accounts", include_deleted=True)) == DEFAULT_SIZES["accounts"]
