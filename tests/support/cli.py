"""The `crmsync` command run as a user runs it: a separate process in a scratch folder, with no
CRM or destination setting but those a test gives it.

The one runner of the suite: `run_crmsync` waits for the command, `start_crmsync` leaves it
running (to kill it); both build the same environment (`cli_env`). `start_crmsync` starts the
`crmsync` script itself; `run_crmsync` forks the command from a process that has imported it
already (`cli_forkserver.py`, one per test process): a process of its own all the same, with
its own folder, environment, stdin, stdout, stderr and exit code, but without the second or
two of imports every run would pay again.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer

CRMSYNC = str(Path(sys.executable).parent / "crmsync")
SECRET = "s3cr3t-Pa55word-never-printed"


def cli_env(workdir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its CRM and destination settings, dlt's data folder in
    `workdir`, test-sized backoff, then `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    base["DLT_DATA_DIR"] = str(workdir / "dlt-data")
    base["SOURCES__CRM__HTTP__BACKOFF_FACTOR"] = "0.01"
    return {**base, **(env or {})}


class ForkServer:
    """`cli_forkserver.py`, started on first use, ended with this process."""

    def __init__(self) -> None:
        folder = self._folder = tempfile.mkdtemp(prefix="crmsync-forkserver-")
        self.path = os.path.join(folder, "socket")
        self._log = open(os.path.join(folder, "stderr"), "wb")  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("cli_forkserver.py")),
                self.path,
                CRMSYNC,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=folder,
            env=cli_env(Path(folder)),
        )
        assert self._process.stdout is not None
        ready = self._process.stdout.readline()
        assert ready == b"ready\n", Path(folder, "stderr").read_text()
        atexit.register(self.stop)

    def stop(self) -> None:
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()  # the closed stdin ends it
        self._process.wait(timeout=30)
        self._log.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def run(
        self, args: list[str], cwd: Path, env: dict[str, str], timeout: float, input: str
    ) -> subprocess.CompletedProcess[str]:
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        request = json.dumps({"args": args, "cwd": str(cwd), "env": env}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            socket.send_fds(conn, [len(request).to_bytes(8, "big")], [stdin_r, stdout_w, stderr_w])
            conn.sendall(request)
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
            answer = conn.makefile("rb")
            pid = int(answer.readline())
            with os.fdopen(stdin_w, "wb") as stdin:
                stdin.write(input.encode())
            output = self._read(pid, stdout_r, stderr_r, [CRMSYNC, *args], timeout)
            returncode = int(answer.readline())
        stdout, stderr = (b"".join(chunks).decode() for chunks in output)
        return subprocess.CompletedProcess([CRMSYNC, *args], returncode, stdout, stderr)

    @staticmethod
    def _read(
        pid: int, stdout: int, stderr: int, args: list[str], timeout: float
    ) -> tuple[list[bytes], list[bytes]]:
        """Both outputs to their ends, as `subprocess.run` reads them; the command killed
        if they have not ended within `timeout`."""
        chunks: dict[int, list[bytes]] = {stdout: [], stderr: []}
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as events:
            for fd in chunks:
                events.register(fd, selectors.EVENT_READ)
            while events.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    os.kill(pid, signal.SIGKILL)
                    for fd in chunks:
                        os.close(fd)
                    raise subprocess.TimeoutExpired(args, timeout)
                for key, _ in events.select(timeout=left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        events.unregister(key.fd)
                        os.close(key.fd)
        return chunks[stdout], chunks[stderr]


_fork_server: list[ForkServer] = []


def run_crmsync(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str = "",
) -> subprocess.CompletedProcess[str]:
    """`crmsync *args` in `workdir`, to its end; its output captured."""
    if not _fork_server:
        _fork_server.append(ForkServer())
    return _fork_server[0].run(list(args), workdir, cli_env(workdir, env), timeout, input)


def start_crmsync(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`crmsync *args` in `workdir`, left running (its output dropped)."""
    return subprocess.Popen(
        [CRMSYNC, *args],
        cwd=workdir,
        env=cli_env(workdir, env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def crm_env(server: DemoServer, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    """The settings that point the command at the bundled CRM `server`."""
    return {
        "SOURCES__CRM__BASE_URL": server.base_url,
        "SOURCES__CRM__USERNAME": DEFAULT_USERNAME,
        "SOURCES__CRM__PASSWORD": password,
    }
