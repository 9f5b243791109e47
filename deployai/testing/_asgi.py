"""A plain ASGI adapter over `Emulator.handle`, served by uvicorn in `EmulatorServer`.

A cut stream has to drop the connection in the middle of the body, and ASGI has no message for that:
the app raises `StreamCutError` after the last piece, which makes the server close the connection
(uvicorn does). uvicorn logs such an exception as an error; `hide_expected_server_errors()`
filters out those records, and those of the tasks it cancels itself when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio

from ._clock import VirtualClock

if TYPE_CHECKING:
    from ._emulator import Emulator
    from ._wire import EmulatorResponse

__all__ = ["EmulatorASGIApp", "StreamCutError", "hide_expected_server_errors"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


class StreamCutError(Exception):
    """Raised by the app on purpose, after the last piece of a cut stream, so that the server drops the connection."""


class _HideExpectedServerErrors(logging.Filter):
    # A cancellation of the emulator's app is the server's own doing as it stops: past its graceful
    # wait (a request whose body is still arriving), or at a second Ctrl+C, which also cancels the
    # app's lifespan. uvicorn says so in a line of its own; the traceback of each cancelled task tells
    # nothing more. Another app's (the user's own, served by uvicorn in the same tests) keeps its own.
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        _, exc, trace = record.exc_info
        if isinstance(exc, StreamCutError):
            return False
        return not (isinstance(exc, asyncio.CancelledError) and _through_this_package(trace))


def _through_this_package(trace: TracebackType | None) -> bool:
    """Whether a traceback passes through the emulator's own code."""
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIRECTORY):
            return True
        trace = trace.tb_next
    return False


_PACKAGE_DIRECTORY: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


def hide_expected_server_errors(logger_name: str = "uvicorn.error") -> None:
    """Keep the server's log free of the errors it causes on purpose (other errors still show).

    Those are the deliberate `StreamCutError`s and the tracebacks of the tasks uvicorn cancels when it stops.
    """
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _HideExpectedServerErrors) for f in logger.filters):
        logger.addFilter(_HideExpectedServerErrors())


def _request_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else str(scope["path"])
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _request_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(response: EmulatorResponse, send: Send, sleep: Callable[[float], Awaitable[Any]]) -> None:
    if response.delay:
        await sleep(response.delay)
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers],
        }
    )
    for delay, data in response.pieces():
        if delay:
            await sleep(delay)
        await send({"type": "http.response.body", "body": data, "more_body": True})
    if not response.abort:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _waiting_also_on(clock: VirtualClock) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        await anyio.sleep(seconds)
        clock.advance(seconds)

    return sleep


class EmulatorASGIApp:
    """An ASGI 3 application answering HTTP requests with an `Emulator` (lifespan supported, no websockets).

    When the client disconnects during a stall or a stream, the response stops at once. A server
    that shuts down calls `finish_now()` first, so that the answers in progress end whole.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        clock = emulator.clock
        # Over HTTP the clients keep real time, whatever the emulator's clock: a stall must still time
        # them out. On a `VirtualClock` each wait also moves it, as it does in-process.
        self._sleep: Callable[[float], Awaitable[Any]] = anyio.sleep
        if isinstance(clock, VirtualClock):
            self._sleep = _waiting_also_on(clock)
        self._finishing = False
        self._pauses: set[anyio.CancelScope] = set()  # the waits of the responses in progress

    def finish_now(self) -> None:
        """Let every response in progress, and any that comes later, go on without its waits.

        For a server that is shutting down: stalls end, and streams send their remaining chunks at
        once, so that each client gets its whole answer and the server's connections close soon.
        Without it a server waits out its graceful shutdown, then cancels the responses, which
        leaves their clients an incomplete answer and its log a traceback. Call it on the server's
        event loop (`EmulatorServer` and `python -m deployai.testing serve` do).
        """
        self._finishing = True
        for pause in self._pauses:
            pause.cancel()

    async def _pause(self, seconds: float) -> None:
        if self._finishing:
            return
        with anyio.CancelScope() as pause:
            self._pauses.add(pause)
            try:
                await self._sleep(seconds)
            finally:
                self._pauses.discard(pause)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"The DeployAI emulator serves HTTP only, not {scope['type']!r}.")
        body = await _read_body(receive)
        if body is None:
            return
        response = self.emulator.handle(scope["method"], _request_path(scope), _request_headers(scope), body)
        finished = False
        async with anyio.create_task_group() as group:

            async def stop_on_disconnect() -> None:
                # After the body, the next message can only be the disconnect.
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stop_on_disconnect)
            await _send(response, send, self._pause)
            finished = True
            group.cancel_scope.cancel()
        if finished and response.abort:
            raise StreamCutError("The emulator cut this stream on purpose (Emulator.cut_stream_after).")

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
