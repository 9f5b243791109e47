"""The transport of the httpx clients the SDK owns: one client's connections over many small pools.

httpcore's connection pool (httpcore 1.0) does work that grows with the square of its connections
on every request and every response close. Each pass walks all its connections. For each idle one,
it counts all of them again, and it polls each socket. Measured over loopback with one
`AsyncDeployAI` sending 2,000 calls: client CPU per call was 1.2 ms at 8 concurrent, 2.3 ms at 64,
5.2 ms at 256 and 6.4 ms at 1,000. Throughput fell from 770 to 157 calls/s while the server idled,
and a profile put over 60% of the time in that pass. The same pool also closes an idle connection
whenever it holds more connections than its keep-alive limit, even if most of them are busy. Past
100 connections, a finished call then often closes its connection for the next call to open a new one.

A pool of `POOL_CONNECTIONS` stays cheap, so `SpreadTransport` spreads the requests over up to
`DEFAULT_MAX_CONNECTIONS / POOL_CONNECTIONS` such pools. Each is an `httpx.HTTPTransport` that keeps
all its connections alive. The pools are made as they are needed:
- A request goes to the first pool with fewer than `POOL_CONNECTIONS` requests in flight. One caller
  at a time keeps reusing one connection, and 64 concurrent callers use 8 pools.
- When every pool is full, the request waits in the least busy one, as httpcore would make it wait.
- A pool that has had nothing in flight for the keep-alive expiry is closed whole. All its connections
  had expired anyway, and nothing else would look at them again.
- A pool in which a response's close was cut short, or which a cancelled request left with a busy
  connection no request holds (`_stranded`), is sent nothing more, and is closed whole once its
  last request has ended; a new pool takes its place. asyncio's cancel goes through httpcore's
  shield against cancelling: a task cancelled while it waits inside that close (for the
  connection's lock) leaves its connection checked out for good, and once a pool's every connection
  is, the calls sent to it wait forever. With tasks cancelled at random moments of 16 calls at
  once, 300 rounds left 16 connections so; a client that sent nothing more to such a pool kept
  working.
The choosing (`_Spread`) is shared by both shells; only they send and close.

Making the first pool costs what making an httpx client costs: httpx imports httpcore (with h11
and anyio) and, for https, loads the CA certificates. Both are done at the first request, not when
a client is made. A TLS context is made once per process for each certificate setting and shared,
as it holds nothing per connection. Proxies and certificate settings are read from the environment
when the client is made (`Settings`), as httpx reads them.

A blocking stream that has read `data: [DONE]` reads the end of its body, so that its connection
serves the next call (without it, httpcore closes the connection, and the next call opens a new one
and, on https, makes a new TLS handshake). A blocking read cannot be given a deadline through httpx
once its response has started, so the SDK's blocking pools (and the proxies it mounts) read through
`_BoundedStream`, whose reads end by a deadline set for the thread (`reads_end_within`).

Under asyncio (its own event loops), the async pools' direct connections are `_aiostream`'s: the
event loop reads them into a buffer, without anyio's work for each read and write. Through a proxy,
under trio or uvloop, they are httpcore's own, wrapped by `_AsyncStream`.

A client given `http_client=` is left as it is: its pool is the user's.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import httpx

try:  # how httpx reads proxies from the environment, so that the SDK's own clients read them alike
    from httpx._utils import get_environment_proxies as _environment_proxies
except ImportError:  # pragma: no cover - a later httpx: its own client is made instead (see proxy_mounts)
    _environment_proxies = None  # type: ignore[assignment]

from ._config import is_loopback
from ._constants import DEFAULT_MAX_CONNECTIONS, KEEPALIVE_EXPIRY_SECONDS, POOL_CONNECTIONS
from ._exceptions import THROUGH, InvalidParameterError
from ._sockets import readable

if TYPE_CHECKING:
    import asyncio
    import contextvars

    import httpcore

__all__ = [
    "AsyncLoopbackDirect",
    "AsyncSpreadTransport",
    "Cut",
    "LoopbackDirect",
    "Settings",
    "SpreadTransport",
    "bounded",
    "cut_by",
    "reads_end_within",
]

_T = TypeVar("_T", httpx.BaseTransport, httpx.AsyncBaseTransport)
_S = TypeVar("_S")
_Transport = TypeVar("_Transport", bound="httpx.BaseTransport | httpx.AsyncBaseTransport")

_POOLS: Final = -(-DEFAULT_MAX_CONNECTIONS // POOL_CONNECTIONS)
# Every connection of a pool may stay alive: with a smaller keep-alive limit, httpcore closes idle
# connections of a pool that is busy (see above). Idle pools are closed by `_Spread.stale` instead.
_POOL_LIMITS: Final = httpx.Limits(
    max_connections=POOL_CONNECTIONS,
    max_keepalive_connections=POOL_CONNECTIONS,
    keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
)

# A module-level name so that tests can move the pools' clock, and only theirs.
_now = time.monotonic

_tls_lock = threading.Lock()
_tls: dict[tuple[str | None, str | None] | None, ssl.SSLContext] = {}


def _after_fork_in_child() -> None:
    global _tls_lock
    # A thread of the parent may have held the lock at the fork; it does not exist in the child.
    _tls_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, where there is no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class Settings:
    """What httpx reads from the environment when a client is made, read once when the SDK's client is made.

    Attributes:
        proxies: the proxies by URL pattern (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, ...), None for a
            host that goes direct; None as a whole if this httpx does not say how it reads them.
        certificates: `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    """

    proxies: dict[str, str | None] | None
    certificates: tuple[str | None, str | None]

    def __repr__(self) -> str:
        # Shown in tracebacks with their locals: a proxy's user and password are a secret.
        proxies = self.proxies and {pattern: url and _without_user(url) for pattern, url in self.proxies.items()}
        return f"Settings(proxies={proxies!r}, certificates={self.certificates!r})"

    @classmethod
    def read(cls) -> Settings:
        """The settings in the environment now."""
        return cls(None if _environment_proxies is None else _environment_proxies(), _certificates())


def _certificates() -> tuple[str | None, str | None]:
    """`SSL_CERT_FILE` and `SSL_CERT_DIR`, as this httpx reads them."""
    cert_file, cert_dir = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if _PASSES_OVER_MISSING_CERTIFICATES:
        # httpx before 0.28 uses the file only if it is one, else the directory only if it is one,
        # else certifi's: a stale `SSL_CERT_FILE` is passed over there, not an error.
        if cert_file is not None and os.path.isfile(cert_file):
            return cert_file, None
        return None, cert_dir if cert_dir is not None and os.path.isdir(cert_dir) else None
    return cert_file, cert_dir


_PASSES_OVER_MISSING_CERTIFICATES: Final = tuple(map(int, re.findall(r"\d+", httpx.__version__)[:2])) < (0, 28)


def _verifying_context(certificates: tuple[str | None, str | None]) -> ssl.SSLContext:
    """Httpx's default TLS context for these settings (as `httpx.create_ssl_context` makes it from the environment)."""
    cert_file, cert_dir = certificates
    if cert_file:
        try:
            return ssl.create_default_context(cafile=cert_file)
        except OSError as exc:  # `ssl.SSLError` too: a file that holds no certificate
            # Read at the first https request, where the bare "[Errno 2] No such file or directory"
            # would not say which file, nor that it came from the environment.
            raise OSError(f"the CA certificates in SSL_CERT_FILE ({cert_file!r}) could not be loaded: {exc}") from exc
    if cert_dir:
        return ssl.create_default_context(capath=cert_dir)  # its files are read as connections need them
    return httpx.create_ssl_context(trust_env=False)  # certifi's CA certificates


def tls_context(certificates: tuple[str | None, str | None] | None) -> ssl.SSLContext:
    """The TLS context for these certificate settings, made on first use and kept for the process.

    None stands for plain http: a context is still needed to make an httpx transport, but it is never
    used, so a bare one is made, which reads no certificates and refuses every server.
    """
    context = _tls.get(certificates)
    if context is None:
        with _tls_lock:
            context = _tls.get(certificates)
            if context is None:
                if certificates is None:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                else:
                    context = _verifying_context(certificates)
                _tls[certificates] = context
    return context


_P = TypeVar("_P", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


def proxy_mounts(
    kind: type[_P], limits: httpx.Limits, settings: Settings, cut: Cut | None = None
) -> dict[str, _P | None] | None:
    """The proxies to mount on the SDK's own httpx client, as httpx would mount them from `settings`.

    httpx reads proxies from the environment only when it makes its own transport. The SDK's clients
    make theirs, so they mount the proxies themselves: a host under `NO_PROXY` maps to None, which is
    the client's own transport. None if this httpx does not say how it reads them; the client is then
    made as httpx makes it, without spreading. Their connections being made `cut` ends (see `Cut`).
    """
    if settings.proxies is None:
        return None
    mounts: dict[str, Any] = {}
    for pattern, url in settings.proxies.items():
        if url is None:
            mounts[pattern] = None
            continue
        # Plain http to a plain http proxy uses no TLS: as a direct plain http request, it needs no certificates.
        plain_proxy = url.lower().startswith("http://")
        try:
            verify = tls_context(None if pattern == "http://" and plain_proxy else settings.certificates)
        except OSError as exc:  # certificates that cannot be loaded: each call fails as a direct one does
            mounts[pattern] = _Failing(OSError, str(exc))
            if pattern == "all://" and plain_proxy and "http://" not in settings.proxies:
                mounts["http://"] = _proxy(kind, pattern, url, limits, tls_context(None), cut)  # save plain http
            continue
        mounts[pattern] = _proxy(kind, pattern, url, limits, verify, cut)
    return mounts


def _proxy(
    kind: type[_P], pattern: str, url: str, limits: httpx.Limits, verify: ssl.SSLContext, cut: Cut | None
) -> Any:
    """The transport of the proxy `url` for `pattern`; one that refuses its calls if httpx cannot make it."""
    try:
        port = httpx.URL(url).port
        # httpx takes any port: the socket would wrap it (70000 is port 4464, another service's).
        proxy = kind(proxy=url, limits=limits, verify=verify) if port is None or 0 < port < 65536 else None
    except Exception:  # a SOCKS proxy without `socksio`, a scheme or URL httpx refuses
        proxy = None
    if proxy is None:
        variable = _PROXY_VARIABLES.get(pattern, f"the proxy for {pattern}")
        return _Failing(InvalidParameterError, variable, _without_user(url), _USABLE_PROXY)
    setattr(proxy, THROUGH, _without_user(url).partition("?")[0])  # what errors say it is
    return cut_by(_bounded_reads(proxy), cut)


# The environment variables httpx reads each pattern's proxy from, as users know them.
_PROXY_VARIABLES: Final = {"http://": "HTTP_PROXY", "https://": "HTTPS_PROXY", "all://": "ALL_PROXY"}
_USABLE_PROXY: Final = (
    'a proxy URL httpx can use (http://, https://, or socks5:// with "httpx[socks]" installed; a port from 1 to 65535)'
)
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _without_user(url: str) -> str:
    """A proxy's `url` with all before its last "@" hidden but its scheme: its user and password are a secret.

    In a URL httpx cannot read, they may hold any character, a "/" or an "@" among them.
    """
    head, at, host = url.rpartition("@")
    if not at:
        return url
    scheme = _SCHEME.match(head)
    return f"{scheme.group() if scheme else ''}[redacted]@{host}"


class _Failing(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A proxy from the environment that cannot be made: a request that would go through it fails unsent.

    It raises `make(*args)`, new each time. Requests to this machine bypass it (`LoopbackDirect`): a
    client of a local server works in a shell whose `ALL_PROXY` it cannot use (SOCKS, without
    `socksio` installed).
    """

    def __init__(self, make: Callable[..., Exception], *args: str) -> None:
        self._make = make
        self._args = args  # never a secret: what the error shows

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Fail: nothing is sent."""
        raise self._make(*self._args)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Fail: nothing is sent."""
        raise self._make(*self._args)


class _Bypass(Generic[_T]):
    """The choice both `LoopbackDirect` shells make: the proxy, or `direct` for a request to this machine."""

    def __init__(self, proxy: _T, direct: _T) -> None:
        self._proxy: _T = proxy
        self._direct: _T = direct
        self._through: str | None = getattr(proxy, THROUGH, None)  # None for one that fails unmade

    def _mark(self, exc: httpx.TransportError) -> None:
        """Say on `exc` which proxy it was met through: the SDK's error names it (see `transport_error`)."""
        setattr(exc, THROUGH, self._through)


class LoopbackDirect(_Bypass[httpx.BaseTransport], httpx.BaseTransport):
    """A proxy mounted from the environment, which requests to this machine (`is_loopback`) bypass.

    A proxy's localhost is its own machine, and plain `http://` is allowed to this one only because
    the key stays on it: through a proxy it would cross the network in clear text. They go to
    `direct`, the client's own transport, which the client closes.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` direct if it is to this machine, else through the proxy."""
        if is_loopback(request.url.host):
            return self._direct.handle_request(request)
        try:
            return self._proxy.handle_request(request)
        except httpx.TransportError as exc:
            self._mark(exc)
            raise

    def close(self) -> None:
        """Close the proxy's pool."""
        self._proxy.close()


class AsyncLoopbackDirect(_Bypass[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """`LoopbackDirect` for an async client."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` direct if it is to this machine, else through the proxy."""
        if is_loopback(request.url.host):
            return await self._direct.handle_async_request(request)
        try:
            return await self._proxy.handle_async_request(request)
        except httpx.TransportError as exc:
            self._mark(exc)
            raise

    async def aclose(self) -> None:
        """Close the proxy's pool."""
        await self._proxy.aclose()


def _bounded_reads(transport: _P) -> _P:
    """A blocking transport whose connections' reads `reads_end_within` can bound; an async one as it is."""
    # httpx has no parameter for httpcore's network backend. Without these attributes (another
    # httpx or httpcore), a stream lets go of its connection at `[DONE]` instead, as a borrowed
    # client's streams do.
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None and isinstance(transport, httpx.HTTPTransport):
        pool._network_backend = _BoundedBackend(backend)  # type: ignore[union-attr]
    return transport


def cut_by(transport: _Transport, cut: Cut | None, direct: bool = False) -> _Transport:
    """`transport`, whose connections being made `cut` ends when it closes (see `Cut`).

    `direct`: an async transport that connects to servers, not through a proxy, whose connections
    under asyncio are `_aiostream`'s.
    """
    # As in `_bounded_reads`: without these attributes, a connection being made at the close is made.
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if cut is None or backend is None:
        return transport
    if isinstance(backend, _BoundedBackend):
        backend._cut = cut
    elif isinstance(transport, httpx.AsyncHTTPTransport):
        pool._network_backend = _CutAsyncBackend(backend, cut, direct)  # type: ignore[union-attr]
    return transport


_CUT_MESSAGE: Final = "The client was closed while the connection was being made."
# Whether an asyncio connect under way is cut in an anyio cancel scope (see `Cut.until_closed`).
_CUT_CONNECTS_IN_SCOPE: Final = sys.version_info >= (3, 11)


class Cut:
    """Closed with the SDK's own httpx client: ends its connections still being made, and refuses new ones.

    httpcore's pool, when closed, closes the connections it has. One still connecting, or in its
    TLS handshake, is not one yet: it would be made after the close and carry its request. The
    SDK's pools make connections through a backend that holds each one's socket here, from before
    its TCP connect: `close()` shuts them all down (a connect or handshake under way fails at once),
    and a connection made after it is closed unused. A name lookup under way is given up. Under
    asyncio, whose connects make their sockets out of reach, each connect waits in a cancel scope
    held here, which `close()` cancels.
    Never in a forked child, whose sockets are its parent's connections too.
    """

    __slots__ = ("_connecting", "_held", "_lock", "_pid", "closed")

    def __init__(self) -> None:
        self.closed = False
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._held: weakref.WeakSet[Any] = weakref.WeakSet()  # sockets, or async streams (`_CutAsyncBackend`)
        self._connecting: set[tuple[Any, asyncio.AbstractEventLoop]] = set()  # (cancel scope, its loop)

    def hold(self, held: object) -> bool:
        """Hold a connection's socket, stream or lookup's event for `close()`; False, holding nothing, once closed."""
        with self._lock:
            if self.closed:
                return False
            self._held.add(held)
            return True

    def drop(self, held: object) -> None:
        """Let go of one `hold` took."""
        with self._lock:
            self._held.discard(held)

    def close(self) -> None:
        """Shut down every held connection's socket and give up its lookups under way; later connections are refused."""
        if self._pid != os.getpid():  # the lock may have been held by a thread of the parent at the fork
            self.closed = True
            return
        with self._lock:
            self.closed = True
            held = list(self._held)
            self._held.clear()
            connecting, self._connecting = self._connecting, set()
        for one in held:
            if isinstance(one, threading.Event):  # a name lookup's: its waiter stops waiting
                one.set()
            else:
                shut_down(one if isinstance(one, socket.socket) else one.get_extra_info("socket"))
        for scope, loop in connecting:
            _cancel_on(loop, scope)

    async def until_closed(self, connect: Awaitable[_S]) -> _S:
        """Await an asyncio `connect`, ended at once (`httpcore.ConnectError`) by `close()`.

        Under trio, and on Python 3.10, it is awaited as it is. On 3.10, a task cancelled just after
        the close (in the same turn of the loop) would have its cancellation taken by the scope for
        the close's, and go on: there the connect is not cut.
        """
        import asyncio

        import anyio

        if not _CUT_CONNECTS_IN_SCOPE:
            return await connect
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: the connect ends when it completes or times out, then is refused
            return await connect
        with anyio.CancelScope() as scope:
            entry = (scope, loop)
            with self._lock:
                refused = self.closed
                if not refused:
                    self._connecting.add(entry)
            if refused:
                with contextlib.suppress(AttributeError):
                    connect.close()  # type: ignore[attr-defined]  # a coroutine never awaited
                raise _refused()
            try:
                return await connect
            finally:
                with self._lock:
                    self._connecting.discard(entry)
        raise _refused()  # `close()` cancelled it


def _asyncio_loop() -> asyncio.BaseEventLoop | None:
    """The running asyncio event loop if it is asyncio's own; None under another library (trio) or loop (uvloop)."""
    asyncio = sys.modules.get("asyncio")  # not imported: not under asyncio
    if asyncio is None:
        return None
    loop = asyncio._get_running_loop()
    return loop if isinstance(loop, asyncio.BaseEventLoop) else None


def _cancel_on(loop: asyncio.AbstractEventLoop, scope: Any) -> None:
    """Cancel an anyio cancel scope of `loop`'s, from its thread or any other."""
    import asyncio

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        scope.cancel()
        return
    with contextlib.suppress(RuntimeError):  # its loop is closed: the connect ended with it
        loop.call_soon_threadsafe(scope.cancel)


def shut_down(sock: Any) -> None:
    """Shut a connection's socket down for both directions, under its TLS if it has any.

    Not `SSLSocket.shutdown`: it turns TLS off before the socket is shut down, and a request another
    thread writes on it in between would go out in clear text, with its API key.
    """
    with contextlib.suppress(OSError):  # closed already, or detached by its TLS wrapper
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
            return
        # The socket of an event loop's transport: TLS, if any, is above it.
        try:
            sock.shutdown(socket.SHUT_RDWR)  # asyncio's
        except (AttributeError, TypeError):  # uvloop's refuses: "transport sockets do not support shutdown()"
            fileno = getattr(sock, "fileno", None)
            descriptor = fileno() if fileno is not None else -1
        else:
            return
        if descriptor >= 0:
            borrowed = socket.socket(fileno=descriptor)  # shut down through its descriptor, left open
            try:
                borrowed.shutdown(socket.SHUT_RDWR)
            finally:
                borrowed.detach()


_connecting: contextvars.ContextVar[bool] | None = None
_connecting_lock = threading.Lock()


def connecting() -> contextvars.ContextVar[bool]:
    """True from the start of a connect by the SDK's own async pools until it succeeds.

    A call's deadline that cancels the task meanwhile names the connect, as the connect's own
    timeout would have (on a late event loop both run out at once, and the outer one is caught); it
    is set False by `_http._send_by`. Made at the first async call: `contextvars` comes with
    asyncio, and a program that only blocks never loads it.
    """
    global _connecting
    if _connecting is None:
        import contextvars

        with _connecting_lock:  # one for every thread's event loop
            if _connecting is None:
                _connecting = contextvars.ContextVar("deployai_connecting", default=False)
    return _connecting


def _refused(message: str = _CUT_MESSAGE) -> Exception:
    import httpcore

    return httpcore.ConnectError(message)


class _CutAsyncBackend:
    """httpcore's async network backend, with connections `cut` can end (see `Cut`).

    `direct` (no proxy): under asyncio, its connections are `_aiostream`'s, not the backend's.
    """

    __slots__ = ("_backend", "_cut", "_direct")

    def __init__(self, backend: httpcore.AsyncNetworkBackend, cut: Cut, direct: bool = False) -> None:
        self._backend = backend
        self._cut = cut
        self._direct = direct

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple[Any, ...]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect, as the backend does; ended or refused once the client closed."""
        # Python 3.10's `asyncio.wait_for` can lose a cancel: httpcore's backend, cancelled through anyio.
        direct = self._direct and not socket_options and sys.version_info >= (3, 11)
        loop = _asyncio_loop() if direct else None
        connecting_to: Awaitable[Any]
        if loop is not None:
            from . import _aiostream

            connecting_to = _aiostream.connect(loop, host, port, timeout, local_address)
        else:
            connecting_to = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        flag = connecting()
        flag.set(True)
        stream = await self._cut.until_closed(connecting_to)
        flag.set(False)
        return await self._held(stream, backends=loop is None)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        """Connect, as the backend does; ended or refused once the client closed."""
        return await self._held(await self._cut.until_closed(self._backend.connect_unix_socket(*args, **kwargs)))

    async def _held(self, stream: Any, backends: bool = True) -> httpcore.AsyncNetworkStream:
        # The stream itself, whose socket stays the connection's through its TLS handshake (asyncio's
        # transport socket cannot be held weakly). One the backend made (`backends`) is wrapped.
        if not self._cut.hold(stream):
            await stream.aclose()
            raise _refused()
        return _AsyncStream(stream) if backends else stream  # type: ignore[return-value]  # httpcore's methods

    async def sleep(self, seconds: float) -> None:
        """Sleep, as the backend does."""
        await self._backend.sleep(seconds)


class _AsyncStream:
    """An async connection's stream made by httpcore's backend, whose readability is read from its socket directly.

    httpcore's pool asks each idle connection whether its socket is readable (the server closed it)
    on every request and every response close, of each of its connections. anyio answers by building
    a mapping of all of the stream's attributes, with a `getpeername` call, before it polls the
    socket: most of the check's cost, and with 1,000 calls in flight there are about 14 checks a call.
    The socket is the same for the stream's life, so it is looked up once; the rest is the stream's
    own methods, called with no step between.
    """

    __slots__ = ("_socket", "_stream", "aclose", "read", "write")

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket = stream.get_extra_info("socket")
        self.read = stream.read
        self.write = stream.write
        self.aclose = stream.aclose

    async def start_tls(self, *args: Any, **kwargs: Any) -> _AsyncStream:
        """Start TLS on the connection, as the stream does."""
        return _AsyncStream(await self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        """What the stream says about itself; whether its socket is readable, from the socket."""
        if info == "is_readable":
            return readable(self._socket)
        return self._stream.get_extra_info(info)


def http_pool(context: ssl.SSLContext) -> httpx.BaseTransport:
    """One small blocking pool, whose reads can be bounded (see `reads_end_within`)."""
    return _bounded_reads(httpx.HTTPTransport(verify=context, limits=_POOL_LIMITS))


class _Deadline(threading.local):
    """When the blocking reads of this thread must end (`reads_end_within`); None when they need not.

    Per thread, not per context: a context copied meanwhile (by a logging handler that hands work to
    an event loop or a thread) would carry the deadline to reads it was never meant for.
    """

    at: float | None = None


_deadline = _Deadline()


@contextlib.contextmanager
def reads_end_within(seconds: float) -> Iterator[None]:
    """Within, each blocking read of this thread on a `bounded` connection ends within `seconds` from now.

    A read that would go on longer raises `httpx.ReadTimeout`, and httpcore closes the connection.
    Other threads' reads, on this connection after it is handed on too, are not bounded.
    """
    outer, _deadline.at = _deadline.at, time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = outer


def bounded(response: httpx.Response) -> bool:
    """Whether `reads_end_within` can bound the reads of this response's body.

    Only on an HTTP/1 connection of the SDK's own pools: an HTTP/2 one carries other responses too,
    which a read cut short would end with it.
    """
    return response.http_version.startswith("HTTP/1") and isinstance(
        response.extensions.get("network_stream"), _BoundedStream
    )


def _connect(cut: Cut, host: str, port: int, timeout: float | None, local_address: str | None) -> socket.socket:
    """Connect as `socket.create_connection` does, each socket held by `cut` from before its connect starts.

    A socket shut down while it connects ends its connect at once (ECONNRESET on Linux): so `close()`
    ends a connect under way (to a host that does not answer, it would last its connect timeout).
    The connect is started without waiting, then `cut` is asked whether it closed meanwhile, and only
    then waited for: a close before the connect started would find nothing to shut down. The name is
    looked up first, within the same timeout (see `_lookup`).
    """
    addresses = _lookup(cut, host, port, timeout)
    failure: OSError = OSError(f"No address found for {host!r}")
    for family, kind, protocol, _, address in addresses:
        try:
            sock = socket.socket(family, kind, protocol)
        except OSError as exc:  # out of descriptors, or a family this system lacks: the next address
            failure = exc
            continue
        if not cut.hold(sock):
            sock.close()
            raise _refused()
        try:
            if local_address is not None:
                sock.bind((local_address, 0))
            _connect_socket(sock, address, timeout, cut)
        except OSError as exc:
            cut.drop(sock)
            sock.close()
            if cut.closed:
                raise _refused() from None
            failure = exc  # as `create_connection`: the next address, and the last failure if none connects
            continue
        except BaseException:  # interrupted (Ctrl+C): the socket is not left for the collector
            cut.drop(sock)
            sock.close()
            raise
        return sock
    raise _connect_error(failure) from failure


def _lookup(cut: Cut, host: str, port: int, timeout: float | None) -> list[Any]:
    """The addresses of `host`, looked up within `timeout` (None: no limit), and ended at once if `cut` closes.

    `socket.getaddrinfo` cannot be interrupted or given a deadline, and a resolver that does not
    answer holds it for as long as its own retries last (about 5 s each on Linux by default). So a
    name is looked up in a thread of its own, which is left to finish by itself when the wait ends
    first. An IP address needs no lookup, and no thread.
    """
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        pass  # a name
    found = threading.Event()
    outcome: list[Any] = []

    def look_up() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except Exception as exc:  # handed to the waiting thread, without this frame (a cycle with `outcome`)
            outcome.append(exc.with_traceback(None))
        found.set()

    if not cut.hold(found):
        raise _refused()
    try:
        threading.Thread(target=look_up, name="deployai-lookup", daemon=True).start()
        found.wait(timeout)
    finally:
        cut.drop(found)
    if cut.closed:
        raise _refused()
    if not outcome:
        raise _connect_error(TimeoutError(f"The lookup of {host!r} timed out"))
    addresses = outcome[0]
    if isinstance(addresses, OSError):
        raise _connect_error(addresses) from addresses
    if isinstance(addresses, Exception):
        raise addresses
    return list(addresses)


def _connect_socket(sock: socket.socket, address: Any, timeout: float | None, cut: Cut) -> None:
    """Connect `sock` within `timeout` (None: no limit), ending at once if `cut` closes (raises `OSError`)."""
    import errno
    import selectors

    sock.setblocking(False)
    code = sock.connect_ex(address)
    if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, getattr(errno, "WSAEWOULDBLOCK", 0)):  # under way
        raise OSError(code, os.strerror(code))
    if cut.closed:  # before the connect was under way, the close found nothing to shut down
        raise OSError(errno.ECONNABORTED, "The client was closed")
    if code:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            if not selector.select(timeout):
                raise TimeoutError("timed out")
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
    sock.settimeout(timeout)


def _connect_error(exc: OSError) -> Exception:
    """The error httpcore's own backend raises for a connect that failed with `exc`."""
    import httpcore

    kind = httpcore.ConnectTimeout if isinstance(exc, TimeoutError) else httpcore.ConnectError
    return kind(str(exc))


class _BoundedBackend:
    """httpcore's blocking network backend, with streams whose reads end by the thread's deadline."""

    __slots__ = ("_backend", "_cut")

    def __init__(self, backend: httpcore.NetworkBackend, cut: Cut | None = None) -> None:
        self._backend = backend
        self._cut = cut

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple[Any, ...]] | None = None,
    ) -> _BoundedStream:
        """Connect, as the backend does; ended at once or refused once the client closed (see `Cut`)."""
        cut = self._cut
        if cut is None:
            return _BoundedStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options), None)
        from httpcore._backends.sync import SyncStream

        sock = _connect(cut, host, port, timeout, local_address)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            cut.drop(sock)
            sock.close()
            raise _connect_error(exc) from exc
        return _BoundedStream(SyncStream(sock), cut)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _BoundedStream:
        """Connect, as the backend does; refused once the client closed (see `Cut`)."""
        return _BoundedStream(self._backend.connect_unix_socket(*args, **kwargs), self._cut)

    def sleep(self, seconds: float) -> None:
        """Sleep, as the backend does."""
        self._backend.sleep(seconds)


class _BoundedStream:
    """A connection's network stream whose reads end by the thread's `_deadline` when it is set.

    Closing it wakes a read blocked on it in another thread: closing a socket does not.
    """

    __slots__ = ("_cut", "_pid", "_stream")

    def __init__(self, stream: httpcore.NetworkStream, cut: Cut | None) -> None:
        self._stream = stream
        self._pid = os.getpid()
        self._cut = cut
        if cut is not None and not cut.hold(stream.get_extra_info("socket") or stream):
            stream.close()
            raise _refused()

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read, waiting no longer than the request's read timeout, nor past the deadline."""
        deadline = _deadline.at
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                import httpcore

                raise httpcore.ReadTimeout("The read's deadline passed.")
            timeout = left if timeout is None else min(timeout, left)
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write, as the stream does."""
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        """Close, as the stream does, once the socket is shut down (see the class)."""
        # httpcore closes a connection in use when its pool closes; the read waiting on it in another
        # thread would otherwise wait out its timeout. Never in a forked child: the parent's connection.
        if self._pid == os.getpid():
            shut_down(self._stream.get_extra_info("socket"))
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> _BoundedStream:
        """Start TLS on the connection; the TLS stream's reads are bounded as well."""
        cut = self._cut
        sock = None if cut is None else self._stream.get_extra_info("socket")
        if cut is None or type(sock) is not socket.socket:  # no cut, or TLS inside a proxy's TLS
            return _BoundedStream(self._stream.start_tls(ssl_context, server_hostname, timeout), cut)
        # The handshake detaches `sock` from the connection at its start: `cut` shuts it down by its twin.
        try:
            twin = sock.dup()
        except OSError as exc:  # out of file descriptors
            raise _refused(str(exc)) from exc
        try:
            if not cut.hold(twin):
                raise _refused()
            tls = self._stream.start_tls(ssl_context, server_hostname, timeout)
        finally:
            cut.drop(twin)
            twin.close()
        return _BoundedStream(tls, cut)

    def get_extra_info(self, info: str) -> Any:
        """What the stream says about itself (its socket, its TLS object)."""
        return self._stream.get_extra_info(info)


def async_http_pool(context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """One small asyncio (or trio) pool."""
    return httpx.AsyncHTTPTransport(verify=context, limits=_POOL_LIMITS)


class _Spread(Generic[_T]):
    """Which pool each request goes to, and which pools to close: no I/O, no lock (the shells lock)."""

    __slots__ = ("_counts", "_idle_since", "_make", "_next_sweep", "_pools", "_spoiled")

    def __init__(self, make: Callable[[], _T]) -> None:
        self._make: Callable[[], _T] = make
        self._pools: list[_T | None] = [None] * _POOLS
        self._counts = [0] * _POOLS
        self._idle_since = [0.0] * _POOLS
        self._next_sweep = 0.0
        self._spoiled: dict[_T, int] = {}  # pools taken out of use, and their requests still in flight

    def take(self) -> tuple[int, _T]:
        """Count a request in flight in the pool it should use, made if need be; return both."""
        counts = self._counts
        index = next((i for i, count in enumerate(counts) if count < POOL_CONNECTIONS), -1)
        if index < 0:  # all full: wait in the least busy pool
            index = counts.index(min(counts))
        pool = self._pools[index]
        if pool is None:
            pool = self._pools[index] = self._make()
        # Counted once the pool is made: making it may fail (certificates that cannot be loaded) or
        # be interrupted, and a request counted then would be in flight in it for good.
        counts[index] += 1
        return index, pool

    def give_back(self, index: int, pool: _T, now: float) -> _T | None:
        """A request of `pool`, taken at `index`, ended (its response closed, or it failed).

        Returns the pool to close now: a spoiled one whose last request this was.
        """
        if self._pools[index] is not pool:
            return self._drained(pool)
        left = self._counts[index] - 1
        self._counts[index] = left
        if not left:
            self._idle_since[index] = now
        return None

    def spoil(self, index: int, pool: _T) -> None:
        """Send `pool` nothing more, and close it once its requests in flight have ended.

        A response's close was cut short in it, or a cancelled request left a connection stranded in
        it (`_stranded`): either may keep a connection checked out for good.
        """
        if self._pools[index] is pool:
            self._spoiled[pool] = self._counts[index]
            self._pools[index] = None
            self._counts[index] = 0

    def end(self, index: int, pool: _T, now: float, cut_short: bool) -> _T | None:
        """`give_back`, after `spoil` when the request's end was `cut_short`; the pool to close now, if any."""
        if cut_short:
            self.spoil(index, pool)
        return self.give_back(index, pool, now)

    def stranded_by(self, exc: BaseException, index: int, pool: _T) -> bool:
        """Whether a send of `pool` that raised `exc` may have left it a stranded connection (see `_stranded`).

        Only a cancel or an interrupt (no `Exception`) can: httpcore tidies after every failure.
        """
        if isinstance(exc, Exception):
            return False
        in_flight = self._counts[index] if self._pools[index] is pool else self._spoiled.get(pool, 0)
        return _stranded(pool, in_flight - 1)  # the request that raised is still counted

    def _drained(self, pool: _T) -> _T | None:
        left = self._spoiled.get(pool)
        if left is None:  # taken out by `take_all`: closed with the transport already
            return None
        if left > 1:
            self._spoiled[pool] = left - 1
            return None
        del self._spoiled[pool]
        return pool

    def stale(self, now: float) -> list[_T]:
        """Pools idle for the keep-alive expiry, taken out to be closed (looked for once per expiry)."""
        if now < self._next_sweep:
            return []
        self._next_sweep = now + KEEPALIVE_EXPIRY_SECONDS
        cutoff = now - KEEPALIVE_EXPIRY_SECONDS
        stale = []
        for index, pool in enumerate(self._pools):
            if pool is not None and not self._counts[index] and self._idle_since[index] <= cutoff:
                self._pools[index] = None
                stale.append(pool)
        return stale

    def take_all(self) -> list[_T]:
        """Every pool, taken out to be closed with the transport."""
        pools = [pool for pool in self._pools if pool is not None]
        pools += self._spoiled
        self._pools = [None] * _POOLS
        self._spoiled = {}
        return pools


class _Counted(httpx.SyncByteStream):
    """A response body that gives its request's place back when it is closed.

    `done(cut_short)` is called once, at the close: `cut_short` when the close itself was
    interrupted, which may have left the connection checked out in its pool (see `_Spread.spoil`).
    """

    __slots__ = ("_done", "_stream")

    def __init__(self, stream: httpx.SyncByteStream, done: Callable[[bool], None]) -> None:
        self._stream = stream
        self._done: Callable[[bool], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        done, self._done = self._done, None
        try:
            self._stream.close()
        except BaseException:
            if done is not None:
                done(True)
            raise
        if done is not None:
            done(False)


class _AsyncCounted(httpx.AsyncByteStream):
    """`_Counted` for async responses."""

    __slots__ = ("_done", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[bool], None]) -> None:
        self._stream = stream
        self._done: Callable[[bool], None] | None = done

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        done, self._done = self._done, None
        try:
            await self._stream.aclose()
        except BaseException:
            if done is not None:
                done(True)
            raise
        if done is not None:
            done(False)


def _stranded(pool: object, in_flight: int) -> bool:
    """Whether `pool` (an httpx transport) holds more busy connections than `in_flight` requests can.

    httpcore's pool gives a request's connection up when the request fails, but a task cancelled
    while the connection waits for its own lock (before its first request, or after its response)
    leaves it neither idle nor closed, and it is never used or closed again. A pool whose busy
    connections outnumber its requests holds such a one. Any other transport: False.
    """
    connections = getattr(getattr(pool, "_pool", None), "connections", None)
    if connections is None:
        return False
    return sum(1 for connection in connections if not connection.is_idle() and not connection.is_closed()) > in_flight


def _spreads(settings: Settings, make: Callable[[ssl.SSLContext], _T], cut: Cut | None) -> dict[str, _Spread[_T]]:
    """A spread of pools for each scheme, their TLS context made as `settings` say; `cut` ends their connections."""
    return {
        "https": _Spread(lambda: cut_by(make(tls_context(settings.certificates)), cut, direct=True)),
        "http": _Spread(lambda: cut_by(make(tls_context(None)), cut, direct=True)),
    }


class SpreadTransport(httpx.BaseTransport):
    """The blocking transport of the SDK's own `httpx.Client`, safe to share between threads.

    Args:
        settings: the environment's settings, read when the SDK's client was made.
        make: makes one pool from the TLS context its requests need (tests and benchmarks put an
            in-process transport here).
        cut: ends the pools' connections still being made when the client closes (see `Cut`).
    """

    def __init__(
        self,
        settings: Settings,
        make: Callable[[ssl.SSLContext], httpx.BaseTransport] = http_pool,
        cut: Cut | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._spreads = _spreads(settings, make, cut)
        self._retired: list[httpx.BaseTransport] = []  # idle or spoiled pools, closed by the next request

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the pool `_Spread` chooses; the response's close gives its place back."""
        spread = self._spreads.get(request.url.scheme) or self._spreads["https"]
        now = _now()
        with self._lock:
            self._retired += spread.stale(now)
            index, pool = spread.take()

        def done(cut_short: bool = False) -> None:
            with self._lock:
                if (drained := spread.end(index, pool, _now(), cut_short)) is not None:
                    self._retired.append(drained)

        try:
            if self._retired:
                self._close_retired()
            response = pool.handle_request(request)
        except BaseException as exc:
            done(spread.stranded_by(exc, index, pool))
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Counted(response.stream, done)
        return response

    def _close_retired(self) -> None:
        while True:
            with self._lock:  # each pool is taken by one thread; the others stay for the next to close
                if not self._retired:
                    return
                old = self._retired.pop()
            old.close()

    def close(self) -> None:
        """Close every pool."""
        with self._lock:
            self._retired += [pool for spread in self._spreads.values() for pool in spread.take_all()]
        self._close_retired()


class AsyncSpreadTransport(httpx.AsyncBaseTransport):
    """The transport of the SDK's own `httpx.AsyncClient`, used from one event loop (one per loop)."""

    def __init__(
        self,
        settings: Settings,
        make: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport] = async_http_pool,
        cut: Cut | None = None,
    ) -> None:
        self._spreads = _spreads(settings, make, cut)
        self._retired: list[httpx.AsyncBaseTransport] = []  # idle or spoiled pools, closed by the next request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """As `SpreadTransport.handle_request`; no lock, as one event loop runs one step at a time."""
        spread = self._spreads.get(request.url.scheme) or self._spreads["https"]
        now = _now()
        self._retired += spread.stale(now)
        index, pool = spread.take()

        def done(cut_short: bool = False) -> None:
            if (drained := spread.end(index, pool, _now(), cut_short)) is not None:
                self._retired.append(drained)

        try:
            while self._retired:  # cancelled meanwhile: the pools not yet closed stay for the next
                await self._retired.pop().aclose()
            response = await pool.handle_async_request(request)
        except BaseException as exc:
            done(spread.stranded_by(exc, index, pool))
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _AsyncCounted(response.stream, done)
        return response

    async def aclose(self) -> None:
        """Close every pool."""
        self._retired += [pool for spread in self._spreads.values() for pool in spread.take_all()]
        while self._retired:
            await self._retired.pop().aclose()
