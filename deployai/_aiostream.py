"""The network stream of the SDK's own async pools under asyncio: a protocol that httpcore reads directly.

httpcore's asyncio backend goes through anyio. For each read it enters a cancel scope with its own
timer, maps exceptions through two generator context managers, turns the socket's reading on before
it waits and off after (two `epoll_ctl` calls); a read that finds data waiting still waits a turn of
the loop, and so does each write. All of it is per read and write, and all of it stays alive while
a call waits for its answer, for the collector to walk through. Here the event loop reads the socket
into a buffer as data arrives; a read takes from it, or waits on one future with one timer. With
1,000 calls in flight this took a fifth off the client's CPU per call (see `benchmarks/README.md`).

Used by the pools `_pools` makes for the SDK's own clients, on asyncio's own event loops, for direct
connections (not through a proxy, whose tunnels may need TLS inside TLS). Under another async
library (trio), on another event loop (uvloop, whose connect takes other arguments), on Python
3.10 (whose `asyncio.wait_for` can swallow a cancel that comes as the wait ends), or with socket
options set, httpcore's own backend is used, as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import sys
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

import httpcore

from ._sockets import readable

__all__ = ["AsyncioStream", "connect"]

# Unread bytes past which the socket is no longer read (the kernel's buffers, then the server, wait),
# and below which it is read again: a consumer slower than its server holds at most about this much.
_HIGH_WATER: Final = 256 * 1024
_LOW_WATER: Final = 64 * 1024
# As anyio's: how long a connect to one address of a host waits before the next address is tried too.
_HAPPY_EYEBALLS_DELAY: Final = 0.25

_T = TypeVar("_T")


async def _within(awaitable: Awaitable[_T], timeout: float | None) -> _T:
    """Await `awaitable` for at most `timeout` seconds (raises `TimeoutError`); a cancel is never lost."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)  # 3.10: the SDK's pools do not connect through here


class _Protocol(asyncio.Protocol):
    """What the event loop hands over for one connection: its data, its end, and whether writes may go on."""

    __slots__ = (
        "at_eof", "buffer", "buffered", "drained", "error", "lost", "reading_paused", "transport", "waiter",
        "writing_paused",
    )  # fmt: skip

    def __init__(self) -> None:
        self.buffer: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.at_eof = False
        self.lost = False  # the loop let go of the transport: it is closed
        self.error: BaseException | None = None
        self.transport: Any = None  # the TLS transport once TLS has started (`AsyncioStream.start_tls`)
        self.waiter: asyncio.Future[bool] | None = None  # a read's
        self.drained: asyncio.Future[bool] | None = None  # a write's, while the transport's buffer is full
        self.reading_paused = False
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.waiter)

    def eof_received(self) -> bool:
        self.at_eof = True
        _wake(self.waiter)
        return False  # the transport closes itself (no half-open connections in HTTP/1.1 here)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.at_eof = True
        self.error = exc
        _wake(self.waiter)
        _wake(self.drained)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drained)

    def take(self, max_bytes: int) -> bytes:
        """At most `max_bytes` of the buffer (which has some), reading the socket again once it is low."""
        buffer = self.buffer
        data = buffer.popleft()
        if len(data) > max_bytes:
            buffer.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self.buffered -= len(data)
        if self.reading_paused and self.buffered <= _LOW_WATER:
            self.reading_paused = False
            self.transport.resume_reading()
        return data


def _wake(waiter: asyncio.Future[bool] | None, happened: bool = True) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(happened)


def _expire(waiter: asyncio.Future[bool]) -> None:
    _wake(waiter, False)


async def _until(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], timeout: float | None) -> bool:
    """Wait until `waiter` is woken: True, or False once `timeout` (None: no limit) passed first."""
    timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()


class AsyncioStream:
    """One connection of an httpcore pool, as httpcore's `AsyncNetworkStream` (see the module)."""

    __slots__ = ("__weakref__", "_loop", "_protocol", "_socket", "_transport")  # held weakly by `_pools.Cut`

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._loop = loop
        self._transport: Any = transport
        self._protocol = protocol
        self._socket = transport.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """At most `max_bytes` received; b"" once the server closed the connection."""
        protocol = self._protocol
        if not protocol.buffer:
            if not protocol.at_eof:
                waiter = protocol.waiter = self._loop.create_future()
                try:
                    received = await _until(self._loop, waiter, timeout)
                finally:
                    protocol.waiter = None
                if not received:
                    raise httpcore.ReadTimeout("The read timed out.")
            if not protocol.buffer:
                error = protocol.error
                if error is not None:
                    raise httpcore.ReadError(str(error) or type(error).__name__) from error
                return b""
        return protocol.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Hand `buffer` to the transport, waiting while its own buffer is full."""
        if not buffer:
            return
        transport = self._transport
        if transport.is_closing():
            raise httpcore.WriteError("The connection is closed.")
        transport.write(buffer)
        if transport.is_closing():  # the send failed at once (the server reset the connection)
            raise httpcore.WriteError("The connection was closed while writing.")
        protocol = self._protocol
        if protocol.writing_paused:  # the transport's buffer is full: the server reads slower than this writes
            waiter = protocol.drained = self._loop.create_future()
            try:
                drained = await _until(self._loop, waiter, timeout)
            finally:
                protocol.drained = None
            if not drained:
                raise httpcore.WriteTimeout("The write timed out.")
            if transport.is_closing():
                raise httpcore.WriteError("The connection was closed while writing.")

    def __del__(self) -> None:
        # Dropped unclosed, with its pool (a client dropped unclosed): the event loop reads the socket
        # for as long as it is open, and would hold the connection for the loop's life. The collector
        # may run in any thread: the loop closes it.
        transport = self._transport
        if not transport.is_closing():
            with contextlib.suppress(RuntimeError):  # its loop is closed: its transports went with it
                self._loop.call_soon_threadsafe(transport.abort)

    async def aclose(self) -> None:
        """Close the connection at once, as httpcore's backend does (no TLS close notice is waited for)."""
        # A transport that closed itself after the server half-closed, once its last bytes were
        # written, is one the loop let go of: `abort()` would fail on it.
        if not self._loop.is_closed() and not self._protocol.lost:  # a closed loop's sockets are closed
            self._transport.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> AsyncioStream:
        """Make the connection TLS; returns this stream, whose reads and writes are then through TLS."""
        # Nothing more is read in clear text: bytes from here on go to the TLS layer, which refuses
        # anything not TLS. Bytes read already are no part of the answer: anyone on the way could
        # have written them, and read after the handshake they would pass for the server's.
        if not self._transport.is_closing():
            self._transport.pause_reading()
        if self._protocol.buffer:
            raise httpcore.ConnectError("The server sent data before the TLS handshake.")
        # A server that closed at once: `start_tls` on a transport closed already would wait for a
        # handshake that never comes, until the connect timeout.
        if self._protocol.at_eof or self._transport.is_closing():
            raise httpcore.ConnectError("The server closed the connection before the TLS handshake.")
        try:
            transport = await _within(
                self._loop.start_tls(self._transport, self._protocol, ssl_context, server_hostname=server_hostname),
                timeout,
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout("The TLS handshake timed out.") from None
        except (OSError, ssl.SSLError) as exc:  # the transport was closed by `start_tls`
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # the server closed the connection during the handshake (Python 3.10, 3.11)
            raise httpcore.ConnectError("The server closed the connection during the TLS handshake.")
        self._transport = self._protocol.transport = transport
        return self

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks of a stream: its socket, TLS object, addresses, and whether it is readable."""
        if info == "is_readable":  # data or the server's close, received already or waiting in the socket
            protocol = self._protocol
            return bool(protocol.buffer) or protocol.at_eof or readable(self._socket)
        if info == "socket":
            return self._socket
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        return None


async def connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int, timeout: float | None, local_address: str | None
) -> AsyncioStream:
    """Connect to `host` within `timeout`, with httpcore's backend's errors (its addresses raced: see `_race`)."""
    try:
        transport, protocol = await _within(_race(loop, host, port, local_address), timeout)
    except TimeoutError:
        raise httpcore.ConnectTimeout("The connect timed out.") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    return AsyncioStream(loop, transport, protocol)


_Connected = tuple[asyncio.Transport, _Protocol]


async def _race(loop: asyncio.AbstractEventLoop, host: str, port: int, local_address: str | None) -> _Connected:
    """Connect to one of `host`'s addresses: the next is tried too when one has not answered in 0.25 s.

    As anyio's happy eyeballs (RFC 8305), without asyncio's own race (`happy_eyeballs_delay`), which
    drops the socket that won unclosed when it is cancelled. Here each address is a connect of its
    own, which closes its socket when cancelled; one that connects after another won, or after the
    race was cancelled, is closed as it ends.
    """
    try:  # an address already (`127.0.0.1`, `::1`): no lookup, which the loop would send to a thread
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"No address found for {host!r}")
    local = None if local_address is None else (local_address, 0)
    attempts: list[asyncio.Task[_Connected]] = []
    winner: asyncio.Task[_Connected] | None = None
    try:
        for family, _, proto, _, address in infos:
            connecting = loop.create_connection(
                _Protocol, str(address[0]), int(address[1]), family=family, proto=proto, local_addr=local
            )
            attempts.append(loop.create_task(connecting))
            winner = await _first_connected(attempts, _HAPPY_EYEBALLS_DELAY)
            if winner is not None:
                return winner.result()
        while any(not attempt.done() for attempt in attempts):
            winner = await _first_connected(attempts, None)
            if winner is not None:
                return winner.result()
        raise attempts[-1].exception() or OSError(f"Could not connect to {host!r}")
    finally:
        for attempt in attempts:
            if attempt is not winner:
                attempt.cancel()
                attempt.add_done_callback(_close_connected)


async def _first_connected(
    attempts: list[asyncio.Task[_Connected]], delay: float | None
) -> asyncio.Task[_Connected] | None:
    """The first of `attempts` that connected, waiting up to `delay` (None: until all have ended); None if none."""
    pending = [attempt for attempt in attempts if not attempt.done()]
    if pending:
        await asyncio.wait(pending, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    for attempt in attempts:
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            return attempt
    return None


def _close_connected(attempt: asyncio.Task[_Connected]) -> None:
    """Close what a losing attempt connected; its failure is seen (asyncio would warn of one never retrieved)."""
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result()[0].abort()
