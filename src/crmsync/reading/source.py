"""The crmsync dlt source: the profile's plans plus credentials, HTTP policy and sync mode.

Everything here is mechanism; what to fetch is data in the profile, read once into one plan per
resource (`crmsync.profiles.plan`). The source ends in dlt's `rest_api_resources(config)`: rest_api
does the requests, paging, incremental state, schema and merge, through the extension points filled
in here (paginator instances, the profile's auth, the shared HTTP session, resource steps). The
run's session, page decoder and look-ahead come wired together (`crmsync.reading.page_reader`):
this module registers with the decoder what each resource's pages hold, and gives the
look-ahead to the paginators.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import dlt
from dlt.common import jsonpath
from dlt.extract import DltResource, DltSource
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.helpers.rest_client.utils import join_url
from dlt.sources.rest_api import rest_api_resources
from dlt.sources.rest_api import rest_api_source as dlt_rest_api_source
from dlt.sources.rest_api.config_setup import create_paginator
from dlt.sources.rest_api.typing import RESTAPIConfig

from crmsync.dlt_internals import (
    DEDUPLICATED_HINT,
    JSON_TEXT_WARNINGS,
    SharedThroughConfig,
    active_pipeline,
)
from crmsync.ledger import ResourceObserver, RunLedger
from crmsync.profiles.connection import DLT_AUTH_TYPES, CrmConnection, MissingSettingError
from crmsync.profiles.cursor_format import CursorFormat
from crmsync.profiles.governance import (
    EXCLUDE_KEY,
    HASH_KEY,
    HASH_SECRET,
    field_policy,
    history_disposition,
)
from crmsync.profiles.plan import LISTING_SUFFIX, CursorPlan, ResourcePlan, plan_resources
from crmsync.profiles.profile import Profile, built_in_profile, resource_names
from crmsync.reading.arrow_pages import PageBatcher, TypedPages, arrow_type
from crmsync.reading.child_tables import ChildTables
from crmsync.reading.cursor_values import CursorValues
from crmsync.reading.dict_pages import stored_types
from crmsync.reading.first_read import DeletedRecordFilter, replaces_merge
from crmsync.reading.json_text_hints import arrow_only_differs_in_json
from crmsync.reading.lookahead import ReadContext
from crmsync.reading.page import Page
from crmsync.reading.page_observer import ObservedPaginator
from crmsync.reading.page_reader import PageReader
from crmsync.reading.page_shape import envelope_keys
from crmsync.reading.pagination import (
    PAGE_NUMBER_TYPE,
    PageLookahead,
    RepeatedRecordFilter,
    paginator_from_config,
)
from crmsync.redaction import register_secret, without_login
from crmsync.transport.http_policy import check_transport, load_policy

DEFAULT_LOOKBACK_SECONDS = 60.0


@dataclass(frozen=True)
class SyncOptions:
    """How this run syncs; the defaults are an incremental sync that mirrors deletes."""

    resources: tuple[str, ...] | None = None
    full_refresh: bool = False
    keep_deleted: bool = False
    since: str | None = None
    until: str | None = None
    """With `since`: a backfill of that window, merged, the stored cursor left as it was."""
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS
    strict: bool = False
    arrow_pages: bool = True
    """The fast path (`crmsync.reading.arrow_pages`); off loads the same rows through dlt's
    normalizer."""
    page_processes: int = 1
    """Worker processes that decode pages into Arrow tables (`crmsync.reading.page_decoding`) in a
    `run_sync`; 0 decodes them in the run's own process."""


def crm_source(
    connection: CrmConnection,
    reader: PageReader,
    profile: Profile | None = None,
    sync: SyncOptions | None = None,
) -> DltSource:
    """The CRM as a dlt source, read through `reader` under its session's policy and counted
    in its ledger; the caller closes `reader` once the source is extracted."""
    sync = sync or SyncOptions()
    check_transport(connection.base_url, reader.session.policy.allow_insecure_http)
    profile = profile or built_in_profile()
    known = resource_names(profile)
    selected = list(sync.resources or known)
    if sync.until and not sync.since:
        raise ValueError("--until needs --since: a backfill re-reads the window between them")
    unknown = sorted(set(selected) - set(known))
    if unknown:
        raise ValueError(f"unknown resources {unknown}; known: {', '.join(known)}")
    source = _crm(connection, profile, sync, reader, reader.session.ledger, tuple(selected))
    # nested tables keep `_dlt_root_id` under a first read's replace too: the merges after it
    # need it (`crmsync.reading.first_read`)
    source.root_key = True
    listings = [n + LISTING_SUFFIX for n in selected if n + LISTING_SUFFIX in source.resources]
    return source.with_resources(*selected, *listings)


@dlt.source(name="crm")
def _crm(
    connection: CrmConnection,
    profile: Profile,
    sync: SyncOptions,
    reader: PageReader,
    ledger: RunLedger,
    selected: tuple[str, ...],
) -> list[DltResource]:
    """`selected` resources are the ones the ledger tracks; the others are built only for
    dlt to pick from (`with_resources`), and a resource another depends on is read untracked."""
    state = dlt.current.source_state()
    plans = plan_resources(profile)
    hash_key = _hash_key(plans)
    endpoints = [(plan.path, plan.records_key) for plan in plans]
    for url, key in envelope_keys(endpoints, connection.base_url):
        reader.decoder.expect_records(url, key)  # another shape is broken: retried, then fails
    stored = _stored_tables()
    reads = [_ResourceRead(plan, sync, state, hash_key, stored) for plan in plans]
    reads += [
        _ResourceRead(listing, sync, state, hash_key, stored)
        for read in reads
        if read.plan.name in selected and not read.replaces and (listing := read.plan.listing())
    ]
    for read in reads:
        if read.plan.name.removesuffix(LISTING_SUFFIX) in selected:
            read.observe(ledger)
    workers = reader.decoder.workers
    resolved_by_others = _resolved_by_others(plans)
    config: dict[str, Any] = {
        "client": {
            **{k: v for k, v in (profile.get("client") or {}).items() if k != "paginator"},
            "base_url": without_login(connection.base_url),  # dlt writes it to its trace
            "auth": connection.dlt_auth(),
            "session": reader.session,
        },
        "resources": [read.rest_api_config(reader.lookahead) for read in reads],
    }
    if workers is not None and sync.arrow_pages:
        # the decoder knows a page by its URL: one resource on a URL that must stay dicts
        # keeps every resource on that URL as dicts
        dicts_only = {
            read.plan.path
            for read in reads
            if not read.decodes_in_workers or read.plan.name in resolved_by_others
        }
        for read in reads:
            records_key = read.plan.records_key
            if records_key and read.plan.path not in dicts_only:
                url = join_url(connection.base_url, read.plan.path)
                workers.register(url, records_key, read.page_types, read.deleted_filter)
    parallel = _take_parallelized(config["resources"], reads)
    resources = rest_api_resources(cast(RESTAPIConfig, config))
    by_name = {read.plan.name: read for read in reads}
    for resource in resources:
        if resource.name in parallel:
            resource.parallelize()
        by_name[resource.name].add_steps(resource)
    return resources


def _take_parallelized(configs: list[dict[str, Any]], reads: list[_ResourceRead]) -> set[str]:
    """The resources read on dlt's thread pool (`parallelized`), taken out of the config of
    those that depend on no other, to be parallelized once built (`DltResource.parallelize`).

    rest_api 1.31 passes `parallelized` to `dlt.resource`, whose parallel wrapper copies the
    config wrapper's `__GEN__`; binding the endpoint's arguments clones the resource, and the
    clone restores `__GEN__`: the resource is read on the run's main thread after all, one page
    of one resource at a time, so that a page waiting out a `Retry-After` holds up every
    resource (pinned by `tests/test_dlt_internals.py`). A dependent resource keeps the key:
    rest_api reads its parents' records in parallel itself.
    """
    dependent = {read.plan.name for read in reads if _parents(read.plan)}
    return {
        str(resource["name"])
        for resource in configs
        if resource["name"] not in dependent and resource.pop("parallelized", False)
    }


class _ResourceRead:
    """One resource's read in this run: its plan, the sync mode and the stored state applied.

    Built from the plan alone (and the run's options and state); every decision — a first
    read by replace, the repeat filter, the field policy, history, the page form — is made
    here, once, in this order, and read by `rest_api_config` and `add_steps`."""

    def __init__(
        self,
        plan: ResourcePlan,
        sync: SyncOptions,
        state: Mapping[str, Any],
        hash_key: str | None,
        stored_tables: Mapping[str, Any],
    ) -> None:
        self.plan = plan
        self.sync = sync
        self.observer: ResourceObserver | None = None
        columns = copy.deepcopy(plan.columns)
        fields = {EXCLUDE_KEY: plan.excluded or [], HASH_KEY: plan.hashed or []}
        self.policy = field_policy(fields, hash_key)
        if self.policy is not None:
            columns = self.policy.column_hints(columns)
        self.write_disposition = plan.write_disposition
        self.history = False
        if isinstance(plan.primary_key, str):
            deletes = next(iter(plan.hard_delete_columns), None)
            history = history_disposition(plan.write_disposition, deletes, plan.primary_key)
            self.history = history is not plan.write_disposition
            self.write_disposition = history
        self.deduplicated = (
            plan.ordered and isinstance(plan.primary_key, str) and plan.id_kind != "text"
        )
        stored = _stored_cursor(state, plan.name, plan.cursor.path) if plan.cursor else None
        whole_read = plan.cursor is not None and not sync.since and not stored
        self.replaces = self.deduplicated and replaces_merge(plan.write_disposition, whole_read)
        self.deleted_filter: DeletedRecordFilter | None = None
        if sync.keep_deleted:
            columns = _without_hard_delete(columns)
        if self.replaces:
            self.write_disposition = "replace"
            self.deleted_filter = DeletedRecordFilter(columns)  # none with --keep-deleted
            columns = _without_hard_delete(columns)  # filtered already; replace would warn
        self.hints = columns
        table = stored_tables.get(plan.config.get("table_name") or plan.name, {})
        self.page_types = stored_types(table.get("columns", {}), columns)
        """The hints, and the type each other column has in the destination already: how pages
        are typed (`crmsync.reading.dict_pages.stored_types`)."""
        self.read_start: _ReadStart | None = None
        self.lag = 0.0
        """Seconds re-read before the stored cursor: none for a backfill, nor for a cursor
        that is no timestamp (a sequence number steps back by nothing)."""
        cursor = plan.cursor
        if cursor is not None:
            self.read_start = _ReadStart(plan.name, cursor.format, notes=not sync.until)
            if not sync.until and _is_timestamp(cursor, columns.get(cursor.column, {})):
                self.lag = _lookback(state, plan.name, cursor.path, sync.lookback_seconds)

    @property
    def decodes_in_workers(self) -> bool:
        """Whether worker processes may decode this resource's pages into Arrow tables: none of
        its steps reads records as dicts (no field policy, history, or cursor to parse), its
        records are under a plain key, and nothing in the profile resolves its fields."""
        key, config = self.plan.records_key, self.plan.config
        return (
            isinstance(key, str)
            and key.isidentifier()
            and "{" not in self.plan.path
            and not config.get("processing_steps")
            and not config.get("include_from_parent")
            and self.policy is None
            and not self.history
            and not (self.plan.cursor and (self.plan.cursor.parse or self.plan.cursor.nested))
        )

    def observe(self, ledger: RunLedger) -> None:
        """Tracks this read in the ledger. An incomplete read fails where it replaces its table
        and, elsewhere, holds the cursor (`_ReadStart.hold`)."""
        self.observer = ledger.observer(self.plan.name, self.plan.path)
        self.observer.replaces = self.sync.full_refresh or self.replaces
        self.observer.tally.reads_in_full = not self.plan.filters_by_cursor
        if self.read_start is not None:
            self.observer.hold_cursor = self.read_start.hold

    def rest_api_config(self, lookahead: PageLookahead | None) -> dict[str, Any]:
        """The resource as rest_api reads it, with this run's cursor, paginator and hints."""
        config = copy.deepcopy(self.plan.config)
        endpoint = config["endpoint"]
        config["columns"] = self.hints
        config["write_disposition"] = self.write_disposition
        if isinstance(endpoint.get("data_selector"), str):
            # compiled once: rest_api would parse the JSONPath again for every page
            endpoint["data_selector"] = jsonpath.compile_path(endpoint["data_selector"])
        cursor = self.plan.cursor
        if cursor is not None:
            incremental = endpoint["incremental"]
            hint = self.hints.get(cursor.column, {})
            if self.sync.since:
                incremental["initial_value"] = _cursor_value(self.sync.since, hint, cursor)
            if self.sync.until:
                # a backfill: dlt's incremental keeps the rows in [since, until) and, with an
                # end value, neither reads nor writes the stored cursor
                incremental["end_value"] = _cursor_value(self.sync.until, hint, cursor)
            incremental["lag"] = self.lag
            assert self.read_start is not None
            self.read_start.convert = incremental.get("convert")
            incremental["convert"] = self.read_start
            # dlt would drop a record re-read at the boundary second when its id was seen there
            # before, i.e. a second update within that second; merge on `id` dedups instead
            incremental["primary_key"] = []
        paginator = endpoint.get("paginator")
        if paginator is not None:
            filters = [cursor.start_param, cursor.end_param] if cursor else []
            view_filters = [f for f in filters if f] if self.deduplicated else None
            instance = paginator_from_config(
                paginator, ReadContext(self.observer, lookahead, view_filters)
            )
            if not isinstance(instance, BasePaginator):
                instance = create_paginator(instance)
            endpoint["paginator"] = ObservedPaginator(instance, self.plan.name, self.observer)
        return config

    def add_steps(self, resource: DltResource) -> None:
        """The steps each page takes before dlt's: cursor values parsed and the field policy
        (on rest_api's dicts: a resource with either is never decoded in a worker), then, on
        the page as a `Page`, the repeat filter, the first read's deleted records dropped, and
        the page's form."""
        plan = self.plan
        repeat_filter = None
        if self.deduplicated:
            repeat_filter = RepeatedRecordFilter(
                plan.name, plan.path, str(plan.primary_key), self.observer
            )
            resource.apply_hints(additional_table_hints={DEDUPLICATED_HINT: True})
        cursor = plan.cursor
        cursor_values = (
            CursorValues(cursor.path, cursor.format, plan.primary_key)
            if cursor is not None and cursor.parse
            else None
        )
        typed = TypedPages(
            self.page_types,
            arrow=self.sync.arrow_pages and not self.history and not (cursor and cursor.nested),
            cursor=cursor.column if cursor and not cursor.nested else None,
            row_keys=not self.history,
        )
        JSON_TEXT_WARNINGS.expect(
            resource.name,
            typed.arrow
            and arrow_only_differs_in_json(
                resource.compute_table_schema()["columns"], arrow_type, typed.required
            ),
        )
        steps = (
            cursor_values,
            self.policy,
            Page.of,
            repeat_filter,
            self.deleted_filter,
            PageBatcher(typed),
        )
        for position, step in enumerate((s for s in steps if s), start=1):
            resource.add_step(step, insert_at=position)
        resource.add_step(ChildTables(typed, resource))  # after dlt's incremental


def _hash_key(plans: list[ResourcePlan]) -> str | None:
    """The key of hashed fields, read once if any resource hashes one."""
    hashing = next((plan.name for plan in plans if plan.hashed), None)
    if hashing is None:
        return None
    hash_key: Any = dlt.secrets.get(HASH_SECRET)
    if not hash_key:
        raise MissingSettingError(
            f"{hashing}: hash_columns needs a key: set SOURCES__CRM__HASH_KEY (or hash_key"
            " under [sources.crm] in .dlt/secrets.toml)"
        )
    register_secret(str(hash_key))
    return str(hash_key)


_REFERENCE = re.compile(r"resources\.([A-Za-z0-9_]+)\.")
"""rest_api's placeholder for a parent's field: `/accounts/{resources.accounts.id}/notes`."""


def _resolved_by_others(plans: list[ResourcePlan]) -> set[str]:
    """The resources whose records another resource reads: rest_api hands their records to it
    as dicts."""
    return {parent for plan in plans for parent in _parents(plan)}


def _parents(plan: ResourcePlan) -> set[str]:
    """The resources whose records `plan`'s resource reads (`{resources.accounts.id}` in a path
    or param, a `resolve` param, `include_from_parent`): rest_api makes it their transformer."""
    endpoint = plan.config["endpoint"]
    parents = set()
    for value in [endpoint.get("path"), *(endpoint.get("params") or {}).values()]:
        if isinstance(value, dict) and value.get("type") == "resolve":
            parents.add(str(value.get("resource")))
        elif isinstance(value, str):
            parents.update(_REFERENCE.findall(value))
    if isinstance(endpoint.get("json"), dict):
        parents.update(_REFERENCE.findall(str(endpoint["json"])))
    return parents


def _without_hard_delete(columns: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        key: {**hint, "hard_delete": False} if hint.get("hard_delete") else hint
        for key, hint in columns.items()
    }


def _stored_tables() -> dict[str, Any]:
    """The tables of the source's schema as dlt's pipeline holds it before the run (restored
    from the destination): a column a previous run made keeps its type (`stored_types`)."""
    pipeline = active_pipeline()
    if pipeline is None:
        return {}
    schema = pipeline.schemas.get(dlt.current.source_schema().name)
    return dict(schema.tables) if schema is not None else {}


def _stored_cursor(state: Mapping[str, Any], name: str, cursor_path: str) -> Any:
    """The cursor dlt's incremental stored for `name` (None before its first read)."""
    resource_state = state.get("resources", {}).get(name, {})
    return resource_state.get("incremental", {}).get(cursor_path, {}).get("last_value")


def _is_timestamp(cursor: CursorPlan, hint: Mapping[str, Any]) -> bool:
    """Whether the cursor holds datetimes: parsed by its format, or typed so by its hint."""
    return cursor.parse or hint.get("data_type") == "timestamp"


def _cursor_value(value: str, hint: Mapping[str, Any], cursor: CursorPlan) -> Any:
    """`--since` as the cursor holds it: a datetime for a timestamp cursor (`TypedPages`)."""
    return _parse_time(value) if _is_timestamp(cursor, hint) else value


def _lookback(state: Mapping[str, Any], name: str, cursor_path: str, lookback: float) -> float:
    """Seconds to step back from the stored cursor before asking for changes.

    The cursor is the newest `updated_at` seen, but a record read early in the previous run may
    have changed while later pages were still being read, with an `updated_at` older than that
    newest one. Stepping back to where the previous read began (minus the lookback, for clock
    skew and one-second timestamps) catches it; merge on `id` removes the overlap.
    """
    last_value = _stored_cursor(state, name, cursor_path)
    read_started = state.get("resources", {}).get(name, {}).get(_ReadStart.STATE_KEY)
    if not last_value or not read_started:
        return lookback
    overshoot = (_parse_time(last_value) - _parse_time(read_started)).total_seconds()
    return lookback + max(0.0, overshoot)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _ReadStart(SharedThroughConfig):
    """The incremental `convert` hook: notes when this read began, in the resource's state.

    rest_api calls it once, as the resource starts reading, to turn the cursor into the
    `updated_since` value; that moment is what the next run's lookback is measured from.
    Every record changed before it was in the list when the read began, so a complete read
    served it (`PageNumberPaginator`): the next run need only go back to this moment.
    """

    STATE_KEY = "crmsync_read_started_at"
    BEGINNING = "1970-01-01T00:00:00+00:00"

    def __init__(self, resource: str, cursor_format: CursorFormat, notes: bool = True) -> None:
        self.resource = resource
        self.format = cursor_format
        self.convert: Any = None
        """The profile's own `convert`, if it has one: it renders the param then."""
        self.notes = notes
        """False for a backfill (`--until`), which leaves the resource's state as it was."""
        self.window_start: Any = None

    def hold(self) -> None:
        """This read cannot vouch for its window: the next run reads it again, from where it
        began (the beginning, for a read without a start)."""
        start = self.window_start
        began = _parse_time(start).isoformat() if start is not None else self.BEGINNING
        if self.notes:
            dlt.current.resource_state(self.resource)[self.STATE_KEY] = began

    def __call__(self, value: Any) -> Any:
        self.window_start = value
        if self.notes:
            state = dlt.current.resource_state(self.resource)
            state[self.STATE_KEY] = datetime.now(UTC).isoformat()
        if self.convert:
            return self.convert(value)
        if isinstance(value, datetime):
            return self.format.render(value)
        return value


def rest_api_source(config: Profile, **kwargs: Any) -> DltSource:
    """dlt's `rest_api_source`, speaking the seed's dialect; paste the seed's dict as it is.

    The seed's `"type": "basic"` auth is dlt's `http_basic`, and its `page_number` paginators
    with `limit_param`/`limit` are crmsync's `crm_page_number` (pages start at 1, `total`
    counts records); requests follow the seed's retry policy. A config without a `session` of
    its own gets crmsync's, and its crmsync paginators read pages ahead through it; with one,
    they read one page after another.
    """
    config = copy.deepcopy(config)
    client = config["client"]
    lookahead = None
    if "session" not in client:
        reader = PageReader(load_policy())
        client["session"], lookahead = reader.session, reader.lookahead
    auth = client.get("auth")
    if isinstance(auth, dict) and auth.get("type") in DLT_AUTH_TYPES:
        client["auth"] = {**auth, "type": DLT_AUTH_TYPES[auth["type"]]}
    resources = [r for r in config["resources"] if isinstance(r, dict)]
    for holder in [client, config.get("resource_defaults") or {}, *resources]:
        endpoint = holder.get("endpoint") if holder is not client else holder
        if isinstance(endpoint, dict) and isinstance(endpoint.get("paginator"), dict):
            seed = endpoint["paginator"]
            if seed.get("type") == "page_number":
                seed = {**seed, "type": PAGE_NUMBER_TYPE}
            endpoint["paginator"] = paginator_from_config(seed, ReadContext(lookahead=lookahead))
    return dlt_rest_api_source(cast(RESTAPIConfig, config), **kwargs)
