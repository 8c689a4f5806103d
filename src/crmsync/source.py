"""The crmsync dlt source: the resource profile plus credentials, HTTP policy and sync mode.

Everything here is mechanism; what to fetch is data in `crmsync.profile`. The source ends in
dlt's `rest_api_resources(config)`: rest_api does the requests, paging, incremental state,
schema and merge, through the extension points filled in here (our paginator instances, the
`basic` auth name, the shared HTTP session).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import dlt
from dlt.common import jsonpath
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.extract import DltResource, DltSource
from dlt.sources.helpers.rest_client.utils import join_url
from dlt.sources.rest_api import rest_api_resources
from dlt.sources.rest_api import rest_api_source as dlt_rest_api_source
from dlt.sources.rest_api.typing import RESTAPIConfig

from crmsync.arrow_pages import PageBatcher, TypedPages
from crmsync.first_read import DeletedRecordFilter, replaces_merge
from crmsync.governance import (
    EXCLUDE_KEY,
    HASH_KEY,
    HASH_SECRET,
    FieldPolicy,
    field_policy,
    history_disposition,
)
from crmsync.http_policy import CrmSession, HttpPolicy, check_transport, load_policy
from crmsync.ledger import ResourceObserver, RunLedger
from crmsync.page_decoding import ProcessDecoder
from crmsync.page_shape import envelope_keys
from crmsync.pagination import PageLookahead, RepeatedRecordFilter, paginator_from_config
from crmsync.profile import (
    CRM_PROFILE,
    LIST_FIELDS_KEY,
    ORDERED_KEY,
    Profile,
    endpoint_of,
    resource_name,
    resource_names,
)
from crmsync.redaction import without_login

SECTION = "sources.crm"
DEDUPLICATED_HINT = "x-stage-data-deduplicated"
"""dlt's table hint that a load holds each primary key once: its merge skips the dedup pass."""
DEFAULT_LOOKBACK_SECONDS = 60.0


class MissingSettingError(ConfigurationException):
    """A setting the user has to provide; the message says exactly where."""


@dataclass(frozen=True)
class CrmConnection:
    base_url: str
    username: str
    password: str = field(repr=False)

    @classmethod
    def from_config(cls, base_url: str | None = None, section: str = SECTION) -> CrmConnection:
        """Reads `<section>.*` (`sources.crm` unless a tenant names its own) and nothing else.

        dlt's argument injection would fall back to a bare `USERNAME`, which on many systems is
        the OS login name, so the three keys are read by their full names.
        """
        values = {
            "base_url": base_url or dlt.config.get(f"{section}.base_url"),
            "username": dlt.secrets.get(f"{section}.username"),
            "password": dlt.secrets.get(f"{section}.password"),
        }
        missing = [key for key, value in values.items() if not value]
        if missing:
            raise MissingSettingError(_how_to_set(missing, section))
        return cls(**{key: str(value) for key, value in values.items()})


def env_name(section: str, key: str) -> str:
    """The environment variable dlt reads for `key` under `section`: `SOURCES__CRM__PASSWORD`."""
    return "__".join([*section.split("."), key]).upper()


def _how_to_set(missing: list[str], section: str = SECTION) -> str:
    where = []
    for key in missing:
        env = env_name(section, key)
        if key == "base_url":
            where.append(
                f"{env} (or --base-url, or base_url under [{section}] in .dlt/config.toml)"
            )
        else:
            where.append(f"{env} (or {key} under [{section}] in .dlt/secrets.toml)")
    return "missing CRM setting: set " + "; ".join(where)


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
    """The fast path (`crmsync.arrow_pages`); off loads the same rows through dlt's normalizer."""
    page_processes: int = 1
    """Worker processes that decode pages into Arrow tables (`crmsync.page_decoding`) in a
    `run_sync`; 0 decodes them in the run's own process."""


def crm_source(
    connection: CrmConnection,
    profile: Profile | None = None,
    sync: SyncOptions | None = None,
    policy: HttpPolicy | None = None,
    ledger: RunLedger | None = None,
    session: CrmSession | None = None,
) -> DltSource:
    """The CRM as a dlt source. Pass `session` to close it (and its look-ahead) when done."""
    sync = sync or SyncOptions()
    policy = policy or load_policy()
    check_transport(connection.base_url, policy.allow_insecure_http)
    profile = profile or CRM_PROFILE
    known = resource_names(profile)
    selected = list(sync.resources or known)
    if sync.until and not sync.since:
        raise ValueError("--until needs --since: a backfill re-reads the window between them")
    unknown = sorted(set(selected) - set(known))
    if unknown:
        raise ValueError(f"unknown resources {unknown}; known: {', '.join(known)}")
    ledger = ledger or RunLedger(strict=sync.strict)
    session = session or CrmSession(policy, ledger)
    source = _crm(connection, profile, sync, session, ledger, tuple(selected))
    # nested tables keep `_dlt_root_id` under a first read's replace too: the merges after it
    # need it (`crmsync.first_read`)
    source.root_key = True
    return source.with_resources(*selected)


@dlt.source(name="crm")
def _crm(
    connection: CrmConnection,
    profile: Profile,
    sync: SyncOptions,
    session: CrmSession,
    ledger: RunLedger,
    selected: tuple[str, ...],
) -> list[DltResource]:
    """`selected` resources are the ones the ledger tracks; the others are built only for
    dlt to pick from (`with_resources`), and a resource another depends on is read untracked."""
    state = dlt.current.source_state()
    config = copy.deepcopy(profile)
    config["client"] = {
        **config.get("client", {}),
        "base_url": without_login(connection.base_url),  # dlt writes it to its trace
        "auth": {"type": "basic", "username": connection.username, "password": connection.password},
        "session": session,
    }
    defaults = config.get("resource_defaults") or {}
    read_starts: dict[str, _ReadStart] = {}
    for resource in config["resources"]:
        if isinstance(resource, dict):
            resource.pop(LIST_FIELDS_KEY, None)  # for the destination (`adapt_source`) alone
            read_start = _apply_sync_mode(resource, defaults, sync, state)
            if read_start is not None:
                read_starts[read_start.resource] = read_start
    for url, key in envelope_keys(config, connection.base_url):
        session.expect_records(url, key)  # a page of another shape is broken: retried, then fails
    policies, histories = _governance(config, defaults)
    observers = _observers(config, ledger, selected, read_starts)
    repeat_filters = _repeat_filters(config, observers)
    deleted_filters = _replace_first_reads(config, state, sync, repeat_filters)
    for name, observer in observers.items():
        observer.replaces = sync.full_refresh or name in deleted_filters
    hints = {resource_name(r): _columns(r, defaults) for r in config["resources"]}
    cursors = {resource_name(r): _cursor_path(r) for r in config["resources"]}
    if isinstance(session.decoder, ProcessDecoder) and sync.arrow_pages:
        _decode_in_workers(
            config,
            session.decoder,
            connection.base_url,
            hints,
            deleted_filters,
            set(policies) | histories,
        )
    _prepare_endpoints(config, observers, session.lookahead, set(repeat_filters))
    resources = rest_api_resources(cast(RESTAPIConfig, config))
    for resource in resources:
        repeat_filter = repeat_filters.get(resource.name)
        if repeat_filter is not None:
            resource.apply_hints(additional_table_hints={DEDUPLICATED_HINT: True})
        history = resource.name in histories
        typed = TypedPages(
            hints.get(resource.name, {}),
            arrow=sync.arrow_pages and not history,
            cursor=cursors.get(resource.name),
            row_keys=not history,
        )
        steps = (
            policies.get(resource.name),
            repeat_filter,
            deleted_filters.get(resource.name),
            PageBatcher(typed),
        )
        for position, step in enumerate((s for s in steps if s), start=1):
            resource.add_step(step, insert_at=position)
    return resources


def _decode_in_workers(
    config: Profile,
    decoder: ProcessDecoder,
    base_url: str,
    hints: dict[str, Any],
    deleted_filters: Mapping[str, DeletedRecordFilter],
    read_as_dicts: Set[str],
) -> None:
    """Has the worker processes decode the pages of each resource whose records nothing reads
    as dicts: a plain records key, no `processing_steps` or `include_from_parent`, no field
    policy (`read_as_dicts`), and no other resource that resolves its fields
    (`{resources.contacts.id}`, `"resource": "contacts"`); the others' pages stay dicts."""
    resources = [r for r in config["resources"] if isinstance(r, dict)]
    texts = [json.dumps(r, default=str) for r in resources]
    for resource, text in zip(resources, texts, strict=True):
        name = resource_name(resource)
        key, path = endpoint_of(resource).get("data_selector"), _path(resource)
        others = "".join(t for t in texts if t is not text)
        if (
            not isinstance(key, str)
            or not key.isidentifier()
            or "{" in path
            or resource.get("processing_steps")
            or resource.get("include_from_parent")
            or name in read_as_dicts
            or f"resources.{name}." in others
            or f'"{name}"' in others
        ):
            continue
        url = path if urlsplit(path).scheme in ("http", "https") else join_url(base_url, path)
        decoder.register(url, key, hints.get(name, {}), deleted_filters.get(name))


def _governance(
    config: Profile, defaults: dict[str, Any]
) -> tuple[dict[str, FieldPolicy], set[str]]:
    """Takes each resource's `exclude_columns`/`hash_columns` out of the config and returns its
    field policy, and the resources that keep history; hashed fields are typed text, and an
    `scd2` merge is scoped to the load (`crmsync.governance`). A history resource's pages stay
    dicts without crmsync's row keys: dlt's `scd2` keys each version by a hash of its content,
    which a random key would make new on every read."""
    hash_key: str | None = None
    policies = {}
    histories = set()
    for resource in config["resources"]:
        if not isinstance(resource, dict):
            continue
        name = resource_name(resource)
        if resource.get(HASH_KEY) and hash_key is None:
            hash_key = dlt.secrets.get(HASH_SECRET)
            if not hash_key:
                raise MissingSettingError(
                    f"{name}: hash_columns needs a key: set SOURCES__CRM__HASH_KEY (or hash_key"
                    " under [sources.crm] in .dlt/secrets.toml)"
                )
        policy = field_policy(resource, hash_key)
        resource.pop(EXCLUDE_KEY, None)
        resource.pop(HASH_KEY, None)
        if policy is not None:
            policies[name] = policy
            resource["columns"] = policy.column_hints(resource.get("columns") or {})
        columns = _columns(resource, defaults)
        deletes = next((c for c, h in columns.items() if h.get("hard_delete")), None)
        key = resource.get("primary_key", defaults.get("primary_key"))
        disposition = resource.get("write_disposition", defaults.get("write_disposition"))
        if isinstance(key, str):
            history = history_disposition(disposition, deletes, key)
            if history is not disposition:
                histories.add(name)
            resource["write_disposition"] = history
    return policies, histories


def _observers(
    config: Profile,
    ledger: RunLedger,
    selected: tuple[str, ...],
    read_starts: Mapping[str, _ReadStart],
) -> dict[str, ResourceObserver]:
    """The ledger's observer of each selected resource (endpoints already merged with the
    defaults): a run reports what it was asked to read. An incomplete read of an incremental
    resource holds its cursor (`_ReadStart.hold`)."""
    observers = {}
    for resource in config["resources"]:
        if isinstance(resource, dict) and (name := resource_name(resource)) in selected:
            observer = ledger.observer(name, _path(resource))
            if name in read_starts:
                observer.hold_cursor = read_starts[name].hold
            observers[name] = observer
    return observers


def _cursor_path(resource: Any) -> str | None:
    incremental = endpoint_of(resource).get("incremental") if isinstance(resource, dict) else None
    return str(incremental["cursor_path"]) if incremental else None


def _path(resource: dict[str, Any]) -> str:
    return str(endpoint_of(resource).get("path", ""))


def _repeat_filters(
    config: Profile, observers: Mapping[str, ResourceObserver]
) -> dict[str, RepeatedRecordFilter]:
    """Takes `ordered_by_primary_key` out of the config (it is crmsync's key, not rest_api's)
    and returns a repeat filter for each resource that has it and one integer primary key
    column: text ids have no order a CRM agrees on (`"99999"` sorts after `"100002"`), so the
    merge dedups those."""
    defaults = config.get("resource_defaults") or {}
    ordered_default = defaults.pop(ORDERED_KEY, False)
    filters = {}
    for resource in config["resources"]:
        if not isinstance(resource, dict):
            continue
        ordered = resource.pop(ORDERED_KEY, ordered_default)
        key = resource.get("primary_key", defaults.get("primary_key"))
        if not isinstance(key, str):
            continue
        kind = _columns(resource, defaults).get(key, {}).get("data_type")
        if ordered and kind != "text":
            name = resource_name(resource)
            observer = observers.get(name)
            filters[name] = RepeatedRecordFilter(name, _path(resource), key, observer)
    return filters


def _replace_first_reads(
    config: Profile,
    state: dict[str, Any],
    sync: SyncOptions,
    deduplicated: Mapping[str, RepeatedRecordFilter],
) -> dict[str, DeletedRecordFilter]:
    """Sets `replace` on each merge resource read whole for the first time (`crmsync.first_read`)
    and returns the filter of its soft-deleted records (none with `--keep-deleted`)."""
    defaults = config.get("resource_defaults") or {}
    filters = {}
    for resource in config["resources"]:
        if not isinstance(resource, dict) or (name := resource_name(resource)) not in deduplicated:
            continue
        incremental = endpoint_of(resource).get("incremental") or {}
        whole_read = (
            bool(incremental) and not sync.since and not _stored_cursor(state, name, incremental)
        )
        disposition = resource.get("write_disposition", defaults.get("write_disposition"))
        if replaces_merge(disposition, whole_read):
            resource["write_disposition"] = "replace"
            filters[name] = DeletedRecordFilter(_columns(resource, defaults))
            _keep_deleted(resource, defaults)  # filtered already; replace would warn of the hint
    return filters


def _stored_cursor(state: dict[str, Any], name: str, incremental: dict[str, Any]) -> Any:
    """The cursor dlt's incremental stored for `name` (None before its first read)."""
    resource_state = state.get("resources", {}).get(name, {})
    cursor_path = incremental.get("cursor_path")
    return resource_state.get("incremental", {}).get(cursor_path, {}).get("last_value")


def _columns(resource: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(resource, dict):
        return {}
    return {**(defaults.get("columns") or {}), **(resource.get("columns") or {})}


def _apply_sync_mode(
    resource: dict[str, Any], defaults: dict[str, Any], sync: SyncOptions, state: dict[str, Any]
) -> _ReadStart | None:
    """Merges the default endpoint into the resource's and sets its cursor for this run;
    returns the hook that notes when its read began (None for a resource without a cursor)."""
    name = resource_name(resource)
    endpoint = {**endpoint_of(defaults), **endpoint_of(resource)}
    incremental = endpoint.get("incremental")
    read_start = None
    if incremental:
        incremental = dict(incremental)
        cursor = str(incremental.get("cursor_path"))
        hint = _columns(resource, defaults).get(cursor, {})
        if sync.since:
            incremental["initial_value"] = _cursor_value(sync.since, hint)
        if sync.until:
            # a backfill: dlt's incremental keeps the rows in [since, until) and, with an end
            # value, neither reads nor writes the stored cursor
            incremental["end_value"] = _cursor_value(sync.until, hint)
            incremental["lag"] = 0
        else:
            incremental["lag"] = _lookback(state, name, incremental, sync.lookback_seconds)
        read_start = incremental["convert"] = _ReadStart(
            name, incremental.get("convert"), notes=not sync.until
        )
        # dlt would drop a record re-read at the boundary second when its id was seen there
        # before, i.e. a second update within that second; merge on `id` dedups instead
        incremental["primary_key"] = []
        endpoint["incremental"] = incremental
    resource["endpoint"] = endpoint
    if sync.keep_deleted:
        _keep_deleted(resource, defaults)
    return read_start


def _keep_deleted(resource: dict[str, Any], defaults: dict[str, Any]) -> None:
    resource["columns"] = {
        key: {**hint, "hard_delete": False} if hint.get("hard_delete") else hint
        for key, hint in _columns(resource, defaults).items()
    }


def _cursor_value(value: str, hint: dict[str, Any]) -> Any:
    """`--since` as the cursor holds it: a datetime for a timestamp column (`TypedPages`)."""
    return _parse_time(value) if hint.get("data_type") == "timestamp" else value


def _lookback(
    state: dict[str, Any], name: str, incremental: dict[str, Any], lookback: float
) -> float:
    """Seconds to step back from the stored cursor before asking for changes.

    The cursor is the newest `updated_at` seen, but a record read early in the previous run may
    have changed while later pages were still being read, with an `updated_at` older than that
    newest one. Stepping back to where the previous read began (minus the lookback, for clock
    skew and one-second timestamps) catches it; merge on `id` removes the overlap.
    """
    last_value = _stored_cursor(state, name, incremental)
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


class _ReadStart:
    """The incremental `convert` hook: notes when this read began, in the resource's state.

    rest_api calls it once, as the resource starts reading, to turn the cursor into the
    `updated_since` value; that moment is what the next run's lookback is measured from.
    Every record changed before it was in the list when the read began, so a complete read
    served it (`PageNumberPaginator`): the next run need only go back to this moment.
    """

    STATE_KEY = "crmsync_read_started_at"
    BEGINNING = "1970-01-01T00:00:00+00:00"

    def __init__(self, resource: str, convert: Any = None, notes: bool = True) -> None:
        self.resource = resource
        self.convert = convert
        self.notes = notes
        """False for a backfill (`--until`), which leaves the resource's state as it was."""
        self.window_start: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _ReadStart:
        """rest_api deep-copies its config; the hook is the run's, shared with the ledger."""
        return self

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
            return _parse_time(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
        return value


def _prepare_endpoints(
    config: Profile,
    observers: Mapping[str, ResourceObserver],
    lookahead: PageLookahead | None,
    ordered: Set[str] = frozenset(),
) -> None:
    """Turns the seed's page-number dicts into paginator instances, one per resource, and
    compiles each data selector once (rest_api would parse the JSONPath again for every page).

    A resource listed in ascending key order (`ordered`) keeps its records' positions unless a
    read narrows it by its cursor's start or end param (`PageNumberPaginator`'s view filters);
    the list of any other resource may move under every read."""
    defaults = config.get("resource_defaults") or {}
    default_paginator = endpoint_of(defaults).get("paginator")
    client_paginator = config["client"].get("paginator")
    for resource in config["resources"]:
        if not isinstance(resource, dict):
            continue
        endpoint = endpoint_of(resource)
        if isinstance(endpoint.get("data_selector"), str):
            endpoint["data_selector"] = jsonpath.compile_path(endpoint["data_selector"])
        paginator = endpoint.get("paginator", default_paginator) or client_paginator
        if paginator is not None:
            name = resource_name(resource)
            incremental = endpoint.get("incremental") or {}
            filters = [incremental.get("start_param"), incremental.get("end_param")]
            view_filters = [f for f in filters if f] if name in ordered else None
            endpoint["paginator"] = paginator_from_config(
                paginator, observers.get(name), lookahead, view_filters
            )
        resource["endpoint"] = endpoint
    if isinstance(defaults.get("endpoint"), dict):
        defaults["endpoint"] = {k: v for k, v in endpoint_of(defaults).items() if k != "paginator"}
    if isinstance(client_paginator, dict):
        config["client"]["paginator"] = paginator_from_config(client_paginator)


def rest_api_source(config: Profile, **kwargs: Any) -> DltSource:
    """dlt's `rest_api_source`, speaking the seed's dialect; paste the seed's dict as it is.

    `"type": "basic"` auth and `page_number` paginators with `limit_param`/`limit` are accepted,
    pages start at 1, and requests follow the seed's retry policy.
    """
    config = copy.deepcopy(config)
    if "session" not in config["client"]:
        config["client"]["session"] = CrmSession(load_policy())
    _prepare_endpoints(config, {}, getattr(config["client"]["session"], "lookahead", None))
    return dlt_rest_api_source(cast(RESTAPIConfig, config), **kwargs)
