"""How every example gets its client: the real API when `DEPLOYAI_API_KEY` is set, else the local emulator.

Not part of the SDK: a few lines shared by the examples so that each runs anywhere, offline, with no key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from deployai import AsyncDeployAI, DeployAI


@contextmanager
def base_url_and_key(token_latency: float = 0.0, **emulator: Any) -> Iterator[tuple[str | None, str | None]]:
    """Yield (base_url, api_key): (None, None) for the real API, or those of a local emulator it starts.

    `emulator` holds options of that emulator (a small rate-limit window, for instance).
    """
    if os.environ.get("DEPLOYAI_API_KEY"):
        yield None, None
        return
    from deployai.testing import Emulator, EmulatorServer

    with EmulatorServer(Emulator(token_latency=token_latency, **emulator)) as server:
        print(f"DEPLOYAI_API_KEY is not set: using the local DeployAI emulator at {server.base_url}")
        yield server.base_url, "sk-emulator-example"


def emulator_fault(base_url: str | None, **fault: Any) -> None:
    """Against the local emulator only: add a fault through its control API; against the real API, nothing.

    `fault` is the body of `POST /_emulator/faults` (see docs/emulator.md), for example
    `fault="fail", status=503`: a way for an example to show what the SDK does when the API misbehaves.
    """
    if base_url is not None:
        httpx.post(base_url.removesuffix("/v1") + "/_emulator/faults", json=fault).raise_for_status()


@contextmanager
def example_client(token_latency: float = 0.0) -> Iterator[DeployAI]:
    """A `DeployAI` client for an example, closed afterwards."""
    with base_url_and_key(token_latency) as (base_url, api_key), DeployAI(base_url=base_url, api_key=api_key) as client:
        yield client


@contextmanager
def example_async_client(token_latency: float = 0.0) -> Iterator[AsyncDeployAI]:
    """An `AsyncDeployAI` client for an example; close it with `await client.aclose()` (or `async with`)."""
    with base_url_and_key(token_latency) as (base_url, api_key):
        yield AsyncDeployAI(base_url=base_url, api_key=api_key)
