"""`crmsync`: run, check, demo, and the bundled CRM (serve, mutate)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import requests
from click.core import ParameterSource
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.helpers.rest_client.utils import join_url
from dlt.sources.rest_api.config_setup import create_auth, create_paginator

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_SIZES, DEFAULT_USERNAME, DemoServer
from crmsync.failures import EXIT_CONFIG, Failure, describe, quota_reached
from crmsync.ledger import ResourceTally, RunLedger
from crmsync.loading.sync import (
    DEFAULT_DATASET,
    DEFAULT_PIPELINE,
    RunSettings,
    SyncFailed,
    SyncResult,
    reset_resources,
    run_sync,
)
from crmsync.profiles.connection import CrmConnection
from crmsync.profiles.plan import LISTING_SUFFIX, plan_resources
from crmsync.profiles.profile import Profile, load_profile, resource_names
from crmsync.reading.page_reader import PageReader
from crmsync.reading.page_shape import envelope_keys
from crmsync.reading.pagination import paginator_from_config
from crmsync.reading.source import SyncOptions
from crmsync.redaction import redact_url, redact_urls_in
from crmsync.reporting.dry_run import dry_run as check_destination
from crmsync.reporting.progress import PLAIN_INTERVAL_SECONDS, progress
from crmsync.reporting.run_report import dumps, failure_document, result_document
from crmsync.scheduling.tenants import TENANTS_ENV, Tenant, TenantsFileError, last_run, load_tenants
from crmsync.transport.http_policy import HttpPolicy, check_transport, load_policy

F = TypeVar("F", bound=Callable[..., Any])


def _fail(
    failure: Failure,
    debug: bool,
    error: BaseException | None = None,
    as_json: bool = False,
    ledger: RunLedger | None = None,
    tenant: Tenant | None = None,
) -> None:
    if tenant is not None:
        failure = tenant.failure(failure)
    if debug and error is not None:
        import traceback

        # redacted as every message is: a library's error may quote a URL with its key
        click.echo(redact_urls_in("".join(traceback.format_exception(error))), err=True, nl=False)
    if as_json:
        click.echo(dumps(failure_document(failure, ledger)))
    click.echo(f"crmsync: {failure.message}", err=True)
    sys.exit(failure.exit_code)


@contextmanager
def _expected_failures(
    debug: bool, as_json: bool = False, tenant: list[Tenant] | None = None
) -> Iterator[None]:
    """Failures as one line on stderr and the documented exit code (and, with `as_json`, the
    JSON result on stdout); a traceback only with `--debug`. `tenant` holds the tenant once
    known, whose settings the line names."""
    tenant = tenant if tenant is not None else []
    try:
        yield
    except SyncFailed as error:
        if not as_json:
            _print_ledger(error.ledger)
        cause = error.__cause__ or error
        failure = describe(cause, error.attempts)
        _fail(failure, debug, cause, as_json, error.ledger, next(iter(tenant), None))
    except (ValueError, OSError, requests.RequestException) as error:
        _fail(describe(error), debug, error, as_json, tenant=next(iter(tenant), None))
    except Exception as error:
        failure = describe(error)
        if failure.exit_code == EXIT_CONFIG:
            _fail(failure, debug, error, as_json, tenant=next(iter(tenant), None))
        raise


PROFILE_FILES = (
    (
        "--config",
        "config_path",
        "TOML/JSON file in the seed's shape that adds or changes resources.",
    ),
    (
        "--profile",
        "profile_path",
        "TOML/JSON file describing the whole CRM (default: the bundled's).",
    ),
)


_tenants_file = click.option(
    "--tenants",
    "tenants_file",
    envvar=TENANTS_ENV,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The tenants file (default ./tenants.toml, or {TENANTS_ENV}).",
)


def _profile_options(func: F) -> F:
    for flag, name, help in PROFILE_FILES:
        kind = click.Path(exists=True, dir_okay=False, path_type=Path)
        func = click.option(flag, name, type=kind, help=help)(func)
    return func


def _connection_options(func: F) -> F:
    func = click.option(
        "--base-url", help="CRM base URL (else SOURCES__CRM__BASE_URL, else the profile's)."
    )(func)
    func = _profile_options(func)
    func = click.option(
        "--allow-insecure-http",
        is_flag=True,
        help="Allow Basic auth over plain http to a non-loopback host.",
    )(func)
    func = click.option("--debug", is_flag=True, help="Show tracebacks.")(func)
    return func


def _sync_options(func: F) -> F:
    options = [
        click.option("--resources", help="Comma-separated subset, e.g. accounts,contacts."),
        click.option("--destination", default="duckdb", show_default=True),
        click.option("--dataset-name", default=DEFAULT_DATASET, show_default=True),
        click.option("--pipeline-name", default=DEFAULT_PIPELINE, show_default=True),
        click.option(
            "--working-dir",
            type=click.Path(file_okay=False),
            help="Keep dlt's working folder here (default: a fresh one per run).",
        ),
        click.option("--full-refresh", is_flag=True, help="Re-read everything; mirror exactly."),
        click.option("--keep-deleted", is_flag=True, help="Keep soft-deleted rows, flagged."),
        click.option(
            "--since",
            help="First sync starts at this RFC 3339 timestamp (with --until: a backfill).",
        ),
        click.option(
            "--until",
            help="With --since: re-read that window and merge it; the cursor stays as it was.",
        ),
        click.option(
            "--lookback",
            type=float,
            default=SyncOptions.lookback_seconds,
            show_default=True,
            help="Seconds re-read before the cursor (clock skew, 1 s timestamps).",
        ),
        click.option("--strict", is_flag=True, help="Fail when a read is incomplete."),
        click.option(
            "--page-processes",
            type=click.IntRange(min=0),
            default=SyncOptions.page_processes,
            show_default=True,
            help="Worker processes that decode pages into Arrow tables (0: in the run's own).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
@click.version_option(package_name="crmsync")
def main() -> None:
    """Sync a CRM's accounts, contacts, events, products and pipelines into a warehouse."""
    # The objects the imports made (dlt's are many) live as long as this one command. Frozen,
    # the collector no longer walks them, in the run's full collections or at the process's
    # exit: 0.4 s of Python's shutdown after `import dlt`, measured.
    gc.freeze()


@main.command()
@_connection_options
@_sync_options
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0.1),
    default=PLAIN_INTERVAL_SECONDS,
    show_default=True,
    help="Seconds between progress lines when the output is not a terminal.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary and ledger as one JSON object on stdout.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the CRM and destination settings (and the destination's connection); load nothing.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(min=0),
    help="Requests this run may send, retries included (else [sources.crm.http] max_requests;"
    " 0: no quota). Reached: finished resources load, exit 5.",
)
@click.option(
    "--tenant",
    help="Sync this tenant of the tenants file: its CRM, credentials, destination and dataset.",
)
@_tenants_file
def run(
    base_url: str | None,
    profile_path: Path | None,
    config_path: Path | None,
    allow_insecure_http: bool,
    debug: bool,
    resources: str | None,
    destination: str,
    dataset_name: str,
    pipeline_name: str,
    working_dir: str | None,
    full_refresh: bool,
    keep_deleted: bool,
    since: str | None,
    until: str | None,
    lookback: float,
    strict: bool,
    page_processes: int,
    progress_interval: float,
    as_json: bool,
    dry_run: bool,
    max_requests: int | None,
    tenant: str | None,
    tenants_file: Path | None,
) -> None:
    """Sync the CRM into a dlt destination (DuckDB ./crmsync.duckdb by default)."""
    known: list[Tenant] = []
    with _expected_failures(debug, as_json, known):
        if tenant is not None:
            _refuse_tenant_conflicts()
            known.append(load_tenants(tenants_file).get(tenant))
            profile = known[0].load_profile()
            connection = known[0].connection(profile)
            settings = known[0].settings(working_dir)
            chosen = _split(resources) or known[0].resources
        else:
            profile = load_profile(config_path, profile_path)
            connection = CrmConnection.from_config(base_url, profile.get("client"))
            settings = RunSettings(destination, dataset_name, pipeline_name, working_dir)
            chosen = _split(resources)
        sync = SyncOptions(
            resources=chosen,
            full_refresh=full_refresh,
            keep_deleted=keep_deleted,
            since=since,
            until=until,
            lookback_seconds=lookback,
            strict=strict,
            page_processes=page_processes,
        )
        policy = load_policy(
            allow_insecure_http=allow_insecure_http or None, max_requests=max_requests
        )
        if dry_run:
            check_transport(connection.base_url, policy.allow_insecure_http)
            click.echo("\n".join(check_destination(connection, settings, sync, profile)))
            return
        _run_and_report(connection, settings, sync, profile, policy, as_json, progress_interval)


TENANT_DEFINES = ("base_url", "config_path", "destination", "dataset_name", "pipeline_name")


def _refuse_tenant_conflicts() -> None:
    """With `--tenant`, the tenants file says where the tenant's CRM and data are."""
    context = click.get_current_context()
    for name in TENANT_DEFINES:
        if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT):
            option = next(p for p in context.command.params if p.name == name).opts[0]
            raise TenantsFileError(
                f"{option} cannot be combined with --tenant: the tenants file sets it per tenant"
            )


@main.command()
@_tenants_file
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def tenants(tenants_file: Path | None, debug: bool) -> None:
    """List the tenants of the tenants file, each with its last run from its ledger."""
    with _expected_failures(debug):
        listed = load_tenants(tenants_file)
    header = ("tenant", "destination", "dataset", "CRM", "last run")
    lines = [header]
    worst = 0
    for tenant in listed:
        try:
            last = last_run(tenant)
            status = (
                "never"
                if last is None
                else f"{last.finished_at:%Y-%m-%d %H:%M:%S} {last.outcome},"
                f" {last.resources} resources, {last.rows:,} rows"
            )
        except Exception as error:
            failure = tenant.failure(describe(error))
            worst = max(worst, failure.exit_code)
            status = f"unknown: {failure.message.removeprefix(f'tenant {tenant.name}: ')}"
        crm = tenant.configured_base_url()
        where = redact_url(crm) if crm else f"not set ({tenant.secrets}.base_url)"
        lines.append((tenant.name, tenant.destination, tenant.dataset, where, status))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False))
            + ("  " + line[-1])
        )
    sys.exit(worst)


def _run_and_report(
    connection: CrmConnection,
    settings: RunSettings,
    sync: SyncOptions,
    profile: Profile,
    policy: HttpPolicy,
    as_json: bool = False,
    progress_interval: float = PLAIN_INTERVAL_SECONDS,
) -> None:
    ledger = RunLedger(strict=sync.strict)
    click.echo(
        f"crmsync: syncing {redact_url(connection.base_url)} into {settings.destination}",
        err=True,
    )
    with progress(ledger, waiting=lambda: ledger.holding(), interval=progress_interval):
        result = run_sync(connection, settings, sync, profile, policy, ledger)
    quota = (
        quota_reached(policy.max_requests, result.loaded, result.unfinished)
        if result.unfinished
        else None
    )
    if as_json:
        click.echo(dumps(result_document(result, settings, quota)))
    else:
        _print_summary(result, settings)
    if quota is not None:
        click.echo(f"crmsync: {quota.message}", err=True)
        sys.exit(quota.exit_code)


def _print_summary(result: SyncResult, settings: RunSettings) -> None:
    click.echo(f"Loaded into {settings.destination}, dataset {settings.dataset_name}:")
    click.echo(f"  {'table':<28}{'rows':>10}{'this run':>10}")
    for table, rows in result.data_tables.items():
        click.echo(f"  {table:<28}{rows:>10,}{result.row_counts.get(table, 0):>10,}")
    _print_ledger(result.ledger)


def _print_ledger(ledger: RunLedger) -> None:
    figures = ("requests", "retries", "429s", "wasted", "waited", "pages", "rows", "repeats")
    click.echo(
        f"  {'resource':<14}"
        + "".join(f"{h:>10}" for h in figures)
        + f"{'moved':>11}{'complete':>10}"
    )
    for t in ledger.tallies.values():
        complete = {None: "no total", True: "yes", False: "NO"}[t.complete]
        waited = f"{t.wait_seconds:.1f}s"
        cells = (t.requests, t.retries, t.throttled, t.wasted, waited, t.pages, t.rows, t.repeats)
        click.echo(
            f"  {t.resource:<14}"
            + "".join(f"{c:>10}" for c in cells)
            + f"{_moved(t):>11}{complete:>10}"
            + ("" if t.outcome == "ok" else f"  ({t.outcome})")
        )
    for t in ledger.tallies.values():
        if t.reads_in_full and not t.resource.endswith(LISTING_SUFFIX):
            click.echo(f"  {t.resource}: the CRM filters it by no cursor: read in full, merged")
    if ledger.learnt_rate is not None:
        click.echo(
            f"Rate limit: paced to {ledger.learnt_rate:.1f} requests/s, requests held"
            f" {ledger.paced_seconds:.1f}s for it"
        )
    click.echo(f"Elapsed: {ledger.elapsed_seconds:.1f}s")


def _moved(tally: ResourceTally) -> str:
    """Whether records entered the list while it was read, and how many pages were re-read."""
    if not tally.list_moved:
        return "no"
    return f"{tally.refetched} re-read" if tally.refetched else "yes"


@main.command()
@_connection_options
def check(
    base_url: str | None,
    profile_path: Path | None,
    config_path: Path | None,
    allow_insecure_http: bool,
    debug: bool,
) -> None:
    """Authenticate and read the first page of each resource."""
    with _expected_failures(debug):
        profile = load_profile(config_path, profile_path)
        connection = CrmConnection.from_config(base_url, profile.get("client"))
        policy = load_policy(allow_insecure_http=allow_insecure_http or None)
        check_transport(connection.base_url, policy.allow_insecure_http)
        plans = plan_resources(profile)
        auth = create_auth(cast(Any, connection.dlt_auth()))
    worst = 0
    with closing(PageReader(policy)) as reader:
        session = reader.session
        session.auth = auth
        endpoints = [(plan.path, plan.records_key) for plan in plans]
        for url, key in envelope_keys(endpoints, connection.base_url):
            reader.decoder.expect_records(url, key)
        for plan in plans:
            name = plan.name
            request = _first_page(connection.base_url, plan.config["endpoint"])
            try:
                session.send(session.prepare_request(request)).raise_for_status()
                click.echo(f"OK    {name}")
            except requests.RequestException as error:
                failure = describe(error, policy.max_retries + 1)
                worst = max(worst, failure.exit_code)
                click.echo(f"FAIL  {name}: {failure.message}")
    sys.exit(worst)


def _first_page(base_url: str, endpoint: dict[str, Any]) -> requests.Request:
    """The first page with one record (where the paginator has a page size param): the
    cheapest request that proves a resource can be read."""
    params = dict(endpoint.get("params") or {})
    request = requests.Request("GET", join_url(base_url, endpoint["path"]), params=params)
    paginator = paginator_from_config(endpoint.get("paginator"))
    if paginator is not None and not isinstance(paginator, BasePaginator):
        paginator = create_paginator(paginator)
    if paginator is not None:
        paginator.init_request(request)
        limit_param = getattr(paginator, "limit_param", None)
        if isinstance(limit_param, str):
            request.params[limit_param] = 1
    return request


@main.command()
@click.option("--resources", required=True, help="Comma-separated, e.g. contacts,events.")
@click.option("--destination", default="duckdb", show_default=True)
@click.option("--dataset-name", default=DEFAULT_DATASET, show_default=True)
@click.option("--pipeline-name", default=DEFAULT_PIPELINE, show_default=True)
@click.option("--working-dir", type=click.Path(file_okay=False), help="dlt's working folder.")
@_profile_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def reset(
    resources: str,
    destination: str,
    dataset_name: str,
    pipeline_name: str,
    working_dir: str | None,
    profile_path: Path | None,
    config_path: Path | None,
    yes: bool,
    debug: bool,
) -> None:
    """Drop resources' tables and cursors: their next sync reads everything again."""
    with _expected_failures(debug):
        names = _split(resources) or ()
        known = resource_names(load_profile(config_path, profile_path))
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown resources {unknown}; known: {', '.join(known)}")
        settings = RunSettings(destination, dataset_name, pipeline_name, working_dir)

        def confirm(tables: list[str]) -> bool:
            if not tables:
                click.echo(f"nothing to drop for {', '.join(names)}")
                return True
            question = f"Drop {', '.join(tables)} from {destination}, dataset {dataset_name}?"
            return yes or click.confirm(question, err=True, abort=True)

        dropped = reset_resources(settings, names, confirm)
        if dropped:
            click.echo(f"dropped {', '.join(dropped)}; the next sync of {resources} is a full one")


@main.command()
@click.option("--seed", default=7, show_default=True)
@click.option("--debug", is_flag=True)
def demo(seed: int, debug: bool) -> None:
    """Start the bundled CRM, sync it into ./crmsync.duckdb, print what landed."""
    with DemoServer(sizes=DEFAULT_SIZES, seed=seed) as server, _expected_failures(debug):
        click.echo(f"crmsync: bundled CRM listening on {server.base_url}", err=True)
        connection = CrmConnection.basic(server.base_url, DEFAULT_USERNAME, DEFAULT_PASSWORD)
        _run_and_report(connection, RunSettings(), SyncOptions(), load_profile(), load_policy())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, help="0 picks a free port.")
@click.option("--seed", default=7, show_default=True)
@click.option("--username", default=DEFAULT_USERNAME, show_default=True)
@click.option("--password", default=DEFAULT_PASSWORD)
@click.option("--latency-ms", default=0.0, show_default=True)
@click.option(
    "--rate-limit", default=0.0, show_default=True, help="A token bucket: requests/s, 0 = none."
)
@click.option("--burst", default=10, show_default=True, help="Requests the bucket holds.")
@click.option(
    "--rate-headers",
    type=click.Choice(["x", "ietf", "both"]),
    help="Send X-RateLimit-* (x), RateLimit-* (ietf) or both on every response.",
)
@click.option("--accounts", type=int, default=DEFAULT_SIZES["accounts"], show_default=True)
@click.option("--contacts", type=int, default=DEFAULT_SIZES["contacts"], show_default=True)
@click.option("--events", type=int, default=DEFAULT_SIZES["events"], show_default=True)
@click.option("--products", type=int, default=DEFAULT_SIZES["products"], show_default=True)
@click.option("--pipelines", type=int, default=DEFAULT_SIZES["pipelines"], show_default=True)
def serve(**options: Any) -> None:
    """Run the bundled CRM alone (until Ctrl-C)."""
    from crmsync.demo_server.__main__ import serve_options

    serve_options(options)


@main.command()
@click.option("--base-url", required=True, help="The bundled CRM's URL.")
@click.option("--username", default=DEFAULT_USERNAME, show_default=True)
@click.option("--password", default=DEFAULT_PASSWORD)
@click.option("--resource", required=True, type=click.Choice(sorted(DEFAULT_SIZES)))
@click.option("--create", default=0, show_default=True)
@click.option("--update", default=0, show_default=True)
@click.option("--delete", default=0, show_default=True)
def mutate(
    base_url: str,
    username: str,
    password: str,
    resource: str,
    create: int,
    update: int,
    delete: int,
) -> None:
    """Create, update or soft-delete records in a running bundled CRM."""
    from crmsync.demo_server.control import mutate as remote_mutate

    try:
        changed = remote_mutate(base_url, username, password, resource, create, update, delete)
    except requests.RequestException as error:
        _fail(describe(error), debug=False, error=error)
    for kind in ("created", "updated", "deleted"):
        ids = changed.get(kind, [])
        click.echo(f"{kind:<8} {len(ids):>5}  {', '.join(map(str, ids[:20]))}")


def _split(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


if __name__ == "__main__":
    main()
