"""pytest fixtures for code that uses deployai, loaded automatically once deployai is installed.

Fixtures (each function-scoped, fresh per test):

- `deployai_emulator`: a new `deployai.testing.Emulator`; script faults on it and read its `requests`.
- `deployai_client`: a `deployai.DeployAI` wired in-process to `deployai_emulator` (no sockets),
  closed after the test.
- `deployai_async_client`: an `AsyncDeployAI` wired the same way. It is an async fixture run by
  anyio's pytest plugin (installed with httpx): use it from tests marked `@pytest.mark.anyio`.
- `deployai_emulator_server`: a running `deployai.testing.EmulatorServer` on loopback serving
  `deployai_emulator`, for clients that need a real URL (`.base_url`); needs
  `pip install "deployai[emulator]"`.

```python
def test_retries_a_503(deployai_emulator, deployai_client):
    deployai_emulator.fail_next(503, headers={"retry-after": "0"})
    models = deployai_client.models.list()
    assert len(models) == 7
    assert len(deployai_emulator.requests) == 2
```

Every pytest run of anyone who installs deployai loads this module, so it imports nothing heavy:
deployai and uvicorn are imported by the fixtures that need them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from deployai import AsyncDeployAI, DeployAI
    from deployai.testing import Emulator, EmulatorServer


@pytest.fixture
def deployai_emulator() -> Emulator:
    """A fresh DeployAI emulator."""
    from deployai.testing import Emulator

    return Emulator()


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
