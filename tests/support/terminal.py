"""A command run on a pseudo-terminal of a given size, as a person at a terminal runs it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pyte


def run_in_terminal(
    argv: list[str], cwd: Path, env: dict[str, str], columns: int = 80, timeout: float = 120
) -> tuple[int, str]:
    """Runs `argv` with its stdout and stderr on a terminal `columns` wide; returns the exit
    code and everything written to the terminal."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**env, "COLUMNS": str(columns), "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the follower side closed: the process has ended
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=10), output.decode(errors="replace")


def screen(output: str, columns: int = 80, rows: int = 24) -> list[str]:
    """The terminal's screen once `output` was written to it, as a person sees it (pyte plays
    the control sequences: cursor moves, erased lines, wrapping at the right margin)."""
    terminal = pyte.Screen(columns, rows)
    pyte.Stream(terminal).feed(output.replace("\n", "\r\n"))
    return [line.rstrip() for line in terminal.display]
