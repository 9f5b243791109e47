"""The SDK's own httpx clients spread their connections over small pools, and give every place back."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import importlib.util
import logging
import os
import pickle
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

import deployai
from deployai import _pools
from deployai._constants import KEEPALIVE_EXPIRY_SECONDS, POOL_CONNECTIONS, STREAM_END_WAIT_SECONDS
from deployai.testing import EmulatorServer
from tests.conftest import ClientFactory, user
from tests.forward_proxy import SERVER_NAME, ForwardProxy
from tests.loopback import server_fixture, shared_server_fixture  # noqa: F401 (fixtures)
from tests.tls_server import CERT_FILE, TLSServer

MODEL = "openai/gpt-4o"
KEY = "sk-pools-test"


def spread_of(client: Any) -> Any:
    """The plain-http `_Spread` of a client's own httpx client (of the event loop used last)."""
    inner = getattr(client, "unwrapped", client)
    return inner._http.client._transport._spreads["http"]


def connections(spread: Any) -> list[int]:
    """How many open connections each pool made so far holds."""
    return [len(pool._pool.connections) for pool in spread._pools if pool is not None]


def test_a_pool_is_taken_up_to_its_size_before_the_next_and_the_least_busy_when_all_are_full() -> None:
    made: list[httpx.BaseTransport] = []

    def make() -> httpx.BaseTransport:
        made.append(httpx.MockTransport(lambda request: httpx.Response(200)))
        return made[-1]

    spread = _pools._Spread(make)
    first = [spread.take() for _ in range(POOL_CONNECTIONS)]
    assert {index for index, _ in first} == {0}
    assert spread.take()[0] == 1
    spread.give_back(0, made[0], 1.0)
    assert spread.take()[0] == 0  # back to the first pool with room
    while sum(spread._counts) < len(spread._counts) * POOL_CONNECTIONS:
        spread.take()
    spread.give_back(5, made[5], 2.0)
    spread.give_back(5, made[5], 2.0)
    assert spread.take()[0] == 5  # all full: the least busy
    assert spread.take()[0] == 5
    assert spread.take()[0] == 0  # all equally busy again: the first
    assert len(made) == len(spread._counts)  # each pool made once


def test_only_pools_idle_for_the_keepalive_expiry_are_closed_and_looked_for_once_per_expiry() -> None:
    spread = _pools._Spread(lambda: httpx.MockTransport(lambda request: httpx.Response(200)))
    expiry = KEEPALIVE_EXPIRY_SECONDS
    busy, _ = spread.take()
    taken = [spread.take() for _ in range(POOL_CONNECTIONS)]
    spread.give_back(*taken[-1], 0.1)  # pool 1 idle since 0.1; pool 0 still busy
    assert spread.stale(expiry) == []  # looked: idle for less than the expiry
    assert spread.stale(2 * expiry - 0.1) == []  # idle long enough, but not looked for yet
    stale = spread.stale(2 * expiry)
    assert len(stale) == 1
    assert spread._pools[1] is None
    assert spread._pools[busy] is not None
    assert spread.take()[0] == 1
    assert spread._pools[1] is not None


def test_one_caller_at_a_time_reuses_one_connection(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    client = make_client(api_key=KEY, base_url=server.base_url)
    for _ in range(10):
        with client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True) as stream:
            assert "hi" in "".join(stream.text_stream)
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    spread = spread_of(client)
    assert connections(spread) == [1]
    assert sum(spread._counts) == 0


def test_concurrent_calls_are_spread_over_small_pools_and_every_place_is_given_back(server: EmulatorServer) -> None:
    async def calls() -> Any:
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)

        async def one(i: int) -> None:
            if i % 3:
                await client.chat.completions.create(model=MODEL, messages=user("hi"))
                return
            stream = await client.chat.completions.create(model=MODEL, messages=user("count"), stream=True)
            async with stream:
                async for _ in stream:
                    if i % 2:
                        break  # closed early

        await asyncio.gather(*(one(i) for i in range(64)))
        spread = spread_of(client)
        await client.close()
        return spread

    spread = asyncio.run(calls())
    assert sum(spread._counts) == 0
    assert all(pool is None for pool in spread._pools)  # closed with the client


def test_threads_share_the_pools_of_one_client(server: EmulatorServer) -> None:
    with deployai.DeployAI(api_key=KEY, base_url=server.base_url) as client:
        with ThreadPoolExecutor(32) as threads:
            list(threads.map(lambda _: client.chat.completions.create(model=MODEL, messages=user("hi")), range(320)))
        spread = spread_of(client)
        assert sum(spread._counts) == 0
        per_pool = connections(spread)
        assert len(per_pool) > 1
        assert max(per_pool) <= POOL_CONNECTIONS
        assert sum(per_pool) <= 32


def test_a_failed_connection_gives_its_place_back(kind: str, make_client: ClientFactory) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    for _ in range(POOL_CONNECTIONS + 1):
        with pytest.raises(deployai.APIConnectionError):
            client.models.list()
    assert sum(spread_of(client)._counts) == 0


def test_a_pool_idle_for_the_keepalive_expiry_is_closed_at_the_next_request(
    kind: str, make_client: ClientFactory, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_pools, "_now", lambda: now[0])
    client = make_client(api_key=KEY, base_url=server.base_url)
    client.models.list()
    spread = spread_of(client)
    first = spread._pools[0]
    old_connection = first._pool.connections[0]
    now[0] += KEEPALIVE_EXPIRY_SECONDS
    client.models.list()
    assert spread._pools[0] is not first
    assert old_connection.is_closed()
    assert connections(spread) == [1]


def test_making_a_client_imports_no_httpcore_and_loads_no_certificates() -> None:
    code = (
        "import sys, deployai\n"
        "from deployai import _pools\n"
        "deployai.DeployAI(api_key='sk-x'); deployai.AsyncDeployAI(api_key='sk-x')\n"
        "assert 'httpcore' not in sys.modules and not _pools._tls, sys.modules.keys()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_program_that_only_uses_the_blocking_client_never_imports_asyncio(server: EmulatorServer) -> None:
    # asyncio is about a tenth of `import deployai` with a client: a sync service or script is spared it.
    code = (
        "import sys, deployai\n"
        f"client = deployai.DeployAI(api_key={KEY!r}, base_url={server.base_url!r})\n"
        "messages = [{'role': 'user', 'content': 'hi'}]\n"
        f"assert client.chat.completions.create(model={MODEL!r}, messages=messages).choices\n"
        f"with client.chat.completions.create(model={MODEL!r}, messages=messages, stream=True) as stream:\n"
        "    assert list(stream)\n"
        f"batch = [{{'model': {MODEL!r}, 'messages': messages}}] * 3\n"
        "assert all(r.choices for r in client.chat.completions.create_many(batch, concurrency=2))\n"
        "client.close()\n"
        "assert 'asyncio' not in sys.modules, 'asyncio was imported'\n"
        "deployai.AsyncDeployAI(api_key='sk-x')\n"
        "assert 'asyncio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_http_base_url_uses_no_certificates(server: EmulatorServer) -> None:
    made: list[object] = []
    real = _pools.tls_context

    def spy(certificates: Any) -> Any:
        made.append(certificates)
        return real(certificates)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_pools, "tls_context", spy)
        with deployai.DeployAI(api_key=KEY, base_url=server.base_url) as client:
            client.models.list()
    assert made == [None]  # the bare context, never used


@pytest.mark.parametrize("timeout", [2_000_000.0, 2_147_483.647])
def test_the_longest_timeouts_work_on_the_sdks_own_connections(server: EmulatorServer, timeout: float) -> None:
    # poll() takes at most about 24.8 days: a connect with a longer timeout failed as a connection error.
    with deployai.DeployAI(api_key=KEY, base_url=server.base_url, timeout=timeout, max_retries=0) as client:
        assert client.models.list().data

    async def call() -> None:
        async with deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url, timeout=timeout) as client:
            assert (await client.models.list()).data

    asyncio.run(call())


@pytest.mark.parametrize("total_timeout", [4_294_967.4, 1e7])
def test_a_far_deadline_works_on_the_sdks_own_connections(server: EmulatorServer, total_timeout: float) -> None:
    # `total_timeout` caps each phase at the time left: past what poll() takes, a connect failed at
    # once ("timeout is too large") and a read's wait wrapped round to a tenth of a second.
    options: dict[str, Any] = {"timeout": None, "total_timeout": total_timeout, "max_retries": 0}
    with deployai.DeployAI(api_key=KEY, base_url=server.base_url, **options) as client:
        assert client.models.list().data


def test_a_borrowed_client_keeps_its_own_transport(server: EmulatorServer) -> None:
    transport = httpx.HTTPTransport()
    with httpx.Client(transport=transport) as borrowed:
        client = deployai.DeployAI(api_key=KEY, base_url=server.base_url, http_client=borrowed)
        client.models.list()
        assert client._http.client._transport is transport


class _Proxy:
    """A loopback stand-in for a proxy: it notes each request line and answers 502."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(0.05)  # so that close() is seen soon
        while True:
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            connection.settimeout(5)
            with connection:
                self.seen.append(connection.recv(65536).split(b"\r\n")[0])
                connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    def close(self) -> None:
        self._server.close()
        self._thread.join(5)


def test_proxies_from_the_environment_are_used_and_no_proxy_is_honoured(
    kind: str, make_client: ClientFactory, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _Proxy()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        url = f"http://{SERVER_NAME}:{server.port}/v1"
        through_proxy = make_client(api_key=KEY, base_url=url, max_retries=0, allow_insecure_http=True)
        with pytest.raises(deployai.APIStatusError) as info:
            through_proxy.models.list()
        assert info.value.status_code == 502
        assert proxy.seen == [f"GET {url}/models HTTP/1.1".encode()]
        monkeypatch.setenv("NO_PROXY", SERVER_NAME)
        # Not sent (the name is the proxy's alone): httpx picks the SDK's own transport for it, no proxy's.
        with deployai.DeployAI(api_key=KEY, base_url=url, allow_insecure_http=True) as direct:
            own: Any = direct._http.client
            assert own._transport_for_url(httpx.URL(url)) is own._transport
            monkeypatch.delenv("NO_PROXY")
            with deployai.DeployAI(api_key=KEY, base_url=url, allow_insecure_http=True) as proxied:
                own = proxied._http.client
                assert own._transport_for_url(httpx.URL(url)) is not own._transport
    finally:
        proxy.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_connection_error_through_a_proxy_from_the_environment_names_the_server_and_the_proxy(
    kind: str, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    # A refused connection read the same whether the base URL, the proxy, or the network was wrong.
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    # Plain http meets a proxy that refuses connections; https one that answers its CONNECT with 502.
    proxy = _Proxy() if scheme == "https" else None
    try:
        with socket.socket() as unlistened:
            unlistened.bind(("127.0.0.1", 0))
            refused = unlistened.getsockname()[1]
            used = f"http://user:Proxy_SECRET@127.0.0.1:{refused}" if proxy is None else proxy.url
            monkeypatch.setenv("ALL_PROXY", used)
            client = make_client(
                api_key=KEY, base_url=f"{scheme}://{SERVER_NAME}:8443/v1", max_retries=0, allow_insecure_http=True
            )
            with pytest.raises(deployai.APIConnectionError) as info:
                client.models.list()
    finally:
        if proxy is not None:
            proxy.close()
    shown = used.replace("user:Proxy_SECRET", "[redacted]")
    assert str(info.value).startswith(f"Connection error to {SERVER_NAME}:8443 through the proxy {shown}: ")
    assert "Proxy_SECRET" not in f"{info.value} {info.value!r}"


def test_certificates_and_proxies_are_read_when_the_client_is_made_as_httpx_reads_them(
    kind: str, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[str | None, str | None]] = []

    def verifying_context(certificates: tuple[str | None, str | None]) -> ssl.SSLContext:
        read.append(certificates)
        return ssl.create_default_context()

    monkeypatch.setattr(_pools, "_tls", {})
    monkeypatch.setattr(_pools, "_verifying_context", verifying_context)
    for name in ("SSL_CERT_DIR", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = _Proxy()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", "/etc/corporate-ca.pem")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        with socket.socket() as probe:  # a loopback port nothing listens on: the target, never reached
            probe.bind(("127.0.0.1", 0))
            target = f"https://{SERVER_NAME}:{probe.getsockname()[1]}/v1"
        client = make_client(api_key=KEY, base_url=target, max_retries=0)
        monkeypatch.delenv("SSL_CERT_FILE")  # changed after the client was made: not seen by it
        monkeypatch.delenv("HTTPS_PROXY")
        with pytest.raises(deployai.APIConnectionError):
            client.models.list()
        assert proxy.seen == [f"CONNECT {target[8:-3]} HTTP/1.1".encode()]  # through the proxy it was made with
        assert read == [("/etc/corporate-ca.pem", None)]
    finally:
        proxy.close()


def test_a_request_cancelled_while_idle_pools_close_gives_its_place_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_pools, "_now", lambda: now[0])
    closing = asyncio.Event()
    closed: list[object] = []

    class Pool(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, stream=httpx.ByteStream(b"{}"))

        async def aclose(self) -> None:
            closing.set()
            await asyncio.sleep(3600)  # a slow close, cancelled below
            closed.append(self)

    async def run() -> None:
        transport = _pools.AsyncSpreadTransport(_pools.Settings({}, (None, None)), lambda context: Pool())
        request = httpx.Request("GET", "http://127.0.0.1:1/v1/models")
        await (await transport.handle_async_request(request)).aclose()
        now[0] += KEEPALIVE_EXPIRY_SECONDS  # the pool is idle long enough to be closed
        send = asyncio.ensure_future(transport.handle_async_request(request))
        await closing.wait()
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        spread = transport._spreads["http"]
        assert sum(spread._counts) == 0
        assert len(transport._retired) == 0  # the one being closed was taken out; none was dropped
        assert len(closed) == 0

    asyncio.run(run())


def open_connections(client: Any) -> list[object]:
    """The open connections of the first pool of a client's own httpx client."""
    return [c for c in spread_of(client)._pools[0]._pool.connections if not c.is_closed()]


def test_a_stream_read_to_done_leaves_its_connection_to_the_next_call(
    kind: str, make_client: ClientFactory, server: EmulatorServer
) -> None:
    client = make_client(api_key=KEY, base_url=server.base_url)
    kept = []
    for _ in range(5):
        with client.chat.completions.create(model=MODEL, messages=user("count"), stream=True) as stream:
            assert list(stream)
        kept.append(open_connections(client))
    assert len(kept[0]) == 1
    assert all(after == kept[0] for after in kept)  # every stream reused the connection the first one opened
    assert server.emulator.statuses == [200] * 5


def test_a_bounded_connection_reads_past_its_threads_deadline_never_and_other_threads_reads_unbounded() -> None:
    import httpcore

    class Recorded:
        """A network stream that records the timeout of each read."""

        def __init__(self) -> None:
            self.timeouts: list[float | None] = []

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            self.timeouts.append(timeout)
            return b"x"

        def start_tls(self, *args: object) -> Recorded:
            return self

    inner = Recorded()
    backend = _pools._BoundedBackend(cast(Any, type("Backend", (), {"connect_tcp": lambda self, *a: inner})()))
    stream = backend.connect_tcp("127.0.0.1", 1).start_tls(ssl.create_default_context())
    assert isinstance(stream, _pools._BoundedStream)  # TLS connections are bounded too
    stream.read(1, 30.0)
    with _pools.reads_end_within(5.0):
        stream.read(1, 30.0)
        stream.read(1, None)
        elsewhere = threading.Thread(target=stream.read, args=(1, 30.0))
        elsewhere.start()
        elsewhere.join()
    with _pools.reads_end_within(0.0), pytest.raises(httpcore.ReadTimeout):
        stream.read(1, 30.0)
    first, bounded, unlimited, other = inner.timeouts  # the read past the deadline never reached the socket
    assert (first, other) == (30.0, 30.0)
    assert bounded is not None
    assert 0 < bounded <= 5.0
    assert unlimited is not None
    assert 0 < unlimited <= 5.0


def test_a_stream_through_a_proxy_the_sdk_mounts_from_the_environment_reads_its_end_too(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        url = f"http://{SERVER_NAME}:{server.port}/v1"
        with deployai.DeployAI(api_key=KEY, base_url=url, allow_insecure_http=True) as client:
            with client.chat.completions.create(model=MODEL, messages=user("count"), stream=True) as stream:
                assert list(stream)
            assert proxy.seen == ["POST /v1/chat/completions"]
            assert _pools.bounded(stream.response)


def test_this_machines_own_addresses_never_go_through_a_proxy_from_the_environment(
    kind: str, make_client: ClientFactory, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy's localhost is another machine's, and plain http:// is allowed to loopback only
    # because the key stays on this one: through the proxy it would cross the network in clear.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        for host in ("127.0.0.1", "localhost"):
            client = make_client(api_key=KEY, base_url=f"http://{host}:{server.port}/v1", max_retries=0)
            assert client.chat.completions.create(model=MODEL, messages=user("hi")).choices
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for host in (
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
            "127.0.0.2",
            "127.1",
            "[::ffff:127.0.0.1]",
            "LOCALHOST",
        ):
            for scheme in ("http", "https"):
                with pytest.raises(deployai.APIConnectionError):  # direct: nothing listens there
                    make_client(api_key=KEY, base_url=f"{scheme}://{host}:{port}/v1", max_retries=0).models.list()
        assert proxy.seen == []
        with pytest.raises(deployai.APIError):  # another host goes through the proxy (on to a closed port)
            make_client(
                api_key=KEY, base_url=f"http://{SERVER_NAME}:{port}/v1", allow_insecure_http=True, max_retries=0
            ).models.list()
        assert proxy.seen == ["GET /v1/models"]


@pytest.mark.parametrize(
    "proxy",
    [
        "socks5://user:Proxy_SECRET@127.0.0.1:1080",
        "ftp://user:Proxy_SECRET@127.0.0.1:21",
        "http://::bad",
        "http://user:pa/Proxy_SECRET@proxy:notaport",  # a password's "/" ends the user part to urllib
        "http://user:p@Proxy_SECRET@127.0.0.1:notaport",
        "user:Proxy_SECRET@host://x",  # no scheme httpx knows: kept as written
        "http://user:Proxy_SECRET@127.0.0.1:70000",  # httpx took it; the socket went to port 4464
    ],
    ids=[
        "socks without socksio",
        "another scheme",
        "no URL",
        "a slash in its password",
        "an @ in its password",
        "no scheme",
        "a port above 65535",
    ],
)
def test_a_proxy_from_the_environment_httpx_cannot_use_refuses_only_the_calls_it_would_carry(
    kind: str, make_client: ClientFactory, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    # A SOCKS `ALL_PROXY` in a shell without `socksio`: the client could not even be made (httpx's
    # ImportError), though a local server's calls never go through a proxy.
    if proxy.startswith("socks5") and importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: httpx can use a SOCKS proxy")
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", proxy)
    limiter = deployai.RateLimiter(requests_per_minute=2)  # shared by both: the refused calls take no turn
    remote = make_client(api_key=KEY, base_url=f"https://{SERVER_NAME}/v1", max_retries=0, rate_limiter=limiter)
    for call in (remote.models.list, lambda: remote.chat.completions.create(model=MODEL, messages=user(), stream=True)):
        with pytest.raises(deployai.InvalidParameterError) as info:
            call()
        assert info.value.param == "ALL_PROXY"
        assert "Proxy_SECRET" not in f"{info.value} {info.value!r}"
        assert b"Proxy_SECRET" not in pickle.dumps(info.value)
    local = make_client(api_key=KEY, base_url=server.base_url, max_retries=0, rate_limiter=limiter, max_retry_wait=1)
    for _ in range(2):
        assert local.chat.completions.create(model=MODEL, messages=user("hi")).choices


def test_a_proxy_from_the_environment_with_certificates_that_cannot_be_loaded_fails_its_calls_as_a_direct_one(
    kind: str, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client could not be made: the certificates were loaded for the proxy as it was mounted,
    # and their `OSError` came raw out of `DeployAI()`.
    monkeypatch.setattr(_pools, "_tls", {})
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:Proxy_SECRET@127.0.0.1:9")
    for base_url in ("https://127.0.0.1:9/v1", f"https://{SERVER_NAME}/v1"):  # direct, then through the proxy
        client = make_client(api_key=KEY, base_url=base_url, max_retries=0)
        with pytest.raises(deployai.APIConnectionError, match=r"CA certificates in SSL_CERT_FILE") as info:
            client.models.list()
        # The settings the SDK read, proxies and all, are in the traceback's locals.
        shown = "".join(traceback.TracebackException.from_exception(info.value, capture_locals=True).format())
        assert "Proxy_SECRET" not in shown


@pytest.mark.parametrize("passes_over", [True, False], ids=["httpx before 0.28", "httpx 0.28"])
def test_a_stale_ssl_cert_file_is_read_as_the_installed_httpx_reads_it(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, passes_over: bool
) -> None:
    # httpx 0.27 passes over a file that is not there (to `SSL_CERT_DIR`, or certifi's); 0.28 fails.
    # The SDK's client failed every https call on 0.27, where httpx's own worked.
    monkeypatch.setattr(_pools, "_tls", {})
    monkeypatch.setattr(_pools, "_PASSES_OVER_MISSING_CERTIFICATES", passes_over)
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    monkeypatch.setenv("SSL_CERT_DIR", str(Path(CERT_FILE).parent / "by-hash"))  # the test CA, by its subject's hash
    with TLSServer() as server:
        client = make_client(api_key=KEY, base_url=server.base_url, max_retries=0)
        if passes_over:
            assert len(client.models.list()) == 0
        else:
            with pytest.raises(deployai.APIConnectionError, match=r"CA certificates in SSL_CERT_FILE"):
                client.models.list()


def test_the_sdk_knows_how_the_installed_httpx_reads_a_stale_ssl_cert_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    try:
        httpx.Client(trust_env=True).close()
    except OSError:  # 0.28 loads the certificates as the client is made
        passes_over = False
    else:
        passes_over = True
    assert passes_over == _pools._PASSES_OVER_MISSING_CERTIFICATES


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
def test_plain_http_through_a_plain_http_proxy_needs_no_certificates(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setattr(_pools, "_tls", {})
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with ForwardProxy() as proxy:
        monkeypatch.setenv(variable, proxy.url)
        url = f"http://{SERVER_NAME}:{server.port}/v1"
        with deployai.DeployAI(api_key=KEY, base_url=url, allow_insecure_http=True, max_retries=0) as client:
            assert client.models.list()
        assert proxy.seen == ["GET /v1/models"]


def test_a_context_copied_while_a_stream_reads_its_end_carries_no_deadline(server: EmulatorServer) -> None:
    # Code that runs during the read after [DONE] (here a logging handler) may copy the context and
    # run it later elsewhere, as `call_soon_threadsafe` and `asyncio.to_thread` do.
    copied: list[contextvars.Context] = []

    class KeepContext(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            copied.append(contextvars.copy_context())

    httpcore_log, handler = logging.getLogger("httpcore"), KeepContext()
    level = httpcore_log.level
    httpcore_log.addHandler(handler)
    httpcore_log.setLevel(logging.DEBUG)
    try:
        with deployai.DeployAI(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
            with client.chat.completions.create(model=MODEL, messages=user("count"), stream=True) as stream:
                assert list(stream)
            httpcore_log.removeHandler(handler)
            assert copied
            time.sleep(2 * STREAM_END_WAIT_SECONDS)  # not waiting for anything: a copied deadline is now past
            with ThreadPoolExecutor(1) as pool:
                answers = [
                    pool.submit(context.run, client.chat.completions.create, model=MODEL, messages=user("hi")).result()
                    for context in copied
                ]
    finally:
        httpcore_log.removeHandler(handler)
        httpcore_log.setLevel(level)
    assert all(answer.choices[0].message.content for answer in answers)


def test_shutting_a_tls_connection_down_lets_no_racing_write_out_in_clear_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # A close shuts down a connection that another thread may be writing a request on, with its API
    # key. `SSLSocket.shutdown` turns TLS off first; a write landing before the socket's own shutdown
    # went out in clear text. Here the write lands exactly there.
    near, far = socket.socketpair()
    tls = ssl.create_default_context().wrap_socket(near, server_hostname="api.test", do_handshake_on_connect=False)
    tls.setblocking(False)
    shutdown = socket.socket.shutdown

    def with_a_write_just_before(sock: socket.socket, how: int) -> None:
        with contextlib.suppress(OSError):  # over TLS, before its handshake: the write must wait
            tls.sendall(b"Authorization: Bearer " + KEY.encode())
        shutdown(sock, how)

    monkeypatch.setattr(socket.socket, "shutdown", with_a_write_just_before)
    _pools.shut_down(tls)
    far.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        assert KEY.encode() not in far.recv(65536)
    tls.close()
    far.close()


class _TransportSocketRefusingShutdown:
    """The socket uvloop gives for a connection's transport (`PseudoSocket`): its `shutdown` raises `TypeError`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def shutdown(self, how: int) -> None:
        raise TypeError("transport sockets do not support shutdown() method")


def test_a_transport_socket_that_refuses_shutdown_is_shut_down_through_its_descriptor() -> None:
    # Under uvloop (as uvicorn runs when it is installed), stopping a stream and closing a client
    # raised this TypeError, left the reader waiting for its next chunk and the connections open.
    near, far = socket.socketpair()
    far.settimeout(5)
    _pools.shut_down(_TransportSocketRefusingShutdown(near))
    assert far.recv(1) == b""  # the peer sees the end at once: the connection is shut down
    # Still open: the descriptor is the transport's, to close.
    assert near.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    near.close()
    far.close()


def test_a_spoiled_pool_is_sent_nothing_more_and_is_closed_after_its_last_request() -> None:
    made: list[httpx.BaseTransport] = []

    def make() -> httpx.BaseTransport:
        made.append(httpx.MockTransport(lambda request: httpx.Response(200)))
        return made[-1]

    spread = _pools._Spread(make)
    (index, spoiled), (_, other) = spread.take(), spread.take()
    spread.spoil(index, spoiled)
    assert spread.give_back(index, spoiled, 1.0) is None  # one of its requests is still in flight
    fresh = spread.take()
    assert fresh == (index, made[1])  # its place holds a new pool
    assert made[1] is not spoiled
    assert spread.give_back(index, other, 2.0) is spoiled  # its last request: close it now
    assert spread.give_back(*fresh, 3.0) is None
    assert sum(spread._counts) == 0
    spread.take()
    third, _ = spread.take()
    spread.spoil(third, made[1])
    assert spread.take_all() == [made[1]]  # a spoiled pool still in use is closed with the others


@pytest.mark.parametrize(
    "where",
    [
        # asyncio's cancel goes through httpcore's shield: a task cancelled while its response's
        # close waits for the connection's lock leaves the connection checked out.
        "_response_closed",
        # A new connection's first request waits for the connection's lock too: a task cancelled
        # there leaves the connection neither idle nor closed, never used or closed again.
        "handle_async_request",
    ],
    ids=["in-its-close", "before-its-connection-took-it"],
)
def test_async_calls_cancelled_inside_httpcore_never_leave_the_client_stuck(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # The wait is made certain here; in a service, it is a race that cancelled calls win now and then.
    import httpcore

    original = getattr(httpcore.AsyncHTTP11Connection, where)
    held: list[Any] = []

    async def run() -> None:
        parked = asyncio.Event()

        async def slowly(self: Any, *args: Any) -> Any:
            held.append(self)
            parked.set()
            await asyncio.sleep(3600)
            return await original(self, *args)

        client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
        with monkeypatch.context() as patched:
            patched.setattr(httpcore.AsyncHTTP11Connection, where, slowly)
            for _ in range(POOL_CONNECTIONS):  # as many as one pool holds
                parked.clear()
                call = asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=user("hi")))
                await parked.wait()
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
        completion = await asyncio.wait_for(client.chat.completions.create(model=MODEL, messages=user("hi")), 10)
        assert completion.choices[0].message.content
        assert all(connection.is_closed() for connection in held)  # their pools were closed
        spread = spread_of(client)
        assert sum(spread._counts) == 0
        assert not spread._spoiled
        await client.close()

    asyncio.run(run())
    assert len(held) == POOL_CONNECTIONS


def test_a_call_cancelled_while_it_waits_for_its_answer_keeps_its_pool(server: EmulatorServer) -> None:
    # httpcore tidies up after such a cancel: the pool is kept, with its other connections.
    async def run() -> None:
        client = deployai.AsyncDeployAI(api_key=KEY, base_url=server.base_url)
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
        pool = spread_of(client)._pools[0]
        server.emulator.stall_next(3600)
        call = asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=user("hi")))

        async def until_received() -> None:  # by the server: the call then waits for its answer
            while len(server.emulator.requests) < 2:
                await asyncio.sleep(0.001)

        await asyncio.wait_for(until_received(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
        assert spread_of(client)._pools[0] is pool
        assert not spread_of(client)._spoiled
        await client.close()

    asyncio.run(run())


def test_blocking_calls_interrupted_inside_their_connections_close_never_leave_the_client_stuck(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpcore

    stuck: list[Any] = []

    def interrupted(self: Any) -> None:  # Ctrl+C as the close begins
        stuck.append(self)
        raise KeyboardInterrupt

    with deployai.DeployAI(api_key=KEY, base_url=server.base_url) as client:
        with monkeypatch.context() as patched:
            patched.setattr(httpcore.HTTP11Connection, "_response_closed", interrupted)
            for _ in range(POOL_CONNECTIONS):
                with pytest.raises(KeyboardInterrupt):
                    client.chat.completions.create(model=MODEL, messages=user("hi"))
        with ThreadPoolExecutor(1) as thread:
            answer = thread.submit(client.chat.completions.create, model=MODEL, messages=user("hi"))
            assert answer.result(timeout=10).choices[0].message.content
        assert all(connection.is_closed() for connection in stuck)
        assert sum(spread_of(client)._counts) == 0
    assert len(stuck) == POOL_CONNECTIONS


def test_a_pool_that_could_not_be_made_counts_no_request_in_flight() -> None:
    failures = iter([OSError("the certificates could not be loaded")])

    def make() -> httpx.BaseTransport:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return httpx.MockTransport(lambda request: httpx.Response(200))

    spread = _pools._Spread(make)
    with pytest.raises(OSError, match="certificates"):
        spread.take()
    index, pool = spread.take()
    assert (index, spread._counts[0]) == (0, 1)  # the failed attempt left nothing in flight
    spread.give_back(index, pool, 1.0)
    assert spread._counts[0] == 0


def test_an_ssl_cert_file_that_cannot_be_read_is_named_in_the_error(
    kind: str, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(_pools, "_tls", {})
    missing, empty = tmp_path / "missing.pem", tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    for path in (missing, empty):
        monkeypatch.setenv("SSL_CERT_FILE", str(path))
        client = make_client(api_key=KEY, base_url="https://127.0.0.1:9/v1", max_retries=0)
        with pytest.raises(deployai.APIConnectionError, match=r"the CA certificates in SSL_CERT_FILE \(.*\.pem'\)"):
            client.models.list()
        inner: Any = getattr(client, "unwrapped", client)
        assert sum(inner._http.client._transport._spreads["https"]._counts) == 0  # and no place was left taken


def test_an_async_connection_says_it_is_readable_once_data_or_its_peers_close_arrives() -> None:
    class Stream:  # what httpcore's stream answers: its socket
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, info: str) -> Any:
            return self.sock if info == "socket" else None

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self.sock.recv(max_bytes)

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.sock.sendall(buffer)

        async def aclose(self) -> None:
            self.sock.close()

    ours, peer = socket.socketpair()
    with ours, peer:
        stream: Any = _pools._AsyncStream(cast(Any, Stream(ours)))
        assert stream.get_extra_info("is_readable") is False
        assert stream.get_extra_info("socket") is ours
        peer.sendall(b"x")
        assert stream.get_extra_info("is_readable") is True
        assert asyncio.run(stream.read(1)) == b"x"
        assert stream.get_extra_info("is_readable") is False
        peer.close()  # the server's close
        assert stream.get_extra_info("is_readable") is True
    assert stream.get_extra_info("is_readable") is True  # and one closed here


_EMPTY_LIST = b'{"object": "list", "data": []}'
_EMPTY_LIST_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_EMPTY_LIST),
    _EMPTY_LIST,
)


def test_an_async_call_after_the_server_closed_the_idle_connection_opens_a_new_one() -> None:
    async def main() -> int:
        accepted = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_EMPTY_LIST_ANSWER)  # kept alive, as HTTP/1.1 says, then closed at once
            writer.close()
            await writer.wait_closed()
            closed.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1"
        async with server, deployai.AsyncDeployAI(api_key=KEY, base_url=url, max_retries=0) as client:
            for _ in range(3):
                closed = asyncio.Event()
                assert (await client.models.list()).data == []
                await closed.wait()
        return accepted

    assert asyncio.run(main()) == 3  # no retry (there is none): each call saw the last connection closed


def test_https_calls_reuse_their_connection_and_open_another_once_the_server_closed_it(
    kind: str, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pools, "_tls", {})  # made once per process for each certificate setting
    monkeypatch.setenv("SSL_CERT_FILE", CERT_FILE)
    with TLSServer() as server:
        client = make_client(api_key=KEY, base_url=server.base_url, max_retries=0)
        for _ in range(3):
            assert len(client.models.list()) == 0
        assert server.accepted == 1
        closed = server.close_after_next_answer()
        assert len(client.models.list()) == 0
        assert closed.wait(5)
        assert len(client.models.list()) == 0  # without a retry: the closed connection was seen as such
        assert server.accepted == 2


@contextlib.asynccontextmanager
async def _served(send: bytes, then_close: bool = False) -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A loopback server that sends `send` to each connection, reads nothing, and keeps it open (or closes it).

    Yields its port and its connections' writers.
    """
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(send)
        if then_close:
            writer.close()

    async with await asyncio.start_server(serve, "127.0.0.1", 0) as server:
        try:
            yield server.sockets[0].getsockname()[1], writers
        finally:
            for writer in writers:
                writer.close()


async def _until(condition: Any, seconds: float = 5.0) -> None:
    """Let the loop run until `condition()` holds; fail after `seconds` (a guard, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def test_an_asyncio_connection_reads_everything_in_order_holding_a_bounded_amount_unread() -> None:
    from deployai import _aiostream

    body = bytes(range(256)) * (8 * 1024)  # 2 MiB, more than the kernel's buffers and the stream's hold

    async def main() -> None:
        async with _served(body, then_close=True) as (port, _):
            stream = await _aiostream.connect(asyncio.get_running_loop(), "127.0.0.1", port, 5.0, None)
            protocol = stream._protocol
            await _until(lambda: protocol.reading_paused)  # a consumer slower than its server
            assert protocol.buffered <= _aiostream._HIGH_WATER + 256 * 1024  # at most one more piece
            received = bytearray()
            while piece := await stream.read(65536):
                assert len(piece) <= 65536
                received += piece
            assert received == body
            assert stream.get_extra_info("is_readable") is True  # the server's close
            await stream.aclose()

    asyncio.run(main())


def test_an_asyncio_connection_says_it_is_readable_once_data_or_its_peers_close_arrives() -> None:
    from deployai import _aiostream

    async def main() -> None:
        async with _served(b"") as (port, writers):
            stream = await _aiostream.connect(asyncio.get_running_loop(), "127.0.0.1", port, 5.0, None)
            await _until(lambda: len(writers) == 1)
            assert stream.get_extra_info("is_readable") is False
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
            writers[0].write(b"x")
            await _until(lambda: stream.get_extra_info("is_readable"))
            assert await stream.read(10) == b"x"
            assert stream.get_extra_info("is_readable") is False
            writers[0].close()
            await _until(lambda: stream.get_extra_info("is_readable"))
            assert await stream.read(10) == b""
            await stream.aclose()

    asyncio.run(main())


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts this process's sockets in /proc")
def test_an_asyncio_connect_cancelled_at_any_step_leaves_no_socket_open() -> None:
    # asyncio's race of a host's addresses (`happy_eyeballs_delay`) dropped the socket that won,
    # unclosed, when the connect was cancelled: alive in a cycle until the collector found it, and
    # out of reach of the client's close.
    from deployai import _aiostream

    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = _open_sockets()
        async with _served(b"") as (port, _):
            for steps in range(12):
                task = asyncio.ensure_future(_aiostream.connect(loop, "127.0.0.1", port, 5.0, None))
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await (await task).aclose()  # connected before the cancel came: closed here
        for _ in range(5):  # the loop's own callbacks that close what was cut short, and the server's
            await asyncio.sleep(0)
        assert _open_sockets() <= before

    gc.disable()  # a socket kept alive only by a cycle would be found by the collector: not here
    try:
        asyncio.run(main())
    finally:
        gc.enable()


def test_an_asyncio_connect_tries_a_hosts_next_address_when_one_does_not_answer() -> None:
    # A host whose first address drops the connect (a broken IPv6 route, say) is reached through the
    # next within the connect timeout, as httpcore's backend does; tried in turn, it never was.
    from deployai import _aiostream

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _served(b"") as (port, _):
            # A listener that never accepts, its backlog full: further connects get no answer at all.
            hole = socket.create_server(("127.0.0.2", port), backlog=0)
            fillers = [socket.socket() for _ in range(3)]
            try:
                for filler in fillers:
                    filler.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        filler.connect(("127.0.0.2", port))
                probe = socket.socket()
                probe.settimeout(0.5)
                with probe, contextlib.suppress(OSError):
                    probe.connect(("127.0.0.2", port))
                    pytest.skip("this system answers connects past a full backlog")

                async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
                    return [
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                        for address in ("127.0.0.2", "127.0.0.1")
                    ]

                cast(Any, loop).getaddrinfo = getaddrinfo
                stream = await _aiostream.connect(loop, "dual.test", port, 3.0, None)
                assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
                await stream.aclose()
            finally:
                hole.close()
                for filler in fillers:
                    filler.close()

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps httpcore's backend (see _aiostream)")
def test_an_asyncio_connect_cancelled_as_it_completes_is_cancelled() -> None:
    # `asyncio.wait_for` (Python 3.11) returned the connection when the cancel came in the same turn
    # of the loop as the connect ended: the call ran on, past `asyncio.timeout()` and task groups.
    from deployai import _aiostream

    class Transport:
        def get_extra_info(self, name: str) -> None:
            return None

        def is_closing(self) -> bool:
            return False

        def abort(self) -> None:
            pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        made: asyncio.Future[Any] = loop.create_future()

        async def create_connection(*args: Any, **kwargs: Any) -> Any:
            return await made

        cast(Any, loop).create_connection = create_connection
        task = asyncio.ensure_future(_aiostream.connect(loop, "127.0.0.1", 1, 5.0, None))
        for _ in range(3):
            await asyncio.sleep(0)
        made.set_result((Transport(), _aiostream._Protocol()))
        taken: list[bool] = []
        loop.call_soon(lambda: taken.append(task.cancel()))  # after the connect's own step in the same turn
        try:
            await (await task).aclose()
            assert taken == [False]  # the connect was over before the cancel: it had nothing to cancel
        except asyncio.CancelledError:
            assert taken == [True]

    asyncio.run(main())


def test_an_asyncio_connection_closes_quietly_after_the_server_half_closed_an_early_answer() -> None:
    # As nginx refuses a body too large: the answer, a half-close, and the rest of the body read and
    # dropped. The transport closed itself once its last bytes were written, and closing the stream
    # then failed inside asyncio: the call raised APIConnectionError, not the 413.
    answer = b'{"error": {"message": "Request Entity Too Large", "type": "invalid_request_error"}}'
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            reader = connection.makefile("rb")
            while (line := reader.readline()) and line != b"\r\n":
                pass
            head = f"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: {len(answer)}\r\n"
            connection.sendall(head.encode() + b"Content-Type: application/json\r\nConnection: close\r\n\r\n" + answer)
            connection.shutdown(socket.SHUT_WR)
            time.sleep(0.2)  # the client's buffers fill meanwhile: its transport closes with bytes to write
            while connection.recv(65536):
                pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()

    async def call() -> None:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        async with deployai.AsyncDeployAI(api_key=KEY, base_url=url, max_retries=0, timeout=10) as client:
            with pytest.raises(deployai.APIStatusError) as info:
                await client.chat.completions.create(
                    model="openai/gpt-4o", messages=[{"role": "user", "content": "y" * 20_000_000}]
                )
            assert info.value.status_code == 413

    try:
        asyncio.run(call())
    finally:
        server.join(10)
        listener.close()


def test_an_asyncio_connection_times_its_reads_and_writes_out() -> None:
    import httpcore

    from deployai import _aiostream

    async def main() -> None:
        async with _served(b"") as (port, _):  # answers nothing and reads nothing
            stream = await _aiostream.connect(asyncio.get_running_loop(), "127.0.0.1", port, 5.0, None)
            # `wait_for`: a guard, so that a timeout never armed fails the test instead of hanging it.
            with pytest.raises(httpcore.ReadTimeout):
                await asyncio.wait_for(stream.read(10, timeout=0.05), 5)
            with pytest.raises(httpcore.WriteTimeout):  # the kernel's buffers fill: the write waits
                for _ in range(1000):
                    await asyncio.wait_for(stream.write(b"x" * 1024 * 1024, timeout=0.05), 5)
            await stream.aclose()
            with pytest.raises(httpcore.WriteError):
                await stream.write(b"x")

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps httpcore's backend (see _aiostream)")
def test_an_async_clients_connections_close_when_it_is_dropped_unclosed_on_a_loop_that_runs_on() -> None:
    # A service that makes a client per request and never closes it: the loop reads every open
    # connection, and would otherwise hold them (a file descriptor each) for its life.
    async def main() -> None:
        ended = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal ended
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_EMPTY_LIST_ANSWER)
            await reader.read()  # until the client closes the connection
            writer.close()
            ended += 1

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            for _ in range(3):
                client = deployai.AsyncDeployAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
                listed = await client.models.list()
                assert listed.data == []
                del client, listed  # a page holds its client
            await _until(lambda: gc.collect() >= 0 and ended == 3)  # the collector, then the loop, close them

    asyncio.run(main())


def test_an_https_call_to_a_server_that_closes_at_once_fails_at_once_as_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loop often reads the server's close before the handshake starts; asyncio's `start_tls`
    # then waited for a handshake that never came, until the connect timeout.
    monkeypatch.setattr(_pools, "_tls", {})  # made once per process for each certificate setting
    monkeypatch.setenv("SSL_CERT_FILE", CERT_FILE)

    async def main() -> list[Any]:
        async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with await asyncio.start_server(close, "127.0.0.1", 0) as server:
            url = f"https://localhost:{server.sockets[0].getsockname()[1]}/v1"
            async with deployai.AsyncDeployAI(api_key=KEY, base_url=url, max_retries=0, timeout=30.0) as client:
                return await asyncio.gather(*(client.models.list() for _ in range(20)), return_exceptions=True)

    for error in asyncio.run(main()):
        assert type(error) is deployai.APIConnectionError  # not APITimeoutError, 30 s later


def test_bytes_a_server_sends_before_the_tls_handshake_are_never_read_as_its_answer() -> None:
    # Anyone on the way can write them, in clear text: read after the handshake, they passed for
    # the server's answer (a forged response, no certificate needed).
    import httpcore

    from deployai import _aiostream

    async def main() -> None:
        async with _served(_EMPTY_LIST_ANSWER) as (port, _):
            stream = await _aiostream.connect(asyncio.get_running_loop(), "127.0.0.1", port, 5.0, None)
            await _until(lambda: stream._protocol.buffer)
            context = ssl.create_default_context(cafile=CERT_FILE)
            with pytest.raises(httpcore.ConnectError, match="before the TLS handshake"):
                await stream.start_tls(context, "localhost", 5.0)
            await stream.aclose()

    asyncio.run(main())
