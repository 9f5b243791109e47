"""Shared pieces of the tests over real loopback sockets: one emulator server per module, small pools."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deployai.testing import Emulator, EmulatorServer


# Imported by the test modules that use them; named apart so that the import is not shadowed by the
# parameters that receive them.
@pytest.fixture(scope="module", name="shared_server")
def shared_server_fixture() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(rate_limit=1_000_000)) as server:
        yield server


@pytest.fixture(name="server")
def server_fixture(shared_server: EmulatorServer) -> EmulatorServer:
    shared_server.emulator.reset()
    return shared_server


def small_pool(kind: str, max_connections: int, read_timeout: float = 10.0) -> Any:
    """An httpx client of `kind` with a small pool: a leaked connection shows up as a pool timeout, not a hang."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    timeout = httpx.Timeout(read_timeout, pool=5.0)
    return (httpx.Client if kind == "sync" else httpx.AsyncClient)(limits=limits, timeout=timeout)


def idle_connections(http_client: Any) -> int:
    """Connections of the pool that wait, open, for the next request."""
    return sum(1 for c in http_client._transport._pool.connections if c.is_idle())


def active_connections(http_client: Any) -> int:
    """Connections of the pool that serve a request right now."""
    return sum(1 for c in http_client._transport._pool.connections if not c.is_idle() and not c.is_closed())
