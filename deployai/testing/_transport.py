"""In-process httpx transports over `Emulator.handle`: no sockets, but real streamed bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._emulator import Emulator
    from ._wire import EmulatorResponse

__all__ = ["AsyncEmulatorTransport", "EmulatorTransport"]

_CUT_MESSAGE = "peer closed connection without sending complete message body (the emulator cut the stream)"


def _path(request: httpx.Request) -> str:
    return request.url.raw_path.decode("ascii")


class _SyncBody(httpx.SyncByteStream):
    """The pieces of one response, each sent after its delay; a cut body raises like a dropped connection."""

    def __init__(self, response: EmulatorResponse, request: httpx.Request, sleep: Callable[[float], None]) -> None:
        self._pieces = response.pieces()
        self._abort = response.abort
        self._request = request
        self._sleep = sleep

    def __iter__(self) -> Iterator[bytes]:
        for delay, data in self._pieces:
            if delay:
                self._sleep(delay)
            yield data
        if self._abort:
            raise httpx.RemoteProtocolError(_CUT_MESSAGE, request=self._request)


class _AsyncBody(httpx.AsyncByteStream):
    """The async twin of `_SyncBody`."""

    def __init__(
        self, response: EmulatorResponse, request: httpx.Request, sleep: Callable[[float], Awaitable[Any]]
    ) -> None:
        self._pieces = response.pieces()
        self._abort = response.abort
        self._request = request
        self._sleep = sleep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, data in self._pieces:
            if delay:
                await self._sleep(delay)
            yield data
        if self._abort:
            raise httpx.RemoteProtocolError(_CUT_MESSAGE, request=self._request)


class EmulatorTransport(httpx.BaseTransport):
    """An `httpx.BaseTransport` answered by an `Emulator` in the calling thread.

    Use it as `httpx.Client(transport=emulator.transport())`. Stalls, slow bodies and token latency are
    waited with `sleep` (`time.sleep` by default). httpx timeouts do not apply in-process: test
    timeouts against `EmulatorServer`.
    """

    def __init__(self, emulator: Emulator, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._emulator = emulator
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` with the emulator's response; its body streams piece by piece."""
        answer = self._emulator.handle(request.method, _path(request), request.headers, request.read())
        if answer.delay:
            self._sleep(answer.delay)
        return httpx.Response(
            answer.status, headers=answer.headers, stream=_SyncBody(answer, request, self._sleep), request=request
        )


class AsyncEmulatorTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` answered by an `Emulator` in the running event loop.

    Use it as `httpx.AsyncClient(transport=emulator.async_transport())`. Waits use `sleep`
    (`anyio.sleep` by default, so it runs under asyncio and trio).
    """

    def __init__(self, emulator: Emulator, *, sleep: Callable[[float], Awaitable[Any]] | None = None) -> None:
        if sleep is None:
            import anyio

            sleep = anyio.sleep
        self._emulator = emulator
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` with the emulator's response; its body streams piece by piece."""
        answer = self._emulator.handle(request.method, _path(request), request.headers, await request.aread())
        if answer.delay:
            await self._sleep(answer.delay)
        return httpx.Response(
            answer.status, headers=answer.headers, stream=_AsyncBody(answer, request, self._sleep), request=request
        )
