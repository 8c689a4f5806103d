"""``python -m crmsync.demo_server``: the demo CRM as a process of its own.

A parent process learns the port from the one line printed on start-up,
``listening on http://127.0.0.1:PORT``, which makes ``--port 0`` (any free port) usable.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Mapping

from crmsync.demo_server.app import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer
from crmsync.demo_server.data import DEFAULT_SIZES, RESOURCES
from crmsync.demo_server.rate_limit import HEADER_STYLES, TokenBucket


def serve(
    host: str,
    port: int,
    seed: int,
    sizes: Mapping[str, int] | None,
    username: str,
    password: str,
    latency_ms: float,
    rate_limit: float = 0.0,
    burst: int = 10,
    rate_headers: str | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM; must run in the main thread (it installs handlers).

    ``rate_limit`` requests a second (0: none), ``burst`` at once, ``rate_headers`` as in
    `crmsync.demo_server.rate_limit`.
    """
    stopping = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stopping.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server = DemoServer(
            sizes=dict(sizes or {}),
            seed=seed,
            username=username,
            password=password,
            host=host,
            port=port,
            latency_ms=latency_ms,
            rate_limit=TokenBucket(rate_limit, burst, rate_headers) if rate_limit else None,
        )
        with server:
            print(f"listening on {server.base_url}", flush=True)
            stopping.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        seed=args.seed,
        sizes={resource: getattr(args, resource) for resource in RESOURCES},
        username=args.username,
        password=args.password,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        burst=args.burst,
        rate_headers=args.rate_headers,
    )


if __name__ == "__main__":
    main()
