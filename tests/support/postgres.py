"""A real PostgreSQL server for the test session: installed if missing, on loopback, then removed.

`PostgresServer.start()` finds `initdb`/`pg_ctl` (on PATH or in Debian's
/usr/lib/postgresql/<version>/bin), installs Debian's `postgresql` package when they are missing
and we are root, creates a cluster in a fresh temp dir, starts it on 127.0.0.1 on a free port with
its unix socket in that dir, and creates the database. `stop()` stops it and removes the dir.
PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` system user that
the package creates, and every server command runs through `runuser -u postgres --`.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

DATABASE = "crmsync"
USER = "crmsync"
SYSTEM_USER = "postgres"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
# test-only durability: a crash loses nothing the suite needs, and each sync commits several times
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresUnavailable(RuntimeError):
    """The server could not be installed or started; the message says what to do."""


def find_bin_dir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: PATH first, then Debian's newest version."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    for pg_ctl in reversed(candidates):
        bin_dir = Path(pg_ctl).parent
        if (bin_dir / "initdb").exists():
            return bin_dir
    return None


def install() -> Path:
    """`apt-get install postgresql` (after `apt-get update` if the first try fails)."""
    if os.geteuid() != 0:
        raise PostgresUnavailable(
            "PostgreSQL's initdb/pg_ctl are missing and only root can install them:"
            " run `sudo apt-get install -y postgresql` (Debian/Ubuntu) and rerun the tests"
        )
    env = {**os.environ, **APT_ENV}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    first = subprocess.run(
        command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if first.returncode != 0:
        subprocess.run(
            ["apt-get", "update", "-q"], env=env, capture_output=True, stdin=subprocess.DEVNULL
        )
        second = subprocess.run(
            command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if second.returncode != 0:
            raise PostgresUnavailable(
                f"apt-get install postgresql failed:\n{second.stderr[-2000:]}"
            )
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("apt-get installed postgresql but initdb/pg_ctl are not found")
    return bin_dir


def _install_once() -> Path:
    """`install`, by one test process at a time (the suite runs in several, `pytest -n`):
    apt and dpkg take a lock of their own and fail the second at once."""
    with open(os.path.join(tempfile.gettempdir(), "crmsync-postgres-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return find_bin_dir() or install()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One throwaway cluster; `dsn` is a `postgresql://` URL dlt and psycopg2 both take."""

    bin_dir: Path | None = None
    root: Path | None = None
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    log: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def connect(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname=DATABASE
        )

    def fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def start(self) -> PostgresServer:
        self.bin_dir = find_bin_dir() or _install_once()
        # not under pytest's tmp dir: that is private to root, and the server runs as postgres
        self.root = Path(tempfile.mkdtemp(prefix="crmsync-postgres-"))
        try:
            self._init_cluster()
            self._start_server()
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        root, self.root = self.root, None
        if root is None:
            return
        if (root / "data" / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "-D", str(root / "data"), "-m", "immediate", "-w", "stop", check=False
            )
        shutil.rmtree(root, ignore_errors=True)

    def _init_cluster(self) -> None:
        assert self.root is not None
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"PostgreSQL refuses to run as root and there is no {SYSTEM_USER!r} user:"
                    " reinstall Debian's postgresql package, which creates it"
                ) from None
            shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)
            shutil.chown(password_file, SYSTEM_USER, SYSTEM_USER)
        self._run(
            "initdb",
            "-D",
            str(self.root / "data"),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        password_file.unlink()

    def _start_server(self) -> None:
        assert self.root is not None
        for _attempt in range(3):  # a free port may be taken between the probe and the bind
            self.port = free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.root}",
                    *(f"-c {s}" for s in FAST_SETTINGS),
                ]
            )
            started = self._run(
                "pg_ctl",
                "-D",
                str(self.root / "data"),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "30",
                "start",
                check=False,
            )
            if started.returncode == 0:
                return
        log = (self.root / "server.log").read_text(errors="replace")[-2000:]
        raise PostgresUnavailable(f"PostgreSQL did not start:\n{started.stdout}\n{log}")

    def _create_database(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                admin = psycopg2.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user=USER,
                    password=self.password,
                    dbname="postgres",
                )
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            admin.close()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=self.root or "/",
        )
        self.log.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
        if check and done.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed:\n{done.stdout}\n{done.stderr}")
        return done
