"""Streams and clients in production shapes, over real loopback sockets: inline iteration under load,
the end at [DONE], close from elsewhere, event loops that change, fork."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import deployai
from deployai import _http, _pools
from deployai._limiter import _ThreadWaiter
from deployai.testing import Emulator, EmulatorServer
from tests.conftest import ClientFactory, completion_json, fork_and_report, user
from tests.loopback import active_connections, server_fixture, shared_server_fixture, small_pool  # noqa: F401 (fixtures)
from tests.raw_server import After, HoldingServer, RawSSEServer
from tests.sse import DONE, chunk, event

MODEL = "openai/gpt-4o"
KEY = "sk-lifecycle-test"
LONG_PROMPT = " ".join(f"word{i}" for i in range(60))  # the emulator streams it back in ~60 chunks
HANG_LIMIT_SECONDS = 15.0  # only a hang detector: every wait below ends far sooner when the SDK is right


def texts(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.fixture
def no_resource_warnings() -> Iterator[list[str]]:
    """Fail the test on any ResourceWarning, including one raised in a finalizer."""
    seen: list[str] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: seen.append(repr(u.exc_value))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield seen
        gc.collect()
    sys.unraisablehook = hook
    seen += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert seen == []


# 1. A stream iterated inline, without `with`, lives as long as it is iterated.


def test_an_inline_sync_stream_survives_calls_from_its_loop_body_and_other_threads(
    server: EmulatorServer, no_resource_warnings: list[str]
) -> None:
    http_client = small_pool("sync", 3)
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url, http_client=http_client)
    stop = threading.Event()
    failures: list[BaseException] = []

    def hammer() -> None:
        try:
            while not stop.is_set():
                client.models.list()
        except BaseException as exc:  # reported below
            failures.append(exc)

    other = threading.Thread(target=hammer)
    other.start()
    chunks = []
    try:
        for piece in client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True):
            chunks.append(piece)
            client.models.list()  # another request from the loop body, on the same pool
            if len(chunks) % 10 == 0:
                gc.collect()  # a stream held only by its loop must not be taken for abandoned
    finally:
        stop.set()
        other.join()
    assert failures == []
    assert texts(chunks) == f"You said: {LONG_PROMPT}"
    assert active_connections(http_client) == 0
    client.close()
    http_client.close()


def test_an_inline_async_stream_survives_calls_from_its_loop_body_and_other_tasks(
    server: EmulatorServer, no_resource_warnings: list[str]
) -> None:
    async def main() -> str:
        async with deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url) as client:
            stop = asyncio.Event()

            async def hammer() -> int:
                calls = 0
                while not stop.is_set():
                    await client.models.list()
                    calls += 1
                return calls

            others = [asyncio.create_task(hammer()) for _ in range(4)]
            chunks = []
            async for piece in await client.chat.completions.create(
                model=MODEL, messages=user(LONG_PROMPT), stream=True
            ):
                chunks.append(piece)
                await client.models.list()
                if len(chunks) % 10 == 0:
                    gc.collect()
            stop.set()
            assert all(calls > 0 for calls in await asyncio.gather(*others))
            return texts(chunks)

    assert asyncio.run(main()) == f"You said: {LONG_PROMPT}"


# 2. A stream is complete at [DONE]: whatever comes after costs no waiting and is no error.


@pytest.mark.parametrize("after", ["stall", "reset", "close"])
def test_a_stream_ends_at_done_whatever_the_server_does_next(
    kind: str, make_client: ClientFactory, after: After
) -> None:
    events = [event(chunk("Hel")), event(chunk("lo", finish="stop")), DONE]
    with RawSSEServer(events, after=after) as raw:
        client = make_client(api_key=KEY, base_url=raw.base_url, max_retries=0, timeout=60.0)
        result: list[Any] = []

        def read() -> None:
            result.append(
                client.chat.completions.create(model=MODEL, messages=user(), stream=True).get_final_completion()
            )

        reader = threading.Thread(target=read) if kind == "sync" else None
        if reader is None:
            read()  # the async client is driven on this thread's loop
        else:
            reader.start()
            reader.join(HANG_LIMIT_SECONDS)
            assert not reader.is_alive(), "the stream waited for the body to end after [DONE]"
        assert not raw.release.is_set()  # the server was still stalling (or gone) when the reader finished
    assert result[0].choices[0].message.content == "Hello"


def test_the_iterator_ends_at_done_and_releases_the_connection(kind: str, server: EmulatorServer) -> None:
    http_client = small_pool(kind, 1)
    events = [event(chunk("Hi", finish="stop")), DONE, event(chunk("after the end"))]
    with RawSSEServer(events, after="stall") as raw:
        if kind == "sync":
            client = deployai.DeployAI(api_key=KEY, base_url=raw.base_url, http_client=http_client)
            chunks = list(client.chat.completions.create(model=MODEL, messages=user(), stream=True))
            assert active_connections(http_client) == 0
            client.close()
            http_client.close()
        else:

            async def main() -> list[Any]:
                client = deployai.AsyncDeployAI(api_key=KEY, base_url=raw.base_url, http_client=http_client)
                got = [c async for c in await client.chat.completions.create(model=MODEL, messages=user(), stream=True)]
                assert active_connections(http_client) == 0
                await http_client.aclose()
                return got

            chunks = asyncio.run(main())
    assert texts(chunks) == "Hi"  # nothing after [DONE] is delivered


# 3. close() from another thread or task stops the reader at its next read and never raises.


class _ThreadReader(threading.Thread):
    """Reads a blocking stream to its end in its own thread, keeping what arrives and what it raises."""

    def __init__(self, stream: Any, *, tell_after: int) -> None:
        super().__init__()
        self.stream = stream
        self.received: list[Any] = []
        self.errors: list[BaseException] = []
        self.arrived = threading.Event()  # set once `tell_after` chunks arrived
        self.tell_after = tell_after

    def run(self) -> None:
        try:
            for piece in self.stream:
                self.received.append(piece)
                if len(self.received) == self.tell_after:
                    self.arrived.set()
        except BaseException as exc:
            self.errors.append(exc)


def test_close_from_another_thread_stops_a_blocked_reader(no_resource_warnings: list[str]) -> None:
    events = [event(chunk(f"{i} ")) for i in range(5)] + [DONE]
    with RawSSEServer(events, stall_after=2) as raw:
        # A read timeout far past the hang limit: only the close can end the stalled read in time.
        http_client = small_pool("sync", 1, read_timeout=120.0)
        client = deployai.DeployAI(api_key=KEY, base_url=raw.base_url, http_client=http_client)
        stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        reader = _ThreadReader(stream, tell_after=2)  # the next read blocks: the server stalls after two events
        reader.start()
        assert reader.arrived.wait(HANG_LIMIT_SECONDS)
        stream.close()  # the "stop generating" button: while the reader is blocked in a read
        reader.join(HANG_LIMIT_SECONDS)
        assert not reader.is_alive()
        assert not raw.release.is_set()  # the reader was woken by the close, not by the server
        assert reader.errors == []
        assert texts(reader.received) == "0 1 "
        assert stream.response.is_closed
        assert active_connections(http_client) == 0
        stream.close()  # twice is fine
        client.close()
        http_client.close()


async def _reading_until_the_stall(stream: Any) -> tuple[asyncio.Task[list[Any]], list[Any]]:
    """A task reading `stream`, once its next read waits (the server stalls after two events); and what it read."""
    received: list[Any] = []
    both_arrived = asyncio.Event()

    async def read() -> list[Any]:
        async for piece in stream:
            received.append(piece)
            if len(received) == 2:
                both_arrived.set()
        return received

    reader = asyncio.create_task(read())
    await asyncio.wait_for(both_arrived.wait(), HANG_LIMIT_SECONDS)
    return reader, received


def test_aclose_from_another_task_stops_a_waiting_reader(no_resource_warnings: list[str]) -> None:
    events = [event(chunk(f"{i} ")) for i in range(5)] + [DONE]

    async def main(raw: RawSSEServer) -> None:
        http_client = small_pool("async", 1, read_timeout=120.0)
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=raw.base_url, http_client=http_client)
        stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        reader, _ = await _reading_until_the_stall(stream)
        await stream.aclose()
        received = await asyncio.wait_for(reader, HANG_LIMIT_SECONDS)
        assert not raw.release.is_set()
        assert texts(received) == "0 1 "
        assert stream.response.is_closed
        assert active_connections(http_client) == 0
        await stream.aclose()
        await http_client.aclose()

    with RawSSEServer(events, stall_after=2) as raw:
        asyncio.run(main(raw))


def test_a_stream_whose_reader_is_cancelled_mid_read_is_released_before_the_next_call(
    no_resource_warnings: list[str],
) -> None:
    # An interrupted notebook cell (or a timeout) cancels an inline `async for` while it waits for
    # the next event. The stream is still referenced (a notebook variable), so it is never dropped:
    # the connection is let go of before the client's next request, and reading the stream again
    # says that its reading was cancelled, not that the server ended it early.
    events = [event(chunk(f"{i} ")) for i in range(5)] + [DONE]

    async def main(raw: RawSSEServer) -> None:
        http_client = small_pool("async", 2, read_timeout=120.0)
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=raw.base_url, http_client=http_client)
        stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        reader, _ = await _reading_until_the_stall(stream)  # an inline `async for` in a cell
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        next_stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        assert stream.response.is_closed
        assert active_connections(http_client) == 1  # the next call's alone
        with pytest.raises(deployai.DeployAIError, match=r"^Its reading was cancelled during the stream, after 2 "):
            async for _ in stream:
                pass
        await next_stream.aclose()
        await client.aclose()
        await http_client.aclose()

    with RawSSEServer(events, stall_after=2) as raw:
        asyncio.run(main(raw))


def test_close_between_chunks_ends_iteration_quietly(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    client = make_client(api_key=KEY, base_url=server.base_url)
    stream = client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
    received = []
    for piece in stream:
        received.append(piece)
        if len(received) == 3:
            stream.close()
    assert len(received) == 3
    assert stream.response.is_closed


def test_closing_the_client_mid_stream_raises_in_its_reader_instead_of_cutting_the_answer_short(
    no_resource_warnings: list[str],
) -> None:
    events = [event(chunk(f"{i} ")) for i in range(5)] + [DONE]
    with RawSSEServer(events, stall_after=2) as raw:
        client = deployai.DeployAI(api_key=KEY, base_url=raw.base_url)
        stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        untouched = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        reader = _ThreadReader(stream, tell_after=2)  # the model is still writing: the server stalls after two
        reader.start()
        assert reader.arrived.wait(HANG_LIMIT_SECONDS)
        client.close()  # a service shutting down while a worker still streams
        reader.join(HANG_LIMIT_SECONDS)
        assert not reader.is_alive()
        assert not raw.release.is_set()  # woken by the close, not by the server
        assert texts(reader.received) == "0 1 "
        (error,) = reader.errors
        assert type(error) is deployai.DeployAIError
        assert "client was closed during the stream, after 2 chunk(s): the answer is incomplete" in str(error)
        with pytest.raises(deployai.DeployAIError, match="after 0 chunk"):  # opened, never read
            untouched.get_final_completion()
        raw.release.set()


def test_closing_the_async_client_mid_stream_raises_in_its_reader(no_resource_warnings: list[str]) -> None:
    events = [event(chunk(f"{i} ")) for i in range(5)] + [DONE]

    async def main(raw: RawSSEServer) -> None:
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=raw.base_url)
        stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        received: list[Any] = []
        both_arrived = asyncio.Event()

        async def read() -> None:
            async for piece in stream:
                received.append(piece)
                if len(received) == 2:
                    both_arrived.set()
            raise AssertionError("the stream ended quietly")

        reader = asyncio.create_task(read())
        await asyncio.wait_for(both_arrived.wait(), HANG_LIMIT_SECONDS)
        await client.close()
        with pytest.raises(deployai.DeployAIError, match="client was closed during the stream, after 2 chunk"):
            await asyncio.wait_for(reader, HANG_LIMIT_SECONDS)
        assert not raw.release.is_set()
        assert texts(received) == "0 1 "
        raw.release.set()

    with RawSSEServer(events, stall_after=2) as raw:
        asyncio.run(main(raw))


@pytest.mark.parametrize("max_retries", [0, 2])
def test_closing_the_client_ends_a_call_waiting_for_its_answer_and_sends_it_no_more(
    kind: str, max_retries: int, no_resource_warnings: list[str]
) -> None:
    # A service shutting down while a worker waits for an answer: the worker is told at once, not
    # after its read timeout (two minutes here), and the call is neither retried nor reported as a
    # connection error that a caller's own retry loop would send again.
    server = HoldingServer()
    options = {"api_key": KEY, "base_url": server.base_url, "max_retries": max_retries, "timeout": 120.0}
    (error,) = _call_then_close(kind, options, lambda: server.requests == 1)
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."
    server.release.set()
    assert server.requests == 1
    server.listener.close()


@pytest.mark.parametrize("failure", ["503", "refused"])
def test_a_client_closed_right_after_a_failed_attempt_ends_the_call_as_closed(
    failure: str, server: EmulatorServer
) -> None:
    # The close lands between an attempt that failed and the wait before its retry (here: while the
    # attempt is logged). The call is not retried, and is told that its client closed, as if the
    # close came during the wait: not a 503 or connection error that a caller would send again.
    if failure == "503":
        server.emulator.fail_next(503, {"error": {"message": "busy"}})
        base_url = server.base_url
    else:
        with socket.socket() as spare:  # a port nothing listens on
            spare.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{spare.getsockname()[1]}/v1"
    retries: list[int] = []
    client = deployai.DeployAI(
        api_key=KEY, base_url=base_url, max_retries=2, on_retry=lambda retry, *_: retries.append(retry)
    )

    class CloseOnAttempt(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "attempt 1" in record.getMessage():
                client.close()

    logger = logging.getLogger("deployai")
    handler, level = CloseOnAttempt(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(deployai.DeployAIError) as raised:
            client.chat.completions.create(model=MODEL, messages=user())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert type(raised.value) is deployai.DeployAIError
    assert str(raised.value) == "The client was closed before the call was answered."
    assert retries == []


def test_a_client_keeps_no_rate_limiter_its_calls_used_alive() -> None:
    # A limiter per copy (`with_options`) or per job: each is dropped with its last user.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=completion_json()))
    client = deployai.DeployAI(api_key=KEY, http_client=httpx.Client(transport=transport))
    aclient = deployai.AsyncDeployAI(api_key=KEY, http_client=httpx.AsyncClient(transport=transport))
    used: list[weakref.ref[deployai.RateLimiter]] = []
    for _ in range(3):
        limiter = deployai.RateLimiter()
        used.append(weakref.ref(limiter))
        client.with_options(rate_limiter=limiter).chat.completions.create(model=MODEL, messages=user())
        asyncio.run(aclient.with_options(rate_limiter=limiter).chat.completions.create(model=MODEL, messages=user()))
    del limiter
    gc.collect()
    assert [ref() for ref in used] == [None, None, None]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_borrowed_pools_call_runs_on_when_the_client_closes_and_fails_as_its_own(kind: str, max_retries: int) -> None:
    # The SDK does not close a borrowed `http_client`, so it does not cut the call: the connection
    # the server drops afterwards is the call's own failure, a connection error, not "closed". It
    # is not retried (the client is closed), and `on_retry` is not told of a retry that never comes.
    server = HoldingServer()
    retries: list[int] = []
    options = {
        "api_key": KEY,
        "base_url": server.base_url,
        "max_retries": max_retries,
        "http_client": httpx.Client() if kind == "sync" else httpx.AsyncClient(),
        "on_retry": lambda retry, *_: retries.append(retry),
    }

    # Once the client has closed, the server drops the connection.
    (error,) = _call_then_close(kind, options, lambda: server.requests == 1, then=server.release.set)
    assert type(error) is deployai.APIConnectionError
    assert isinstance(error.__cause__, httpx.TransportError)  # the failure itself, kept
    assert (server.requests, retries, error.retries) == (1, [], 0)
    assert str(error).endswith("(not retried: the client was closed)") is (max_retries > 0)
    server.listener.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_closing_the_client_ends_a_call_in_its_tls_handshake(kind: str) -> None:
    # A server that takes the connection and never answers the handshake: the call would wait out
    # its connect timeout (two minutes here) after the close, then raise.
    server = HoldingServer()  # counts the TLS hello as its one "request", and answers nothing
    options = {"api_key": KEY, "base_url": server.base_url.replace("http:", "https:"), "timeout": 120.0}
    (error,) = _call_then_close(kind, options, lambda: server.requests == 1)
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."
    server.release.set()
    server.listener.close()


def _tcp_states(port: int) -> dict[int, str]:
    """The state of each of this machine's TCP sockets connected or connecting to `port` on loopback, by local port.

    From Linux's table: "01" established, "02" its connect waits for the server's answer (SYN sent).
    """
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.read().splitlines()[1:]]
    return {int(row[1].split(":")[1], 16): row[3] for row in rows if row[2] == f"0100007F:{port:04X}"}


@contextlib.contextmanager
def _unanswered_port() -> Iterator[int]:
    """A loopback port whose server's queue of connections is full: a connect to it waits (its SYN is dropped)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers: list[socket.socket] = []
        try:
            while True:  # connections the server never accepts, until one waits: its queue is full
                filler = socket.socket()
                fillers.append(filler)
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                mine = filler.getsockname()[1]
                _wait_until(lambda: _tcp_states(port).get(mine) in ("01", "02"))  # noqa: B023
                if _tcp_states(port)[mine] == "02":
                    break
            yield port
        finally:
            for filler in fillers:
                filler.close()


def _connecting(port: int) -> bool:
    """Whether a connect to `port` other than the one `_unanswered_port` left waiting is under way."""
    return list(_tcp_states(port).values()).count("02") > 1


_LINUX_TCP = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's table of TCP sockets")
# Both clients, where closing one ends a connect under way.
_KINDS_THAT_CUT_A_CONNECT = [
    "sync",
    pytest.param(
        "async",
        marks=pytest.mark.skipif(
            sys.version_info < (3, 11), reason="on Python 3.10 an asyncio connect ends when it completes"
        ),
    ),
]


@_LINUX_TCP
@pytest.mark.parametrize("kind", _KINDS_THAT_CUT_A_CONNECT)
def test_closing_the_client_ends_a_call_whose_tcp_connect_is_under_way(kind: str) -> None:
    # The kernel drops the call's SYN: its connect would wait out its connect timeout (two minutes
    # here) after the close, then raise.
    with _unanswered_port() as port:
        options = {"api_key": KEY, "base_url": f"http://127.0.0.1:{port}/v1", "timeout": 120.0}
        (error,) = _call_then_close(kind, options, lambda: _connecting(port))
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."


@_LINUX_TCP
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_total_timeout_that_runs_out_during_the_tcp_connect_names_the_connect(kind: str, stream: bool) -> None:
    # The async shell's own timer for the deadline went first and called it "(ReadTimeout)": a
    # server that does not accept connections looked like one slow to answer.
    request: dict[str, Any] = {"model": MODEL, "messages": user(), "stream": stream, "total_timeout": 0.2}
    with _unanswered_port() as port:
        options: dict[str, Any] = {"api_key": KEY, "base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0}
        if kind == "sync":
            with deployai.DeployAI(**options) as client, pytest.raises(deployai.APITimeoutError) as info:
                client.chat.completions.create(**request)
        else:

            async def main() -> None:
                # httpx loads its async network backend at a first connect: not within this deadline
                with socket.socket() as closed:
                    closed.bind(("127.0.0.1", 0))
                    refused = {**options, "base_url": f"http://127.0.0.1:{closed.getsockname()[1]}/v1"}
                async with deployai.AsyncDeployAI(**refused) as client:
                    with contextlib.suppress(deployai.APIConnectionError):
                        await client.models.list()
                async with deployai.AsyncDeployAI(**options) as client:
                    await client.chat.completions.create(**request)

            with pytest.raises(deployai.APITimeoutError) as info:
                asyncio.run(main())
    assert str(info.value) == f"Request to 127.0.0.1:{port} timed out (ConnectTimeout)."


@_LINUX_TCP
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_total_timeout_that_runs_out_during_the_tcp_connect_of_a_late_event_loop_names_the_connect(
    stream: bool,
) -> None:
    # The loop, busy elsewhere, wakes after both the connect's timeout and the call's own timer ran
    # out: both cancel the task at once, and the call's own timer, the outer one, caught it.
    request: dict[str, Any] = {"model": MODEL, "messages": user(), "stream": stream, "total_timeout": 0.2}
    with _unanswered_port() as port:
        options: dict[str, Any] = {"api_key": KEY, "base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0}

        async def main() -> None:
            async with deployai.AsyncDeployAI(**options) as client:
                asyncio.get_running_loop().call_later(0.05, time.sleep, 0.5)  # past both timers
                await client.chat.completions.create(**request)

        with pytest.raises(deployai.APITimeoutError) as info:
            asyncio.run(main())
    assert str(info.value) == f"Request to 127.0.0.1:{port} timed out (ConnectTimeout)."


@_LINUX_TCP
def test_a_close_just_before_a_connect_starts_ends_it_even_with_no_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The close lands after the socket was made and held for it, before its connect started: there
    # was nothing to shut down yet. With no connect timeout, a blocking connect would wait on for
    # the kernel's two minutes.
    hold = _pools.Cut.hold
    clients: list[deployai.DeployAI] = []

    def hold_then_close(cut: _pools.Cut, held: object) -> bool:
        taken = hold(cut, held)
        if isinstance(held, socket.socket):
            clients[0].close()
        return taken

    monkeypatch.setattr(_pools.Cut, "hold", hold_then_close)
    outcome: list[BaseException] = []
    with _unanswered_port() as port:
        clients.append(
            deployai.DeployAI(
                api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", timeout=httpx.Timeout(120.0, connect=None)
            )
        )

        def call() -> None:
            try:
                clients[0].chat.completions.create(model=MODEL, messages=user())
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        worker.join(HANG_LIMIT_SECONDS)
        assert not worker.is_alive()
    (error,) = outcome
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."


def test_a_blocking_call_goes_on_to_the_next_address_when_a_socket_of_the_first_cannot_be_made(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `socket.create_connection` does: `localhost` is ::1 first, on a system without IPv6 (the
    # same goes for a process out of file descriptors, whose error stays a connection error).
    port = int(server.base_url.split(":")[2].split("/")[0])
    resolve = socket.getaddrinfo

    def ipv6_first(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "localhost":
            return resolve(host, *args, **kwargs)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    class WithoutIPv6(socket.socket):
        def __init__(self, family: Any = -1, kind: Any = -1, proto: Any = -1, fileno: Any = None) -> None:
            if family == socket.AF_INET6 and fileno is None:
                raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
            super().__init__(family, kind, proto, fileno)

    monkeypatch.setattr(socket, "getaddrinfo", ipv6_first)
    monkeypatch.setattr(socket, "socket", WithoutIPv6)
    with deployai.DeployAI(api_key=KEY, base_url=f"http://localhost:{port}/v1", max_retries=0) as client:
        assert client.chat.completions.create(model=MODEL, messages=user()).choices


_SILENT_NAME = "silent-resolver.localhost"


class _SilentResolver:
    """Lookups of `_SILENT_NAME` get no answer, as from a resolver that does not answer, until `give_up()`."""

    def __init__(self) -> None:
        self.asked = threading.Event()  # set once such a lookup started
        self.done = threading.Event()

    def give_up(self) -> None:
        """End the lookups under way with a failure, as a resolver does once its retries are over."""
        self.done.set()


@pytest.fixture
def silent_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[_SilentResolver]:
    """A `_SilentResolver` in place of the system's, for the test (other names are looked up as usual)."""
    resolve = socket.getaddrinfo
    resolver = _SilentResolver()

    def silent(host: Any, port: Any, family: int = 0, kind: int = 0, proto: int = 0, flags: int = 0) -> Any:
        if host not in (_SILENT_NAME, _SILENT_NAME.encode()):  # anyio asks with the name in bytes
            return resolve(host, port, family, kind, proto, flags)
        if flags & socket.AI_NUMERICHOST:  # not an address: no resolver is asked
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        resolver.asked.set()
        resolver.done.wait(2 * HANG_LIMIT_SECONDS)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    try:
        yield resolver
    finally:
        resolver.give_up()


def test_a_name_lookup_that_gets_no_answer_ends_at_the_connect_timeout(silent_resolver: _SilentResolver) -> None:
    # `socket.getaddrinfo` has no deadline of its own: a blocking connect would wait for as long
    # as the resolver retries, past the connect timeout and any `total_timeout`.
    base_url = f"http://{_SILENT_NAME}:9/v1"
    timeout = httpx.Timeout(HANG_LIMIT_SECONDS, connect=0.05)
    with (
        deployai.DeployAI(
            api_key=KEY, base_url=base_url, timeout=timeout, max_retries=0, allow_insecure_http=True
        ) as client,
        pytest.raises(deployai.APITimeoutError),
    ):
        client.chat.completions.create(model=MODEL, messages=user())
    assert silent_resolver.asked.is_set()


@pytest.mark.parametrize("kind", _KINDS_THAT_CUT_A_CONNECT)
def test_closing_the_client_ends_a_call_whose_name_lookup_is_under_way(
    kind: str, silent_resolver: _SilentResolver
) -> None:
    # The blocking call's resolver answers only after the test. Under asyncio it gives up right after
    # the close (asyncio's lookup thread would otherwise hold up `asyncio.run`'s shutdown), when the
    # close has already cancelled the call's wait for it.
    options = {"api_key": KEY, "base_url": f"http://{_SILENT_NAME}:9/v1", "timeout": 120.0, "allow_insecure_http": True}
    then = silent_resolver.give_up if kind == "async" else lambda: None
    (error,) = _call_then_close(kind, options, silent_resolver.asked.is_set, then)
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."


def test_a_name_that_cannot_be_resolved_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with (
        deployai.DeployAI(
            api_key=KEY, base_url="http://unknown.localhost:9/v1", max_retries=0, allow_insecure_http=True
        ) as client,
        pytest.raises(deployai.APIConnectionError, match="Name or service not known") as caught,
    ):
        client.chat.completions.create(model=MODEL, messages=user())
    assert deployai.is_retryable(caught.value)


@_LINUX_TCP
def test_a_task_cancelled_right_after_its_client_closed_is_cancelled() -> None:
    # Closing the clients, then cancelling their tasks, is how a service stops: the cancel must
    # end the task, not be taken for the close's (a task that carries on after a `DeployAIError`
    # would never stop).
    async def main(port: int) -> None:
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", timeout=120.0)
        call = asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=user()))
        while not _connecting(port):
            await asyncio.sleep(0.001)
        await client.close()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, HANG_LIMIT_SECONDS)

    with _unanswered_port() as port:
        asyncio.run(main(port))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_connection_made_after_the_client_closed_carries_no_request(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connect still under way when the client closes (a slow network: here, held until the close):
    # the connection it makes is closed unused, and the call ends as closed, not sent.
    from deployai import _aiostream

    if kind == "async" and sys.version_info < (3, 11):
        pytest.skip("Python 3.10 keeps httpcore's backend (see _aiostream), which this test does not hold")

    server = HoldingServer()
    connecting, go_on = threading.Event(), threading.Event()
    if kind == "sync":
        connect = _pools._connect

        def slow(*args: Any) -> Any:
            connecting.set()
            go_on.wait(HANG_LIMIT_SECONDS)
            return connect(*args)

        monkeypatch.setattr(_pools, "_connect", slow)
    else:
        connect_async = _aiostream.connect

        async def slow_async(*args: Any) -> Any:
            connecting.set()
            await asyncio.to_thread(go_on.wait, HANG_LIMIT_SECONDS)
            return await connect_async(*args)

        monkeypatch.setattr(_aiostream, "connect", slow_async)
    options = {"api_key": KEY, "base_url": server.base_url, "timeout": 120.0}
    (error,) = _call_then_close(kind, options, connecting.is_set, then=go_on.set)
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."
    assert server.requests == 0
    server.release.set()
    server.listener.close()


def test_a_call_waiting_for_its_answer_when_its_event_loop_shuts_down_says_so() -> None:
    # A loop shut down with a call still pending (a runner that closes its loop without cancelling
    # every task): the pool closes with the loop, and the call is told why, not "the client was closed".
    server = HoldingServer()
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url, max_retries=2)
    loop = asyncio.new_event_loop()
    try:
        call = loop.create_task(client.chat.completions.create(model=MODEL, messages=user()))
        while server.requests == 0:
            loop.run_until_complete(asyncio.sleep(0.001))
        loop.run_until_complete(loop.shutdown_asyncgens())
        with pytest.raises(deployai.DeployAIError) as raised:
            loop.run_until_complete(asyncio.wait_for(call, HANG_LIMIT_SECONDS))
    finally:
        loop.close()
    assert str(raised.value) == "Its event loop shut down before the call was answered."
    assert server.requests == 1  # not sent again
    server.release.set()
    server.listener.close()


def _call_then_close(
    kind: str, options: dict[str, Any], waiting: Callable[[], bool], then: Callable[[], object] = lambda: None
) -> list[BaseException]:
    """Start a call, close its client once `waiting()` (the call waits), `then()`, and return what it raised."""
    request: dict[str, Any] = {"model": MODEL, "messages": user()}
    outcome: list[BaseException] = []
    if kind == "sync":
        client = deployai.DeployAI(**options)

        def call() -> None:
            try:
                client.chat.completions.create(**request)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        _wait_until(waiting)
        client.close()
        then()
        worker.join(HANG_LIMIT_SECONDS)
        assert not worker.is_alive()
        return outcome

    async def main() -> None:
        client = deployai.AsyncDeployAI(**options)
        call = asyncio.ensure_future(client.chat.completions.create(**request))
        while not waiting():
            await asyncio.sleep(0.001)
        await client.close()
        then()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(call, HANG_LIMIT_SECONDS)
        outcome.append(call.exception() or AssertionError("answered"))

    asyncio.run(main())
    return outcome


def _wait_until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to reach a state (not for time to pass)."""
    deadline = time.monotonic() + HANG_LIMIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_closing_the_client_ends_a_call_waiting_to_be_sent_again(kind: str) -> None:
    sent: list[httpx.Request] = []

    def busy(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503, headers={"retry-after": "50"}, json={"error": {"message": "busy"}})

    paused = threading.Event()  # on_retry is called just before the wait
    transport = httpx.MockTransport(busy)
    http_client = httpx.Client(transport=transport) if kind == "sync" else httpx.AsyncClient(transport=transport)
    options = {"api_key": KEY, "http_client": http_client, "on_retry": lambda *_: paused.set()}
    (error,) = _call_then_close(kind, options, paused.is_set)
    assert type(error) is deployai.DeployAIError  # at once, not after the 50 s the server asked for
    assert str(error) == "The client was closed before the call was answered."
    assert len(sent) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_closing_the_client_ends_its_calls_waiting_at_a_shared_rate_limiter_and_no_others(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[_ThreadWaiter] = []
    wake = _ThreadWaiter.wake

    def counted(waiter: _ThreadWaiter) -> None:
        woken.append(waiter)
        wake(waiter)

    monkeypatch.setattr(_ThreadWaiter, "wake", counted)
    limiter = deployai.RateLimiter()
    limiter._clock = lambda: 1_700_000_000.0  # frozen: a waiting call moves only when woken
    spent = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(round(time.time() + 50))}
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=completion_json(), headers=spent)

    # Another client shares the limiter: its call waits in the queue too, and must wait on.
    other = deployai.DeployAI(
        api_key=KEY, http_client=httpx.Client(transport=httpx.MockTransport(answer)), rate_limiter=limiter
    )
    other.chat.completions.create(model=MODEL, messages=user())  # the window is spent: 50 s to wait
    other_outcome: list[BaseException] = []

    def other_call() -> None:
        try:
            other.chat.completions.create(model=MODEL, messages=user())
        except BaseException as exc:
            other_outcome.append(exc)

    other_worker = threading.Thread(target=other_call, daemon=True)  # daemon: a failed check leaves it waiting
    other_worker.start()
    _wait_until(lambda: limiter.waiting == 1)
    (other_waiter,) = limiter._queue
    transport = httpx.MockTransport(answer)
    http_client = httpx.Client(transport=transport) if kind == "sync" else httpx.AsyncClient(transport=transport)
    options = {"api_key": KEY, "http_client": http_client, "rate_limiter": limiter}
    (error,) = _call_then_close(kind, options, lambda: limiter.waiting == 2)
    assert other_waiter not in woken  # the other client's call slept on: with 200 waiting, a close would wake 200
    assert type(error) is deployai.DeployAIError
    assert str(error) == "The client was closed before the call was answered."
    assert len(sent) == 1  # neither waiting call was sent
    assert limiter.waiting == 1  # the other client's call still waits its turn
    assert other_worker.is_alive()
    assert other_outcome == []
    other.close()
    other_worker.join(HANG_LIMIT_SECONDS)
    (other_error,) = other_outcome
    assert str(other_error) == "The client was closed before the call was answered."
    assert (limiter.waiting, len(sent)) == (0, 1)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_first_read_past_its_deadline_gets_the_events_that_came_before_it(kind: str) -> None:
    with RawSSEServer([event(chunk("a")), event(chunk("b")), DONE], stall_after=0) as raw:
        arguments: dict[str, Any] = {"model": MODEL, "messages": user(), "stream": True, "total_timeout": 1.0}

        def send_the_events_then_pass_the_deadline() -> None:
            assert raw.stalled.wait(HANG_LIMIT_SECONDS)  # the headers are out
            raw.release.set()  # the events now, long before the deadline
            time.sleep(1.2)  # so that the stream is first read past it

        if kind == "sync":
            with deployai.DeployAI(api_key=KEY, base_url=raw.base_url, max_retries=0) as client:
                stream = client.chat.completions.create(**arguments)
                send_the_events_then_pass_the_deadline()
                assert texts(list(stream)) == "ab"
        else:

            async def main() -> None:
                async with deployai.AsyncDeployAI(api_key=KEY, base_url=raw.base_url, max_retries=0) as client:
                    stream = await client.chat.completions.create(**arguments)
                    await asyncio.to_thread(send_the_events_then_pass_the_deadline)
                    assert texts([piece async for piece in stream]) == "ab"

            asyncio.run(main())


# 4. One AsyncDeployAI across event loops.


def test_one_async_client_works_across_event_loops(server: EmulatorServer, no_resource_warnings: list[str]) -> None:
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)  # as a module-level client would be
    left_open: list[Any] = []

    async def use(hold_a_stream: bool) -> int:
        models = await client.models.list()
        completion = await client.chat.completions.create(model=MODEL, messages=user())
        assert completion.choices[0].message.content == "You said: Hello!"
        if hold_a_stream:
            stream = await client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
            await stream.__anext__()
            left_open.append((stream, client._http.client))  # still referenced: open, not abandoned
        return len(models)

    assert asyncio.run(use(hold_a_stream=True)) == 7
    stream, first_pool = left_open[0]
    assert stream.response.is_closed  # closed with its loop: no active connection outlives it
    assert first_pool.is_closed

    async def read_on(stream: Any) -> list[Any]:
        return [piece async for piece in stream]

    with pytest.raises(deployai.DeployAIError, match="Its event loop shut down during the stream, after 1 chunk"):
        asyncio.run(read_on(stream))  # the rest of its answer is gone with its loop: said, not cut quietly
    assert asyncio.run(use(hold_a_stream=False)) == 7  # a new loop: a new pool, no "Event loop is closed"

    loop = asyncio.new_event_loop()  # a test runner's loop per test, closed the same way
    try:
        assert loop.run_until_complete(use(hold_a_stream=False)) == 7
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert asyncio.run(use(hold_a_stream=False)) == 7
    asyncio.run(client.aclose())


def test_a_stream_read_on_another_event_loop_is_refused_with_a_typed_error(server: EmulatorServer) -> None:
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)

    async def open_stream() -> Any:
        return await client.chat.completions.create(model=MODEL, messages=user(), stream=True)

    async def read(stream: Any) -> list[Any]:
        return [piece async for piece in stream]

    opened_on, other = asyncio.new_event_loop(), asyncio.new_event_loop()
    stream = opened_on.run_until_complete(open_stream())
    with pytest.raises(deployai.DeployAIError, match="opened on another event loop"):
        other.run_until_complete(read(stream))  # its loop still open
    first = opened_on.run_until_complete(stream.__anext__())
    with pytest.raises(deployai.DeployAIError, match="opened on another event loop"):
        other.run_until_complete(stream.__anext__())  # the iterator it started, taken on to another loop
    rest = opened_on.run_until_complete(read(stream))  # read where opened
    assert texts([first, *rest]) == "You said: Hello!"
    server.emulator.slow_next(0.05)  # each chunk comes a little later: reading one waits on the connection
    again = opened_on.run_until_complete(open_stream())
    in_progress = aiter(again)  # an `async for` started on its loop, then taken on to another
    first = opened_on.run_until_complete(anext(in_progress))
    with pytest.raises(deployai.DeployAIError, match="reading it on this one ended it: the answer is incomplete"):
        other.run_until_complete(read(in_progress))
    with pytest.raises(deployai.DeployAIError, match="taken on to another event loop during the stream"):
        opened_on.run_until_complete(read(again))  # its rest is lost, and it says so where it was opened
    opened_on.run_until_complete(again.aclose())  # closed where it was opened
    assert again.response.is_closed
    # Read to its end, it needs no connection: its completion can be had anywhere.
    assert other.run_until_complete(stream.get_final_completion()).choices[0].message.content == "You said: Hello!"
    for loop in (opened_on, other):
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_an_async_client_used_from_many_asyncio_runs_keeps_none_of_their_loops(server: EmulatorServer) -> None:
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)  # a notebook's or a script's
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def job() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert (await client.chat.completions.create(model=MODEL, messages=user())).choices

    for _ in range(5):
        asyncio.run(job())
    gc.collect()
    assert [loop() for loop in loops] == [None] * 5  # each run's loop, and its pool, freed once it ended
    asyncio.run(client.aclose())


def test_a_loop_closed_without_shutting_down_leaves_the_next_loop_working(server: EmulatorServer) -> None:
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
    loop = asyncio.new_event_loop()
    assert len(loop.run_until_complete(client.models.list())) == 7
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    assert len(asyncio.run(client.models.list())) == 7
    asyncio.run(client.aclose())


def _a_call_on_each_new_loop(
    client: deployai.AsyncDeployAI, count: int, *, close: bool
) -> list[weakref.ref[asyncio.AbstractEventLoop]]:
    """A call on each of `count` new loops, each then closed without shutting down (`close`) or dropped."""
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    for _ in range(count):
        loop = asyncio.new_event_loop()
        loops.append(weakref.ref(loop))
        assert loop.run_until_complete(client.chat.completions.create(model=MODEL, messages=user())).choices
        if close:
            loop.close()
    return loops


@_LINUX_TCP
def test_loops_closed_without_shutting_down_are_let_go_with_their_connections_at_the_next_loops_first_call(
    server: EmulatorServer,
) -> None:
    # `loop.close()` without `shutdown_asyncgens()` (older code, some runners) never tells the client
    # that the loop is gone. Each such loop, its pool and its connection to the server used to stay
    # for as long as the client lived, however many loops came and went.
    port = int(server.base_url.split(":")[2].split("/")[0])
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # asyncio's, for the transports of loops closed so
        loops = _a_call_on_each_new_loop(client, 3, close=True)
        # Each loop's first call let go of the loop before: only the last one's connection is open.
        assert list(_tcp_states(port).values()).count("01") == 1
        assert asyncio.run(client.chat.completions.create(model=MODEL, messages=user())).choices
        assert list(_tcp_states(port).values()).count("01") == 0
        gc.collect()
    assert [loop() for loop in loops] == [None] * 3
    asyncio.run(client.aclose())


@_LINUX_TCP
def test_loops_dropped_without_being_closed_go_with_their_connections_and_the_client_keeps_working(
    server: EmulatorServer,
) -> None:
    # A blocking wrapper that runs each call on a new loop and never closes it (older code): the
    # client's pools held each such loop, and its sockets, for as long as the client lived; about
    # 200 calls used up a process's 1,024 file descriptors. The loops go to the collector now.
    port = int(server.base_url.split(":")[2].split("/")[0])
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # asyncio's, for loops and transports never closed
        loops = _a_call_on_each_new_loop(client, 5, close=False)
        for _ in range(3):  # one collection once left a second loop (3.12, whole suite): finalizers may need more
            gc.collect()
        assert sum(loop() is not None for loop in loops) == 1  # the one used last, whose pool is at hand
        assert list(_tcp_states(port).values()).count("01") == 1
        assert asyncio.run(client.chat.completions.create(model=MODEL, messages=user())).choices
        gc.collect()
    assert [loop() for loop in loops] == [None] * 5
    asyncio.run(client.aclose())


@pytest.mark.parametrize("use", ["a call", "a stream left unread", "a stream read in part"])
def test_clients_dropped_unclosed_on_a_loop_that_runs_on_go_with_their_pools(server: EmulatorServer, use: str) -> None:
    # A web service that makes a client per request and never closes it: its event loop runs on,
    # and must not keep those clients' pools (and connections) for its life, nor the clients, even
    # when a stream of theirs was dropped unfinished.
    async def main() -> None:
        kept: list[weakref.ref[Any]] = []
        for _ in range(3):
            client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
            if use == "a call":
                await client.models.list()
            else:
                stream = await client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
                if use == "a stream read in part":
                    await stream.__anext__()
                del stream
            kept += [weakref.ref(client._http), weakref.ref(client._http._current)]
            del client
        # The collector hands each pool's keeper to the loop, which closes the pool on its next turns.
        for _ in range(100):
            gc.collect()
            if all(gone() is None for gone in kept):
                break
            await asyncio.sleep(0.01)
        assert [gone() for gone in kept] == [None] * 6

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        asyncio.run(main())


def test_a_pool_closed_with_its_client_is_not_kept_by_a_loop_that_runs_on() -> None:
    # A notebook's loop runs for the kernel's life: clients made and closed in it must not stay.
    emulator = Emulator()

    async def one_client() -> weakref.ref[Any]:
        client = emulator.async_client()
        await client.models.list()
        pool = weakref.ref(client._http._current)
        await client.aclose()
        return pool

    async def main() -> None:
        pools = [await one_client() for _ in range(3)]
        gc.collect()
        assert [pool() for pool in pools] == [None] * 3

    asyncio.run(main())


def test_a_stream_closed_from_another_threads_loop_is_released_on_its_own() -> None:
    # A stream opened on a loop in one thread, closed by `await stream.aclose()` on a loop in
    # another: its transport was closed from the wrong thread, which asyncio's debug mode refuses
    # (the refusal was swallowed, and the transport was left half-closed, never closed).
    with EmulatorServer(Emulator(token_latency=0.02)) as server:
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
        opened, closed = threading.Event(), threading.Event()
        held: list[deployai.AsyncStream[Any]] = []
        read_after: list[int] = []

        async def owner() -> None:
            asyncio.get_running_loop().set_debug(True)  # asyncio checks which thread touches the loop
            stream = await client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
            await stream.__anext__()
            held.append(stream)
            opened.set()
            while not closed.is_set():
                await asyncio.sleep(0.01)
            read_after.append(len([chunk async for chunk in stream]))
            await client.aclose()

        thread = threading.Thread(target=asyncio.run, args=(owner(),))
        thread.start()
        assert opened.wait(10)
        asyncio.run(held[0].aclose())
        closed.set()
        thread.join(10)
        del held[:]
        gc.collect()  # a transport left half-closed warns here
    assert read_after == [0]


# 5. fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_threads_making_their_first_calls_in_a_forked_child_share_one_new_pool(server: EmulatorServer) -> None:
    # A threaded worker (gunicorn's gthread, Celery's threads) forked from a parent that used the
    # client: each of its threads' first calls rebuilt the pool, and all but one were never closed.
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url)
    assert client.chat.completions.create(model=MODEL, messages=user()).choices

    def child() -> str:
        built: list[object] = []
        second_building = threading.Event()
        make = _http._Client

        def slow_first(*args: Any) -> Any:
            built.append(args)
            if len(built) == 1:
                second_building.wait(0.5)  # time for a second thread to build one too, were it let in
            else:
                second_building.set()
            return make(*args)

        _http._Client = slow_first  # type: ignore[misc, assignment]
        threads = [
            threading.Thread(target=lambda: client.chat.completions.create(model=MODEL, messages=user()))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client.close()
        return f"{len(built)} pool(s) built"

    assert fork_and_report(child) == "1 pool(s) built"
    client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_an_emulator_client_goes_on_in_a_forked_child_on_its_own_copy_of_the_emulator() -> None:
    # A test of pre-fork code with the kit's in-process clients: the child raised a bare
    # AssertionError (blocking) or a "borrowed http_client" error no one had given (asyncio).
    emulator = Emulator()
    client, aclient = emulator.client(), emulator.async_client()
    assert client.chat.completions.create(model=MODEL, messages=user("before")).choices

    def child() -> str:
        blocking = client.chat.completions.create(model=MODEL, messages=user("blocking"))
        in_a_loop = asyncio.run(aclient.chat.completions.create(model=MODEL, messages=user("async")))
        answers = [blocking.choices[0].message.content, in_a_loop.choices[0].message.content]
        client.close()
        asyncio.run(aclient.aclose())
        return f"{answers} {len(emulator.requests)}"

    assert fork_and_report(child) == "['You said: blocking', 'You said: async'] 3"
    assert len(emulator.requests) == 1  # the child's requests went to its own copy
    assert client.chat.completions.create(model=MODEL, messages=user("after")).choices  # the parent's goes on
    client.close()
    asyncio.run(aclient.aclose())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_stream_opened_before_fork_is_refused_in_the_child_and_stays_whole_in_the_parent(
    server: EmulatorServer,
) -> None:
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url)
    aclient = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
    whole = client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT)).choices[0].message.content
    loop = asyncio.new_event_loop()
    stream = client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
    astream = loop.run_until_complete(
        aclient.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
    )
    first, afirst = next(stream), loop.run_until_complete(astream.__anext__())
    looped = client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
    loop_in_progress = iter(looped)  # a `for` loop the parent started: the child would go on with it
    looped_first = next(loop_in_progress)

    async def read_rest() -> list[Any]:
        return [piece async for piece in astream]

    read_before = client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True)
    assert texts(list(read_before)) == whole

    def child() -> str:
        refused = []
        for read in (lambda: next(stream), lambda: list(stream), lambda: asyncio.run(read_rest())):
            try:
                read()
            except deployai.DeployAIError as exc:
                refused.append("before this process was forked" in str(exc))
        try:
            list(loop_in_progress)
        except deployai.DeployAIError as exc:
            refused.append("forked" in str(exc))
        stream.close()  # touches nothing of the parent's
        assert read_before.get_final_completion().choices[0].message.content == whole  # it needs no connection
        return str(refused)

    assert fork_and_report(child) == "[True, True, True, True]"
    assert texts([first, *stream]) == whole  # every token, none lost to the child
    assert texts([looped_first, *loop_in_progress]) == whole
    assert texts([afirst, *loop.run_until_complete(read_rest())]) == whole
    loop.run_until_complete(aclient.aclose())
    loop.close()
    client.close()


def test_the_fork_hook_marks_every_stream_even_past_one_still_being_made(server: EmulatorServer) -> None:
    # A fork can come while another thread is making a lease: the child's hook must still reach the rest.
    code = (
        "import deployai\n"
        "from deployai import _http\n"
        f"client = deployai.DeployAI(api_key={KEY!r}, base_url={server.base_url!r})\n"
        f"streams = [client.chat.completions.create(model={MODEL!r}, messages=[{{'role': 'user', 'content': 'hi'}}],"
        " stream=True) for _ in range(3)]\n"
        "half_made = _http.SyncLease.__new__(_http.SyncLease)\n"
        "_http._leases_alive.add(half_made)\n"
        "_http._count_fork()  # as in a forked child\n"
        "assert all(s._reader.lease.closing for s in streams)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no error reported from the hook


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_sync_client_made_before_fork_opens_its_own_pool_in_the_child(server: EmulatorServer) -> None:
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url)
    client.models.list()  # the parent's pool now holds a keep-alive connection
    parents_pool = client._http.client

    def child() -> str:
        answer = client.chat.completions.create(model=MODEL, messages=user("from the child"))
        assert client._http.client is not parents_pool
        return answer.choices[0].message.content or ""

    assert fork_and_report(child) == "You said: from the child"
    assert client._http.client is parents_pool  # the parent keeps its pool, still usable
    assert client.chat.completions.create(model=MODEL, messages=user("parent")).choices[0].message.content == (
        "You said: parent"
    )
    client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_an_async_client_made_before_fork_opens_its_own_pool_in_the_child(server: EmulatorServer) -> None:
    client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)

    async def ask(text: str) -> tuple[str, Any]:
        answer = await client.chat.completions.create(model=MODEL, messages=user(text))
        return answer.choices[0].message.content or "", client._http.client

    loop = asyncio.new_event_loop()  # still open at the fork, as a running service's loop would be
    _, parents_pool = loop.run_until_complete(ask("parent"))

    def child() -> str:
        text, pool = asyncio.run(ask("from the child"))
        assert pool is not parents_pool
        return text

    assert fork_and_report(child) == "You said: from the child"
    assert loop.run_until_complete(ask("parent again")) == ("You said: parent again", parents_pool)
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_borrowed_pool_with_the_parents_connections_is_refused_in_the_child(server: EmulatorServer) -> None:
    http_client = httpx.Client()
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url, http_client=http_client)
    client.models.list()
    assert "error: DeployAIError: This client was created in another process" in fork_and_report(client.models.list)
    assert len(client.models.list()) == 7
    client.close()
    http_client.close()


def test_the_active_connection_count_sees_an_open_stream(server: EmulatorServer) -> None:
    # The helper the tests above rely on must be able to fail.
    http_client = small_pool("sync", 2)
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url, http_client=http_client)
    with client.chat.completions.create(model=MODEL, messages=user(LONG_PROMPT), stream=True) as stream:
        next(iter(stream))
        assert active_connections(http_client) == 1
    assert active_connections(http_client) == 0
    client.close()
    http_client.close()


def test_close_while_a_stream_waits_to_be_retried_stops_it_without_sending_again(
    kind: str, make_client: ClientFactory, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployai import _http
    from tests.sse import sse_response

    httpx_mock.add_callback(lambda request: sse_response([]))  # ends before its first event: to be retried
    stream = make_client(max_retries=2).chat.completions.create(model=MODEL, messages=user(), stream=True)
    target = getattr(stream, "_stream", stream)

    def close_during_sleep(seconds: float) -> None:
        target.close()  # the "stop" button, pressed while the plan waits to send again

    async def aclose_during_sleep(seconds: float) -> None:
        await target.aclose()

    monkeypatch.setattr(_http, "_sleep", close_during_sleep)
    monkeypatch.setattr(_http, "_async_sleep", aclose_during_sleep)
    assert list(stream) == []  # no error: the stream was stopped on purpose
    assert len(httpx_mock.get_requests()) == 1  # and the request was not sent again


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_closing_a_stream_from_elsewhere_ends_its_wait_to_be_sent_again(kind: str, httpx_mock: HTTPXMock) -> None:
    # A "stop generating" button pressed while the stream, ended before its first event, waits out
    # the `retry-after: 30` of the answer to its retry: its reader stops at once, and nothing more
    # is sent.
    from tests.sse import sse_response

    httpx_mock.add_callback(lambda request: sse_response([]))
    httpx_mock.add_response(status_code=503, headers={"retry-after": "30"}, json={"error": {"message": "busy"}})
    waiting = threading.Event()

    def on_retry(retry: int, wait: float, error: deployai.DeployAIError) -> None:
        if retry == 2:
            waiting.set()  # the 30 s wait starts next

    request: dict[str, Any] = {"model": MODEL, "messages": user(), "stream": True}
    outcome: list[object] = []
    if kind == "sync":
        client = deployai.DeployAI(api_key=KEY, max_retries=3, on_retry=on_retry)
        stream = client.chat.completions.create(**request)

        def read() -> None:
            try:
                outcome.append(list(stream))
            except BaseException as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert waiting.wait(HANG_LIMIT_SECONDS)
        stream.close()
        reader.join(HANG_LIMIT_SECONDS)
        assert not reader.is_alive()
        client.close()
    else:

        async def main() -> None:
            async with deployai.AsyncDeployAI(api_key=KEY, max_retries=3, on_retry=on_retry) as client:
                stream = await client.chat.completions.create(**request)

                async def read() -> None:
                    try:
                        outcome.append([chunk async for chunk in stream])
                    except BaseException as exc:
                        outcome.append(exc)

                reader = asyncio.ensure_future(read())
                while not waiting.is_set():
                    await asyncio.sleep(0.001)
                await stream.aclose()
                await asyncio.wait_for(reader, HANG_LIMIT_SECONDS)

        asyncio.run(main())
    assert outcome == [[]]  # no error: its reader's side stopped it on purpose
    assert len(httpx_mock.get_requests()) == 2


# Found by review: races between a close and connections that moved on, loops at the same time, fork.


def test_close_during_a_retry_never_touches_the_connection_another_stream_now_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deployai import _http

    in_sleep, go_on = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:  # the backoff before the retry, held open by the test
        in_sleep.set()
        go_on.wait(HANG_LIMIT_SECONDS)

    monkeypatch.setattr(_http, "_sleep", sleep)
    events = [event(chunk("a")), event(chunk("b")), DONE]
    # The first answer ends before its first event, properly: its connection goes back to the pool.
    with RawSSEServer(events, stall_after=1, first=[]) as raw:
        http_client = small_pool("sync", 1)  # so that the second stream must take that same connection
        client = deployai.DeployAI(api_key=KEY, base_url=raw.base_url, http_client=http_client, max_retries=2)
        first = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        first_chunks: list[Any] = []
        reader = threading.Thread(target=lambda: first_chunks.extend(first))
        reader.start()
        assert in_sleep.wait(HANG_LIMIT_SECONDS)
        second = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        assert texts([next(second)]) == "a"
        first.close()  # the first stream's old connection now carries the second stream
        raw.release.set()
        assert texts(list(second)) == "b"  # not cut short
        go_on.set()
        reader.join(HANG_LIMIT_SECONDS)
        assert first_chunks == []
        assert raw.requests == 2  # the closed stream was not sent again
        client.close()
        http_client.close()


def test_one_async_client_serves_two_loops_at_the_same_time(no_resource_warnings: list[str]) -> None:
    with EmulatorServer(Emulator(rate_limit=1_000_000, token_latency=0.01)) as slow:
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=slow.base_url)
        first_chunk = threading.Event()
        result: list[str] = []

        async def read_in_another_thread() -> None:
            chunks = []
            async for piece in await client.chat.completions.create(
                model=MODEL, messages=user(LONG_PROMPT), stream=True
            ):
                chunks.append(piece)
                first_chunk.set()
            result.append(texts(chunks))

        other = threading.Thread(target=asyncio.run, args=(read_in_another_thread(),))
        other.start()
        assert first_chunk.wait(HANG_LIMIT_SECONDS)
        assert len(asyncio.run(client.models.list())) == 7  # a second loop, while the first one reads
        other.join(HANG_LIMIT_SECONDS)
        assert result == [f"You said: {LONG_PROMPT}"]
        asyncio.run(client.aclose())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_client_closes_in_a_forked_child_though_its_rate_limiter_was_locked_at_the_fork(kind: str) -> None:
    # Another thread of the parent was inside the limiter at the fork (every call passes through it):
    # in the child its lock stays taken for good, and the child's close must not wait for it.
    limiter = deployai.RateLimiter()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=completion_json()))
    request: dict[str, Any] = {"model": MODEL, "messages": user()}
    if kind == "sync":
        client = deployai.DeployAI(api_key=KEY, http_client=httpx.Client(transport=transport), rate_limiter=limiter)
        client.chat.completions.create(**request)
        close: Callable[[], object] = client.close
    else:
        aclient = deployai.AsyncDeployAI(
            api_key=KEY, http_client=httpx.AsyncClient(transport=transport), rate_limiter=limiter
        )
        asyncio.run(aclient.chat.completions.create(**request))
        close = lambda: asyncio.run(aclient.close())  # noqa: E731

    def child() -> str:
        signal.alarm(int(HANG_LIMIT_SECONDS))  # a hang ends the child, which then reports nothing
        close()
        return "closed"

    with limiter._lock:  # held across the fork, as that thread would hold it
        assert fork_and_report(child) == "closed"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_closing_the_client_in_a_forked_child_leaves_the_parents_stream_alone() -> None:
    events = [event(chunk(f"{i} ")) for i in range(4)] + [DONE]
    with RawSSEServer(events, stall_after=2) as raw:
        client = deployai.DeployAI(api_key=KEY, base_url=raw.base_url, timeout=60.0)
        stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        received = [next(stream), next(stream)]  # the server now stalls this stream

        def close_in_the_child() -> str:
            client.close()
            return "closed"

        assert fork_and_report(close_in_the_child) == "closed"
        raw.release.set()
        received += list(stream)  # the child's close() did not shut the shared socket down
        assert texts(received) == "0 1 2 3 "
        client.close()


@pytest.mark.parametrize("closer", ["client", "stream"])
def test_closing_while_a_reader_waits_to_retry_sends_nothing_more(
    kind: str, make_client: ClientFactory, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, closer: str
) -> None:
    from deployai import _http
    from tests.sse import sse_response

    httpx_mock.add_callback(lambda request: sse_response([]))  # ends before its first event: to be retried
    client = make_client(max_retries=2)
    stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)

    def close_now() -> None:
        (client if closer == "client" else stream).close()

    async def aclose_now() -> None:
        await (client.unwrapped.aclose() if closer == "client" else stream._stream.aclose())

    monkeypatch.setattr(_http, "_sleep", lambda seconds: close_now())
    monkeypatch.setattr(_http, "_async_sleep", lambda seconds: aclose_now())
    if closer == "stream":
        assert list(stream) == []  # no error: its reader's side stopped it on purpose
    else:  # the reader did not: its answer never came, and it is told so
        with pytest.raises(deployai.DeployAIError, match="client was closed during the stream, after 0 chunk"):
            list(stream)
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_client_closed_from_another_thread_while_a_streams_headers_arrive_cuts_the_stream_as_closed(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closed after the headers came but before the stream was counted among the client's: that close
    # missed it, and the stream broke later on its closed connection as an `APIConnectionError`
    # ("Bad file descriptor"), which a service's shutdown code does not take for the close it is.
    emulator = Emulator(rate_limit=None)
    lease_type: Any = _http.SyncLease if kind == "sync" else _http.AsyncLease
    made = lease_type.__init__
    client: Any = emulator.client() if kind == "sync" else emulator.async_client()

    def closed_meanwhile(self: Any, *args: Any) -> None:
        made(self, *args)
        closing = client.close if kind == "sync" else lambda: asyncio.run(client.close())
        closer = threading.Thread(target=closing)
        closer.start()
        closer.join()

    monkeypatch.setattr(lease_type, "__init__", closed_meanwhile)
    if kind == "sync":
        stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        with pytest.raises(deployai.DeployAIError, match="client was closed during the stream, after 0 chunk"):
            list(stream)
    else:

        async def main() -> None:
            stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
            with pytest.raises(deployai.DeployAIError, match="client was closed during the stream, after 0 chunk"):
                async for _ in stream:
                    pass

        asyncio.run(main())
