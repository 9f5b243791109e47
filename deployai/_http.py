"""The only place that sends, sleeps and closes: two thin shells that carry out the pure call plan.

`SyncHTTP` and `AsyncHTTP` drive `_plan.call_plan`, doing each operation it yields (send, sleep,
read a body), logging each attempt, and sending the outcome back as a value. A whole response comes
back as an `Exchange`; a stream comes back at its headers as a lease (`SyncLease`, `AsyncLease`):
the stream reads events from it, and the lease alone lets go of the response.

Who opens, closes. Each shell keeps the leases it gave out: a stream dropped unread hands its lease
back (`abandon`, no I/O in a finalizer), and the shell releases it before its next request or when
it closes. `close()` on a lease may come from any thread or task; if a read is under way it shuts
the HTTP/1.1 socket down to wake the reader (that socket serves only this response), and the reader
releases. Nothing is shared between clients through module state.

Pools follow their process and event loop. A client used after `os.fork()` opens a fresh pool in
the child and never touches the parent's connections. `AsyncDeployAI` keeps one pool per event
loop: on a new loop it opens a new pool, and an async generator registered with each loop closes
that loop's pool and open streams when the loop shuts its async generators down (as `asyncio.run`
does), so no connection outlives its loop. The loop holds its pool, not the client: a loop dropped
without being closed goes to the collector with its pool and connections.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import math
import operator
import os
import random
import re
import ssl
import sys
import threading
import time
import types
import weakref
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, NoReturn, TypeVar

import httpx

from ._config import DEFAULT_TIMEOUT, LONGEST_TIMEOUT_SECONDS, ClientOptions
from ._constants import (
    DEADLINE_GRACE_SECONDS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_KEEPALIVE_CONNECTIONS,
    FIRST_READ_GRACE_SECONDS,
    MAX_ANSWER_BYTES,
    MAX_ERROR_BODY_BYTES,
    STREAM_END_WAIT_SECONDS,
)
from ._exceptions import (
    ANSWERED,
    UNREAD_BY_HOOK,
    APIConnectionError,
    APIStatusError,
    DeployAIError,
    InvalidParameterError,
    RateLimitError,
    _key_of,
    _ResponseError,
    make_stream_error,
    safe_cause,
    transport_error,
)
from ._limiter import RateLimiter, _TaskWaiter, _ThreadWaiter
from ._logging import redact, shown_url
from ._plan import Deliver, Outcome, Plan, ReadBody, Send, Sleep, call_plan
from ._pools import (
    AsyncLoopbackDirect,
    AsyncSpreadTransport,
    Cut,
    LoopbackDirect,
    Settings,
    SpreadTransport,
    async_http_pool,
    bounded,
    connecting,
    http_pool,
    proxy_mounts,
    reads_end_within,
    shut_down,
)
from ._sse import EventParser, carries_nothing, error_in_event, is_done

if TYPE_CHECKING:
    import asyncio

    from .types._base import APIResult

try:  # what httpx's `send` does around its transport, for the SDK's own clients' `send`
    from httpx import _client as _httpx_client
    from httpx._client import ClientState as _ClientState
    from httpx._client import logger as _httpx_log
except ImportError:  # pragma: no cover - another httpx: its own `send` is used throughout
    _ClientState = None  # type: ignore[assignment,misc]

__all__ = ["AsyncHTTP", "AsyncLease", "Exchange", "SyncHTTP", "SyncLease"]

log = logging.getLogger("deployai")

# Module-level names so that tests can replace the waiting, and only the waiting, with a recorder.
_sleep = time.sleep


async def _async_sleep(seconds: float) -> None:
    import asyncio  # loaded by the async clients only: a program that uses only `DeployAI` never imports it

    await asyncio.sleep(seconds)


_asyncio_sleep: Final = _async_sleep  # `_async_sleep` unless a test replaced it

# A blocking wait between attempts waits in slices of this: on Windows before Python 3.14, Ctrl-C does
# not end a wait on a lock or an event (cpython issue 80116) until it times out.
_WAIT_SLICE_SECONDS: Final = 0.1 if sys.platform == "win32" else math.inf


# The limits of a proxy's pool (a proxy from the environment: `HTTPS_PROXY`; see `_pools.proxy_mounts`).
_LIMITS: Final = httpx.Limits(
    max_connections=DEFAULT_MAX_CONNECTIONS, max_keepalive_connections=DEFAULT_MAX_KEEPALIVE_CONNECTIONS
)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing.

    httpx reads every response's `Set-Cookie` into its client's jar, building `urllib` and `email`
    stand-ins for the response on each call: about a sixth of a call's client-side cost. The jar is
    only ever read by `httpx.Client.build_request`, which the SDK does not use (it builds its requests
    itself), so no cookie was ever sent: for the clients the SDK owns, the reading is skipped. A
    borrowed `http_client` is left as it is.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep nothing."""

    def set_cookie_header(self, request: httpx.Request) -> None:
        """Add nothing."""


class _WithoutCookies:
    """For the httpx clients the SDK owns: each gets its own `_NoCookies` (nothing shared between clients)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("the SDK's own httpx client keeps no cookies")


# httpx's `send` passes each request through its auth flow (a generator pair), its redirect and
# event-hook layer, and a context manager that gives a transport's error its request: five
# coroutines and generators per call, about 6% of a call's client-side cost. On a client with
# no auth, no hooks and redirects not followed, a request whose URL carries no user and password goes
# through each of them unchanged. The SDK's own clients are such clients, so their `send` does only
# what is left, as httpx does it (checked against httpx's own by the tests). In any other case it is
# httpx's `send`, and so it is while `send` or any of its layers is not httpx's own function:
# tracing and error-reporting tools (Sentry's, ddtrace) wrap them to see every request, before or
# after the SDK is imported, with plain functions or with proxies (wrapt's) that compare equal to
# what they wrap.
_httpx_own_layers: dict[type, tuple[object, ...]] = {}  # last seen to be httpx's own, by client class


def _layers_are_httpx_own(kind: type[httpx.Client] | type[httpx.AsyncClient]) -> bool:
    """Whether `kind.send` and the layers it passes a request through are the functions httpx defines."""
    layers = (kind.send, kind._send_handling_auth, kind._send_handling_redirects, kind._send_single_request)
    known = _httpx_own_layers.get(kind)
    if known is not None and all(map(operator.is_, layers, known)):
        return True
    httpx_own = vars(_httpx_client)
    own = all(type(f) is types.FunctionType and f.__globals__ is httpx_own for f in layers)
    if own:
        _httpx_own_layers[kind] = layers
    return own


def _direct_transport(client: httpx.Client | httpx.AsyncClient, request: httpx.Request, stream_type: type) -> Any:
    """The transport to send `request` on, once httpx's checks and defaults are done; None for httpx's own `send`."""
    kind = httpx.Client if isinstance(client, httpx.Client) else httpx.AsyncClient
    if (
        _ClientState is None
        or not _layers_are_httpx_own(kind)
        or client._auth is not None
        or client.follow_redirects
        or client._event_hooks["request"]
        or client._event_hooks["response"]
        or not isinstance(request.stream, stream_type)  # httpx's `send` says what is wrong
        or request.url.userinfo  # sent as basic auth by httpx
    ):
        return None
    if client._state is _ClientState.CLOSED:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    client._state = _ClientState.OPENED
    if "timeout" not in request.extensions:
        request.extensions = {**request.extensions, "timeout": client.timeout.as_dict()}
    return client._transport_for_url(request.url)


_Body = TypeVar("_Body", httpx.SyncByteStream, httpx.AsyncByteStream)


# httpx's `send` wraps a response's body in a stream that sets `response.elapsed` at its close, and
# that stream keeps the response for good: a reference cycle, which left each call's request and
# response (about 45 objects) to the garbage collector, and made it run a young collection every
# 30 calls or so. These streams let the response go at their close, so that a finished call is
# freed by reference counting alone.
class _Timing(Generic[_Body]):
    """What `_Timed` and `_AsyncTimed` share: the body they pass on, and the response they time until its close."""

    def __init__(self, stream: _Body, response: httpx.Response, start: float) -> None:
        self._stream: _Body = stream
        self._response: httpx.Response | None = response
        self._start = start

    def _stop_clock(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.elapsed = datetime.timedelta(seconds=time.perf_counter() - self._start)


class _Timed(_Timing[httpx.SyncByteStream], httpx.SyncByteStream):
    """A response's body, as httpx's `send` binds it: `response.elapsed` is set at its close."""

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        self._stop_clock()
        self._stream.close()


class _AsyncTimed(_Timing[httpx.AsyncByteStream], httpx.AsyncByteStream):
    """As `_Timed`, for an async response."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiter(self._stream)

    async def aclose(self) -> None:
        self._stop_clock()
        await self._stream.aclose()


def _received(
    client: httpx.Client | httpx.AsyncClient, request: httpx.Request, response: httpx.Response, start: float
) -> None:
    """Set on a response from the transport what httpx's `send` sets (`start`: when it was sent)."""
    timed: Any = _Timed if isinstance(client, httpx.Client) else _AsyncTimed
    response.stream = timed(response.stream, response, start)
    response.request = request
    response.default_encoding = client._default_encoding
    if _httpx_log.isEnabledFor(logging.INFO):
        _httpx_log.info(
            'HTTP Request: %s %s "%s %d %s"',
            request.method,
            shown_url(request.url),
            response.http_version,
            response.status_code,
            response.reason_phrase,
        )
    if response.has_redirect_location:
        response.next_request = client._build_redirect_request(request, response)


def _owned_options(settings: Settings, proxy: type[Any], spread: Callable[[], object], cut: Cut) -> dict[str, Any]:
    """The options of an httpx client the SDK owns: its own spread pools, and the proxies it was made with."""
    mounts = proxy_mounts(proxy, _LIMITS, settings, cut)
    if mounts is None:  # this httpx does not say how it reads proxies: its own transport, which reads them
        return {"timeout": DEFAULT_TIMEOUT, "limits": _LIMITS}
    direct: Any = spread()
    bypass: Any = LoopbackDirect if proxy is httpx.HTTPTransport else AsyncLoopbackDirect
    mounts = {pattern: None if one is None else bypass(one, direct) for pattern, one in mounts.items()}
    return {"timeout": DEFAULT_TIMEOUT, "limits": _LIMITS, "transport": direct, "mounts": mounts}


class _Client(_WithoutCookies, httpx.Client):
    """The `httpx.Client` the SDK owns: without cookies (see `_NoCookies`), over many small pools (see `_pools`)."""

    def __init__(self, settings: Settings, pool: Callable[[ssl.SSLContext], httpx.BaseTransport] = http_pool) -> None:
        self._cut = cut = Cut()
        spread = lambda: SpreadTransport(settings, pool, cut)  # noqa: E731
        super().__init__(**_owned_options(settings, httpx.HTTPTransport, spread, cut))

    def close(self) -> None:
        """Close as `httpx.Client.close` does, ending the connections still being made first (see `Cut`)."""
        try:
            self._cut.close()
        finally:  # the pool is closed whatever befell the cut
            super().close()

    def send(self, request: httpx.Request, *, stream: bool = False, **options: Any) -> httpx.Response:
        """Send as `httpx.Client.send` does, without its layers that do nothing here (see `_direct_transport`)."""
        transport = None if options else _direct_transport(self, request, httpx.SyncByteStream)
        if transport is None:
            return super().send(request, stream=stream, **options)
        start = time.perf_counter()
        try:
            response: httpx.Response = transport.handle_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        try:
            _received(self, request, response, start)
            if not stream:
                response.read()
        except BaseException:  # as httpx closes it, even for a `Location` it cannot read
            response.close()
            raise
        return response


class _AsyncClient(_WithoutCookies, httpx.AsyncClient):
    """The `httpx.AsyncClient` the SDK owns: as `_Client`."""

    def __init__(
        self, settings: Settings, pool: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport] = async_http_pool
    ) -> None:
        self._cut = cut = Cut()
        spread = lambda: AsyncSpreadTransport(settings, pool, cut)  # noqa: E731
        super().__init__(**_owned_options(settings, httpx.AsyncHTTPTransport, spread, cut))

    async def aclose(self) -> None:
        """Close as `httpx.AsyncClient.aclose` does, ending the connections still being made first (see `Cut`)."""
        try:
            self._cut.close()
        finally:  # the pool is closed whatever befell the cut
            await super().aclose()

    async def send(self, request: httpx.Request, *, stream: bool = False, **options: Any) -> httpx.Response:
        """Send as `httpx.AsyncClient.send` does, without its layers that do nothing here (see `_direct_transport`)."""
        transport = None if options else _direct_transport(self, request, httpx.AsyncByteStream)
        if transport is None:
            return await super().send(request, stream=stream, **options)
        start = time.perf_counter()
        try:
            response: httpx.Response = await transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        try:
            _received(self, request, response, start)
            if not stream:
                await response.aread()
        except BaseException:  # as httpx closes it, even for a `Location` it cannot read
            await response.aclose()
            raise
        return response


# Pools a forked child inherited from its parent. Their sockets are the parent's too: the child must
# neither use nor close them (closing may wait on a lock held by a thread that did not survive the
# fork), and must not let the garbage collector finalize them either. Kept here, untouched.
_left_in_parent: list[object] = []

# How many forks this process is from the first one: a stream opened before a fork is the parent's.
_forks = 0
# The leases not yet collected. In a forked child they are marked closed, so that a reader the parent
# had started, and that goes on in the child, stops before its next read instead of taking the
# parent's chunks (checking on every chunk would cost every stream).
_leases_alive: weakref.WeakSet[_LeaseBase] = weakref.WeakSet()


# Taken by the first use of a shell in a forked child, so that of several threads making their
# first calls there at once, one rebuilds its pool and the others use it.
_forked_use = threading.Lock()


def _once_in_child(shell: SyncHTTP | AsyncHTTP, take_over: Callable[[], None]) -> None:
    """In a forked child, run `take_over` (the shell's start there) once, whichever thread comes first."""
    with _forked_use:
        if shell._pid != os.getpid():  # else another thread of this child did it first
            take_over()


def _count_fork() -> None:
    global _forks, _forked_use
    _forks += 1
    _forked_use = threading.Lock()  # a thread of the parent may have held it at the fork
    for lease in list(_leases_alive):
        if not getattr(lease, "closing", True):  # a hook must not raise: skip anything but a made lease
            lease.cut_short = "This process was forked from the one that opened it"
            lease.closing = True


if hasattr(os, "register_at_fork"):  # not on Windows, where there is no fork
    os.register_at_fork(after_in_child=_count_fork)


@dataclass(slots=True)  # not frozen: one per call, and a frozen __init__ costs several times more
class Exchange:
    """A whole response, body read, with when the call began and how long its last attempt took.

    `deadline` (`time.monotonic()`) is the call's `total_timeout`, for a stream's first event.
    """

    response: httpx.Response
    started_at: float
    elapsed: float
    retries: int
    deadline: float | None = None
    result: Any = None  # the body parsed as the call's result type, when the plan was given one
    turn: tuple[RateLimiter, int] | None = None  # a stream's limiter and ticket, for what its first event says


def _first_read_bound(deadline: float | None) -> contextlib.AbstractContextManager[None]:
    """Within, this thread's reads on the SDK's own connections end by `deadline` (`time.monotonic()`).

    A stream's read timeout also governs its body, which `total_timeout` does not bound, so it is left
    as it is (see `_cap_timeouts`); its headers and first event are bounded this way instead (the
    asyncio shell cancels the wait: `_send_by`, `AsyncLease._first_read`). A borrowed client's
    blocking connections cannot be: for them, this bounds nothing.
    """
    if deadline is None:
        return contextlib.nullcontext()
    return reads_end_within(max(deadline - time.monotonic(), FIRST_READ_GRACE_SECONDS))


async def _send_by(
    deadline: float, client: httpx.AsyncClient, request: httpx.Request, stream: bool, on_asyncio: bool
) -> httpx.Response:
    """Send, raising `httpx.ReadTimeout` if the answer (a stream's headers) has not all come by `deadline`.

    Its own timer fires `DEADLINE_GRACE_SECONDS` late: the attempt's phase timeouts, cut to the
    deadline, go first when one ran out, and name the phase; when the loop was late for both, a
    connect under way still names the connect (`httpx.ConnectTimeout`).
    """
    import asyncio  # loaded by then: this is an async client's

    timeout = getattr(asyncio, "timeout", None)  # Python 3.11 and later
    wait = deadline - time.monotonic() + DEADLINE_GRACE_SECONDS
    connecting_now = connecting()
    connecting_now.set(False)
    got: list[httpx.Response] = []  # the answer, once its status came
    if on_asyncio and timeout is not None:
        # asyncio's own timeout costs a few microseconds; anyio's cancel scope, several times more.
        within = timeout(wait)
        try:
            async with within:
                return await _afetch(client, request, stream, got)
        except TimeoutError:
            if not within.expired():
                raise
    else:
        import anyio  # httpx's own dependency: a deadline under asyncio and trio alike

        with anyio.move_on_after(wait):
            return await _afetch(client, request, stream, got)
    if connecting_now.get():
        raise httpx.ConnectTimeout("No connection was made before the call's deadline.", request=request)
    if got:  # raised as made, no local of this frame: the error's traceback holds the frame
        raise _late_in_body(got.pop())
    raise httpx.ReadTimeout("No answer came before the call's deadline.", request=request)


def _late_in_body(response: httpx.Response) -> httpx.ReadTimeout:
    """The failure of a call whose deadline ran out in the body of its answer (marked by `_answered`)."""
    late = httpx.ReadTimeout("The answer's body had not all come by the call's deadline.", request=response.request)
    _answered(late, response)
    return late


async def _read_by(deadline: float, response: httpx.Response) -> None:
    """Read the body of a stream's response, raising `httpx.ReadTimeout` if it has not all come by `deadline`."""
    import anyio

    with anyio.move_on_after(deadline - time.monotonic()):
        await _aread_error_body(response)
        return
    raise httpx.ReadTimeout("The answer's body did not come before the call's deadline.", request=response.request)


def _fetch(client: httpx.Client, request: httpx.Request, stream: bool) -> httpx.Response:
    """Send; unless `stream`, read the body too (see `_read_body`).

    Redirects are never followed, not even by a borrowed client that follows them: the SDK reports
    a redirect as an error, since following one would send the prompt and `default_headers` (a
    gateway's secrets, often) to wherever it points.
    """
    if client.follow_redirects:
        response = client.send(request, stream=True, follow_redirects=False)
    else:
        response = client.send(request, stream=True)
    if not stream:
        _read_body(response)
    return response


async def _afetch(
    client: httpx.AsyncClient, request: httpx.Request, stream: bool, got: list[httpx.Response] | None = None
) -> httpx.Response:
    """`_fetch`, awaiting; the answer is put in `got` once its status came (for a deadline met in its body)."""
    if client.follow_redirects:
        response = await client.send(request, stream=True, follow_redirects=False)
    else:
        response = await client.send(request, stream=True)
    if got is not None:
        got.append(response)
    if not stream:
        await _aread_body(response)
    return response


def _read_body(response: httpx.Response) -> None:
    """Read a whole answer's body, up to `MAX_ANSWER_BYTES` decoded.

    An error answer's (3xx and up) is read as `_read_error_body` reads it.
    """
    if response.status_code >= 300:
        _read_error_body(response)
        return
    try:
        if response.is_stream_consumed:  # read already (a mock transport's)
            response.read()
            return
        kept = _Kept(response)
        for piece in response.iter_bytes():
            if not kept.add(piece):
                del piece  # not kept alive by the error's traceback, which holds this frame
                kept.refuse()
        kept.done()
    except BaseException as exc:  # as httpx's own `send` closes it
        _answered(exc, response)
        response.close()
        raise


async def _aread_body(response: httpx.Response) -> None:
    """`_read_body`, awaiting."""
    if response.status_code >= 300:
        await _aread_error_body(response)
        return
    try:
        if response.is_stream_consumed:
            await response.aread()
            return
        kept = _Kept(response)
        pieces = response.aiter_bytes()
        try:
            async for piece in pieces:
                if not kept.add(piece):
                    del piece  # as in `_read_body`
                    kept.refuse()
        finally:  # left part-read, httpx's generator is closed here, not by the loop's finalizer (or never)
            await pieces.aclose()  # type: ignore[attr-defined]  # an async generator
        kept.done()
    except BaseException as exc:
        _answered(exc, response)
        await response.aclose()
        raise


def _answered(exc: BaseException, response: httpx.Response) -> None:
    """Mark a transport failure met in the body of a whole 2xx answer to a POST: it is not sent again.

    The server had taken the request (see `transport_error`). A GET is only read: sent again, it
    changes nothing.
    """
    if isinstance(exc, httpx.TransportError) and response.status_code < 300 and response.request.method != "GET":
        setattr(exc, ANSWERED, response.status_code)


class _Kept:
    """The decoded pieces of a whole answer's body, refused past `MAX_ANSWER_BYTES` (as httpx's `read` keeps them)."""

    __slots__ = ("pieces", "response", "size")

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.pieces: list[bytes] = []
        self.size = 0

    def add(self, piece: bytes) -> bool:
        """Keep `piece`; False (keeping nothing) once the body is past the bound: then `refuse`."""
        self.size += len(piece)
        if self.size > MAX_ANSWER_BYTES:
            self.pieces = []
            return False
        self.pieces.append(piece)
        return True

    def refuse(self) -> NoReturn:
        raise httpx.DecodingError(
            f"The answer's body is larger than {MAX_ANSWER_BYTES:,} bytes once decoded.", request=self.response.request
        )

    def done(self) -> None:
        self.response._content = b"".join(self.pieces)  # one piece is given back as it is, uncopied


class _ErrorBody:
    """The decoded start of an error answer's body, up to `MAX_ERROR_BODY_BYTES`, however far it would inflate.

    httpx inflates each piece of a compressed body whole: one piece of a `gzip` page of zeros, 64 KiB
    on the wire, becomes 64 MiB before its length can be looked at. A `gzip` or `deflate` body not yet
    read is fed here raw (`raw`) and inflated only as far as is kept; any other encoding is fed as
    httpx decodes it.
    """

    __slots__ = ("_inflate", "kept", "raw")

    def __init__(self, response: httpx.Response) -> None:
        self.kept = bytearray()
        encoding = response.headers.get("content-encoding", "").strip().lower()
        self._inflate: Any = None
        if response.is_stream_consumed:  # read already (a mock transport's): `iter_bytes` has it decoded
            self.raw = False
        elif encoding in ("gzip", "x-gzip"):
            self._inflate, self.raw = zlib.decompressobj(16 + zlib.MAX_WBITS), True
        elif encoding == "deflate":  # zlib's wrapping, or (as some servers send) none: as httpx tells them
            self._inflate, self.raw = _Deflate(), True
        else:
            self.raw = encoding in ("", "identity")

    def add(self, piece: bytes) -> bool:
        """Keep what `piece` adds (raw, if `raw`); whether enough is kept. `zlib.error`: it does not inflate."""
        if self._inflate is None:
            self.kept += piece
        else:
            self.kept += self._inflate.decompress(piece, MAX_ERROR_BODY_BYTES - len(self.kept))
        return len(self.kept) >= MAX_ERROR_BODY_BYTES


class _Deflate:
    """A `deflate` body's inflater: zlib's format, or raw deflate if its first piece is not that."""

    __slots__ = ("_inflate", "_started")

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj()
        self._started = False

    def decompress(self, piece: bytes, max_length: int) -> bytes:
        """At most `max_length` bytes more of the inflated body."""
        if self._started:
            return self._inflate.decompress(piece, max_length)
        self._started = True
        try:
            return self._inflate.decompress(piece, max_length)
        except zlib.error:
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._inflate.decompress(piece, max_length)


def _read_error_body(response: httpx.Response) -> None:
    """Read the body of an answer that is an error, then close it: up to `MAX_ERROR_BODY_BYTES`, decoded.

    The status is the answer: a body that does not decode (a `gzip` page that is not) is replaced by
    a note that says so, instead of the status being lost to a `DecodingError`.
    """
    body = _ErrorBody(response)
    kept = body.kept
    try:
        for piece in response.iter_raw() if body.raw else response.iter_bytes():
            if body.add(piece):
                break
    except (httpx.DecodingError, zlib.error) as exc:
        kept = bytearray(_undecodable(exc))
    finally:
        response.close()
    _as_content(response, kept)


async def _aread_error_body(response: httpx.Response) -> None:
    """`_read_error_body`, awaiting."""
    body = _ErrorBody(response)
    kept = body.kept
    pieces = response.aiter_raw() if body.raw else response.aiter_bytes()
    try:
        async for piece in pieces:
            if body.add(piece):
                break
    except (httpx.DecodingError, zlib.error) as exc:
        kept = bytearray(_undecodable(exc))
    finally:
        # Left part-read, httpx's generator would be closed by the event loop's finalizer, later
        # (or, once the loop is closed, never): closed here, before the response.
        try:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()
        finally:
            await response.aclose()
    _as_content(response, kept)


def _undecodable(exc: Exception) -> bytes:
    return f"(The body could not be decoded: {exc})".encode()


def _as_content(response: httpx.Response, content: bytearray) -> None:
    # What `read()` would have set: the error is built from `response.content` and `.text`.
    response._content = bytes(content[:MAX_ERROR_BODY_BYTES])


_CLIENT_CLOSED: Final = "The client was closed"


def _closed_error(*, blocking: bool = True) -> DeployAIError:
    block = "with" if blocking else "async with"
    return DeployAIError(f"This client has been closed: create a new client (or use it inside `{block}`).")


def _borrowed_closed_error() -> DeployAIError:
    # The SDK's client was never closed: "this client has been closed" sent users looking for who closed it.
    return DeployAIError(
        "The http_client given to this client has been closed (a `with httpx.Client()` block that ended, say): "
        "give it an open one, or leave http_client out and let the SDK's client make its own."
    )


def _closed_in_flight(why: str = _CLIENT_CLOSED) -> DeployAIError:
    """For a call a close ended before its answer came (it waited for a connection, its turn, a retry or the answer)."""
    return DeployAIError(f"{why} before the call was answered.")


def _attempt_failed(exc: httpx.HTTPError, cut: str | None) -> httpx.HTTPError:
    """A failed attempt, for the plan to retry or raise; one whose pool the SDK closed (`cut`: why) is neither."""
    if cut is not None:  # that close cut the connection (or is about to): not a connection error, not to retry
        raise _closed_in_flight(cut) from safe_cause(exc)
    return exc


def _failed(
    exc: Exception, request: httpx.Request, closed: DeployAIError | None, cut: str | None
) -> httpx.Response | httpx.HTTPError:
    """The outcome of an attempt that raised: httpx's error goes to the plan; anything else is raised.

    A failure from below httpx (h11, anyio, a transport) is raised as the SDK's error, never raw
    (`cut`: as `_attempt_failed`). An error answer that a borrowed client's event hook refused
    (`raise_for_status`) goes to the plan as that answer (see `_refused_answer`).
    """
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 300 and cut is None:
        return _refused_answer(exc)
    if isinstance(exc, httpx.HTTPError):
        return _attempt_failed(exc, cut)
    raise _unexpected(exc, request, closed, cut) from safe_cause(exc)


def _refused_answer(exc: httpx.HTTPStatusError) -> httpx.Response:
    """The answer an event hook refused, for the plan to treat as the status it is.

    httpx closes the response unread when a hook raises, so only its status and headers are left
    (and its body, if the hook read it first): a 429 or 503 is then retried after the wait its
    headers ask for, and a 400 raises `BadRequestError`, as they would without the hook (never a
    connection error, which is what the hook's error is not).
    """
    refused = exc.response
    extensions: dict[str, Any] = {}
    try:
        content = refused.content  # read by the hook before it raised (`response.read()`)
    except httpx.ResponseNotRead:
        content, extensions[UNREAD_BY_HOOK] = b"", True
    # Without the headers that describe the body as it came (it is decoded now, or gone).
    headers = [
        (name, value)
        for name, value in refused.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    if "reason_phrase" in refused.extensions:
        extensions["reason_phrase"] = refused.extensions["reason_phrase"]
    status = refused.status_code
    return httpx.Response(status, headers=headers, content=content, request=exc.request, extensions=extensions)


def _turn_taken(
    op: Send, waited_from: float, stopped: Callable[[], bool] | None, closed: bool, why: str = _CLIENT_CLOSED
) -> None:
    """After `op` waited its turn (since `waited_from`, `time.monotonic()`): raise if stopped or closed meanwhile.

    The caller then gives its turn back unsent, as it does when interrupted here (a Ctrl+C). The wait
    counts against the call's deadline.
    """
    if (stopped is not None and stopped()) or closed:
        _check_before_send(stopped, True, why)
    if op.time_left is not None:
        op.time_left -= time.monotonic() - waited_from


def _attempt_deadline(op: Send, timeouts: httpx.Timeout) -> float | None:
    """Cap the attempt's timeouts at the call's deadline; by when its answer (a stream's headers) must come."""
    if op.time_left is None:
        return None
    _cap_timeouts(op.request, op.time_left, timeouts, stream=op.stream)
    return time.monotonic() + op.time_left


def _attempt_over(op: Send, ticket: int, outcome: Outcome, sent_at: float, debug: bool) -> float | None:
    """Settle the attempt's turn at the rate limiter (`outcome` None: interrupted, no answer) and log it.

    Returns how long it took when it was answered (an error built from the answer takes it), else None.
    """
    took = time.perf_counter() - sent_at
    if ticket and op.limiter is not None:
        op.limiter._settle(ticket, outcome, took)
    if debug and outcome is not None:
        _log_attempt(op, outcome, took)
    return took if isinstance(outcome, httpx.Response) else None


def _took(exc: BaseException, took: float | None) -> None:
    """Give an error built from the last attempt's answer (`took`: its time, None if unanswered) that time."""
    if took is not None and isinstance(exc, _ResponseError):
        exc._took(took)


def _stream_turn(op: Send, ticket: int) -> tuple[RateLimiter, int] | None:
    """The limiter and ticket of a stream's attempt: settled at its headers, its first event may teach more."""
    return (op.limiter, ticket) if ticket and op.limiter is not None and op.stream else None


def _delivered(
    plan: Plan,
    op: Deliver,
    close: bool,
    started_at: float,
    sent_at: float,
    deadline: float | None,
    turn: tuple[RateLimiter, int] | None,
) -> Exchange:
    """What the shell hands back once the plan delivers; the plan is closed first when asked to (`close`)."""
    if close:
        plan.close()
    return Exchange(op.response, started_at, time.perf_counter() - sent_at, op.retries, deadline, op.result, turn)


def _announce_retry(op: Sleep, lease: _LeaseBase | None) -> None:
    """Log the retry and tell the caller's `on_retry` hook, before the wait.

    What the hook raises ends the call as it is; for a stream (`lease`), whose reader would take it
    for a broken connection, the lease notes that it came from the hook.
    """
    _log_retry(op)
    if op.on_retry is not None:
        try:
            op.on_retry(op.retry, op.seconds, op.error)
        except Exception:
            if lease is not None:
                lease.hook_raised = True
            raise


def _plan(
    request: httpx.Request,
    stream: bool,
    options: ClientOptions,
    total_timeout: float | None,
    result: type[APIResult] | None = None,
    raw: bool = False,
) -> Plan:
    return call_plan(
        request,
        stream=stream,
        max_retries=options.max_retries,
        max_retry_wait=options.max_retry_wait,
        clock=time.time,
        timer=time.monotonic,
        random=random.random,
        on_retry=options.on_retry,
        total_timeout=total_timeout,
        limiter=options.rate_limiter,
        result=result,
        raw=raw,
    )


def _cap_timeouts(request: httpx.Request, time_left: float, base: httpx.Timeout, *, stream: bool) -> None:
    """Let no phase of this attempt wait past the call's deadline (`total_timeout`).

    `base` is the client's own timeouts, which httpx applies only when the request names none. A
    stream's read timeout is left alone: it also governs the body, which the deadline does not bound
    (its headers and first event are bounded otherwise: see `_first_read_bound`).
    """
    # At most what a socket's wait can take: a deadline further off is no phase's limit (see `_config`).
    left = min(max(time_left, 0.001), LONGEST_TIMEOUT_SECONDS)
    timeouts = request.extensions.get("timeout") or base.as_dict()
    capped = {
        phase: t if stream and phase == "read" else (left if t is None else min(t, left))
        for phase, t in timeouts.items()
    }
    request.extensions = {**request.extensions, "timeout": capped}


def _log_attempt(op: Send, outcome: Outcome, elapsed: float) -> None:
    request = op.request
    if isinstance(outcome, httpx.Response):
        log.debug(
            "%s %s -> %d in %.3f s (request id %s, attempt %d)",
            request.method,
            shown_url(request.url),
            outcome.status_code,
            elapsed,
            outcome.headers.get("x-request-id"),
            op.attempt,
        )
    else:
        shown = shown_url(request.url)
        # A failure may quote what the server sent, which may echo a gateway's key (`api-key`, in the query).
        failure = redact(repr(outcome), _key_of(request))
        log.debug("%s %s -> %s after %.3f s (attempt %d)", request.method, shown, failure, elapsed, op.attempt)


def _log_retry(op: Sleep) -> None:
    request = op.request
    # The failed attempt's request id, which a provider's support asks for; its redacted one.
    request_id = getattr(op.error, "request_id", None)
    log.info(
        "Retrying %s %s in %.2f s (retry %d of %d) after %s%s",
        request.method,
        shown_url(request.url),
        op.seconds,
        op.retry,
        op.max_retries,
        op.reason,
        f" (request id {request_id})" if request_id else "",
    )


def _interrupt(response: httpx.Response) -> None:
    """Wake a reader blocked on this response by shutting its socket down.

    Only for HTTP/1.x, where the connection serves this response alone until it is released (the
    caller makes sure it has not been).
    """
    if not response.http_version.startswith("HTTP/1"):
        return  # an HTTP/2 connection carries other requests too: never cut it
    network_stream = response.extensions.get("network_stream")
    if network_stream is not None:
        shut_down(network_stream.get_extra_info("socket"))


class _Stopped(Exception):  # noqa: N818 - a signal inside the shell, never seen outside
    """The caller stopped the call before its next send (a stream closed, a batch interrupted): the plan is dropped."""


def _ended_early(message: str = "The stream ended before its first event.") -> httpx.HTTPError:
    # Handed to the plan like a dropped connection: an empty stream is retried like one.
    return httpx.RemoteProtocolError(message)


# What a lease's first read asks of its shell, one step at a time (see `_LeaseBase._first_event_steps`).
_LeaseStep = Literal["read", "close response", "release"] | tuple[Plan, httpx.HTTPError | APIStatusError]


class _BodyEnded:
    """What a lease's first read gets instead of an event when the body ends before one."""

    __slots__ = ()


_BODY_ENDED: Final = _BodyEnded()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running in this thread; None under another async library."""
    import asyncio  # imported by the async client already

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _inherited_pool_is_empty(client: httpx.Client | httpx.AsyncClient) -> bool:
    """Whether a borrowed client opened no connection yet (then a forked child may use it)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    connections = getattr(pool, "connections", None)
    return isinstance(connections, list) and not connections


def _forked_borrowed_error() -> DeployAIError:
    return DeployAIError(
        "This client was created in another process with a borrowed http_client that already holds that "
        "process's connections: create the client (and its http_client) in this process, or let the client "
        "own its pool (no http_client), which it then reopens after a fork by itself."
    )


# --- leases: what both shells hand their streams -------------------------------------------------


def _raw(response: httpx.Response) -> bool:
    """Whether the body can be read as it comes, not through httpx's decoder.

    Most event streams are not compressed, and reading them raw spares a layer of httpx's per chunk.
    A response made with its body already read (a mock transport's) is read from that body.
    """
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.lower() == "identity" and not response.is_stream_consumed


def _events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """The (`event`, `data`) pairs of an event stream, read as they arrive."""
    parser = EventParser()
    for chunk in response.iter_raw() if _raw(response) else response.iter_bytes():
        try:
            events = parser.feed(chunk)
        except httpx.DecodingError:  # an event past its bound
            del chunk  # not kept alive by the error's traceback, which holds this frame
            raise
        yield from events
    yield from parser.end()


def _closing(events: AsyncIterator[tuple[str, str]]) -> Awaitable[None]:
    """`events.aclose()`, asked for without the loop's async generator hooks.

    A stream never read has events never started, which the loop would take for a generator
    starting only now: after its `shutdown_asyncgens()` (the end of an `asyncio.run`, when the
    loop's end closes the stream), asyncio warned of the SDK's `_aevents`. One started was
    registered at its start, and is closed as ever.
    """
    firstiter, finalizer = sys.get_asyncgen_hooks()
    try:
        sys.set_asyncgen_hooks(None, None)
        return events.aclose()  # type: ignore[attr-defined, no-any-return]
    finally:
        sys.set_asyncgen_hooks(firstiter, finalizer)


async def _aevents(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """`_events`, for an async response."""
    parser = EventParser()
    async for chunk in response.aiter_raw() if _raw(response) else response.aiter_bytes():
        try:
            events = parser.feed(chunk)
        except httpx.DecodingError:  # as in `_events`
            del chunk
            raise
        for event in events:
            yield event
    for event in parser.end():
        yield event


class _LeaseBase:
    """The state a lease shares with its stream, whichever the shell (see `_streaming.Lease`)."""

    __slots__ = (
        "__weakref__",
        "_born",
        "_holding",
        "_lock",
        "closing",
        "cut_short",
        "deadline",
        "elapsed",
        "first_pending",
        "handed_back",
        "hook_raised",
        "key",
        "pausing",
        "plan",
        "reading",
        "released",
        "response",
        "retries",
        "started_at",
        "swept",
        "turn",
    )

    def __init__(self, plan: Plan, exchange: Exchange, key: str) -> None:
        self._born = _forks
        # The client's key, kept alive for as long as this stream is: while it is, the key is looked
        # for in httpx's and httpcore's logs (`_logging.remember_key`), even once the client is gone.
        self.key = key
        self._lock = threading.Lock()
        self.plan: Plan | None = plan
        self.started_at = exchange.started_at
        self.elapsed = exchange.elapsed
        self.retries = exchange.retries
        self.turn = exchange.turn  # the rate limiter settled this stream at its headers: see below
        self.first_pending = True  # until the first event, a failure goes back to the plan
        self.deadline = exchange.deadline  # by when the first event must come (`total_timeout`)
        self.reading = False  # a read (or a retry before the first event) is under way
        self.closing = False  # close() was called: the reader stops at its next read
        self.cut_short: str | None = None  # why it was closed, if not by its own close(): the reader raises
        self.released = False
        self.handed_back = False  # abandoned: its shell releases it (see `abandon`)
        self.hook_raised = False  # the client's `on_retry` raised, on a retry before the first event
        self.swept = False  # released by its client's next request, as abandoned (not by the client's close)
        self.pausing: _ThreadWaiter | _TaskWaiter | None = None  # set while it waits to be sent again
        self._adopt(exchange.response)
        _leases_alive.add(self)  # last: a fork in another thread meanwhile finds it whole, or not at all

    def _adopt(self, response: httpx.Response) -> None:
        # The SSE standard: the stream is UTF-8 whatever the headers say, and a leading BOM is dropped.
        response.encoding = "utf-8-sig"
        self.response = response
        self._holding = True  # `response` is ours until `_let_go()`: only then may close() wake its reader
        self._read_events_of(response)

    def _read_events_of(self, response: httpx.Response) -> None:
        raise NotImplementedError

    def swept_unclosed(self) -> bool:
        """Whether its client's next request released it as abandoned, and the client is still open."""
        return self.swept

    def _handing_back(self) -> bool:
        """Mark the lease abandoned; whether it was not already.

        A stream whose reading was cancelled is handed back then, and again by its finalizer if it is
        dropped unclosed; one interrupted as it was made, by the client and perhaps by its finalizer.
        """
        with self._lock:
            first, self.handed_back = not self.handed_back, True
        return first

    def _let_go(self) -> bool:
        """Mark the response as no longer ours (its connection may serve others next); whether it was."""
        with self._lock:
            holding, self._holding = self._holding, False
        return holding

    def forked(self) -> bool:
        """Whether this process was forked from the one that opened the stream, whose connection it is."""
        return self._born != _forks

    def _claim_release(self) -> bool:
        """Whether this call is the one that releases the lease (the first to ask; never a forked child)."""
        if self._born != _forks:  # the parent's connection: neither read nor closed here
            self.released = True
            return False
        with self._lock:
            first, self.released = not self.released, True
        return first

    def _interrupt_reader(self) -> None:
        """Wake a reader blocked on the response, unless the response was already let go of."""
        if self._born != _forks:  # shutting the socket down would end the parent's stream
            return
        pausing = self.pausing
        if pausing is not None:  # waiting to be sent again: it stops waiting, and is not sent
            pausing.wake()
        with self._lock:  # held while shutting down, so that `_let_go` cannot hand the socket on meanwhile
            if self._holding:
                _interrupt(self.response)

    def mark_closed(self, cut_short: str | None = None) -> None:
        """Mark the stream closed; `cut_short` says why, for its reader, unless it was closed already."""
        if not self.closing:
            self.cut_short = cut_short
        self.closing = True

    def stopped(self) -> bool:
        """Whether the stream was closed: checked by the shell before it sends the request again."""
        return self.closing

    def _first_event_steps(self) -> Generator[_LeaseStep, Any, tuple[str, str] | None]:
        """`first_event` without its I/O: it yields each step for the shell's lease to carry out.

        `"read"`: read the next event and send it in (`_BODY_ENDED` if the body ends first), or throw
        in the failure. `"close response"`, `"release"`: do so. `(plan, failure)`: resume the plan
        from the failure, and send in the `Exchange` it delivers (or throw in what it raised). Until
        the first event arrives, a failure goes back to the plan, which may send again; a keep-alive
        event (`carries_nothing`) is no first event.
        """
        while True:
            self.reading = True
            try:
                if self.closing:
                    return None
                try:
                    sse: tuple[str, str] | _BodyEnded = yield "read"
                except httpx.HTTPError as exc:
                    if self.closing:
                        return None
                    failure: httpx.HTTPError | APIStatusError = exc
                else:
                    if isinstance(sse, _BodyEnded):
                        failure = _ended_early()
                    elif (reported := error_in_event(*sse)) is not None:
                        failure = make_stream_error(self.response, reported)
                        del sse, reported  # what the server sent, which may echo the key: no local of a traceback
                        failure._took(self.elapsed)  # the stream's, as its chunks would have had it
                        if self.turn is not None:  # counted a success at its headers: a refusal is learnt now
                            limiter, ticket = self.turn
                            limiter._reported(ticket, failure)
                    elif carries_nothing(*sse):  # a keep-alive: the answer has not started yet
                        continue
                    elif is_done(sse[1]):  # an answer of nothing: no answer, as an empty body
                        failure = _ended_early("The stream ended ([DONE]) before its first chunk.")
                    else:
                        # From here on a failure is raised, never retried: an answer never starts twice.
                        self.first_pending = False
                        self._drop_plan()
                        return sse
                # Still "reading" while the plan sleeps and sends again: a close() from elsewhere then
                # only marks the lease, and the reader releases it once the attempt is over.
                plan = self.plan
                yield "close response"
                if plan is None or self.closing:
                    yield "release"
                    return None
                try:
                    exchange: Exchange = yield plan, failure
                except _Stopped:
                    self.plan = None
                    yield "release"
                    return None
                except BaseException:
                    self.plan = None
                    yield "release"
                    raise
                finally:
                    # Its traceback holds this frame: kept here, the failure would be in a cycle with it.
                    del failure
                self.elapsed, self.retries, self.deadline = exchange.elapsed, exchange.retries, exchange.deadline
                self.turn = exchange.turn
                self._adopt(exchange.response)
                if self.closing:
                    yield "release"
                    return None
            finally:
                self.reading = False

    def _drop_plan(self) -> None:
        plan, self.plan = self.plan, None
        if plan is not None:
            with contextlib.suppress(ValueError):  # "generator already executing": its driver closes it
                plan.close()


# --- the blocking shell ---------------------------------------------------------------------------


class SyncLease(_LeaseBase):
    """A `Stream`'s hold on its response (see `_streaming.Lease`); only `SyncHTTP` makes one."""

    __slots__ = ("_shell", "events")

    def __init__(self, shell: SyncHTTP, plan: Plan, exchange: Exchange, key: str):
        self._shell = shell
        super().__init__(plan, exchange, key)

    def _read_events_of(self, response: httpx.Response) -> None:
        self.events: Iterator[tuple[str, str]] = _events(response)

    def first_event(self) -> tuple[str, str] | None:
        """Read the first event; until it arrives, a failure goes back to the plan, which may send again."""
        steps = self._first_event_steps()
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = steps.send(reply) if error is None else steps.throw(error)
                except StopIteration as done:
                    event: tuple[str, str] | None = done.value
                    return event
                finally:
                    error = None  # not kept in this frame, which its traceback holds
                    reply = None  # nor the event sent in: a server's error may echo the key
                try:
                    if step == "read":
                        with _first_read_bound(self.deadline):
                            reply = next(self.events, _BODY_ENDED)
                    elif step == "close response":
                        self._close_response()
                    elif step == "release":
                        self.release()
                    else:
                        reply = self._shell.resume(*step, self.started_at, stopped=self.stopped, lease=self)
                except BaseException as exc:
                    error = exc
        finally:
            steps.close()  # interrupted between steps: its `finally` runs now, not whenever it is collected

    def _close_response(self) -> None:
        if not self._let_go():
            return
        with contextlib.suppress(Exception):
            self.events.close()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            self.response.close()

    def release(self, *, done: bool = False) -> None:
        """Let go of the response: back to the pool if its body ended, else its connection is closed.

        With `done` (`data: [DONE]` arrived), the end of the body is read first if it comes within
        `STREAM_END_WAIT_SECONDS`, as `AsyncLease.release` does. Only the SDK's own pools (and the
        proxies it mounts) can bound that read; on a borrowed client's, the response is let go of at once.
        """
        if not self._claim_release():
            return
        self._shell.forget(self)
        self._drop_plan()
        try:
            # Reading to the end, httpx closes the response, and the connection may serve another
            # thread before `_close_response` below. A `close()` meanwhile cannot shut that socket
            # down under it: `reading` is False here, so close() never calls `_interrupt_reader`.
            if done and not self.closing and bounded(self.response):
                with reads_end_within(STREAM_END_WAIT_SECONDS), contextlib.suppress(Exception):
                    for _ in self.events:  # nothing after [DONE] is delivered
                        pass
        finally:
            self._close_response()

    def close(self, cut_short: str | None = None) -> None:
        """Stop the stream from any thread; never raises (see `_streaming` for the reading protocol).

        `cut_short` says why, when the client is closing and not the stream: its reader then raises.
        """
        self.mark_closed(cut_short)
        if self.reading:
            self._interrupt_reader()  # the reader wakes, sees `closing`, and releases
        else:
            self.release()

    def abandon(self) -> None:
        """Hand the lease back to the shell, which releases it where no lock can be held (no I/O here); once."""
        if self._handing_back() and not self.forked():
            self._shell.abandoned.append(self)


class SyncHTTP:
    """Carries out call plans with a blocking `httpx.Client`: the client's own pool, or a borrowed one.

    Attributes:
        abandoned: leases of streams dropped unclosed, released before the next request.
    """

    def __init__(self, http_client: httpx.Client | None) -> None:
        self._owned = http_client is None
        # Proxies and certificates are read from the environment once, as httpx reads them when a
        # client is made: a pool made later (after a fork) follows what the client was made with.
        self._settings: Settings | None = None
        if http_client is None:
            self._settings = Settings.read()
            http_client = _Client(self._settings)
        self._client = http_client
        self.in_process = False  # see `wired_in_process`
        self._pid = os.getpid()
        # How to wait between attempts when not `_sleep`: `deployai.testing` waits on a virtual clock.
        self.sleep: Callable[[float], None] | None = None
        self._closing = threading.Event()  # set by close(): ends the waits between attempts
        self._limiters: weakref.WeakSet[RateLimiter] = weakref.WeakSet()  # its calls wait there: close() wakes them
        # Held strongly: an open lease must never be left to the garbage collector, whose finalizing of
        # httpcore's generators takes the pool's lock, maybe while this very thread holds it.
        self._leases: set[SyncLease] = set()
        self.abandoned: collections.deque[SyncLease] = collections.deque()
        self._closed = False

    @property
    def client(self) -> httpx.Client:
        """The `httpx.Client` requests go through."""
        return self._client

    @property
    def borrowed(self) -> bool:
        """Whether the `httpx.Client` is the user's own (`http_client=`)."""
        return not self._owned

    @property
    def borrowed_client(self) -> httpx.Client | None:
        """The user's own `httpx.Client` (`http_client=`), or None."""
        return None if self._owned else self._client

    def _ready(self) -> httpx.Client:
        if self._pid != os.getpid():
            _once_in_child(self, self._after_fork)
        if self._closed or self._client.is_closed:
            raise _closed_error() if self._closed or self._owned else _borrowed_closed_error()
        while self.abandoned:
            with contextlib.suppress(IndexError):  # another thread emptied it first
                self.abandoned.popleft().release()
        return self._client

    def _after_fork(self, *, check_borrowed: bool = True) -> None:
        if check_borrowed and not self._owned and not self.in_process and not _inherited_pool_is_empty(self._client):
            raise _forked_borrowed_error()
        # The parent's pool, open streams and dropped streams are left untouched, and referenced.
        _left_in_parent.extend([self._leases, self.abandoned])
        if self._owned:
            _left_in_parent.append(self._client)
            assert self._settings is not None
            self._client = _Client(self._settings)
        self._leases = set()
        self.abandoned = collections.deque()
        self._closing = threading.Event()
        self._limiters = weakref.WeakSet()
        self._pid = os.getpid()

    def send(
        self,
        request: httpx.Request,
        options: ClientOptions,
        total_timeout: float | None = None,
        stopped: Callable[[], bool] | None = None,
        result: type[APIResult] | None = None,
        raw: bool = False,
    ) -> Exchange:
        """Send with retries; return the whole successful response (its body parsed as `result`), or raise.

        Once `stopped()` is true, no attempt is sent: a `DeployAIError` is raised instead. With `raw`,
        a body that does not parse is delivered all the same (see `call_plan`).
        """
        self._ready()
        started_at = time.perf_counter()
        plan = _plan(request, False, options, total_timeout, result, raw)
        try:
            return self.resume(plan, None, started_at, close=True, stopped=stopped)
        except _Stopped:
            raise DeployAIError("The call was stopped before it was sent (again).") from None

    def stream(self, request: httpx.Request, options: ClientOptions, total_timeout: float | None = None) -> SyncLease:
        """Send with retries; return a lease on the successful response at its headers."""
        self._ready()
        started_at = time.perf_counter()
        plan = _plan(request, True, options, total_timeout)
        exchange = self.resume(plan, None, started_at)
        lease = SyncLease(self, plan, exchange, options.api_key)
        self._leases.add(lease)
        if self._closed:  # closed from another thread while its headers came: that close missed it
            lease.close(_CLIENT_CLOSED)
        return lease

    def resume(
        self,
        plan: Plan,
        outcome: Outcome,
        started_at: float,
        *,
        close: bool = False,
        stopped: Callable[[], bool] | None = None,
        lease: _LeaseBase | None = None,
    ) -> Exchange:
        """Carry the plan on from `outcome` until it delivers (closing it after when `close`) or raises.

        `stopped` is asked before each send: a stream closed or a batch interrupted meanwhile sends no more.
        Closing the stream of `lease` ends a wait between attempts.
        """
        client = self._client
        debug = log.isEnabledFor(logging.DEBUG)
        sent_at = time.perf_counter()
        deadline: float | None = None
        turn: tuple[RateLimiter, int] | None = None
        took: float | None = None  # how long the last attempt took, once it was answered
        retrying: Sleep | None = None  # the wait before the attempt to come, when it is a retry
        try:
            while True:
                op = plan.send(outcome)
                outcome = None
                if type(op) is Send:
                    took = None
                    if stopped is not None or self._closed:
                        _check_before_send(stopped, self._closed)
                    ticket = 0
                    try:  # from its turn to its settling: a Ctrl+C anywhere between never keeps the turn
                        if op.limiter is not None:
                            try:
                                ticket = self._take_turn(op, op.limiter, stopped)
                            except RateLimitError as held:
                                _retry_held(retrying, held, op)
                        turn = _stream_turn(op, ticket)
                        deadline = _attempt_deadline(op, client.timeout)
                        sent_at = time.perf_counter()
                        try:
                            if deadline is None:
                                outcome = _fetch(client, op.request, op.stream)
                            else:  # a whole answer, or a stream's headers (its body's read timeout is its own)
                                with reads_end_within(deadline - time.monotonic()):
                                    outcome = _fetch(client, op.request, op.stream)
                        except InvalidParameterError:  # refused unsent (an unusable proxy: see `_pools`)
                            ticket = _unsent(op, ticket)
                            raise
                        except Exception as exc:
                            outcome = _failed(exc, op.request, _closed_as(client, self._owned), self._cut())
                    finally:
                        took = _attempt_over(op, ticket, outcome, sent_at, debug)
                elif type(op) is Deliver:
                    return _delivered(plan, op, close, started_at, sent_at, deadline, turn)
                elif type(op) is Sleep:
                    retrying = op
                    if self._closed:  # since the attempt: not sent again
                        _not_retried(op, stopped, self._cut())
                    _announce_retry(op, lease)
                    self._pause(op.seconds, lease)
                else:
                    assert type(op) is ReadBody
                    try:
                        if deadline is None:
                            _read_error_body(op.response)
                        else:  # a stream's error body, by the deadline of its headers
                            with reads_end_within(deadline - time.monotonic()):
                                _read_error_body(op.response)
                    except httpx.HTTPError as exc:
                        _answered(exc, op.response)  # a 2xx that is no event stream, cut: as a whole answer's
                        outcome = _attempt_failed(exc, self._cut())
                    except Exception as exc:  # a transport's own (a custom byte stream's): typed, as `_fetch` has it
                        raise _unexpected(
                            exc, op.response.request, _closed_as(client, self._owned), self._cut()
                        ) from safe_cause(exc)
                    finally:
                        op.response.close()
                    took = time.perf_counter() - sent_at
        except BaseException as exc:
            # The error's traceback holds this frame: `outcome` may be the failure the error is (an
            # error event that came first), which would make a cycle of them.
            outcome = None
            plan.close()
            _took(exc, took)
            raise

    def _take_turn(self, op: Send, limiter: RateLimiter, stopped: Callable[[], bool] | None) -> int:
        """Wait for `op`'s turn at `limiter`; its ticket (see `_turn_taken`)."""
        waited_from = 0.0 if op.time_left is None else time.monotonic()
        ticket = limiter._acquire_sync(op.request, op.wait_limit, lambda at: self._waiting_at(at, stopped), self)
        try:  # at once: until it returns, its caller has no ticket to settle
            _turn_taken(op, waited_from, stopped, self._closed)
        except BaseException:
            limiter._withdraw(ticket)
            raise
        return ticket

    def wake_waiting(self) -> None:
        """Wake this shell's calls waiting at a rate limiter to look again: those stopped meanwhile end."""
        _wake_waiters_at(self._limiters, self)

    def _waiting_at(self, limiter: RateLimiter, stopped: Callable[[], bool] | None) -> None:
        """Before a call waits its turn at `limiter`: `close()` wakes it there from now on, or it ends now."""
        self._limiters.add(limiter)  # only for calls that wait: none is added on the way of one that does not
        _check_before_send(stopped, self._closed)

    def _cut(self) -> str | None:
        """Why a failed attempt failed if the SDK cut its connection (it closed the pool); None if not.

        A borrowed pool stays open when the client closes, so its calls' failures are their own.
        """
        return _CLIENT_CLOSED if self._closed and (self._owned or self.in_process) else None

    def _pause(self, seconds: float, lease: _LeaseBase | None = None) -> None:
        """Wait between attempts; `close()`, or closing the stream of `lease`, ends it (the next send then raises)."""
        if self.sleep is not None or _sleep is not time.sleep:  # a virtual clock (`deployai.testing`, tests)
            (self.sleep or _sleep)(seconds)
            return
        woken = self._closing
        if lease is not None:  # the client's close closes the stream too, and so wakes this
            pause = _ThreadWaiter()
            woken = pause.event
            lease.pausing = pause
            if lease.closing or self._closed:  # closed before it was set: no wake is coming
                pause.wake()
        try:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0 and not woken.wait(min(left, _WAIT_SLICE_SECONDS)):
                pass
        finally:
            if lease is not None:
                lease.pausing = None

    def wired_in_process(self) -> None:
        """Mark the `http_client` as the SDK's own in-process wiring (the clients of `deployai.testing`).

        It is closed with this client. A forked child goes on using it: it holds no connections, and
        the child has its own copy of the emulator. A client on it does not pickle: the emulator
        cannot travel with it.
        """
        self.in_process = True

    def forget(self, lease: SyncLease) -> None:
        """A lease was released."""
        self._leases.discard(lease)

    def close(self) -> None:
        """Release every open stream, then close the pool if it is ours; a borrowed client is left open."""
        if self._pid != os.getpid():  # in a forked child: the parent's are not ours to close
            _once_in_child(self, lambda: self._after_fork(check_borrowed=False))
        self._closed = True
        self._closing.set()
        _wake_waiters_at(self._limiters, self)
        for lease in list(self._leases):
            lease.close(_CLIENT_CLOSED)  # not release(): another thread may be reading it
        while self.abandoned:
            self.abandoned.popleft().release()
        if (self._owned or self.in_process) and self._pid == os.getpid():
            self._client.close()


# --- the asyncio shell ----------------------------------------------------------------------------


class AsyncLease(_LeaseBase):
    """An `AsyncStream`'s hold on its response (see `_streaming.AsyncLease`); only `AsyncHTTP` makes one."""

    __slots__ = ("_pool", "_shell", "events")

    def __init__(self, pool: _LoopPool, plan: Plan, exchange: Exchange, key: str):
        self._pool = pool
        # Strongly, where its pool holds its shell weakly: a stream that may still be read keeps its
        # client's shell, which it resumes its plan with. Until it is abandoned (see `abandon`).
        self._shell: AsyncHTTP | None = pool.shell
        super().__init__(plan, exchange, key)

    def _read_events_of(self, response: httpx.Response) -> None:
        self.events: AsyncIterator[tuple[str, str]] = _aevents(response)

    def check_loop(self) -> None:
        """Refuse to read on an event loop other than the one the stream was opened on (its connection's)."""
        opened_on = self._pool._loop
        if opened_on is None:  # opened outside asyncio
            return
        if opened_on() is not _running_loop():
            raise DeployAIError(
                "This stream was opened on another event loop, and its connection belongs to that loop: "
                "read it there, before that loop ends."
            )

    async def first_event(self) -> tuple[str, str] | None:
        """Read the first event; until it arrives, a failure goes back to the plan, which may send again."""
        steps = self._first_event_steps()
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = steps.send(reply) if error is None else steps.throw(error)
                except StopIteration as done:
                    event: tuple[str, str] | None = done.value
                    return event
                finally:
                    error = None  # not kept in this frame, which its traceback holds
                    reply = None  # nor the event sent in: a server's error may echo the key
                try:
                    if step == "read":
                        reply = await self._first_read()
                    elif step == "close response":
                        await self._close_response()
                    elif step == "release":
                        await self.release()
                    else:
                        reply = await self._still_held().resume(
                            self._pool, *step, self.started_at, stopped=self.stopped, lease=self
                        )
                except BaseException as exc:
                    error = exc
        finally:
            steps.close()  # interrupted between steps: its `finally` runs now, not whenever it is collected

    def _still_held(self) -> AsyncHTTP:
        """Its shell, to resume the plan with; only a lease read after it was abandoned has none."""
        if self._shell is None:  # abandoned as its reading was cancelled, which marked it closed
            raise DeployAIError("This stream was let go of, and reads nothing more.")
        return self._shell

    async def _close_response(self) -> None:
        if not self._let_go():
            return
        with contextlib.suppress(Exception):
            await _closing(self.events)
        with contextlib.suppress(Exception):
            await self.response.aclose()

    async def release(self, *, done: bool = False) -> None:
        """Let go of the response: back to the pool if its body ended, else its connection is closed.

        With `done` (`data: [DONE]` arrived), the end of the body is read first if it comes within
        `STREAM_END_WAIT_SECONDS`, so that the connection serves the next call instead of a new
        connection (and a TLS handshake) being opened for it.
        """
        if not self._claim_release():
            return
        self._pool.leases.discard(self)
        self._drop_plan()
        try:
            if done and not self.closing:
                await self._read_to_end()
        finally:
            await self._close_response()

    async def _first_read(self) -> tuple[str, str] | _BodyEnded:
        """The next event (`_BODY_ENDED` if the body ends first); `httpx.ReadTimeout` if none comes by the deadline."""
        if self.deadline is None:
            return await anext(self.events, _BODY_ENDED)
        import anyio

        with anyio.move_on_after(max(self.deadline - time.monotonic(), FIRST_READ_GRACE_SECONDS)):
            return await anext(self.events, _BODY_ENDED)
        raise httpx.ReadTimeout("No event came before the call's deadline.", request=self.response.request)

    async def _read_to_end(self) -> None:
        import anyio  # httpx's own dependency: a deadline under asyncio and trio alike

        with anyio.move_on_after(STREAM_END_WAIT_SECONDS), contextlib.suppress(Exception):
            async for _ in self.events:  # nothing after [DONE] is delivered
                pass

    async def close(self, cut_short: str | None = None) -> None:
        """Stop the stream from any task; never raises (see `_streaming` for the reading protocol).

        `cut_short` says why, when the pool is closing and not the stream: its reader then raises.
        """
        self.mark_closed(cut_short)
        # A reader waits either in `first_event` (`reading`) or inside the events generator, which
        # counts as running while it awaits.
        if self.reading or getattr(self.events, "ag_running", False):
            self._interrupt_reader()  # the reader wakes, sees `closing`, and releases
            return
        loop = self._pool.loop
        if loop is not None and loop.is_running() and loop is not _running_loop():
            # Its loop runs in another thread, which alone may close its transport: released there.
            import asyncio  # imported by the async client already

            releasing = self.release()
            try:
                asyncio.run_coroutine_threadsafe(releasing, loop)
            except RuntimeError:  # that loop closed meanwhile: released here after all
                releasing.close()
            else:
                return
        await self.release()

    def swept_unclosed(self) -> bool:
        """As `_LeaseBase.swept_unclosed`; its pool closes with its client (or with the client's use of its loop)."""
        return self.swept and not self._pool.closed

    def abandon(self) -> None:
        """Hand the lease back to its loop's pool, released before that loop's next request (no I/O here).

        It lets go of its shell: its pool, which the loop holds for as long as the shell lives, holds
        it now, and would keep a client dropped with it for the loop's life.
        """
        self._shell = None
        if self._handing_back() and not self.forked():
            self._pool.abandoned.append(self)


class _LoopPool:
    """The `httpx.AsyncClient` one `AsyncHTTP` uses on one event loop, and the streams it leased there."""

    __slots__ = ("__weakref__", "_loop", "_shell", "abandoned", "client", "closed", "keeper", "leases", "owned", "why")

    def __init__(
        self, shell: AsyncHTTP, loop: asyncio.AbstractEventLoop | None, client: httpx.AsyncClient, *, owned: bool
    ) -> None:
        # Weakly: its loop holds it, for as long as its shell is alive (see `held_by_loop`).
        self._shell = weakref.ref(shell)
        # Weakly: the shell maps loops to pools weakly, and a pool holding its loop would keep both alive.
        self._loop = None if loop is None else weakref.ref(loop)
        self.client = client
        self.owned = owned
        self.closed = False
        self.why = _CLIENT_CLOSED  # why it closed, for calls it cuts short
        self.leases: set[AsyncLease] = set()  # held strongly, as `SyncHTTP` holds its leases
        self.abandoned: collections.deque[AsyncLease] = collections.deque()
        self.keeper: AsyncGenerator[None, None] | None = None

    @property
    def shell(self) -> AsyncHTTP | None:
        """The shell that opened this pool; None once it is gone."""
        return self._shell()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this pool belongs to; None for a pool used outside asyncio, or once its loop is gone."""
        return None if self._loop is None else self._loop()

    def held_by_loop(self) -> bool:
        """Have the loop hold this pool, which then lives as long as the loop, and no longer; whether it could.

        A pool's connections hold its loop. Held by the shell, a pool would keep a loop its program
        dropped without closing it (a loop made per call) alive for good, with its sockets; held by
        the loop, both go to the collector together. The loop holds it by its shell, weakly: a
        client dropped unclosed on a loop that runs on (a client per request in a web service) goes
        with its pool, as it did when the shell held it. A loop that takes no attributes cannot hold it.
        """
        attributes: dict[str, Any] | None = getattr(self.loop, "__dict__", None)
        shell = self.shell
        if attributes is None or shell is None:
            return False
        held: weakref.WeakKeyDictionary[AsyncHTTP, _LoopPool] = attributes.setdefault(
            _HELD_BY_LOOP, weakref.WeakKeyDictionary()
        )
        held[shell] = self
        return True

    def _let_loop_go(self) -> None:
        """The pool closed: its loop holds it no longer (a loop that runs on would keep it for nothing)."""
        held = getattr(self.loop, "__dict__", {}).get(_HELD_BY_LOOP)
        shell = self.shell
        if held is not None and shell is not None and held.get(shell) is self:
            del held[shell]

    def watch_loop(self) -> None:
        """Register with the running loop an async generator whose end closes this pool with the loop."""
        keeper = _keep(self)
        self.keeper = keeper
        # Run it to its `yield` now, synchronously: the first step registers it with the running loop,
        # which closes it in `shutdown_asyncgens()` (`asyncio.run` and test runners call it at the end).
        # Its finalizer reaches the loop weakly: a loop dropped unclosed goes to the collector with
        # this keeper, and the loop's own finalizer would then hand the dying loop an `aclose()` that
        # never runs (Python 3.13 warns of it).
        firstiter, finalizer = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter, _finalizing_weakly(finalizer))
        try:
            with contextlib.suppress(StopIteration):
                keeper.asend(None).send(None)
        finally:
            sys.set_asyncgen_hooks(firstiter, finalizer)

    def forsake(self) -> None:
        """Its loop was closed without shutting its async generators down: end, without it, what can be ended.

        Nothing can be awaited on a closed loop. The pool is marked closed (a stream of it still read
        says its loop shut down), the sockets of the connections the SDK made are shut down (the
        server sees them close now), and its keeper ends here, or the collector would hand it to the
        closed loop. What is left goes to the collector, and asyncio warns about its transports.
        """
        if not self.closed:  # closed already (by `aclose()`): it keeps the reason it was closed for
            self.closed = True
            self.why = "Its event loop shut down"
        self._let_loop_go()
        if self.owned and isinstance(self.client, _AsyncClient):
            self.client._cut.close()
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                keeper.aclose().send(None)  # its `finally` awaits nothing: the pool is closed already

    async def release_abandoned(self) -> None:
        """Release the leases of streams dropped unclosed, or whose reading was cancelled."""
        while self.abandoned:
            lease = self.abandoned.popleft()
            lease.swept = True
            await lease.release()

    async def aclose(self, cut_short: str = _CLIENT_CLOSED) -> None:
        """Release every open stream, then close the pool if it is ours; `cut_short` says why, to their readers."""
        if self.closed:
            return
        self.closed = True
        self.why = cut_short
        self._let_loop_go()
        for lease in list(self.leases):
            await lease.close(cut_short)  # not release(): another task may be reading it
        while self.abandoned:
            await self.abandoned.popleft().release()
        if self.owned:
            with contextlib.suppress(Exception):
                await self.client.aclose()


def _finalizing_weakly(
    finalizer: Callable[[AsyncGenerator[Any, Any]], None] | None,
) -> Callable[[AsyncGenerator[Any, Any]], None] | None:
    """`finalizer` (a loop's bound method), holding its loop weakly: a loop that is gone finalizes nothing."""
    owner = getattr(finalizer, "__self__", None)
    name = getattr(finalizer, "__name__", None)
    try:
        loop = weakref.ref(owner)
    except TypeError:  # not a bound method, or of an object with no weak references: kept as it is
        return finalizer
    if not isinstance(name, str):
        return finalizer

    def finalize(generator: AsyncGenerator[Any, Any]) -> None:
        owner = loop()
        if owner is not None:
            getattr(owner, name)(generator)

    return finalize


async def _keep(pool: _LoopPool) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        # As a registered async generator it holds its loop (through its finalizer): let go of it, or
        # a pool the shell holds (`_current`, or one a loop cannot hold) would keep that loop.
        pool.keeper = None
        await pool.aclose("Its event loop shut down")


# The name of the attribute by which a loop holds the SDK's pools on it (see `_LoopPool.held_by_loop`).
_HELD_BY_LOOP: Final = "_deployai_pools"


class AsyncHTTP:
    """Carries out call plans with an `httpx.AsyncClient`: its own pool per event loop, or a borrowed one."""

    def __init__(self, http_client: httpx.AsyncClient | None) -> None:
        self._borrowed = http_client
        # Read once, as httpx reads them when a client is made: every loop's pool follows them.
        self._settings = Settings.read() if http_client is None else None
        self.in_process = False  # see `wired_in_process`
        # One pool per event loop, used one after the other or at the same time from several threads;
        # each found through a weak reference where its loop holds it (see `_LoopPool.held_by_loop`).
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Callable[[], _LoopPool | None]] = (
            weakref.WeakKeyDictionary()
        )
        self._loopless: _LoopPool | None = None  # for async libraries other than asyncio
        self._current: _LoopPool | None = None  # the pool used last: most calls come from the same loop
        self._pid = os.getpid()
        self._closed = False
        # How to wait between attempts when not `_async_sleep`: `deployai.testing` waits on a virtual clock.
        self.sleep: Callable[[float], Awaitable[Any]] | None = None
        self._pauses: set[_TaskWaiter] = set()  # tasks waiting between attempts: close() wakes them
        self._limiters: weakref.WeakSet[RateLimiter] = weakref.WeakSet()  # its calls wait there: close() wakes them
        import asyncio  # loaded with the first async client: a program that uses only `DeployAI` never imports it

        self._running_loop = asyncio.get_running_loop

    @property
    def borrowed(self) -> bool:
        """Whether requests go through the user's own `httpx.AsyncClient` (`http_client=`)."""
        return self._borrowed is not None

    @property
    def borrowed_client(self) -> httpx.AsyncClient | None:
        """The user's own `httpx.AsyncClient` (`http_client=`), or None."""
        return self._borrowed

    def wired_in_process(self) -> None:
        """As `SyncHTTP.wired_in_process`."""
        self.in_process = True

    @property
    def client(self) -> httpx.AsyncClient | None:
        """The `httpx.AsyncClient` of the loop used last (None before the first request)."""
        return self._borrowed if self._current is None else self._current.client

    def _pool_here(self) -> _LoopPool:
        if self._closed:
            raise _closed_error(blocking=False)
        try:
            loop: asyncio.AbstractEventLoop | None = self._running_loop()
        except RuntimeError:  # another async library: there is no asyncio loop to follow
            loop = None
        if self._pid != os.getpid():
            _once_in_child(self, self._after_fork)
        pool = self._current
        if pool is None or pool.closed or pool.loop is not loop:
            if loop is None:
                pool = self._loopless
            else:
                found = self._pools.get(loop)
                pool = None if found is None else found()
            if pool is None or pool.closed:
                pool = self._open(loop)
            self._current = pool
        if pool.client.is_closed:
            raise _closed_error(blocking=False) if pool.client is not self._borrowed else _borrowed_closed_error()
        return pool

    def _open(self, loop: asyncio.AbstractEventLoop | None) -> _LoopPool:
        # Pools of other loops stay as they are: their loops may still be running (in other threads),
        # and each is closed with its own loop (see `_keep`) or by `close()`. Those of loops closed
        # without shutting down are let go of here, where a program that makes a loop per call comes.
        self._forsake_closed_loops()
        borrowed = self._borrowed
        if borrowed is None:
            assert self._settings is not None
            client: httpx.AsyncClient = _AsyncClient(self._settings)
        else:
            client = borrowed
        pool = _LoopPool(self, loop, client, owned=borrowed is None)
        if loop is None:
            self._loopless = pool
        else:
            self._pools[loop] = weakref.ref(pool) if pool.held_by_loop() else lambda: pool
            pool.watch_loop()
        return pool

    def _forsake_closed_loops(self) -> None:
        """Let go of the pools of loops closed without shutting their async generators down (see `forsake`)."""
        while True:
            try:
                pools = list(self._pools.items())
                break
            except RuntimeError:  # another thread opened a pool on its loop meanwhile: the map changed size
                continue
        for loop, found in pools:
            # Taken out of the map, which may hold it and its loop for good (it holds its loop
            # through its keeper); by one thread only, if two look at once.
            if loop.is_closed() and self._pools.pop(loop, None) is found and (pool := found()) is not None:
                pool.forsake()
                if self._current is pool:
                    self._current = None

    def _after_fork(self) -> None:
        if self._borrowed is not None and not self.in_process and not _inherited_pool_is_empty(self._borrowed):
            raise _forked_borrowed_error()
        # The parent's pools, leases and sockets are left untouched, and referenced (see `_left_in_parent`).
        self._forget_parent()

    def _forget_parent(self) -> None:
        """In a forked child: leave the parent's pools and waiters as they are, for a fresh start."""
        _left_in_parent.extend([*(found() for found in self._pools.values()), self._loopless])
        self._pools = weakref.WeakKeyDictionary()
        self._loopless = self._current = None
        self._pauses = set()
        self._limiters = weakref.WeakSet()
        self._pid = os.getpid()

    async def send(
        self,
        request: httpx.Request,
        options: ClientOptions,
        total_timeout: float | None = None,
        result: type[APIResult] | None = None,
        raw: bool = False,
    ) -> Exchange:
        """Send with retries; return the whole successful response (its body parsed as `result`), or raise."""
        pool = self._pool_here()
        if pool.abandoned:
            await pool.release_abandoned()
        started_at = time.perf_counter()
        plan = _plan(request, False, options, total_timeout, result, raw)
        return await self.resume(pool, plan, None, started_at, close=True)

    async def stream(
        self, request: httpx.Request, options: ClientOptions, total_timeout: float | None = None
    ) -> AsyncLease:
        """Send with retries; return a lease on the successful response at its headers."""
        pool = self._pool_here()
        if pool.abandoned:
            await pool.release_abandoned()
        started_at = time.perf_counter()
        plan = _plan(request, True, options, total_timeout)
        exchange = await self.resume(pool, plan, None, started_at)
        lease = AsyncLease(pool, plan, exchange, options.api_key)
        pool.leases.add(lease)
        if self._closed or pool.closed:  # closed from another thread while its headers came: as above
            await lease.close(pool.why)
        return lease

    async def resume(
        self,
        pool: _LoopPool,
        plan: Plan,
        outcome: Outcome,
        started_at: float,
        *,
        close: bool = False,
        stopped: Callable[[], bool] | None = None,
        lease: _LeaseBase | None = None,
    ) -> Exchange:
        """Carry the plan on from `outcome` until it delivers or raises (see `SyncHTTP.resume`)."""
        client = pool.client
        debug = log.isEnabledFor(logging.DEBUG)
        sent_at = time.perf_counter()
        deadline: float | None = None
        turn: tuple[RateLimiter, int] | None = None
        took: float | None = None  # how long the last attempt took, once it was answered
        retrying: Sleep | None = None  # the wait before the attempt to come, when it is a retry
        try:
            while True:
                op = plan.send(outcome)
                outcome = None
                if type(op) is Send:
                    took = None
                    if stopped is not None or self._closed or pool.closed:
                        _check_before_send(stopped, self._closed or pool.closed, pool.why)
                    ticket = 0
                    try:  # as in `SyncHTTP.resume`
                        if op.limiter is not None:
                            try:
                                ticket = await self._take_turn(op, op.limiter, stopped, pool)
                            except RateLimitError as held:
                                _retry_held(retrying, held, op)
                        turn = _stream_turn(op, ticket)
                        deadline = _attempt_deadline(op, client.timeout)
                        sent_at = time.perf_counter()
                        try:
                            if deadline is None:
                                outcome = await _afetch(client, op.request, op.stream)
                            else:  # a whole answer, or a stream's headers (its body's read timeout is its own)
                                outcome = await _send_by(deadline, client, op.request, op.stream, pool.loop is not None)
                        except InvalidParameterError:  # as in `SyncHTTP.resume`
                            ticket = _unsent(op, ticket)
                            raise
                        except Exception as exc:
                            outcome = _failed(
                                exc, op.request, _closed_as(client, client is not self._borrowed), self._cut(pool)
                            )
                    finally:
                        took = _attempt_over(op, ticket, outcome, sent_at, debug)
                elif type(op) is Deliver:
                    return _delivered(plan, op, close, started_at, sent_at, deadline, turn)
                elif type(op) is Sleep:
                    retrying = op
                    if self._closed or pool.closed:  # since the attempt: not sent again
                        _not_retried(op, stopped, self._cut(pool))
                    _announce_retry(op, lease)
                    await self._pause(op.seconds, lease)
                else:
                    assert type(op) is ReadBody
                    try:
                        if deadline is None:
                            await _aread_error_body(op.response)
                        else:  # a stream's error body, by the deadline of its headers
                            await _read_by(deadline, op.response)
                    except httpx.HTTPError as exc:
                        _answered(exc, op.response)  # as in `SyncHTTP`
                        outcome = _attempt_failed(exc, self._cut(pool))
                    except Exception as exc:  # as in `SyncHTTP`
                        raise _unexpected(
                            exc, op.response.request, _closed_as(client, client is not self._borrowed), self._cut(pool)
                        ) from safe_cause(exc)
                    finally:
                        await op.response.aclose()
                    took = time.perf_counter() - sent_at
        except BaseException as exc:
            # The error's traceback holds this frame: `outcome` may be the failure the error is (an
            # error event that came first), which would make a cycle of them.
            outcome = None
            plan.close()
            _took(exc, took)
            raise

    async def _take_turn(
        self, op: Send, limiter: RateLimiter, stopped: Callable[[], bool] | None, pool: _LoopPool
    ) -> int:
        """As `SyncHTTP._take_turn`, for a call of `pool`."""
        waited_from = 0.0 if op.time_left is None else time.monotonic()
        ticket = await limiter._acquire_async(
            op.request, op.wait_limit, lambda at: self._waiting_at(at, stopped, pool), self
        )
        try:  # as in `SyncHTTP._take_turn`
            _turn_taken(op, waited_from, stopped, self._closed or pool.closed, pool.why)
        except BaseException:
            limiter._withdraw(ticket)
            raise
        return ticket

    def _waiting_at(self, limiter: RateLimiter, stopped: Callable[[], bool] | None, pool: _LoopPool) -> None:
        """As `SyncHTTP._waiting_at`, for a call of `pool`."""
        self._limiters.add(limiter)
        _check_before_send(stopped, self._closed or pool.closed, pool.why)

    def _cut(self, pool: _LoopPool) -> str | None:
        """Why a failed attempt failed if the SDK cut its connection (it closed `pool`); None if not.

        A borrowed pool stays open when the client closes, so its calls' failures are their own.
        """
        if not pool.owned:
            return None
        if pool.closed:
            return pool.why
        return _CLIENT_CLOSED if self._closed else None

    async def _pause(self, seconds: float, lease: _LeaseBase | None = None) -> None:
        """Wait between attempts; `close()`, or closing the stream of `lease`, ends it (the next send then raises)."""
        if self.sleep is not None or _async_sleep is not _asyncio_sleep:  # a virtual clock (`deployai.testing`, tests)
            await (self.sleep or _async_sleep)(seconds)
            return
        try:
            loop = self._running_loop()
        except RuntimeError:  # another async library: its own sleep, which close() does not end
            await _async_sleep(seconds)
            return
        pause = _TaskWaiter(loop)
        woken = pause.arm()
        timer = loop.call_later(seconds, pause.wake)
        self._pauses.add(pause)
        if lease is not None:
            lease.pausing = pause
        try:
            # Closed from another thread before it was added (or set): no wake is coming.
            if not self._closed and not (lease is not None and lease.closing):
                await woken
        finally:
            timer.cancel()
            self._pauses.discard(pause)
            if lease is not None:
                lease.pausing = None

    async def close(self) -> None:
        """Release every open stream and close the pools that are ours; a borrowed client is left open.

        The pool of the running loop is closed here; a pool whose loop runs in another thread is closed
        there; one whose loop has stopped was closed with it, or is left to it; one whose loop was
        closed without shutting down is let go of (see `_LoopPool.forsake`). Calls waiting between
        attempts, or their turn at a rate limiter, are woken to raise.
        """
        if self._pid != os.getpid():  # a forked child: the parent's are left untouched
            _once_in_child(self, self._forget_parent)
        self._closed = True
        for pause in list(self._pauses):
            pause.wake()
        _wake_waiters_at(self._limiters, self)
        self._forsake_closed_loops()
        try:
            here: asyncio.AbstractEventLoop | None = self._running_loop()
        except RuntimeError:
            here = None
        for pool in [*(found() for found in self._pools.values()), self._loopless]:
            if pool is None or pool.closed:
                continue
            loop = pool.loop
            if loop is here or pool._loop is None:
                await pool.aclose()
                if pool.keeper is not None:
                    await pool.keeper.aclose()  # unregisters it from the loop (the pool is closed already)
            elif loop is not None and loop.is_running() and not loop.is_closed():
                import asyncio  # imported by `__init__` already

                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(pool.aclose(), loop)
        if self.in_process and self._borrowed is not None:
            await self._borrowed.aclose()


def _wake_waiters_at(limiters: weakref.WeakSet[RateLimiter], owner: object) -> None:
    """Wake the calls of `owner` (a shell) waiting at `limiters`: it closed (see `RateLimiter._wake_all`)."""
    while True:
        try:
            found = list(limiters)
            break
        except RuntimeError:  # another thread's call added a limiter meanwhile: the set changed size
            continue
    for limiter in found:
        limiter._wake_all(owner)


def _not_retried(op: Sleep, stopped: Callable[[], bool] | None, cut: str | None) -> NoReturn:
    """The client closed since the attempt `op` would retry: it is not sent again.

    A call the SDK cut (`cut`: why) says so, as if the close came during the wait; a call on a
    borrowed pool, which the close leaves open, raises its attempt's own failure.
    """
    if stopped is not None and stopped():
        raise _Stopped
    if cut is not None:
        raise _closed_in_flight(cut) from op.cause
    raise op.given_up("the client was closed") from op.cause


def _unsent(op: Send, ticket: int) -> int:
    """Give the attempt's turn at its limiter back: nothing was sent. Returns the ticket left to settle (none)."""
    if ticket and op.limiter is not None:
        op.limiter._withdraw(ticket)
    return 0


def _retry_held(op: Sleep | None, held: RateLimitError, attempt: Send) -> NoReturn:
    """The rate limiter would hold an attempt longer than the call may wait (`held`, nothing sent).

    A retry's (`op`: the wait before it) raises the failure it was to retry: that failure is what
    became of the call. Its cause is the limiter's refusal, or, for a transport's failure, httpx's
    error as always (the refusal is then its `__context__`). A first attempt's raises the refusal.
    """
    if attempt.time_left is not None and attempt.time_left <= attempt.wait_limit:
        # Held past the call's `total_timeout`: a batch would queue it again, its deadline begun anew.
        held._queued = False
    if op is None:
        raise held
    why = None if held._hold is None else f"the rate limiter would hold the retry {held._hold}"
    raise op.given_up(why) from (held if op.cause is None else op.cause)


def _check_before_send(stopped: Callable[[], bool] | None, closed: bool, why: str = _CLIENT_CLOSED) -> None:
    if stopped is not None and stopped():
        raise _Stopped
    if closed:
        raise _closed_in_flight(why)


def _closed_as(client: httpx.Client | httpx.AsyncClient, owned: bool) -> DeployAIError | None:
    """The error for a call whose httpx client is closed (the SDK's own, or one it was given); None if it is open."""
    if not client.is_closed:
        return None
    return _closed_error(blocking=isinstance(client, httpx.Client)) if owned else _borrowed_closed_error()


def _unexpected(exc: Exception, request: httpx.Request, closed: DeployAIError | None, cut: str | None) -> DeployAIError:
    """The SDK's error for a failure from below that is not an `httpx.HTTPError` (`cut`: as `_attempt_failed`)."""
    if cut is not None:
        return _closed_in_flight(cut)
    if closed is not None:
        return closed
    if isinstance(exc, RuntimeError) and _LOOP_TROUBLE.search(str(exc)):
        return _loop_error(exc, request)
    return transport_error(exc, request)


# asyncio's and anyio's words for a client used on another event loop than its own ("... attached to
# a different loop", "Event loop is closed"), not any error that says "loop" (a hook's "retry loop").
_LOOP_TROUBLE: Final = re.compile(r"different (event )?loop|[Ee]vent loop is closed|another event loop")


def _loop_error(exc: RuntimeError, request: httpx.Request) -> APIConnectionError:
    return APIConnectionError(
        f"Connection error: the http_client could not be used on this event loop ({exc}). An httpx.AsyncClient "
        "is bound to the event loop it was first used on: create it on this loop, or let the client own its pool.",
        request=request,
    )
