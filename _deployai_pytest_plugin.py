"""pytest fixtures for code that uses deployai, loaded automatically once deployai is installed.

Fixtures (each function-scoped, fresh per test):

- `deployai_emulator`: a new `deployai.testing.Emulator` on a `VirtualClock`, with no rate limit;
  script replies and faults on it and read its `requests`. Change its options with the marker
  `@pytest.mark.deployai_emulator(rate_limit=5, token_latency=0.05, ...)` (any `Emulator` argument).
- `deployai_clock`: that emulator's `VirtualClock`: latency, stalls and the clients' waits between
  retries move it instead of taking real time; `advance()` it to end a rate-limit window.
- `deployai_client`: a `deployai.DeployAI` wired in-process to `deployai_emulator` (no sockets),
  closed after the test.
- `deployai_async_client`: an `AsyncDeployAI` wired the same way. It is an async fixture run by
  anyio's pytest plugin (installed with httpx): use it from tests marked `@pytest.mark.anyio`.
- `deployai_emulator_server`: a running `deployai.testing.EmulatorServer` on loopback serving
  `deployai_emulator`, for clients that need a real URL (`.base_url`); needs
  `pip install "deployai[emulator]"`.

```python
def test_retries_a_503(deployai_emulator, deployai_client):
    deployai_emulator.fail_next(503, headers={"retry-after": "30"})
    models = deployai_client.models.list()
    assert len(models) == 7
    assert deployai_emulator.statuses == [503, 200]  # and no real time was spent waiting the 30 s
```

Every pytest run of anyone who installs deployai loads this module, so it lives outside the
`deployai` package and imports nothing of it: deployai and uvicorn are imported by the fixtures that
need them, when a test uses one. `deployai.testing.pytest_plugin` re-exports it, for
`pytest_plugins = [...]` where plugin autoloading is off (`PYTEST_DISABLE_PLUGIN_AUTOLOAD`); with
autoloading on as well, pytest registers both, which is harmless (the marker is listed twice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from deployai import AsyncDeployAI, DeployAI
    from deployai.testing import Emulator, EmulatorServer, VirtualClock

__all__ = [
    "deployai_async_client",
    "deployai_client",
    "deployai_clock",
    "deployai_emulator",
    "deployai_emulator_server",
    "pytest_configure",
]


def pytest_configure(config: pytest.Config) -> None:
    """Register the `deployai_emulator` marker, so that `--strict-markers` accepts it."""
    config.addinivalue_line(
        "markers",
        "deployai_emulator(**options): Emulator options for the deployai_emulator fixture (rate_limit=5, ...)",
    )


@pytest.fixture
def deployai_emulator(request: pytest.FixtureRequest) -> Emulator:
    """A fresh DeployAI emulator on a virtual clock, not rate-limited unless the test's marker says so."""
    from deployai.testing import Emulator, VirtualClock

    options: dict[str, object] = {"rate_limit": None, "clock": VirtualClock()}
    # Markers from the module, then the class, then the test: the closest one wins for each option.
    for marker in reversed(list(request.node.iter_markers("deployai_emulator"))):
        if marker.args:
            raise TypeError("@pytest.mark.deployai_emulator takes Emulator options as keywords, such as rate_limit=5.")
        options.update(marker.kwargs)
    clock = options.get("clock")
    if isinstance(clock, VirtualClock):
        # A marker's arguments are made once, for every test it marks (each case of a parametrized
        # test, every rerun): each test starts from the clock as given, not as the last one left it.
        options["clock"] = VirtualClock(start=clock())
    return Emulator(**options)  # type: ignore[arg-type]


@pytest.fixture
def deployai_clock(deployai_emulator: Emulator) -> VirtualClock:
    """The `VirtualClock` of `deployai_emulator` (a `TypeError` if the marker gave it another clock)."""
    from deployai.testing import VirtualClock

    clock = deployai_emulator.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError(f"deployai_emulator runs on {clock!r}, not a VirtualClock.")
    return clock


@pytest.fixture
def deployai_client(deployai_emulator: Emulator) -> Iterator[DeployAI]:
    """A `DeployAI` client answered in-process by `deployai_emulator`."""
    with deployai_emulator.client() as client:
        yield client


@pytest.fixture
async def deployai_async_client(deployai_emulator: Emulator, anyio_backend: object) -> AsyncIterator[AsyncDeployAI]:
    """An `AsyncDeployAI` client answered in-process by `deployai_emulator` (for `@pytest.mark.anyio` tests)."""
    async with deployai_emulator.async_client() as client:
        yield client


@pytest.fixture
def deployai_emulator_server(deployai_emulator: Emulator) -> Iterator[EmulatorServer]:
    """`deployai_emulator` served over HTTP on 127.0.0.1, on a free port."""
    from deployai.testing import EmulatorServer

    with EmulatorServer(deployai_emulator) as server:
        yield server
