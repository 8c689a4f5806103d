"""A process that has imported `crmsync.cli` and forks a `crmsync` command for each request:
`tests.support.cli.run_crmsync` runs the command through it, in a process of its own (its own
cwd, environment, stdin, stdout, stderr and exit code) without paying for the imports again.

Run as a script by `tests.support.cli` (never imported by a test): `python cli_forkserver.py
SOCKET ARGV0`. It imports crmsync's command and nothing of it runs: no setting is read, no
folder looked at, until a forked command runs in the folder and environment it is given. It
ends when its stdin (a pipe from the test process) closes.

A request over SOCKET: the command's stdin, stdout and stderr as file descriptors, with a JSON
document (8 bytes of length first) of its `args`, `cwd` and `env`. The answer: two lines, the
command's pid, then its exit code as `subprocess` reports one (minus a signal's number).
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any


def receive_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the test process closed the request")
        data += chunk
    return data


def exit_code(code: Any) -> int:
    """What Python's own exit makes of `SystemExit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


Command = Callable[[], Any]


def run_command(main: Command, argv0: str, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the `crmsync` script with `request`'s folder, environment,
    arguments and standard streams; never returns."""
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    sys.argv = [argv0, *request["args"]]
    try:
        code = exit_code(main())
    except SystemExit as exited:
        code = exit_code(exited.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def supervise(
    main: Command, argv0: str, conn: socket.socket, request: dict[str, Any], fds: list[int]
) -> None:
    """In a forked child: fork the command, answer its pid, wait for it, answer its exit code;
    never returns. (The server goes back to accepting at once.)"""
    try:
        pid = os.fork()
        if pid == 0:
            conn.close()
            run_command(main, argv0, request, fds)
        for fd in fds:
            os.close(fd)
        conn.sendall(f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    finally:
        os._exit(0)


def serve(main: Command, path: str, argv0: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    events = selectors.DefaultSelector()
    events.register(listener, selectors.EVENT_READ)
    events.register(0, selectors.EVENT_READ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        ready = events.select(timeout=1.0)
        while True:  # reap the supervisors that ended
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        for key, _ in ready:
            if key.fileobj == 0:
                if not os.read(0, 1024):
                    return  # the test process is gone
                continue
            conn, _ = listener.accept()
            with conn:
                header, fds, _, _ = socket.recv_fds(conn, 8, 3)
                if len(header) < 8:
                    header += receive_exactly(conn, 8 - len(header))
                request = json.loads(receive_exactly(conn, int.from_bytes(header, "big")))
                sys.stdout.flush()
                sys.stderr.flush()
                if os.fork() == 0:
                    listener.close()
                    events.close()
                    supervise(main, argv0, conn, request, fds)
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    sys.path.pop(0)  # this folder: a command sees the path the `crmsync` script sees
    from crmsync.cli import main

    serve(main, sys.argv[1], sys.argv[2])
