"""Both clients over real sockets against the emulator's HTTP server: pools, timeouts, broken streams."""

from __future__ import annotations

import gc
import sys
import threading
import warnings
from typing import Any

import httpx
import pytest

import deployai
from deployai.testing import Emulator, EmulatorServer
from tests.conftest import ClientFactory, user
from tests.loopback import active_connections, idle_connections, server_fixture, shared_server_fixture, small_pool  # noqa: F401 (fixtures)

MODEL = "openai/gpt-4o"
KEY = "sk-loopback-test"


def stream_of(client: Any, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=user("count to five"), stream=True, **kwargs)


def test_a_thousand_abandoned_streams_leave_the_pool_usable(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    client = make_client(api_key=KEY, base_url=server.base_url, http_client=small_pool(kind, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # half of them are dropped unclosed on purpose
        for i in range(1_000):
            stream = stream_of(client)
            if i % 2:
                with stream:
                    for _ in stream:
                        break
            else:
                next(iter(stream))
                del stream
        gc.collect()
    with stream_of(client) as stream:
        assert "count to five" in "".join(stream.text_stream)


def test_a_fully_read_stream_leaves_no_active_connection_behind(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    http_client = small_pool(kind, 1)
    client = make_client(api_key=KEY, base_url=server.base_url, http_client=http_client)
    for _ in range(20):
        stream = stream_of(client)
        assert stream.get_final_completion().choices[0].finish_reason == "stop"
        # Released at [DONE], without `with` or `close()`: a pool of one connection serves the next call.
        assert active_connections(http_client) == 0
    client.models.list()
    assert idle_connections(http_client) == 1


def test_a_stalled_server_raises_a_timeout_never_hangs(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    server.emulator.stall_next(5.0)
    client = make_client(api_key=KEY, base_url=server.base_url, timeout=0.3, max_retries=0)
    with pytest.raises(deployai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=user())


def test_a_stream_that_stalls_midway_times_out_after_delivering_what_came(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    server.emulator.slow_next(5.0)
    client = make_client(api_key=KEY, base_url=server.base_url, timeout=0.3, max_retries=0)
    with pytest.raises(deployai.APITimeoutError) as info, stream_of(client) as stream:
        for _ in stream:
            pass
    assert "incomplete" in str(info.value)


def test_a_cut_stream_raises_after_the_chunks_that_arrived(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    server.emulator.cut_stream_after(3)
    client = make_client(api_key=KEY, base_url=server.base_url, max_retries=0)
    received = []
    with pytest.raises(deployai.APIConnectionError) as info, stream_of(client) as stream:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert type(info.value) is deployai.APIConnectionError


def test_a_refused_connection_is_a_connection_error(kind: str, make_client: ClientFactory, sleeps: list[float]) -> None:
    with EmulatorServer(Emulator()) as gone:
        base_url = gone.base_url  # a loopback port that nothing listens on once the server stopped
    client = make_client(api_key=KEY, base_url=base_url, max_retries=1)
    with pytest.raises(deployai.APIConnectionError):
        client.models.list()
    assert len(sleeps) == 1


def _drop_in_a_reference_cycle(client: deployai.DeployAI) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
    next(iter(stream))
    holder: dict[str, Any] = {"stream": stream}
    holder["self"] = holder  # only the cyclic garbage collector can free this stream now


def test_garbage_collection_inside_the_pool_lock_cannot_deadlock(server: EmulatorServer) -> None:
    http_client = httpx.Client()
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url, http_client=http_client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _drop_in_a_reference_cycle(client)
        pool_lock = http_client._transport._pool._optional_thread_lock  # type: ignore[attr-defined]
        finished = threading.Event()

        def collect_while_holding_the_lock() -> None:
            with pool_lock:  # stands for "garbage collection strikes while httpcore holds its lock"
                gc.collect()
            finished.set()

        worker = threading.Thread(target=collect_while_holding_the_lock, daemon=True)
        worker.start()
        worker.join(timeout=10)
    assert finished.is_set(), "gc.collect() deadlocked on the connection pool's lock"
    client.models.list()  # and the dropped stream's connection is released by the next request
    assert idle_connections(http_client) == 1
    client.close()
    http_client.close()


def test_resource_warnings_as_errors_still_release_a_dropped_stream(server: EmulatorServer) -> None:
    http_client = small_pool("sync", 1)
    client = deployai.DeployAI(api_key=KEY, base_url=server.base_url, http_client=http_client)
    unraisable: list[BaseException | None] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: unraisable.append(u.exc_value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
            next(iter(stream))
            del stream
    finally:
        sys.unraisablehook = hook
    assert [type(e) for e in unraisable] == [ResourceWarning]
    assert len(client.models.list()) == 7  # the one connection was released, not leaked
    client.close()
    http_client.close()
