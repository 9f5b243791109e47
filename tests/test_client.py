"""Client construction, options, environment, headers, copies and closing, on both clients."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import deployai
from deployai import _http, _pools
from tests.conftest import API_KEY, CHAT_URL, MODELS_URL, ClientFactory, completion_json, target_of, user
from tests.sse import hello_stream, sse_response


def test_no_api_key_fails_at_construction_naming_both_ways(make_client: ClientFactory) -> None:
    with pytest.raises(deployai.DeployAIError) as info:
        make_client(api_key=None)
    assert "api_key" in str(info.value)
    assert "DEPLOYAI_API_KEY" in str(info.value)


def test_a_key_given_as_bytes_is_refused_as_such_without_showing_it(make_client: ClientFactory) -> None:
    # Read from a secret file opened in binary mode: "No API key" sent the user looking elsewhere.
    with pytest.raises(deployai.DeployAIError, match=r"must be a str, not bytes: decode it") as info:
        make_client(api_key=API_KEY.encode())
    assert API_KEY not in str(info.value)


def test_empty_api_key_counts_as_unset(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYAI_API_KEY", "")
    with pytest.raises(deployai.DeployAIError):
        make_client(api_key="")


@pytest.mark.parametrize("blank", ["", "  ", "\n"])
def test_a_blank_api_key_counts_as_unset_and_the_environments_is_used(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    # `api_key=os.getenv("KEY", " ")`: a blank key was taken as given, and the error told to set the
    # environment variable, which was set.
    monkeypatch.setenv("DEPLOYAI_API_KEY", "dpl_from_env_0123456789")
    assert make_client(api_key=blank)._options.api_key == "dpl_from_env_0123456789"
    monkeypatch.delenv("DEPLOYAI_API_KEY")
    with pytest.raises(deployai.DeployAIError, match="No API key"):
        make_client(api_key=blank)


def test_api_key_and_base_url_from_environment(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    monkeypatch.setenv("DEPLOYAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("DEPLOYAI_BASE_URL", "http://127.0.0.1:9999/v1/")
    httpx_mock.add_response(url="http://127.0.0.1:9999/v1/models", json={"object": "list", "data": []})
    client = make_client(api_key=None)
    assert client.base_url == "http://127.0.0.1:9999/v1"
    client.models.list()
    assert httpx_mock.get_requests()[0].headers["Authorization"] == "Bearer sk-from-env"


def test_explicit_arguments_win_over_environment(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    monkeypatch.setenv("DEPLOYAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("DEPLOYAI_BASE_URL", "http://127.0.0.1:9999/v1")
    httpx_mock.add_response(url="http://127.0.0.1:8888/v1/models", json={"object": "list", "data": []})
    client = make_client(api_key="sk-explicit", base_url="http://127.0.0.1:8888/v1")
    client.models.list()
    assert httpx_mock.get_requests()[0].headers["Authorization"] == "Bearer sk-explicit"


def test_default_base_url(make_client: ClientFactory) -> None:
    assert make_client().base_url == "https://api.deployai.dev/v1"


def test_empty_base_url_env_counts_as_unset(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYAI_BASE_URL", "")
    assert make_client().base_url == "https://api.deployai.dev/v1"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("base_url", "ftp://example/v1"),
        ("base_url", "not a url"),
        ("base_url", "http://[::1/v1"),
        ("base_url", "http://exa mple.com/v1"),
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("timeout", -3),
        ("timeout", "10"),
        ("max_retry_wait", -1),
    ],
)
def test_bad_client_options_are_refused(make_client: ClientFactory, option: str, value: Any) -> None:
    with pytest.raises(deployai.InvalidParameterError, match=option):
        make_client(**{option: value})


def test_repr_shows_base_url_and_never_the_key(make_client: ClientFactory) -> None:
    client = make_client()
    text = repr(client)
    assert "https://api.deployai.dev/v1" in text
    assert API_KEY not in text
    assert API_KEY not in repr(client.with_options(timeout=3))


def test_every_request_carries_auth_user_agent_and_default_headers(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=completion_json())
    client = make_client(default_headers={"X-Team": "search"})
    client.chat.completions.create(model="openai/gpt-4o", messages=user())
    request = httpx_mock.get_requests()[0]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"] == f"deployai-python/{deployai.__version__}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Team"] == "search"


def test_per_call_extra_headers_query_and_body(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(
        model="openai/gpt-4o",
        messages=user(),
        extra_headers={"X-Trace": "t-1"},
        extra_query={"debug": "1"},
        extra_body={"provider": {"order": ["openai"]}},
    )
    request = httpx_mock.get_requests()[0]
    assert request.headers["X-Trace"] == "t-1"
    assert request.url.params["debug"] == "1"
    assert json.loads(request.content)["provider"] == {"order": ["openai"]}


@pytest.mark.parametrize(("stream", "in_body"), [(False, True), (True, False), (True, True), (False, None)])
def test_stream_in_extra_body_is_refused_before_anything_is_sent(
    make_client: ClientFactory, httpx_mock: HTTPXMock, stream: bool, in_body: bool | None
) -> None:
    # `stream=` decides what create() returns (a ChatCompletion or a Stream), as its types say.
    with pytest.raises(deployai.InvalidParameterError, match=r"extra_body\['stream'\].*stream="):
        make_client().chat.completions.create(
            model="openai/gpt-4o", messages=user(), stream=stream, extra_body={"stream": in_body}
        )
    assert httpx_mock.get_requests() == []


def test_a_header_given_again_in_another_case_replaces_the_one_it_names(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=completion_json(), is_reusable=True)
    client = make_client(default_headers={"user-agent": "myapp/1.0", "X-Team": "search", "accept": "text/plain"})
    other_key = "Bearer sk-tenant-b-0123456789"
    client.chat.completions.create(model="openai/gpt-4o", messages=user(), extra_headers={"authorization": other_key})
    client.with_options(default_headers={"x-team": "ads"}).chat.completions.create(
        model="openai/gpt-4o", messages=user()
    )
    with pytest.raises(deployai.APIResponseValidationError):  # a JSON answer to a stream
        client.with_options(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True)
    sent = [[(name.lower(), value) for name, value in request.headers.raw] for request in httpx_mock.get_requests()]
    for headers in sent:  # each name once: HTTP names are case-insensitive, and a server takes either
        assert len({name for name, _ in headers}) == len(headers)
    first, second, third = (dict(headers) for headers in sent)
    assert (first[b"authorization"], first[b"user-agent"], first[b"x-team"]) == (
        other_key.encode(),
        b"myapp/1.0",
        b"search",
    )
    assert (second[b"authorization"], second[b"x-team"], second[b"accept"]) == (
        f"Bearer {API_KEY}".encode(),
        b"ads",
        b"text/plain",
    )
    assert third[b"accept"] == b"text/event-stream"  # what a stream needs, over the client's own


def test_with_options_changes_only_the_copy_and_shares_the_pool(make_client: ClientFactory) -> None:
    client = make_client(max_retries=2)
    copy = client.with_options(max_retries=5, timeout=7.0)
    assert copy.max_retries == 5
    assert copy.timeout == httpx.Timeout(7.0)
    assert client.max_retries == 2
    target = target_of(client)
    copy_target = target_of(copy)
    assert copy_target._http is target._http


def test_with_options_copy_sends_its_own_headers(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"object": "list", "data": []})
    httpx_mock.add_response(json={"object": "list", "data": []})
    client = make_client(default_headers={"X-A": "1"})
    client.with_options(default_headers={"X-B": "2"}).models.list()
    client.models.list()
    first, second = httpx_mock.get_requests()
    assert (first.headers["X-A"], first.headers["X-B"]) == ("1", "2")
    assert "X-B" not in second.headers


def test_ten_thousand_copies_do_not_grow_memory(make_client: ClientFactory) -> None:
    client = make_client()
    target = target_of(client)
    for _ in range(1_000):
        target.with_options(timeout=5)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(10_000):
        target.with_options(timeout=5, max_retries=1)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # Each copy holds ~1 KB; 10,000 retained copies would be ~10 MB. Allow noise far below that.
    assert after - before < 200_000


def test_closing_the_client_closes_its_own_pool(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"object": "list", "data": []})
    client = make_client()
    target = target_of(client)
    client.models.list()  # an AsyncDeployAI opens its pool on its first request, in that request's loop
    pool = target._http.client
    client.close()
    assert pool.is_closed


def test_a_borrowed_http_client_is_used_and_never_closed(kind: str, make_client: ClientFactory) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": [{"id": "openai/gpt-4o"}]}, request=request)

    client = make_client(transport=httpx.MockTransport(handler))
    target = target_of(client)
    borrowed = target._http.client
    assert client.models.list()[0].id == "openai/gpt-4o"
    client.close()
    assert not borrowed.is_closed


def test_a_hooks_error_that_says_loop_is_no_event_loop_trouble() -> None:
    # Any RuntimeError with "loop" in it was given the advice for an AsyncClient used on another loop.
    def hook(response: httpx.Response) -> None:
        raise RuntimeError("retry loop exhausted after 3 tries")

    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=completion_json()))
    client = deployai.DeployAI(
        api_key=API_KEY, http_client=httpx.Client(transport=transport, event_hooks={"response": [hook]})
    )
    with pytest.raises(deployai.APIConnectionError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=user())
    assert "event loop" not in str(info.value)
    assert "retry loop exhausted" in str(info.value)


def test_a_closed_borrowed_http_client_is_named_as_what_was_closed() -> None:
    # "This client has been closed", of a client no one had closed: its `with httpx.Client()` had ended.
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=completion_json()))) as borrowed:
        client = deployai.DeployAI(api_key=API_KEY, http_client=borrowed)
    with pytest.raises(deployai.DeployAIError, match=r"^The http_client given to this client has been closed"):
        client.chat.completions.create(model="openai/gpt-4o", messages=user())
    # Closed while the call waits to retry (an app shutting down its shared client).
    unavailable = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(503, headers={"retry-after": "0"}))
    )
    closing = deployai.DeployAI(
        api_key=API_KEY, http_client=unavailable, max_retries=1, on_retry=lambda *_: unavailable.close()
    )
    with pytest.raises(deployai.DeployAIError, match=r"^The http_client given to this client has been closed"):
        closing.chat.completions.create(model="openai/gpt-4o", messages=user())

    async def main() -> None:
        async with httpx.AsyncClient() as borrowed:
            client = deployai.AsyncDeployAI(api_key=API_KEY, http_client=borrowed)
        with pytest.raises(deployai.DeployAIError, match=r"^The http_client given to this client has been closed"):
            await client.chat.completions.create(model="openai/gpt-4o", messages=user())
        own = deployai.AsyncDeployAI(api_key=API_KEY)
        await own.close()
        with pytest.raises(deployai.DeployAIError, match=r"^This client has been closed") as info:
            await own.chat.completions.create(model="openai/gpt-4o", messages=user())
        assert str(info.value).endswith("(or use it inside `async with`).")  # not the sync client's `with`

    asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_a_borrowed_http_client_sends_its_headers_params_and_cookies_under_the_sdks_own(
    kind: str, make_client: ClientFactory, stream: bool
) -> None:
    # As `client.build_request` (and an `openai` client on the same httpx client) does: a gateway's
    # header, a tenant parameter or a session cookie set on the httpx client used to be left out.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse_response(hello_stream()) if stream else httpx.Response(200, json=completion_json())

    settings: dict[str, Any] = {
        "transport": httpx.MockTransport(handler),
        "base_url": "http://127.0.0.1:9",  # the SDK's `base_url` is the one requests go to
        "headers": {"X-Gateway": "g1", "X-Trace": "client", "User-Agent": "mine", "Authorization": "Bearer other"},
        "params": {"tenant": "t1", "v": "client"},
        "cookies": {"session": "abc"},
    }
    http_client = httpx.Client(**settings) if kind == "sync" else httpx.AsyncClient(**settings)
    client = make_client(http_client=http_client, default_headers={"X-Trace": "sdk"})
    for extra_headers in ({}, {"Cookie": "session=mine"}):
        answer = client.chat.completions.create(
            model="openai/gpt-4o",
            messages=user(),
            stream=stream,
            extra_query={"v": "call"},
            extra_headers=extra_headers,
        )
        if stream:
            list(answer)
    plain, with_cookie = seen
    assert (plain.url.host, plain.url.path) == ("api.deployai.dev", "/v1/chat/completions")
    assert plain.headers["x-gateway"] == "g1"
    assert plain.headers["x-trace"] == "sdk"  # the SDK's own headers win, `default_headers` among them
    assert plain.headers["user-agent"].startswith("deployai-python/")
    assert plain.headers["authorization"] == f"Bearer {API_KEY}"
    assert dict(plain.url.params) == {"tenant": "t1", "v": "call"}  # and `extra_query`
    assert plain.headers.get_list("cookie") == ["session=abc"]
    assert with_cookie.headers.get_list("cookie") == ["session=mine"]  # and `extra_headers`


def test_a_borrowed_http_clients_host_header_is_sent_as_its_build_request_sends_it(
    kind: str, make_client: ClientFactory
) -> None:
    # A virtual host behind a gateway reached by its address: the URL's host replaced it, and
    # `default_headers` cannot set `Host`, so nothing could.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion_json())

    settings: dict[str, Any] = {"transport": httpx.MockTransport(handler), "headers": {"Host": "gateway.internal"}}
    http_client = httpx.Client(**settings) if kind == "sync" else httpx.AsyncClient(**settings)
    make_client(http_client=http_client, base_url="https://10.0.0.7/v1").chat.completions.create(
        model="openai/gpt-4o", messages=user()
    )
    (request,) = seen
    assert request.headers.get_list("host") == ["gateway.internal"]
    assert request.url.host == "10.0.0.7"


def test_a_borrowed_client_of_the_wrong_kind_is_refused(kind: str, make_client: ClientFactory) -> None:
    wrong = httpx.AsyncClient() if kind == "sync" else httpx.Client()
    with pytest.raises(deployai.InvalidParameterError, match="http_client"):
        make_client(http_client=wrong)
    if isinstance(wrong, httpx.Client):
        wrong.close()


def test_use_after_close_raises_a_precise_error_without_sending(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    client = make_client()
    copy = client.with_options(timeout=3)
    client.close()
    for closed in (client, copy):
        with pytest.raises(deployai.DeployAIError, match="closed"):
            closed.models.list()
    assert httpx_mock.get_requests() == []


def test_context_managers_close_the_pool(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"object": "list", "data": []}, is_reusable=True)
    with deployai.DeployAI(api_key=API_KEY) as client:
        client.models.list()
    assert client._http.client.is_closed

    async def use_async() -> httpx.AsyncClient | None:
        async with deployai.AsyncDeployAI(api_key=API_KEY) as async_client:
            await async_client.models.list()
            return async_client._http.client

    pool = asyncio.run(use_async())
    assert pool is not None
    assert pool.is_closed


def test_closing_a_copy_leaves_the_shared_pool_open(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"object": "list", "data": []})
    client = make_client()
    client.with_options(timeout=3).close()
    assert len(client.models.list()) == 0


def test_models_list_is_typed_and_iterable(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=MODELS_URL,
        json={
            "object": "list",
            "data": [
                {"id": "openai/gpt-4o", "object": "model", "owned_by": "openai", "context_window": 128000},
                {"id": "google/gemini-2.0-flash", "object": "model", "future_field": 1},
            ],
        },
    )
    models = make_client().models.list()
    assert [m.id for m in models] == ["openai/gpt-4o", "google/gemini-2.0-flash"]
    assert models.data[0].context_window == 128000
    assert len(models) == 2
    assert models[1].created is None
    assert models[1].model_extra == {"future_field": 1}


def test_timeouts_default_per_client_and_per_call(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_response(json={"object": "list", "data": []})
    client = make_client()
    client.models.list()
    client.with_options(timeout=12.5).models.list()
    client.models.list(timeout=httpx.Timeout(3.0, connect=1.0))
    default, per_client, per_call = (r.extensions["timeout"] for r in httpx_mock.get_requests())
    assert default == {"connect": 5.0, "read": 600.0, "write": 600.0, "pool": 600.0}
    assert per_client == {"connect": 12.5, "read": 12.5, "write": 12.5, "pool": 12.5}
    assert per_call == {"connect": 1.0, "read": 3.0, "write": 3.0, "pool": 3.0}


def test_a_borrowed_client_keeps_its_own_timeout_unless_one_is_given(kind: str, make_client: ClientFactory) -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"object": "list", "data": []})

    make_client(transport=httpx.MockTransport(handler)).models.list()
    make_client(transport=httpx.MockTransport(handler), timeout=2.0).models.list()
    assert seen[0]["read"] == 5.0  # httpx's own default
    assert seen[1]["read"] == 2.0


@pytest.mark.parametrize(
    "bad_key",
    ["sk-SECRET\nSECRET2", "sk-SECRET SECRET2", "sk-SECRETSECRET\u2019", "sk-\tSECRET"],
    ids=["newline", "space", "curly-quote", "tab"],
)
def test_a_malformed_key_fails_at_construction_without_quoting_it(make_client: ClientFactory, bad_key: str) -> None:
    with pytest.raises(deployai.DeployAIError) as info:
        make_client(api_key=bad_key)
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in repr(info.value)
    assert "DEPLOYAI_API_KEY" in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Team": "caf\u00e9"},
        {"X-Team": "a\r\nInjected: 1"},
        {"X-Team": "a "},
        {"X Team": "a"},
        {"X-Team": 5},
        {"X-Team": "a", "x-team": "b"},
    ],
    ids=["non-ascii", "line-break", "a space last", "bad-name", "not-a-str", "one-name-twice"],
)
def test_bad_default_headers_fail_at_construction(make_client: ClientFactory, headers: dict[str, Any]) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="default_headers"):
        make_client(default_headers=headers)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_sdks_own_client_neither_reads_nor_sends_cookies_a_borrowed_one_does(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_cookies: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_cookies.append(request.headers.get("cookie"))
        return httpx.Response(200, json=completion_json(), headers={"set-cookie": "AWSALB=sticky; Path=/"})

    transport = httpx.MockTransport(handler)
    owned_type = _http._Client if kind == "sync" else _http._AsyncClient

    owned: list[Any] = []

    class Canned(owned_type):  # type: ignore[valid-type,misc]
        def __init__(self, settings: Any) -> None:
            super().__init__(settings, lambda context: transport)
            owned.append(self)

    monkeypatch.setattr(_http, "_Client" if kind == "sync" else "_AsyncClient", Canned)
    borrowed: Any = httpx.Client(transport=transport) if kind == "sync" else httpx.AsyncClient(transport=transport)

    async def calls_async() -> None:
        for client in (
            deployai.AsyncDeployAI(api_key=API_KEY),
            deployai.AsyncDeployAI(api_key=API_KEY, http_client=borrowed),
        ):
            for _ in range(2):
                await client.chat.completions.create(model="openai/gpt-4o", messages=user("hi"))
            await client.close()
        await borrowed.aclose()

    if kind == "sync":
        for client in (deployai.DeployAI(api_key=API_KEY), deployai.DeployAI(api_key=API_KEY, http_client=borrowed)):
            for _ in range(2):
                client.chat.completions.create(model="openai/gpt-4o", messages=user("hi"))
            client.close()
        borrowed.close()
    else:
        asyncio.run(calls_async())
    # A cookie a gateway sets is never sent back by the SDK's own client, which does not even read
    # it; a borrowed one keeps httpx's handling, and sends it back as its `build_request` would.
    assert sent_cookies == [None, None, None, "AWSALB=sticky"]
    assert dict(borrowed.cookies) == {"AWSALB": "sticky"}
    assert len(owned) == 1
    assert dict(owned[0].cookies) == {}


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body read as it arrives, as from a connection (httpx reads bytes at once), that knows if it was closed."""

    closed = False

    def __init__(self, data: bytes) -> None:
        self.data = data

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True

    def __iter__(self) -> Iterator[bytes]:
        yield self.data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def _answer(request: httpx.Request) -> httpx.Response:
    """A completion, a redirect (or one httpx cannot follow), or a failure to connect, by path."""
    if request.url.path.endswith("/moved"):
        return httpx.Response(307, headers={"location": "/v1/elsewhere"}, stream=_Body(b""))
    if request.url.path.endswith("/lost"):
        return httpx.Response(302, headers={"location": "http://a:b:c/"}, stream=_Body(b""))
    if request.url.path.endswith("/down"):
        raise httpx.ConnectError("refused")
    return httpx.Response(200, headers={"content-type": "application/json"}, stream=_Body(b'{"ok": true}'))


def test_a_send_wrapped_before_the_sdk_is_imported_sees_the_sdks_requests() -> None:
    """Tracing tools wrap httpx's `send` as early as they can: the SDK's own clients then send through it."""
    code = """if True:
        import functools, httpx
        seen = []
        inner = httpx.Client.send
        @functools.wraps(inner)
        def send(client, request, **options):
            seen.append(request.url.path)
            return inner(client, request, **options)
        httpx.Client.send = send
        from deployai import _http, _pools
        settings = _pools.Settings(proxies={}, certificates=(None, None))
        answer = httpx.MockTransport(lambda request: httpx.Response(200))
        _http._Client(settings, lambda context: answer).send(httpx.Request("GET", "http://127.0.0.1:9/v1/models"))
        print(seen)
    """
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['/v1/models']"


def _plain_wrapper(inner: Any, seen: list[str]) -> Any:
    """A wrapper as most tools write one: a function, with the wrapped one's name and module."""

    @functools.wraps(inner)
    def wrapper(client: Any, request: httpx.Request, *args: Any, **options: Any) -> Any:
        seen.append(str(request.url))
        return inner(client, request, *args, **options)

    return wrapper


class _Proxy:
    """A wrapper as wrapt makes one: not a function, and equal to the function it wraps."""

    def __init__(self, inner: Any, seen: list[str]) -> None:
        self.inner, self.seen = inner, seen

    def __eq__(self, other: object) -> bool:
        return bool(other == self.inner)

    __hash__ = None  # type: ignore[assignment]

    def __get__(self, client: Any, owner: type) -> Any:
        return self if client is None else functools.partial(self, client)  # itself, looked up on the class

    def __call__(self, client: Any, request: httpx.Request, *args: Any, **options: Any) -> Any:
        self.seen.append(str(request.url))
        return self.inner(client, request, *args, **options)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_sdks_own_client_sends_as_httpx_does_without_its_idle_layers(
    kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its `send` skips httpx's auth, redirect and hook layers, and the response is what httpx's `send` makes."""
    base: Any = httpx.Client if kind == "sync" else httpx.AsyncClient
    own_type: Any = _http._Client if kind == "sync" else _http._AsyncClient
    bodies: list[_Body] = []

    def answer(request: httpx.Request) -> httpx.Response:
        response = _answer(request)
        if isinstance(response.stream, _Body):
            bodies.append(response.stream)
        return response

    def new_client(**config: Any) -> Any:
        settings = _pools.Settings(proxies={}, certificates=(None, None))
        client = own_type(settings, lambda context: httpx.MockTransport(answer))
        client._default_encoding = "latin-1"  # not httpx's default: a response must be given the client's
        for name, value in config.items():
            setattr(client, name, value)
        return client

    async def send(sender: Any, url: str, config: dict[str, Any], options: dict[str, Any]) -> Any:
        """What one send on a new client gave (or raised), what httpx logged, and whether the body was closed."""
        client = new_client(**config)
        request = httpx.Request("POST", url, content=b"{}")
        bodies.clear()
        caplog.clear()
        before = time.perf_counter()
        with caplog.at_level(logging.INFO, logger="httpx"):
            try:
                response = sender(client, request, **options)
                response = response if kind == "sync" else await response
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                seen: Any = (type(exc).__name__, exc.request is request, str(exc))
            except RuntimeError as exc:  # the client is closed
                seen = ("closed", str(exc))
            else:
                consumed = response.is_stream_consumed
                if kind == "sync":
                    response.close()
                else:
                    await response.aclose()
                next_request = response.next_request
                seen = (
                    consumed,
                    response.request is request,
                    response.status_code,
                    response.content if consumed else None,
                    response.default_encoding,
                    [earlier.status_code for earlier in response.history],
                    None if next_request is None else (next_request.method, str(next_request.url)),
                    response.elapsed.total_seconds() <= time.perf_counter() - before,
                    request.extensions["timeout"],
                    request.headers.get("authorization"),
                    client._state.name,
                )
        return seen, [record.getMessage() for record in caplog.records], [body.closed for body in bodies]

    async def both(url: str, config: dict[str, Any] | None = None, **options: Any) -> Any:
        """The SDK's `send` and httpx's, each on a client of its own: the same, and what that is."""
        own = await send(own_type.send, url, config or {}, options)
        assert own == await send(base.send, url, config or {}, options)
        return own

    async def check() -> None:
        url = "http://127.0.0.1:9/v1/"
        for path in ("chat/completions", "moved", "down"):
            for stream in (False, True):
                await both(url + path, stream=stream)
        # A `Location` httpx cannot read fails the send, and the response is closed.
        seen, _, closed = await both(url + "lost")
        assert seen[0] == "RemoteProtocolError"
        assert closed == [True]
        # A user and password in the URL are sent as basic auth, as httpx sends them.
        assert (await both("http://user:secret@127.0.0.1:9/v1/x"))[0][-2] == "Basic dXNlcjpzZWNyZXQ="
        # Given what its layers act on, httpx's `send` does the work.
        assert (await both(url + "chat/completions", auth=("u", "p")))[0][-2] == "Basic dTpw"
        assert (await both(url + "chat/completions", {"auth": ("c", "d")}))[0][-2] == "Basic Yzpk"
        assert (await both(url + "moved", {"follow_redirects": True}))[0][5] == [307]
        hooked: list[httpx.Request] = []

        async def async_hook(request: httpx.Request) -> None:
            hooked.append(request)

        hook: Any = hooked.append if kind == "sync" else async_hook
        await both(url + "chat/completions", {"event_hooks": {"request": [hook]}})
        assert len(hooked) == 2
        closed_state = {"_state": type(new_client()._state).CLOSED}
        assert (await both(url + "chat/completions", closed_state))[0][0] == "closed"
        # httpx's layers are skipped, not run: with the one that tags errors broken, the SDK's still sends.
        with monkeypatch.context() as broken:
            broken.setattr(httpx._client, "request_context", None)
            assert (await send(own_type.send, url + "chat/completions", {}, {}))[0][2] == 200
        # A `send` or layer wrapped (as tracing tools wrap them) sees every request: it is httpx's `send` then.
        for name, make in (("send", _plain_wrapper), ("_send_single_request", _plain_wrapper), ("send", _Proxy)):
            wrapped: list[str] = []
            with monkeypatch.context() as traced:
                traced.setattr(base, name, make(getattr(base, name), wrapped))
                assert (await send(own_type.send, url + "chat/completions", {}, {}))[0][2] == 200
            assert wrapped == [url + "chat/completions"], (name, make)
        assert (await send(own_type.send, url + "chat/completions", {}, {}))[0][2] == 200  # unwrapped again

    asyncio.run(check())
