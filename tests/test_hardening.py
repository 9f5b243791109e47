"""What an adversarial review found: errors that travel between processes, odd answers, odd arguments,
unsafe base URLs, foreign number types; and `models.retrieve`, the endpoint added as a declaration."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import fractions
import logging
import multiprocessing
import numbers
import os
import pickle
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpx import HTTPXMock

import deployai
from deployai._config import resolve_options
from deployai._request import CALL_OPTIONS, CHAT_PARAMS, build_chat_request
from deployai.resources.chat import CREATE
from tests.conftest import API_KEY, BASE_URL, CHAT_URL, MODELS_URL, RATE_HEADERS, ClientFactory, completion_json, user
from tests.sse import chunk, event, hello_stream, sse_response

MODEL = "openai/gpt-4o"
ERROR_HEADERS = {"x-request-id": "req_travel", "retry-after": "7", **RATE_HEADERS}


# 6. Errors pickle with everything a user acts on, and never with the key.


def status_error(status: int) -> deployai.APIStatusError:
    request = httpx.Request("POST", CHAT_URL, headers={"Authorization": f"Bearer {API_KEY}"})
    response = httpx.Response(
        status, headers=ERROR_HEADERS, json={"error": {"message": f"failed with {status}"}}, request=request
    )
    from deployai._exceptions import make_status_error

    return make_status_error(response, retry_after=7.0)


STATUSES = [400, 401, 403, 404, 409, 422, 429, 500, 503, 418]


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_error_pickles_with_what_a_user_acts_on(status: int) -> None:
    error = status_error(status)
    data = pickle.dumps(error)
    assert API_KEY.encode() not in data
    copy = pickle.loads(data)
    assert type(copy) is type(error)
    assert (copy.status_code, copy.message, copy.request_id, copy.retry_after) == (
        status,
        f"failed with {status}",
        "req_travel",
        7.0,
    )
    assert copy.rate_limit == error.rate_limit
    assert copy.rate_limit.remaining == 59
    assert copy.body == error.body
    assert str(copy) == str(error)
    assert copy.request is None
    assert copy.response.status_code == status  # a stand-in: status and headers, no live connection


@pytest.mark.parametrize(
    "error",
    [
        deployai.APIConnectionError("Connection error: refused", request=httpx.Request("GET", MODELS_URL)),
        deployai.APITimeoutError("Request timed out (ReadTimeout).", request=httpx.Request("GET", MODELS_URL)),
        deployai.InvalidParameterError("temperature", 3, "a number from 0 to 2 (inclusive)"),
        deployai.InvalidParameterError("messages[0]", lambda: None, "a dict"),  # the value itself does not pickle
        deployai.DeployAIError("No API key"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_other_error_pickles(error: deployai.DeployAIError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    if isinstance(error, deployai.InvalidParameterError):
        assert isinstance(copy, deployai.InvalidParameterError)
        assert (copy.param, copy.allowed) == (error.param, error.allowed)


def test_a_validation_error_pickles(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"not": "a completion"}, headers={"x-request-id": "req_bad"})
    with pytest.raises(deployai.APIResponseValidationError) as info:
        make_client().chat.completions.create(model=MODEL, messages=user())
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), copy.status_code, copy.request_id, str(copy)) == (
        deployai.APIResponseValidationError,
        200,
        "req_bad",
        str(info.value),
    )


def raise_rate_limit_error() -> None:
    """Runs in a worker process."""
    raise status_error(429)


def test_an_error_raised_in_a_process_pool_worker_arrives_whole() -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(raise_rate_limit_error)
        with pytest.raises(deployai.RateLimitError) as info:
            future.result(timeout=60)
    assert (info.value.retry_after, info.value.request_id, info.value.rate_limit.limit) == (7.0, "req_travel", 60)


# 9. Odd answers: a BOM before JSON, a redirect.


def test_a_json_body_with_a_utf8_bom_parses(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    import json

    httpx_mock.add_response(content=b"\xef\xbb\xbf" + json.dumps(completion_json()).encode())
    completion = make_client().chat.completions.create(model=MODEL, messages=user())
    assert completion.choices[0].message.content == "Hello! How can I help you today?"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_redirect_is_an_error_saying_where_to(
    make_client: ClientFactory, httpx_mock: HTTPXMock, stream: bool
) -> None:
    httpx_mock.add_response(status_code=307, headers={"location": "https://moved.example/v1/chat/completions"})
    with pytest.raises(deployai.APIStatusError) as info:
        make_client().chat.completions.create(model=MODEL, messages=user(), stream=stream)
    assert info.value.status_code == 307
    assert "redirect to https://moved.example/v1/chat/completions" in str(info.value)
    assert len(httpx_mock.get_requests()) == 1  # neither followed nor retried


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_borrowed_client_that_follows_redirects_does_not_follow_the_sdks(kind: str) -> None:
    # The redirect would take the prompt and `default_headers` (a gateway's secret) to another origin.
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(307, headers={"location": "https://elsewhere.example/v1/chat/completions"})

    transport = httpx.MockTransport(handler)
    options: dict[str, Any] = {"api_key": API_KEY, "default_headers": {"x-team-secret": "s3cr3t"}, "max_retries": 0}
    with pytest.raises(deployai.APIStatusError, match=r"redirect to https://elsewhere\.example") as info:
        if kind == "sync":
            with httpx.Client(transport=transport, follow_redirects=True) as borrowed:
                deployai.DeployAI(http_client=borrowed, **options).chat.completions.create(model=MODEL, messages=user())
        else:

            async def call() -> None:
                async with httpx.AsyncClient(transport=transport, follow_redirects=True) as borrowed:
                    client = deployai.AsyncDeployAI(http_client=borrowed, **options)
                    await client.chat.completions.create(model=MODEL, messages=user())

            asyncio.run(call())
    assert info.value.status_code == 307
    assert [request.url.host for request in sent] == ["api.deployai.dev"]


def _refused(response: httpx.Response) -> None:
    response.raise_for_status()


async def _refused_async(response: httpx.Response) -> None:
    response.raise_for_status()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_answer_a_borrowed_clients_hook_refuses_is_still_that_status(kind: str, stream: bool) -> None:
    # A `raise_for_status` hook on a shared httpx client is common; httpx then closes the answer
    # unread. A 429 is still a 429 (retried after its `retry-after`, the limiter told), and a 400 is
    # still `BadRequestError`, not a connection error.
    from deployai.testing import Emulator

    emulator = Emulator()
    emulator.fail_next(429, headers={"retry-after": "0"})
    options: dict[str, Any] = {"api_key": "sk-emulator-test", "base_url": "http://127.0.0.1:9/v1"}

    async def call_async(transport: httpx.AsyncBaseTransport) -> str:
        hooks: Any = {"response": [_refused_async]}
        async with httpx.AsyncClient(transport=transport, event_hooks=hooks) as borrowed:
            client = deployai.AsyncDeployAI(http_client=borrowed, **options)
            if stream:
                chunks = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
                return "".join([part.choices[0].delta.content or "" async for part in chunks if part.choices])
            return (await client.chat.completions.create(model=MODEL, messages=user())).choices[0].message.content or ""

    def call() -> str:
        if kind == "async":
            return asyncio.run(call_async(emulator.async_transport()))
        with httpx.Client(transport=emulator.transport(), event_hooks={"response": [_refused]}) as borrowed:
            client = deployai.DeployAI(http_client=borrowed, **options)
            if stream:
                chunks = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
                return "".join(part.choices[0].delta.content or "" for part in chunks if part.choices)
            return client.chat.completions.create(model=MODEL, messages=user()).choices[0].message.content or ""

    assert call() == "You said: Hello!"
    assert len(emulator.requests) == 2

    emulator.reset()
    emulator.fail_next(400, headers={"x-request-id": "req_hooked"})
    with pytest.raises(deployai.BadRequestError) as info:
        call()
    assert len(emulator.requests) == 1
    assert info.value.request_id == "req_hooked"
    assert "event hook of the http_client raised" in str(info.value)
    assert info.value.response.content == b""

    # A hook that read the body before it raised kept it: the server's message is the error's.
    def read_then_refuse(response: httpx.Response) -> None:
        response.read()
        response.raise_for_status()

    emulator.reset()
    emulator.fail_next(400, body={"error": {"message": "model foo does not exist", "code": "model_not_found"}})
    hooks: Any = {"response": [read_then_refuse]}
    with (
        httpx.Client(transport=emulator.transport(), event_hooks=hooks) as borrowed,
        pytest.raises(deployai.BadRequestError, match="model foo does not exist") as info,
    ):
        deployai.DeployAI(http_client=borrowed, **options).chat.completions.create(model=MODEL, messages=user())
    assert info.value.code == "model_not_found"


def test_a_304_is_an_error_that_blames_a_cache_not_a_redirect(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=304)
    with pytest.raises(deployai.APIStatusError) as info:
        make_client().chat.completions.create(model=MODEL, messages=user())
    assert info.value.status_code == 304
    assert "a proxy or cache between this client and the API sent it" in str(info.value)
    assert "redirect" not in str(info.value)


# 10. Nothing but the SDK's own errors escapes building a request.


def deeply_nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_a_deeply_nested_extra_body_is_refused(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="nested less deeply"):
        make_client().chat.completions.create(model=MODEL, messages=user(), extra_body=deeply_nested(100_000))
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize("value", ["x" * 100_000, object(), [object()]], ids=["100KB", "object", "list-of-object"])
def test_a_bad_extra_query_value_is_refused(make_client: ClientFactory, httpx_mock: HTTPXMock, value: object) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="extra_query"):
        make_client().chat.completions.create(model=MODEL, messages=user(), extra_query={"q": value})
    assert httpx_mock.get_requests() == []


OPTIONS = resolve_options(
    api_key=API_KEY,
    base_url=None,
    timeout=deployai.NOT_GIVEN,
    max_retries=0,
    max_retry_wait=60.0,
    default_headers=None,
    borrowed_client=False,
    environ={},
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
odd_values = json_values | st.builds(object) | st.binary() | st.tuples(json_values) | st.sets(st.integers())
messages = (
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"])}, optional={"content": odd_values}
        ),
        max_size=3,
    )
    | odd_values
)
arguments = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "bad", ""]) | odd_values, "messages": messages},
    # Every other keyword create() knows, each with any value at all.
    optional=dict.fromkeys(
        sorted((CHAT_PARAMS | CALL_OPTIONS) - {"model", "messages"}),
        odd_values,
    ),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(arguments)
def test_building_a_request_raises_only_the_sdks_own_errors(params: dict[str, Any]) -> None:
    with contextlib.suppress(deployai.DeployAIError):  # anything else fails the test
        build_chat_request(OPTIONS, CREATE, params)


# 11 and 12. Unsafe base URLs are refused at construction.


@pytest.mark.parametrize("base_url", ["https://api.example/v1?key=1", "https://api.example/v1#frag", "https://x/v1?"])
def test_a_base_url_with_a_query_or_fragment_is_refused(make_client: ClientFactory, base_url: str) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="without a query string or fragment"):
        make_client(base_url=base_url)


@pytest.mark.parametrize(
    "base_url",
    ["https://gw.example/v1?api-key=dpl_live_LEAK0123", "https://gw.example:99999/v1#dpl_live_LEAK0123"],
)
def test_a_refused_base_url_is_never_quoted_with_its_query(make_client: ClientFactory, base_url: str) -> None:
    # Some gateways' URLs carry the key as `?api-key=`: the error quoted it whole.
    with pytest.raises(deployai.InvalidParameterError) as refused:
        make_client(base_url=base_url)
    assert "LEAK0123" not in str(refused.value)
    assert "https://gw.example" in str(refused.value)


def test_a_refused_base_url_with_an_empty_query_is_quoted_as_written(make_client: ClientFactory) -> None:
    # Nothing follows the `?`, so there is nothing to hide: `?***` suggested a secret that was never there.
    with pytest.raises(deployai.InvalidParameterError) as refused:
        make_client(base_url="https://gw.example:99999/v1?")
    assert "'https://gw.example:99999/v1?'" in str(refused.value)
    assert "***" not in str(refused.value)


@pytest.mark.parametrize(
    ("base_url", "allowed"),
    [
        ("http://127.0.0.1:65979/v1", "port is from 1 to 65535"),  # sent to port 443 (65979 - 65536) by the socket
        ("https://api.example:0/v1", "port is from 1 to 65535"),
        ("https://xn--zz/v1", "an absolute http"),  # no IDNA label: the `idna` package's own error before
        # Pasted from a web page: encoded into every path, each call a 404.
        ("https://api.example/v1/\u00a0x", "an absolute http"),
        ("https://api.example/v1\u200b", "an absolute http"),
        ("https://api.example/v1/\u3000x", "an absolute http"),
        ("https://api.example/v1\u200e", "an absolute http"),  # a direction mark
        ("https://api.example/v1\u202a", "an absolute http"),
        ("https://api.example/v\u200d1", "an absolute http"),  # a joiner where no name holds it
    ],
)
def test_a_base_url_with_a_bad_port_or_host_is_refused(make_client: ClientFactory, base_url: str, allowed: str) -> None:
    with pytest.raises(deployai.InvalidParameterError, match=allowed):
        make_client(base_url=base_url)


@pytest.mark.parametrize("end", [" ", "\n", "\u00a0", "\u3000"])
def test_spaces_at_the_ends_of_a_base_url_are_dropped(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    # As the key's are: pasted with the URL, or left by docker-compose in the environment.
    assert make_client(base_url=f"{end}https://api.example/v1{end}").base_url == "https://api.example/v1"
    monkeypatch.setenv("DEPLOYAI_BASE_URL", f"https://env.example/v1{end}")
    assert make_client(base_url=end).base_url == "https://env.example/v1"  # blank: unset


def test_a_name_with_the_zero_width_non_joiner_idna_allows_is_a_base_url(make_client: ClientFactory) -> None:
    # Persian names hold it: the check for pasted zero-width spaces must not take it for one.
    assert make_client(base_url="https://\u0646\u0627\u0645\u0647\u200c\u0627\u06cc.ir/v1").base_url.endswith(".ir/v1")
    assert make_client(base_url="https://\u0646\u0627\u0645\u0647\u200c\u0627\u06cc.IR/v1").base_url.endswith(".IR/v1")
    assert make_client(base_url="https://api.\u0646\u0627\u0645\u0647\u200c\u0627\u06cc.ir/v1").base_url.endswith(
        ".ir/v1"
    )


@pytest.mark.parametrize("url_type", [bytes, "pydantic"])
def test_a_base_url_that_is_no_str_is_refused_without_quoting_its_password_or_query(
    make_client: ClientFactory, url_type: object
) -> None:
    text = "https://team:hunter2pass@gw.example.com/v1?api-key=hunter2key"
    if url_type is bytes:
        base_url: object = text.encode()
    else:
        import pydantic

        base_url = pydantic.TypeAdapter(pydantic.HttpUrl).validate_python(text)  # as pydantic-settings gives it
    with pytest.raises(
        deployai.InvalidParameterError, match=r"a str such as .* \(str\(url\) of a URL object\)"
    ) as info:
        make_client(base_url=base_url)
    assert "hunter2" not in f"{info.value} {info.value!r}"
    assert b"hunter2" not in pickle.dumps(info.value)


@pytest.mark.parametrize(
    "quoted", ['"dpl_live_0123456789abcdef"', "'dpl_live_0123456789abcdef'", '"dpl_live_0123456789abcdef']
)
@pytest.mark.parametrize("source", ["argument", "environment"])
def test_a_key_with_the_quotes_of_an_env_file_is_refused_before_sending(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, quoted: str, source: str
) -> None:
    # `docker --env-file` keeps them: every call was a 401 with no hint why.
    if source == "environment":
        monkeypatch.setenv("DEPLOYAI_API_KEY", quoted)
    with pytest.raises(deployai.DeployAIError, match="starts or ends with a quote") as info:
        make_client(**({"api_key": quoted} if source == "argument" else {"api_key": None}))
    assert "0123456789abcdef" not in str(info.value)


@pytest.mark.parametrize("value", ["false", "0", 1, None])
def test_allow_insecure_http_takes_only_a_bool(make_client: ClientFactory, value: object) -> None:
    # `allow_insecure_http=os.getenv("X", "false")`: the string "false" let the key go out in clear.
    with pytest.raises(deployai.InvalidParameterError, match="allow_insecure_http must be True or False"):
        make_client(base_url="http://gw.example.com/v1", allow_insecure_http=value)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://user:hunter2pass@gw.example.com/v1",
        "https://:hunter2pass@gw.example.com/v1",
        "https://hunter2pass@gw.example.com/v1",
        "https://user:hunter2pass@gw.example.com/v1?key=1",
        "ftp://user:hunter2pass@gw.example.com/v1",
        "https://user:hun#ter2pass@gw.example.com/v1",  # no parser finds these: the error says the URL is bad
        "https://user:hun?ter2pass@gw.example.com/v1",
        "https://user:hun/ter2pass@gw.example.com/v1",
        "https:/user:hunter2pass@gw.example.com/v1",
        "user:hunter2pass@gw.example.com/v1",
        "hunter2pass:x@gw.example.com/v1",  # a token as the user name, without a scheme
        "https://user:2024/hunter2pass@gw.example.com/v1",  # host `user`, port 2024, to a parser
    ],
)
def test_a_base_url_with_a_user_or_password_is_refused_without_quoting_them(
    make_client: ClientFactory, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx would send them as Basic auth in place of the key, and they would show in reprs and logs.
    for passed in ({"base_url": base_url}, {}):
        monkeypatch.setenv("DEPLOYAI_BASE_URL", base_url)
        with pytest.raises(deployai.InvalidParameterError, match="base_url must be") as info:
            make_client(**passed)
        assert "hunter2pass" not in str(info.value)
        assert "hunter2pass" not in repr(info.value.value)
        assert "hunter2pass" not in repr(pickle.loads(pickle.dumps(info.value)).__dict__)


@pytest.mark.parametrize(
    "host",
    [
        "api.deployai.dev",
        "10.0.0.5:8000",
        "192.168.1.2",
        "[2001:db8::1]",
        "localhost.evil.com",
        "api.localhost",
        # With the root's dot, glibc looks these up in DNS, not in /etc/hosts: they were taken as this machine.
        "localhost.",
        "LOCALHOST.:8787",
        "127.0.0.1.",
        "127.1.",
    ],
)
def test_plain_http_to_another_machine_is_refused_naming_the_opt_in(make_client: ClientFactory, host: str) -> None:
    with pytest.raises(deployai.DeployAIError, match="allow_insecure_http=True") as info:
        make_client(base_url=f"http://{host}/v1")
    assert API_KEY not in str(info.value)


@pytest.mark.parametrize(
    "host", ["localhost:8787", "127.0.0.1:8787", "127.1.2.3", "[::1]:8787", "LOCALHOST", "127.1", "[::ffff:127.0.0.1]"]
)
def test_plain_http_to_this_machine_is_allowed(make_client: ClientFactory, host: str) -> None:
    assert make_client(base_url=f"http://{host}/v1").base_url == f"http://{host}/v1"


def test_plain_http_elsewhere_works_with_the_opt_in(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="http://10.0.0.5:8000/v1/models", json={"object": "list", "data": []})
    client = make_client(base_url="http://10.0.0.5:8000/v1", allow_insecure_http=True)
    assert len(client.models.list()) == 0


def test_the_environment_base_url_is_checked_too(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYAI_BASE_URL", "http://api.deployai.dev/v1")
    with pytest.raises(deployai.DeployAIError, match="plain http://"):
        make_client()


# 13. Numbers that are not Python's own int and float.


class ForeignInt:
    """An integer type of another library, registered as `numbers.Integral` the way numpy registers its own."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __lt__(self, other: int) -> bool:
        return self.value < other

    def __gt__(self, other: int) -> bool:
        return self.value > other

    def __le__(self, other: int) -> bool:
        return self.value <= other

    def __ge__(self, other: int) -> bool:
        return self.value >= other


numbers.Integral.register(ForeignInt)


def test_foreign_numbers_are_accepted_and_sent_as_json_numbers(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    import json

    httpx_mock.add_response(json=completion_json())
    client = make_client(
        max_retries=ForeignInt(1), max_retry_wait=fractions.Fraction(5, 2), timeout=fractions.Fraction(30)
    )
    client.chat.completions.create(
        model=MODEL,
        messages=user(),
        temperature=fractions.Fraction(7, 10),
        max_tokens=ForeignInt(16),
        seed=ForeignInt(-3),
    )
    sent = json.loads(httpx_mock.get_requests()[0].content)
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.7, 16, -3)
    assert client.max_retries == 1
    assert client.max_retry_wait == 2.5


@pytest.mark.parametrize("value", [True, False], ids=["True", "False"])
def test_a_bool_is_never_a_number(make_client: ClientFactory, httpx_mock: HTTPXMock, value: bool) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="max_tokens"):
        make_client().chat.completions.create(model=MODEL, messages=user(), max_tokens=value)


# models.retrieve: an endpoint added as a declaration.


def test_models_retrieve_returns_one_model_with_its_response_details(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        url=f"{BASE_URL}/models/anthropic/claude-3.5-sonnet",
        json={"id": "anthropic/claude-3.5-sonnet", "object": "model", "context_window": 200000},
        headers={"x-request-id": "req_model", **RATE_HEADERS},
    )
    model = make_client().models.retrieve("anthropic/claude-3.5-sonnet")
    assert isinstance(model, deployai.types.Model)
    assert (model.id, model.context_window, model.request_id, model.rate_limit.remaining) == (
        "anthropic/claude-3.5-sonnet",
        200000,
        "req_model",
        59,
    )


def test_models_retrieve_of_an_unknown_id_is_not_found(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=404, json={"error": {"message": "The model 'a/b' does not exist"}})
    with pytest.raises(deployai.NotFoundError, match="does not exist"):
        make_client().models.retrieve("a/b")


class _Split(str):
    """A model id whose `split` hides its `..` from a check that calls it."""

    def split(self, sep: str | None = None, maxsplit: int = -1) -> list[str]:  # type: ignore[override]
        return ["openai", "gpt-4o"]


@pytest.mark.parametrize(
    "bad", ["", "gpt-4o", "a/..", "a/./b", "../../chat/completions", 42, _Split("openai/../../admin")]
)
def test_models_retrieve_refuses_an_id_that_is_not_one_model(
    make_client: ClientFactory, httpx_mock: HTTPXMock, bad: Any
) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="model"):
        make_client().models.retrieve(bad)
    assert httpx_mock.get_requests() == []


class _ModelId(str, enum.Enum):
    GPT4O = "openai/gpt-4o"


class _Disguised(str):
    """A model id whose formatting says another thing than its text."""

    def __format__(self, spec: str) -> str:
        return "../../admin?x="

    def __str__(self) -> str:
        return "../../admin?x="


@pytest.mark.parametrize("model", [_ModelId.GPT4O, _Disguised("openai/gpt-4o")], ids=["an Enum", "a str subclass"])
def test_models_retrieve_of_a_str_subclass_asks_for_the_model_its_text_names(
    make_client: ClientFactory, httpx_mock: HTTPXMock, model: str
) -> None:
    # The text was checked, and the path made of its `__format__`: `/v1/models/_ModelId.GPT4O`, or
    # a path out of `/v1` altogether.
    httpx_mock.add_response(url=f"{BASE_URL}/models/openai/gpt-4o", json={"id": "openai/gpt-4o", "object": "model"})
    assert make_client().models.retrieve(model).id == "openai/gpt-4o"


def test_models_retrieve_raw_response(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"id": "openai/gpt-4o", "object": "model"}, headers={"x-request-id": "req_raw"})
    raw = make_client().models.with_raw_response.retrieve("openai/gpt-4o")
    assert (raw.status_code, raw.request_id, raw.parse().id) == (200, "req_raw", "openai/gpt-4o")


def test_models_retrieve_against_the_emulator() -> None:
    from deployai.testing import Emulator

    with Emulator().client() as client:
        assert client.models.retrieve("google/gemini-2.0-flash").context_window == 1_000_000
        with pytest.raises(deployai.NotFoundError):
            client.models.retrieve("google/no-such-model")


# The driver logs every attempt, a successful stream included.


def test_a_successful_stream_is_logged_at_debug(
    make_client: ClientFactory, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    httpx_mock.add_callback(lambda request: sse_response(hello_stream()))
    caplog.set_level(logging.DEBUG, logger="deployai")
    with make_client().chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
        list(stream)
    assert any("POST https://api.deployai.dev/v1/chat/completions -> 200" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding", "Connection", "Host", "TE", "Upgrade"])
def test_headers_that_http_itself_sets_are_refused(
    make_client: ClientFactory, httpx_mock: HTTPXMock, name: str
) -> None:
    with pytest.raises(deployai.InvalidParameterError, match=name):
        make_client().chat.completions.create(model=MODEL, messages=user(), extra_headers={name: "99999"})
    with pytest.raises(deployai.InvalidParameterError, match=name):
        make_client(default_headers={name: "chunked"})
    assert httpx_mock.get_requests() == []


def _shown_with_locals(error: BaseException) -> str:
    """The traceback as `pytest -l` or `capture_locals=True` shows it: every frame's locals too."""
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


def _in_the_sdks_frames(error: BaseException) -> BaseException:
    """`error`, its traceback from the first of the SDK's frames: the test's own hold the caller's values."""
    trace = error.__traceback__
    package = str(Path(deployai.__file__).parent)
    while trace is not None and not trace.tb_frame.f_code.co_filename.startswith(package):
        trace = trace.tb_next
    assert trace is not None
    return error.with_traceback(trace)


def _client_made_with(how: str, monkeypatch: pytest.MonkeyPatch, **options: Any) -> deployai.DeployAI:
    if how == "argument":
        return deployai.DeployAI(api_key=API_KEY, base_url=BASE_URL, **options)
    monkeypatch.setenv("DEPLOYAI_API_KEY", API_KEY)
    return deployai.DeployAI(base_url=BASE_URL, **options)


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize(
    "mistake",
    [
        pytest.param(lambda make: make(timeout=-1), id="client timeout"),
        pytest.param(lambda make: make(default_headers={"X-Bad": "a\nb"}), id="client headers"),
        pytest.param(lambda make: make().with_options(default_headers={"X-Bad": "a\nb"}), id="with_options"),
        pytest.param(
            lambda make: make().chat.completions.create(model=MODEL, messages=user(), timeout=-1), id="call timeout"
        ),
        pytest.param(
            lambda make: make().chat.completions.create(model=MODEL, messages=user(), extra_headers={"X": "a\nb"}),
            id="call headers",
        ),
        pytest.param(
            lambda make: make().chat.completions.create(model=MODEL, messages=user(), extra_body={"x": object()}),
            id="call body",
        ),
        pytest.param(lambda make: make().models.list(extra_headers={"X": "a\nb"}), id="models headers"),
    ],
)
def test_a_traceback_with_its_locals_never_shows_the_key(
    how: str, mistake: Any, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    # `pytest -l` in CI, or an error tracker that records locals: the key passes through the SDK's
    # frames (the client's arguments, the environment, dicts of headers), each shown by its repr.
    with pytest.raises(deployai.InvalidParameterError) as info:
        mistake(lambda **options: _client_made_with(how, monkeypatch, **options))
    shown = _shown_with_locals(info.value)
    assert API_KEY not in shown
    assert httpx_mock.get_requests() == []


# The wrong types these tests pass on purpose, which a type checker refuses.
_unchecked_client: Any = deployai.DeployAI


def _unchecked(value: object) -> Any:
    return value


@pytest.mark.parametrize(
    ("mistake", "said"),
    [
        pytest.param(lambda: _unchecked_client(api_key=API_KEY.encode()), "not bytes: decode it", id="key as bytes"),
        pytest.param(
            lambda: _unchecked_client(api_key=pydantic.SecretStr(API_KEY)),
            "not SecretStr: pass key.get_secret_value()",
            id="key as a pydantic SecretStr",
        ),
        pytest.param(
            lambda: _unchecked_client(api_key="x" * 20, default_headers=[("Authorization", f"Bearer {API_KEY}")]),
            "a mapping of header names",
            id="headers as pairs",
        ),
        pytest.param(
            lambda: _unchecked_client(api_key="x" * 20, base_url=BASE_URL).with_options(
                default_headers=[("api-key", API_KEY)]
            ),
            "a mapping of header names",
            id="with_options headers as pairs",
        ),
        pytest.param(
            lambda: _unchecked_client(api_key="x" * 20, default_headers={"api-key": API_KEY.encode()}),
            r"\['api-key'\] must be a str .*; got 'bytes'",
            id="a key header's value as bytes",
        ),
        pytest.param(
            lambda: _unchecked_client(api_key="x" * 20, default_headers=((b"x-api-key", API_KEY.encode()),)),
            "a mapping of header names.*; got 'tuple'",
            id="headers as pairs of bytes",
        ),
        pytest.param(
            lambda: _unchecked_client(api_key="x" * 20, default_headers=httpx.Headers({"api-key": f"{API_KEY}\n"})),
            r"\['api-key'\] must be a str",
            id="an api-key with a line break in an httpx.Headers",
        ),
        pytest.param(
            lambda: deployai.RedisRateLimiter(_unchecked(f"redis://:{API_KEY}@127.0.0.1:1/0".encode())),
            "url must be a redis://.*; got 'bytes'",
            id="a Redis URL as bytes",
        ),
    ],
)
def test_a_key_given_in_a_refused_form_is_in_no_local_of_the_sdks_frames(mistake: Any, said: str) -> None:
    # Error trackers record the locals of every frame: the refused bytes or pairs were shown whole.
    with pytest.raises(deployai.DeployAIError, match=said) as info:
        mistake()
    assert API_KEY not in _shown_with_locals(_in_the_sdks_frames(info.value))


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda client, headers: client.chat.completions.create(model=MODEL, messages=user(), **headers)),
        pytest.param(
            lambda client, headers: client.chat.completions.with_raw_response.create(
                model=MODEL, messages=user(), **headers
            ).parse(),
            id="raw",
        ),
        pytest.param(lambda client, headers: client.models.list(**headers), id="models.list"),
        pytest.param(lambda client, headers: client.models.retrieve(MODEL, **headers), id="models.retrieve"),
    ],
)
def test_a_per_call_key_is_not_shown_by_a_traceback_with_its_locals(
    call: Any, make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # The documented per-call key, `extra_headers={"Authorization": ...}`: the SDK's frames showed
    # it whole in their `params`, as the caller's string.
    tenant_key = "sk-tenant-" + "7" * 24
    httpx_mock.add_response(status_code=401, json={"error": {"message": "bad key"}})
    headers = {"Authorization": f"Bearer {tenant_key}", "X-Trace": "t-1"}
    with pytest.raises(deployai.AuthenticationError) as info:
        call(make_client(max_retries=0), {"extra_headers": headers})
    shown = _shown_with_locals(_in_the_sdks_frames(info.value))
    assert tenant_key not in shown
    assert "t-1" in shown  # the other headers are shown as they were
    assert headers["Authorization"] == f"Bearer {tenant_key}"  # the caller's dict is left as it is
    assert type(headers["Authorization"]) is str
    (sent,) = httpx_mock.get_requests()
    assert sent.headers["authorization"] == f"Bearer {tenant_key}"


@pytest.mark.parametrize("where", ["model", "base_url", "environment"])
def test_a_key_given_to_the_wrong_setting_is_not_quoted_by_its_refusal(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two settings swapped (in a config file, or two CI secrets mapped to each other's variable):
    # the refusal quoted the key, into the traceback, a CI log and the error's pickle.
    key = "sk-proj-abcdef1234567890XYZ"
    with pytest.raises(deployai.InvalidParameterError) as info:
        if where == "model":
            deployai.DeployAI(api_key=key, base_url=BASE_URL).chat.completions.create(model=key, messages=user())
        elif where == "base_url":
            deployai.DeployAI(api_key="openai/gpt-4o", base_url=key)
        else:
            monkeypatch.setenv("DEPLOYAI_API_KEY", "https://api.deployai.example/v1")
            monkeypatch.setenv("DEPLOYAI_BASE_URL", key)
            deployai.DeployAI()
    error = info.value
    assert str(error).endswith("got '[redacted]'")
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert all(key not in text for text in shown)
    assert key.encode() not in pickle.dumps(error)
    travelled = pickle.loads(pickle.dumps(error))
    assert (travelled.param, travelled.value, str(travelled)) == (error.param, "'[redacted]'", str(error))


@pytest.mark.parametrize(
    "extra_query",
    [
        "api-key=GWKEY-0123456789&api-version=2024-06-01",
        [("api-key", "GWKEY-0123456789")],
        {"api-key": b"GWKEY-0123456789"},
    ],
    ids=["query string", "list of pairs", "bytes value"],
)
def test_a_refused_extra_query_does_not_quote_its_values(
    make_client: ClientFactory, httpx_mock: HTTPXMock, extra_query: Any
) -> None:
    # A gateway takes its key in the query: the refusal quoted it, into the traceback and the pickle.
    with pytest.raises(deployai.InvalidParameterError, match="extra_query") as info:
        make_client().models.list(extra_query=extra_query)
    shown = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    assert all("GWKEY" not in text for text in shown)
    assert b"GWKEY" not in pickle.dumps(info.value)
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize("length", [199, 400, 2000])
def test_a_long_live_key_given_to_the_wrong_setting_is_not_quoted_in_part(length: int) -> None:
    # A gateway's JWT-style key running past the 200 characters examined was not found: its first
    # 76 characters were in the message, and the whole key in the pickle.
    key = ("eyJhbGciOiJSUzI1NiJ9" * 100)[:length]
    with (
        deployai.DeployAI(api_key=key, base_url=BASE_URL) as client,
        pytest.raises(deployai.InvalidParameterError) as info,
    ):
        client.chat.completions.create(model=key, messages=user())
    assert str(info.value).endswith("got '[redacted]'")
    assert key[:20] not in str(info.value)
    assert key[:20].encode() not in pickle.dumps(info.value)


def test_a_live_clients_key_of_any_shape_is_not_quoted_by_a_refusal() -> None:
    key = "ak_live_0123456789abcdef"
    with (
        deployai.DeployAI(api_key=key, base_url=BASE_URL) as client,
        pytest.raises(deployai.InvalidParameterError) as info,
    ):
        client.chat.completions.create(model=MODEL, messages=user(), temperature=f"{key} " * 20)  # type: ignore[call-overload]
    assert key not in str(info.value)
    assert str(info.value).startswith("temperature must be")


def test_a_bad_per_call_key_header_is_refused_as_a_str_and_unquoted(make_client: ClientFactory) -> None:
    # A key read from a file keeps its line break: the error named the SDK's own redacted type.
    headers = OrderedDict([("Authorization", "Bearer sk-from-a-file-0123456789\n")])
    with pytest.raises(deployai.InvalidParameterError) as info:
        make_client().chat.completions.create(model=MODEL, messages=user(), extra_headers=headers)
    assert "got 'str'" in str(info.value)
    assert "sk-from-a-file" not in _shown_with_locals(_in_the_sdks_frames(info.value))


def test_a_client_that_failed_half_way_has_a_repr_for_the_traceback() -> None:
    # Its `__init__`'s frame holds `self` before its options are set; a repr that raised there made
    # `capture_locals` itself fail, and the user's error was lost.
    with pytest.raises(deployai.InvalidParameterError) as info:
        deployai.DeployAI(api_key=API_KEY, base_url=BASE_URL, max_retries=-1)
    assert "self = DeployAI(<not built>)" in _shown_with_locals(info.value)


@pytest.mark.parametrize("limiter", ["RateLimiter", "RedisRateLimiter"])
def test_a_limiter_that_failed_half_way_shows_no_redis_password_in_the_traceback(
    limiter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A setting read from the environment, say, refused: the traceback's locals showed the Redis
    # URL whole, and the limiter's own repr raised in them, so that `capture_locals` failed.
    monkeypatch.setenv("REDIS_URL", "redis://:Redis_SECRETPW@127.0.0.1:6390/0")
    with pytest.raises(deployai.InvalidParameterError) as info:
        if limiter == "RateLimiter":
            deployai.RateLimiter(requests_per_minute=0)
        else:
            deployai.RedisRateLimiter(os.environ["REDIS_URL"], requests_per_minute=0)
    shown = _shown_with_locals(info.value)
    assert f"self = {limiter}(<not built>)" in shown
    assert "SECRETPW" not in shown


def test_a_key_the_server_echoes_back_never_reaches_the_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    echo = {"error": {"message": f"Key {API_KEY} is over quota", "request": {"authorization": f"Bearer {API_KEY}"}}}
    httpx_mock.add_response(status_code=429, json=echo)
    with pytest.raises(deployai.RateLimitError) as info:
        make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), repr(error.body), error.message]
    assert all(API_KEY not in text for text in shown)
    assert API_KEY.encode() not in pickle.dumps(error)
    assert error.message == "Key [redacted] is over quota"


@pytest.mark.parametrize("content", [b"", b"<html><script>x()</script></html>"], ids=["empty", "no text"])
def test_a_key_the_server_echoes_as_its_reason_phrase_never_reaches_the_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock, content: bytes
) -> None:
    # A body with nothing to say makes the message of the status line: `HTTP/1.1 500 <key>`.
    phrase = f"Bearer {API_KEY}".encode()
    httpx_mock.add_callback(lambda request: httpx.Response(500, content=content, extensions={"reason_phrase": phrase}))
    with pytest.raises(deployai.InternalServerError) as info:
        make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), error.message, "".join(traceback.format_exception(error))]
    assert all(API_KEY not in text for text in shown)
    assert API_KEY.encode() not in pickle.dumps(error)
    assert "500 Bearer [redacted] (" in error.message


def test_a_key_the_server_echoes_in_json_escapes_never_reaches_the_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # `\u0073k-...`: the body's text shows no key, and the message JSON decodes from it does.
    escaped = "".join(f"\\u{ord(char):04x}" for char in API_KEY)
    httpx_mock.add_response(status_code=401, content=f'{{"error": {{"message": "Key {escaped} is unknown"}}}}'.encode())
    with pytest.raises(deployai.AuthenticationError) as info:
        make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), repr(error.body), error.message]
    assert all(API_KEY not in text for text in shown)
    assert API_KEY.encode() not in pickle.dumps(error)
    assert error.message == "Key [redacted] is unknown"


@pytest.mark.parametrize(
    "answer", ["an error event", "a chunk that is none", "a body that is none", "an error event first"]
)
def test_a_key_the_server_echoes_is_in_no_local_of_the_sdks_frames_in_a_traceback(
    make_client: ClientFactory, httpx_mock: HTTPXMock, answer: str
) -> None:
    # `pytest -l`, rich's `show_locals`, `capture_locals=True`: the SDK's frames the error went
    # through held the event or body the server sent, key and all.
    echo = f"Bearer {API_KEY}"
    if answer == "a body that is none":
        httpx_mock.add_response(json={"echo": echo})
    else:
        bad = {"echo": echo} if answer == "a chunk that is none" else {"error": {"message": echo, "code": 403}}
        first = [] if answer == "an error event first" else [event(chunk("Hi"))]
        httpx_mock.add_callback(lambda request: sse_response([*first, event(bad)]))
    with pytest.raises(deployai.APIError) as info:
        if answer == "a body that is none":
            make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user())
        else:
            with make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user(), stream=True) as got:
                list(got)
    shown = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    sdk_frames = [frame for frame in shown.stack if os.sep + "deployai" + os.sep in frame.filename]
    assert sdk_frames  # the error went through the SDK's frames
    assert all(API_KEY not in value for frame in sdk_frames for value in (frame.locals or {}).values())


@pytest.mark.parametrize("where", ["a bad setting beside it", "a bad call", "a copy with a bad setting"])
def test_a_key_given_in_default_headers_is_in_no_local_of_the_sdks_frames(where: str) -> None:
    # It replaced the SDK's own hidden Authorization with the caller's plain string, which the
    # frames of the constructor, `with_options` and every request's building showed.
    key = "dpl_live_LOCALS0123456789"
    headers = {"Authorization": f"Bearer {key}", "api-key": key}  # and where Azure-style gateways read one
    with pytest.raises(deployai.InvalidParameterError) as info:
        if where == "a bad setting beside it":
            deployai.DeployAI(api_key="sk-unused-0123456789", default_headers=headers, max_retries=-1)
        else:
            client = deployai.DeployAI(api_key="sk-unused-0123456789", default_headers=headers)
            if where == "a bad call":
                client.chat.completions.create(model=MODEL, messages=user(), timeout=-1)
            else:
                client.with_options(default_headers=headers, max_retries=-1)
    assert key not in _shown_with_locals(_in_the_sdks_frames(info.value))


def test_a_key_given_to_a_call_as_other_sdks_take_it_is_refused_and_in_no_local_of_the_sdks_frames() -> None:
    key = "dpl_live_PERCALL0123456789"
    with deployai.DeployAI(api_key="sk-unused-0123456789") as client, pytest.raises(TypeError) as info:
        client.chat.completions.create(model=MODEL, messages=user(), api_key=key)  # type: ignore[call-overload]
    assert "api_key" in str(info.value)
    assert key not in _shown_with_locals(_in_the_sdks_frames(info.value))


@pytest.mark.parametrize("as_text", [False, True])
def test_a_long_key_the_server_echoes_where_its_message_is_cut_leaves_no_part_of_it(
    httpx_mock: HTTPXMock, as_text: bool
) -> None:
    # The message is cut at 500 characters before the key it echoes is looked for: a long token
    # (a JWT) that crossed the cut was no longer whole, and its first 470 characters stayed.
    key = "eyJ" + "LongToken" * 70
    if as_text:
        httpx_mock.add_response(status_code=403, text=f"Key {key} may not use this model")
    else:
        httpx_mock.add_response(status_code=403, json={"error": {"message": f"Key {key} may not use this model"}})
    with deployai.DeployAI(api_key=key, max_retries=0) as client, pytest.raises(deployai.PermissionDeniedError) as info:
        client.chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), repr(error.body), error.message, *map(str, error.args)]
    assert all("LongTokenLongToken" not in text for text in shown)
    assert b"LongTokenLongToken" not in pickle.dumps(error)
    assert error.message.startswith("Key [redacted]")


def test_a_key_the_server_puts_in_a_redirect_never_reaches_the_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    location = f"https://sso.example/login?token={API_KEY}"
    httpx_mock.add_response(status_code=307, headers={"location": location}, json={"see": location})
    with pytest.raises(deployai.APIStatusError) as info:
        make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), repr(error.body), "".join(traceback.format_exception(error))]
    assert all(API_KEY not in text for text in shown)
    assert API_KEY.encode() not in pickle.dumps(error)
    assert "a redirect to https://sso.example/login?token=***" in str(error)


def test_a_gateway_key_sent_in_the_query_is_in_no_log_line_repr_or_redirect_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    # A gateway's own key passed as `extra_query` (as the base_url refusal advises for a query) was
    # written whole in the retry and DEBUG lines, the httpx line, a RawResponse's repr, and a
    # redirect's error and pickle when the server echoed the query in `Location`.
    secret = "GwKey9f8e7d6c5b+4a3"  # no `sk-` shape; its `+` is percent-encoded in the URL
    httpx_mock.add_response(status_code=503, headers={"retry-after": "0"})
    httpx_mock.add_callback(
        lambda request: httpx.Response(308, headers={"location": str(request.url.copy_with(path="/v1/chat/"))})
    )
    httpx_mock.add_response(json={"object": "list", "data": []})
    client = make_client(max_retries=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(deployai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=user(), extra_query={"api-key": secret, "v": "1"})
    raw = client.models.with_raw_response.list(extra_query={"api-key": secret})
    error = info.value
    encoded = "GwKey9f8e7d6c5b%2B4a3"
    assert encoded in str(raw.http_response.request.url)  # the form the URL carries it in
    lines = [record.getMessage() for record in caplog.records]
    assert any(
        "Retrying POST https://api.deployai.dev/v1/chat/completions?api-key=***&v=*** in" in line for line in lines
    )
    shown = [*lines, str(error), repr(raw), "".join(traceback.format_exception(error))]
    assert all(secret not in text and encoded not in text for text in shown)
    assert secret.encode() not in pickle.dumps(error)
    assert encoded.encode() not in pickle.dumps(error)
    assert "a redirect to https://api.deployai.dev/v1/chat/?api-key=***&v=***" in str(error)
    assert repr(raw) == "<RawResponse [200] GET https://api.deployai.dev/v1/models?api-key=***>"


def test_a_key_the_server_echoes_in_a_header_never_travels_in_the_errors_pickle(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    headers = {"x-echo": f"Bearer {API_KEY}; seen", "x-request-id": "req_echo"}
    httpx_mock.add_response(status_code=401, headers=headers, json={"error": {"message": "no"}})
    with pytest.raises(deployai.AuthenticationError) as info:
        make_client(max_retries=0).chat.completions.create(model=MODEL, messages=user())
    travelled = pickle.loads(pickle.dumps(info.value))
    assert API_KEY.encode() not in pickle.dumps(info.value)
    assert travelled.response.headers["x-echo"] == "Bearer [redacted]; seen"
    assert travelled.request_id == "req_echo"


@pytest.mark.parametrize(
    ("header", "per_call"),
    [("api-key", False), ("X-Api-Key", False), ("api-key", True)],
    ids=["api-key", "x-api-key", "api-key-per-call"],
)
def test_a_key_sent_in_a_gateways_key_header_and_echoed_never_reaches_the_error_or_its_pickle(
    make_client: ClientFactory, httpx_mock: HTTPXMock, header: str, per_call: bool
) -> None:
    # Azure-style gateways read the key from `api-key`: only a bearer token was looked for.
    key = "0123456789abcdef0123456789abcdef"  # no `sk-` shape for the patterns to find
    echo = {"error": {"message": f"Access denied: invalid subscription key {key}", "key": key}}
    httpx_mock.add_response(status_code=401, headers={"x-echo": key, "x-request-id": key}, json=echo)
    headers = {header: key}
    client = make_client(max_retries=0, **({} if per_call else {"default_headers": headers}))
    with pytest.raises(deployai.AuthenticationError) as info:
        client.chat.completions.create(model=MODEL, messages=user(), **({"extra_headers": headers} if per_call else {}))
    error = info.value
    assert error.message == "Access denied: invalid subscription key [redacted]"
    assert error.body == {
        "error": {"message": "Access denied: invalid subscription key [redacted]", "key": "[redacted]"}
    }
    assert all(key not in text for text in (str(error), repr(error), error.request_id or ""))
    assert key.encode() not in pickle.dumps(error)
    assert pickle.loads(pickle.dumps(error)).response.headers["x-echo"] == "[redacted]"


def test_a_key_header_echoed_in_the_request_id_of_an_answer_that_is_no_answer_is_taken_out(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A 200 whose body is no chat completion: its error read the request id as it came.
    key = "0123456789abcdef0123456789abcdef"
    httpx_mock.add_response(headers={"x-request-id": f"req-{key}"}, json={"not": "an answer"})
    client = make_client(max_retries=0, default_headers={"api-key": key})
    with pytest.raises(deployai.APIResponseValidationError) as info:
        client.chat.completions.create(model=MODEL, messages=user())
    assert info.value.request_id == "req-[redacted]"


def test_a_key_the_server_echoes_as_its_request_id_never_reaches_the_errors_text(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    key = "ak_live_0123456789abcdef"  # not shaped like `sk-...`: only the key the call sent can find it
    httpx_mock.add_response(status_code=401, headers={"x-request-id": key}, json={"error": {"message": "no"}})
    with pytest.raises(deployai.AuthenticationError) as info:
        make_client(api_key=key, max_retries=0).chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert all(key not in text for text in shown)
    assert str(error) == "Error code: 401 - no (request id [redacted])"
    assert error.request_id == "[redacted]"  # error trackers record the attribute too


def test_a_key_the_server_echoes_in_a_successful_answer_is_in_no_request_id_or_pickle(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # `request_id` is what the docs say to quote and log; results travel back from process pools.
    key = "ak_live_0123456789abcdef"  # not shaped like `sk-...`: found as a live client's key

    def echo(request: httpx.Request, stream: bool = False) -> httpx.Response:
        sent = request.headers["authorization"]
        headers = {"x-request-id": f"req_{sent}", "x-echo": sent}
        if stream:
            return sse_response(hello_stream(), None, **headers)
        return httpx.Response(200, headers=headers, json=completion_json())

    httpx_mock.add_callback(echo, is_reusable=True, match_json={"model": MODEL, "messages": user()})
    httpx_mock.add_callback(lambda request: echo(request, stream=True), is_reusable=True)
    client = make_client(api_key=key)
    completion = client.chat.completions.create(model=MODEL, messages=user())
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user())
    with client.chat.completions.create(model=MODEL, messages=user("go"), stream=True) as stream:
        final = stream.get_final_completion()
    assert {completion.request_id, raw.request_id, stream.request_id, final.request_id} == {"req_Bearer [redacted]"}
    for result in (completion, final):
        assert key.encode() not in pickle.dumps(result)
        assert pickle.loads(pickle.dumps(result)).request_id == "req_Bearer [redacted]"


def test_headers_that_only_look_like_keys_travel_unchanged(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Only keys are redacted: a 401's challenge, or a request id that starts with "SK-", is data.
    challenge = 'Bearer realm="api.deployai.dev", error="invalid_token"'
    httpx_mock.add_response(json=completion_json(), headers={"x-request-id": "SK-2024-06-18-abcd"})
    httpx_mock.add_response(status_code=401, headers={"www-authenticate": challenge}, json={"error": {"message": "no"}})
    client = make_client(max_retries=0)
    completion = client.chat.completions.create(model=MODEL, messages=user())
    assert completion.request_id == pickle.loads(pickle.dumps(completion)).request_id == "SK-2024-06-18-abcd"
    with pytest.raises(deployai.AuthenticationError) as info:
        client.chat.completions.create(model=MODEL, messages=user())
    assert pickle.loads(pickle.dumps(info.value)).response.headers["www-authenticate"] == challenge


def test_a_key_a_broken_answer_echoes_never_reaches_the_connection_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    key = "ak_live_0123456789abcdef"
    httpx_mock.add_exception(httpx.RemoteProtocolError(f"illegal chunk header: b'{key}'"), is_reusable=True)
    with pytest.raises(deployai.APIConnectionError) as info:
        make_client(api_key=key, max_retries=0).chat.completions.create(model=MODEL, messages=user())
    error = info.value
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert all(key not in text for text in shown)
    assert key.encode() not in pickle.dumps(error)
    assert "illegal chunk header: b'[redacted]'" in str(error)
