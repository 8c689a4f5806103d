"""``python -m crmsync.demo_server``: the demo CRM as a process of its own.

A parent process learns the port from the one line printed on start-up,
``listening on http://127.0.0.1:PORT``, which makes ``--port 0`` (any free port) usable.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from crmsync.demo_server.app import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer
from crmsync.demo_server.data import DEFAULT_SIZES, RESOURCES
from crmsync.demo_server.rate_limit import HEADER_STYLES, TokenBucket


def serve(server: DemoServer) -> None:
    """Serves `server` until SIGINT or SIGTERM; must run in the main thread (it installs
    handlers)."""
    stopping = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stopping.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with server:
            print(f"listening on {server.base_url}", flush=True)
            stopping.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve_options(options: dict[str, Any]) -> None:
    """Serves the demo CRM that command-line `options` describe: one per resource (how many to
    generate), `rate_limit`, `burst` and `rate_headers` (its token bucket), and the others
    named as `DemoServer`'s own (`crmsync serve` and `python -m crmsync.demo_server`)."""
    options = dict(options)
    sizes = {resource: options.pop(resource) for resource in RESOURCES}
    rate, burst, headers = (options.pop(name) for name in ("rate_limit", "burst", "rate_headers"))
    bucket = TokenBucket(rate, burst, headers) if rate else None
    serve(DemoServer(sizes=sizes, rate_limit=bucket, **options))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m crmsync.demo_server",
        description="Serve the bundled demo CRM until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    for resource in RESOURCES:
        parser.add_argument(
            f"--{resource}",
            type=int,
            default=DEFAULT_SIZES[resource],
            metavar="N",
            help=f"how many {resource} to generate (default {DEFAULT_SIZES[resource]})",
        )
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=0.0, help="requests/s; 0: none")
    parser.add_argument("--burst", type=int, default=10, help="requests at once (default 10)")
    parser.add_argument("--rate-headers", choices=sorted(HEADER_STYLES))
    serve_options(vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
