"""The hostile-CRM tests' fixture: a one-behaviour server, stopped after the test (their helpers
are in `tests.support.hostile_runs`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.support.hostile import Answer, HostileServer


@pytest.fixture
def hostile() -> Iterator[Callable[[Answer], HostileServer]]:
    """Starts a `HostileServer` answering with the given function; stops it after the test."""
    with ExitStack() as servers:
        yield lambda answer: servers.enter_context(HostileServer(answer))
