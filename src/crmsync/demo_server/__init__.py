"""A bundled CRM that speaks the project's API contract, for the demo, tests and benchmarks.

It serves generated records over HTTP with Basic auth, lets tests edit those records,
freeze the clock and inject faults, and logs every API request it answered.
"""

from crmsync.demo_server.app import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    DemoServer,
    RequestRecord,
)
from crmsync.demo_server.data import DEFAULT_SIZES
from crmsync.demo_server.faults import Fault
from crmsync.demo_server.store import CrmStore, Mutation

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_SIZES",
    "DEFAULT_USERNAME",
    "CrmStore",
    "DemoServer",
    "Fault",
    "Mutation",
    "RequestRecord",
]
