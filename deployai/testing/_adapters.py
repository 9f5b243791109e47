"""The ways to reach an emulator: in-process httpx transports, an ASGI app, and SDK clients wired to it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ._clock import VirtualClock

if TYPE_CHECKING:
    from .. import AsyncDeployAI, DeployAI
    from ._asgi import EmulatorASGIApp
    from ._emulator import Emulator
    from ._transport import AsyncEmulatorTransport, EmulatorTransport

__all__ = ["DEFAULT_TEST_API_KEY", "IN_PROCESS_BASE_URL", "Adapters", "follow_clock"]

IN_PROCESS_BASE_URL: Final = "https://emulator.invalid/v1"
DEFAULT_TEST_API_KEY: Final = "sk-emulator-test"


class Adapters:
    """The adapter half of `Emulator`: each adapter waits as the emulator's clock says (a `VirtualClock`: at once)."""

    _clock: Callable[[], float]  # mixed into `Emulator` only, which is what the adapters are given
    _client_key: str  # the key its clients send: one it accepts

    def transport(self, *, sleep: Callable[[float], None] | None = None) -> EmulatorTransport:
        """An `httpx.BaseTransport` that answers in-process (no sockets), streaming bodies piece by piece.

        Args:
            sleep: how to wait for stalls, slow bodies and token latency (default: the `VirtualClock`'s
                `sleep` when the emulator has one, else `time.sleep`).
        """
        from ._transport import EmulatorTransport

        clock = self._clock
        return EmulatorTransport(
            cast("Emulator", self), sleep=sleep or (clock.sleep if isinstance(clock, VirtualClock) else time.sleep)
        )

    def async_transport(self, *, sleep: Callable[[float], Awaitable[Any]] | None = None) -> AsyncEmulatorTransport:
        """An `httpx.AsyncBaseTransport` that answers in-process (no sockets), streaming bodies piece by piece.

        Args:
            sleep: an async function that waits that many seconds (default: the `VirtualClock`'s
                `asleep` when the emulator has one, else `anyio.sleep`).
        """
        from ._transport import AsyncEmulatorTransport

        clock = self._clock
        return AsyncEmulatorTransport(
            cast("Emulator", self), sleep=sleep or (clock.asleep if isinstance(clock, VirtualClock) else None)
        )

    def asgi_app(self) -> EmulatorASGIApp:
        """A plain ASGI application serving this emulator (what `EmulatorServer` runs under uvicorn)."""
        from ._asgi import EmulatorASGIApp

        return EmulatorASGIApp(cast("Emulator", self))

    def _client_defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"api_key": self._client_key, "base_url": IN_PROCESS_BASE_URL, **kwargs}

    def client(self, **kwargs: Any) -> DeployAI:
        """A `DeployAI` client wired to this emulator in-process; close it (or use `with`) when done.

        With a `VirtualClock`, the client also waits between retries on it.

        Args:
            **kwargs: arguments of `DeployAI` (`api_key` defaults to `"sk-emulator-test"`, or to the
                first of the emulator's `api_keys`; `base_url` to `https://emulator.invalid/v1`, a
                name that never resolves). Not `http_client`.
        """
        import httpx

        from .. import DeployAI

        _refuse_http_client(kwargs)
        client = DeployAI(**self._client_defaults(kwargs), http_client=httpx.Client(transport=self.transport()))
        client._http.wired_in_process()  # closed with the client, kept by a forked child, not pickled
        return follow_clock(client, self._clock)

    def async_client(self, **kwargs: Any) -> AsyncDeployAI:
        """An `AsyncDeployAI` client wired to this emulator in-process; `await client.aclose()` when done.

        Args:
            **kwargs: arguments of `AsyncDeployAI`, with the defaults of `client()`.
        """
        import httpx

        from .. import AsyncDeployAI

        _refuse_http_client(kwargs)
        transport = self.async_transport()
        client = AsyncDeployAI(**self._client_defaults(kwargs), http_client=httpx.AsyncClient(transport=transport))
        client._http.wired_in_process()
        return follow_clock(client, self._clock)


_Client = TypeVar("_Client", "DeployAI", "AsyncDeployAI")


def follow_clock(client: _Client, clock: Callable[[], float]) -> _Client:
    """`client`, waiting between retries on `clock` when it is a `VirtualClock` (no real time passes)."""
    if isinstance(clock, VirtualClock):
        from .. import DeployAI

        if isinstance(client, DeployAI):
            client._http.sleep = clock.sleep
        else:
            client._http.sleep = clock.asleep
    return client


def _refuse_http_client(kwargs: Mapping[str, Any]) -> None:
    if "http_client" in kwargs:
        raise TypeError("client() makes its own http_client wired to the emulator; use transport() for your own.")
