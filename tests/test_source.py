"""End to end: the five resources over real HTTP from the bundled CRM into a real destination."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.exceptions import DictValidationException

from crmsync.demo_server import DemoServer, Fault
from crmsync.reading.source import SyncOptions
from tests.support.destinations import DuckDBDestination
from tests.support.syncs import RESOURCES, SMALL_SIZES, fast_policy, sync

PAGE_SIZE = 500
SEED_FILE = Path(__file__).parent / "fixtures" / "seed_config.md"


def expected_requests(records: int) -> int:
    """Pages a reader needs: the first short (or empty) page ends it. `meta.total` does not:
    the contract says a client must not depend on it, so a full last page asks for one more."""
    return records // PAGE_SIZE + 1


def assert_the_live_records_of_all_five_resources_loaded(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    for resource in RESOURCES:
        assert destination.current_ids(resource) == sorted(crm.store.ids(resource)), resource


def assert_the_columns_have_the_contract_types(destination: DuckDBDestination) -> None:
    accounts = destination.column_types("accounts")
    assert accounts["id"] == "BIGINT"
    assert accounts["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert accounts["address__city"] == "VARCHAR"
    assert accounts["annual_revenue"] == "DOUBLE"
    products = destination.column_types("products")
    assert products["price"].startswith("DECIMAL")
    assert products["active"] == "BOOLEAN"
    events = destination.column_types("events")
    assert events["payload"] == destination.json_type
    assert events["occurred_at"] == "TIMESTAMP WITH TIME ZONE"
    assert "custom_fields__tier" in destination.column_types("contacts")


def assert_the_values_land_as_the_crm_serves_them(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    product = next(r for r in crm.store.records("products", include_deleted=False))
    price, active = destination.query(
        f"select price, active from {{products}} where id = {product['id']}"
    )[0]
    assert price == Decimal(product["price"])
    assert active is product["active"]
    event = next(r for r in crm.store.records("events") if r["type"] == "call")
    (duration,) = destination.query(
        "select payload->>'$.duration_seconds' from {events} where id = " + str(event["id"])
    )[0]
    assert int(duration) == event["payload"]["duration_seconds"]


def assert_the_pipeline_stages_land_as_a_child_table(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    live = crm.store.records("pipelines", include_deleted=False)
    if destination.nested_tables:
        sql = (
            "select p.id, s.id, s.position from {pipelines} p"
            " join {pipelines__stages} s on s._dlt_parent_id = p._dlt_id"
        )
    else:  # in-row JSON
        sql = (
            "select p.id, (s->>'$.id')::bigint, (s->>'$.position')::bigint"
            " from {pipelines} p, unnest(p.stages->'$[*]') as t(s)"
        )
    rows = destination.query(sql)
    expected = [(p["id"], s["id"], s["position"]) for p in live for s in p["stages"]]
    assert sorted(rows) == sorted(expected)


def test_first_sync_loads_the_live_records_as_typed_and_resyncs_add_no_duplicates_but_new_fields(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    """Three syncs, each followed by what it proves (once one test each, over the same syncs):
    the first loads exactly the live records of all five resources, in the contract's column
    types, with the values the CRM serves and the pipelines' stages as a child table (in-row
    JSON where a destination keeps lists so); the second adds no duplicates; a field the
    contract does not list, sent before the third, lands as a new column."""
    result = sync(crm, destination)

    assert_the_live_records_of_all_five_resources_loaded(crm, destination)
    assert set(result.data_tables) >= set(RESOURCES)
    assert result.data_tables["accounts"] == SMALL_SIZES["accounts"]
    assert_the_columns_have_the_contract_types(destination)
    assert_the_values_land_as_the_crm_serves_them(crm, destination)
    assert_the_pipeline_stages_land_as_a_child_table(crm, destination)

    sync(crm, destination)

    assert_the_live_records_of_all_five_resources_loaded(crm, destination)
    if destination.merges:
        for resource in RESOURCES:
            ids = destination.ids(resource)
            assert ids == sorted(set(ids)), resource

    crm.store.update("contacts", [3, 5], {"loyalty_level": "gold"})
    sync(crm, destination)

    rows = destination.query(
        "select id, loyalty_level from {contacts} where loyalty_level is not null"
    )
    assert sorted(rows) == [(3, "gold"), (5, "gold")]


@pytest.mark.destinations("duckdb")  # the reader's paging: the same whatever it loads into
@pytest.mark.parametrize("records", [499, 500, 501, 1000], ids=lambda n: f"{n}-records")
def test_page_boundaries_load_every_record_and_end_at_the_first_short_page(
    start_crm: Any, destination: DuckDBDestination, records: int
) -> None:
    server = start_crm({resource: records for resource in RESOURCES})

    sync(server, destination, policy=fast_policy(max_in_flight=1))

    for resource in RESOURCES:
        assert destination.current_ids(resource) == sorted(server.store.ids(resource)), resource
        seen = server.requests_for(resource)
        assert len(seen) == expected_requests(records), resource
        assert [int(r.params.get("page[page]") or r.params["page"]) for r in seen] == list(
            range(1, len(seen) + 1)
        )
        size_param = "limit" if resource == "events" else "page[limit]"
        assert {r.params[size_param] for r in seen} == {str(PAGE_SIZE)}


@pytest.mark.destinations("duckdb")
def test_a_page_kept_waiting_holds_up_no_other_resource(
    start_crm: Any, destination: DuckDBDestination
) -> None:
    """Each resource reads on dlt's thread pool: while a slow CRM (or a `Retry-After`) keeps
    one page waiting, the other resources go on reading."""
    server = start_crm({**SMALL_SIZES, "events": 6 * PAGE_SIZE})
    server.faults.add(Fault("/contacts", "hang", seconds=2.0))

    # under a ceiling, events (no total) is read one page after another: no page ahead
    sync(server, destination, policy=fast_policy(max_requests_per_second=1000))

    (held,) = [r for r in server.requests_for("contacts") if r.fault == "hang"]
    events = server.requests_for("events")
    assert len(events) == 7
    assert [r for r in events if r.at > held.finished_at] == []
    assert destination.current_ids("events") == sorted(server.store.ids("events"))


@pytest.mark.destinations("duckdb")  # what is read; the ledger's storage: test_sync
def test_resources_option_syncs_only_the_chosen_ones(
    crm: DemoServer, destination: DuckDBDestination
) -> None:
    result = sync(crm, destination, SyncOptions(resources=("products",)))

    assert {r.resource for r in crm.requests} == {"products"}
    assert "accounts" not in destination.tables()
    assert [(t.resource, t.outcome) for t in result.ledger.tallies.values()] == [("products", "ok")]
    stored = destination.query("select resource from {_crmsync_runs}")
    assert stored == [("products",)]


def seed_code(base_url: str) -> str:
    """The seed's Python block as a user pastes it: `//` comment dropped, our import."""
    block = re.search(r"```python\n(.*?)```", SEED_FILE.read_text(), re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if not line.strip().startswith("//")]
    code = "\n".join(lines).replace("https://api.example.com", base_url)
    return code


def test_the_seed_config_runs_as_written(
    crm: DemoServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERNAME", "demo")
    monkeypatch.setenv("PASSWORD", "demo-password")
    code = seed_code(crm.base_url).replace(
        "from dlt.sources.rest_api import rest_api_source", "from crmsync import rest_api_source"
    )
    namespace: dict[str, Any] = {}
    exec(compile(code, "seed", "exec"), namespace)

    pipeline = dlt.pipeline("seed", destination="duckdb", dataset_name="crm")
    pipeline.run(namespace["source"])

    with pipeline.sql_client() as client:
        for resource in ("accounts", "contacts", "events"):
            rows = client.execute_sql(f"select count(*), count(distinct id) from {resource}")
            served = len(crm.store.records(resource, include_deleted=False))
            assert rows == [(served, served)], resource
    assert {r.params.get("page[page]") or r.params.get("page") for r in crm.requests} == {"1"}


def test_the_seed_config_fails_on_plain_dlt_before_any_request(
    crm: DemoServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why crmsync ships its own `rest_api_source`: dlt rejects the seed's dialect (dlt calls
    `basic` auth `http_basic`, and its `page_number` has no `limit_param`)."""
    monkeypatch.setenv("USERNAME", "demo")
    monkeypatch.setenv("PASSWORD", "demo-password")
    namespace: dict[str, Any] = {}

    with pytest.raises(DictValidationException, match="type=basic` is not one of"):
        exec(compile(seed_code(crm.base_url), "seed", "exec"), namespace)

    assert crm.requests == []
