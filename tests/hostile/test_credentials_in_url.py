"""A base URL with a login inside (`http://user:password@host:port`), as some CRMs document
it: the password is printed nowhere and written nowhere, whether the run succeeds, fails,
is a dry run or a `check`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crmsync.failures import EXIT_OK, EXIT_SOURCE
from crmsync.redaction import redact_url, redact_urls_in
from tests.support.cli import run_crmsync
from tests.support.hostile import Answer, Exchange, HostileServer, contacts_page
from tests.support.hostile_runs import PASSWORD, SAFETY_TIMEOUT, USERNAME, last_line

URL_PASSWORD = "url-Pa55word-never-printed"


def serve_every_resource(exchange: Exchange) -> None:
    """`/contacts` has three records, every other resource none."""
    parts = urlsplit(exchange.path)
    name = parts.path.strip("/")
    page = contacts_page(parts.query) if name == "contacts" else f'{{"{name}": []}}'.encode()
    exchange.send(200, page)


def fail_every_request(exchange: Exchange) -> None:
    exchange.send(503, b'{"error": {"code": "unavailable", "message": "down"}}')


COMMANDS = {
    "run": (serve_every_resource, ["run", "--resources", "contacts"], EXIT_OK),
    "failing-run": (fail_every_request, ["run", "--resources", "contacts"], EXIT_SOURCE),
    "dry-run": (serve_every_resource, ["run", "--dry-run"], EXIT_OK),
    "check": (serve_every_resource, ["check"], EXIT_OK),
}


@pytest.mark.parametrize(("answer", "command", "exit_code"), COMMANDS.values(), ids=COMMANDS.keys())
def test_a_password_in_the_base_url_is_never_printed_or_written(
    hostile: Callable[[Answer], HostileServer],
    workdir: Path,
    answer: Answer,
    command: list[str],
    exit_code: int,
) -> None:
    crm = hostile(answer)
    base_url = crm.base_url.replace("://", f"://{USERNAME}:{URL_PASSWORD}@")
    working_dir = ["--working-dir", str(workdir / "dlt-work")] if command[0] == "run" else []
    env = {"SOURCES__CRM__USERNAME": USERNAME, "SOURCES__CRM__PASSWORD": PASSWORD}

    done = run_crmsync(
        workdir, *command, "--base-url", base_url, *working_dir, env=env, timeout=SAFETY_TIMEOUT
    )

    assert done.returncode == exit_code, done.stderr
    printed = done.stdout + done.stderr
    assert crm.base_url.removeprefix("http://") in printed or command == ["check"], printed
    for secret in (URL_PASSWORD, PASSWORD):
        assert secret not in printed
        assert _files_holding(workdir, secret.encode()) == []
    if exit_code != EXIT_OK:
        assert last_line(done).startswith("crmsync: contacts: GET /contacts?")


def _files_holding(folder: Path, secret: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@crm.example.com/v1", "https://***@crm.example.com/v1"),
        ("https://token@crm.example.com", "https://***@crm.example.com"),
        (
            "/contacts?page=2&API_KEY=k1&Token=t&apikey=a&key=k&password=p&secret=s"
            "&access_token=at&client_secret=cs&Signature=sig&keyword=kept",
            "/contacts?page=2&API_KEY=***&Token=***&apikey=***&key=***&password=***&secret=***"
            "&access_token=***&client_secret=***&Signature=***&keyword=kept",
        ),
        ("https://crm.example.com/contacts?page=1", "https://crm.example.com/contacts?page=1"),
    ],
)
def test_redact_url_hides_the_login_and_secret_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_urls_in_redacts_each_url_of_a_message() -> None:
    message = "503 for url: http://u:p@h:1/x?token=t; then https://h/y?key=k"
    assert (
        redact_urls_in(message)
        == "503 for url: http://***@h:1/x?token=***; then https://h/y?key=***"
    )
