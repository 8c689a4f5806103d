"""Client for the demo server's control API, for processes that do not own the server.

The CLI runs the server in one process and the sync in another; this is how the second
edits records or injects faults in the first. Sample exchange::

    POST /_control/mutate {"resource": "contacts", "create": 2, "update": 1, "delete": 0}
    200 {"created": [1201, 1202], "updated": [17], "deleted": []}
"""

from __future__ import annotations

import dataclasses
from typing import Any

import requests

from crmsync.demo_server.faults import Fault

_TIMEOUT_SECONDS = 30


def mutate(
    base_url: str,
    username: str,
    password: str,
    resource: str,
    create: int = 0,
    update: int = 0,
    delete: int = 0,
) -> dict[str, Any]:
    """Returns the touched ids: ``{"created": [...], "updated": [...], "deleted": [...]}``."""
    response = requests.post(
        f"{base_url.rstrip('/')}/_control/mutate",
        json={"resource": resource, "create": create, "update": update, "delete": delete},
        auth=(username, password),
        timeout=_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def add_fault(base_url: str, username: str, password: str, fault: Fault) -> None:
    response = requests.post(
        f"{base_url.rstrip('/')}/_control/faults",
        json=dataclasses.asdict(fault),
        auth=(username, password),
        timeout=_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
