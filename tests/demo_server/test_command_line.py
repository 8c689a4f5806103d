"""``python -m crmsync.demo_server`` (and ``crmsync serve``, the same options) announces its port
on one line and stops on a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

SRC = Path(__file__).resolve().parents[2] / "src"


MODULE = ("-m", "crmsync.demo_server")
COMMANDS = {
    "module": MODULE,
    "crmsync-serve": ("-c", "from crmsync.cli import main; main()", "serve"),
}


def launch(*args: str, command: tuple[str, ...] = MODULE) -> subprocess.Popen[str]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, *command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_it_prints_the_url_serves_the_given_sizes_and_exits_cleanly_on_a_signal(
    signum: signal.Signals, command: tuple[str, ...]
) -> None:
    sizes = ["--accounts", "4", "--contacts", "7", "--events", "3", "--products", "2"]
    options = ["--port", "0", "--pipelines", "1", *sizes, "--password", "s3cret"]
    with launch(*options, command=command) as process:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1)
        served = {
            resource: requests.get(
                f"{url}/{resource}",
                params={"include_deleted": "true"},
                auth=("demo", "s3cret"),
                timeout=5,
            ).json()[resource]
            for resource in ("accounts", "contacts", "events", "products", "pipelines")
        }

        process.send_signal(signum)
        returncode = process.wait(timeout=10)
        rest, errors = process.stdout.read(), process.stderr.read()

    assert {resource: len(rows) for resource, rows in served.items()} == {
        "accounts": 4,
        "contacts": 7,
        "events": 3,
        "products": 2,
        "pipelines": 1,
    }
    assert returncode == 0
    assert (rest, errors) == ("", "")


def test_the_same_seed_serves_the_same_records_in_another_process() -> None:
    def first_contacts(seed: str) -> list[dict[str, object]]:
        sizes = ["--accounts", "2", "--contacts", "5", "--events", "0", "--products", "0"]
        with launch("--seed", seed, *sizes) as process:
            assert process.stdout is not None
            url = process.stdout.readline().split()[-1]
            body = requests.get(f"{url}/contacts", auth=("demo", "demo-password"), timeout=5)
            process.terminate()
            process.wait(timeout=10)
        return list(body.json()["contacts"])

    seed_3 = first_contacts("3")

    assert first_contacts("3") == seed_3
    assert first_contacts("4") != seed_3


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_rate_limit_on_the_command_line_refuses_requests_past_its_burst(
    command: tuple[str, ...],
) -> None:
    limit = ["--rate-limit", "0.5", "--burst", "2", "--rate-headers", "ietf"]
    with launch("--port", "0", "--contacts", "3", *limit, command=command) as process:
        assert process.stdout is not None
        url = process.stdout.readline().removeprefix("listening on ").strip()
        answers = [
            requests.get(f"{url}/contacts", auth=("demo", "demo-password"), timeout=5)
            for _ in range(3)
        ]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "2"
    assert answers[1].headers["RateLimit-Limit"] == "2"
