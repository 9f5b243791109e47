"""The SDK's retry rule as public pure functions, and the retry libraries services already use on top of it."""

from __future__ import annotations

import asyncio
import json
import pickle
from typing import Any

import httpx
import pytest
import stamina
import tenacity
from pytest_httpx import HTTPXMock
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

import deployai
from deployai._exceptions import make_status_error, transport_error
from deployai.testing import Emulator
from tests.conftest import CHAT_URL, ClientFactory, user

MODEL = "openai/gpt-4o"
REQUEST = httpx.Request("POST", CHAT_URL)


def status_error(status: int, **headers: str) -> deployai.APIStatusError:
    response = httpx.Response(status, headers=headers, json={"error": {"message": "no"}}, request=REQUEST)
    from deployai._retry import server_requested_wait

    return make_status_error(response, retry_after=server_requested_wait(status, response.headers, 0.0))


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(status, True) for status in (408, 409, 429, 500, 502, 503, 504)],
        *[(status, False) for status in (400, 401, 403, 404, 422, 501, 301)],
    ],
)
def test_is_retryable_follows_the_status(status: int, retryable: bool) -> None:
    assert deployai.is_retryable(status_error(status)) is retryable


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (transport_error(httpx.ConnectError("refused"), REQUEST), True),
        (transport_error(httpx.ReadTimeout("slow"), REQUEST), True),
        (transport_error(httpx.RemoteProtocolError("dropped"), REQUEST), True),
        (transport_error(httpx.UnsupportedProtocol("ftp://"), REQUEST), False),  # fails the same way again
        (transport_error(httpx.LocalProtocolError("bad header"), REQUEST), False),
        (deployai.InvalidParameterError("temperature", 3, "a number from 0 to 2"), False),
        (ValueError("not ours"), False),
    ],
    ids=["connect", "timeout", "dropped", "unsupported-protocol", "local-protocol", "invalid-parameter", "other"],
)
def test_is_retryable_for_everything_else(error: BaseException, retryable: bool) -> None:
    assert deployai.is_retryable(error) is retryable


def test_retry_after_reads_what_the_server_asked() -> None:
    assert deployai.retry_after(status_error(429, **{"retry-after": "7"})) == 7.0
    assert deployai.retry_after(status_error(503, **{"retry-after-ms": "250"})) == 0.25
    assert deployai.retry_after(status_error(500)) is None
    assert deployai.retry_after(ValueError("not ours")) is None


def test_an_error_raised_after_retries_still_says_what_the_server_asked(sleeps: list[float]) -> None:
    emulator = Emulator(rate_limit=1_000_000)
    emulator.fail_next(503, headers={"retry-after": "3"}, times=3)
    with emulator.client(max_retries=2) as client, pytest.raises(deployai.ServiceUnavailableError) as info:
        client.chat.completions.create(model=MODEL, messages=user())
    assert deployai.retry_after(info.value) == 3.0
    assert len(sleeps) == 2
    assert all(3.0 <= wait <= 3.75 for wait in sleeps)  # spread, never shorter than asked


def two_429s_then_success() -> Emulator:
    emulator = Emulator(rate_limit=1_000_000)
    emulator.fail_next(429, headers={"retry-after": "0.01"}, times=2)
    return emulator


def backoff_hook(error: Exception) -> bool | float:
    """A stamina `on=` hook: wait what the server asked when it asked, else stamina's own backoff."""
    wait = deployai.retry_after(error)
    return wait if wait is not None and deployai.is_retryable(error) else deployai.is_retryable(error)


@pytest.fixture
def stamina_waits() -> Any:
    waits: list[float] = []
    hooks = get_on_retry_hooks()

    def record(details: RetryDetails) -> None:
        waits.append(details.wait_for)

    set_on_retry_hooks([record])
    yield waits
    set_on_retry_hooks(hooks)


def test_stamina_retries_with_the_waits_the_server_asked_for(stamina_waits: list[float]) -> None:
    emulator = two_429s_then_success()
    with emulator.client(max_retries=0) as client:  # the service's retry loop, not the SDK's

        @stamina.retry(on=backoff_hook, attempts=3)
        def ask() -> str:
            return client.chat.completions.create(model=MODEL, messages=user()).choices[0].message.content or ""

        assert ask() == "You said: Hello!"
    assert stamina_waits == [0.01, 0.01]
    assert [r.path for r in emulator.requests] == ["/v1/chat/completions"] * 3


def test_stamina_with_the_async_client(stamina_waits: list[float]) -> None:
    emulator = two_429s_then_success()

    async def main() -> str:
        async with emulator.async_client(max_retries=0) as client:
            async for attempt in stamina.retry_context(on=deployai.is_retryable, attempts=3, wait_initial=0.01):
                with attempt:
                    completion = await client.chat.completions.create(model=MODEL, messages=user())
            return completion.choices[0].message.content or ""

    assert asyncio.run(main()) == "You said: Hello!"
    assert len(stamina_waits) == 2


def test_tenacity_retries_with_the_waits_the_server_asked_for() -> None:
    emulator = two_429s_then_success()
    slept: list[float] = []

    def server_wait(state: tenacity.RetryCallState) -> float:  # as docs/errors.md shows it
        return deployai.retry_after(state.outcome.exception() if state.outcome else None) or 1.0

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(deployai.is_retryable),
        wait=server_wait,
        stop=tenacity.stop_after_attempt(3),
        sleep=slept.append,
        reraise=True,
    )
    with emulator.client(max_retries=0) as client:
        completion = retrying(client.chat.completions.create, model=MODEL, messages=user())
    assert completion.choices[0].message.content == "You said: Hello!"
    assert slept == [0.01, 0.01]


def test_tenacity_does_not_retry_what_cannot_succeed() -> None:
    emulator = Emulator()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(deployai.is_retryable), stop=tenacity.stop_after_attempt(5), reraise=True
    )
    with emulator.client(max_retries=0) as client, pytest.raises(deployai.NotFoundError):
        retrying(client.chat.completions.create, model="openai/no-such-model", messages=user())
    assert len(emulator.requests) == 1


# How many retries a call took, and a callback before each retry's wait.


def test_results_streams_raw_responses_and_errors_say_how_many_retries_they_took(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    from tests.conftest import completion_json
    from tests.sse import hello_stream, sse_response

    def fail_then(answer: Any) -> None:
        httpx_mock.add_response(status_code=503, headers={"retry-after": "0"})
        httpx_mock.add_response(status_code=503, headers={"retry-after": "0"})
        httpx_mock.add_callback(answer)

    client = make_client(max_retries=2)
    fail_then(lambda request: httpx.Response(200, json=completion_json()))
    assert client.chat.completions.create(model=MODEL, messages=user()).retries == 2
    fail_then(lambda request: sse_response(hello_stream()))
    with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
        assert stream.retries == 2
    fail_then(lambda request: httpx.Response(200, json=completion_json()))
    assert client.chat.completions.with_raw_response.create(model=MODEL, messages=user()).retries == 2
    for _ in range(3):
        httpx_mock.add_response(status_code=503, headers={"retry-after": "0"})
    with pytest.raises(deployai.ServiceUnavailableError) as info:
        client.chat.completions.create(model=MODEL, messages=user())
    assert info.value.retries == 2
    assert pickle.loads(pickle.dumps(info.value)).retries == 2
    httpx_mock.add_response(json=completion_json())
    assert client.chat.completions.create(model=MODEL, messages=user()).retries == 0


@pytest.mark.parametrize("failure", ["malformed body", "raw parse", "error event", "stream cut", "bad chunk"])
def test_an_error_met_after_a_retry_got_its_answer_counts_that_retry(failure: str, sleeps: list[float]) -> None:
    # Each said `retries == 0`, though the call had been sent twice: a service's retry metrics lost them.
    emulator = Emulator()
    emulator.fail_next(503, headers={"retry-after": "0"})
    if failure in ("malformed body", "raw parse"):
        emulator.malformed_json_next()
    elif failure == "bad chunk":
        emulator.malformed_json_next(at_chunk=2)
    elif failure == "error event":
        emulator.on().error_event_after(2)
    else:
        emulator.on().cut_stream_after(2)
    client = emulator.client(max_retries=2)
    with pytest.raises(deployai.APIError) as info:
        if failure == "malformed body":
            client.chat.completions.create(model=MODEL, messages=user())
        elif failure == "raw parse":
            client.chat.completions.with_raw_response.create(model=MODEL, messages=user()).parse()
        else:
            with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
                for _ in stream:
                    pass
    assert len(emulator.requests) == 2
    assert info.value.retries == 1
    if not isinstance(info.value, deployai.APIConnectionError):  # the others came with an answer
        assert isinstance(info.value, deployai.APIStatusError | deployai.APIResponseValidationError)
        assert info.value.elapsed is not None


def test_an_error_met_after_a_retry_got_its_answer_counts_that_retry_async(sleeps: list[float]) -> None:
    emulator = Emulator()
    emulator.fail_next(503, headers={"retry-after": "0"})
    emulator.malformed_json_next()

    async def call() -> None:
        async with emulator.async_client(max_retries=2) as client:
            await client.chat.completions.create(model=MODEL, messages=user())

    with pytest.raises(deployai.APIResponseValidationError) as info:
        asyncio.run(call())
    assert info.value.retries == 1


@pytest.mark.parametrize(
    ("headers", "options", "why"),
    [
        ({"retry-after": "120"}, {}, "the server asked for a wait of 120.0 s, longer than max_retry_wait (60.0 s)"),
        ({"retry-after": "3"}, {"total_timeout": 1.0}, "its wait of 3."),
        ({}, {"max_retries": 0}, None),
        # both were shown as 1.0 s: to the millisecond where tenths would show them alike
        (
            {"retry-after-ms": "1040"},
            {"max_retry_wait": 1},
            "the server asked for a wait of 1.040 s, longer than max_retry_wait (1.000 s)",
        ),
    ],
    ids=["max_retry_wait", "total_timeout", "out-of-retries", "close to max_retry_wait"],
)
def test_an_error_raised_with_retries_left_says_why_it_was_not_retried(
    headers: dict[str, str], options: dict[str, Any], why: str | None, sleeps: list[float]
) -> None:
    # A 429 raised at once, after no retry, said nothing of the wait it asked for being too long.
    emulator = Emulator()
    emulator.fail_next(429, headers=headers)
    with pytest.raises(deployai.RateLimitError) as info:
        emulator.client(**options).chat.completions.create(model=MODEL, messages=user())
    said = str(info.value)
    assert info.value.retries == 0
    if why is None:
        assert "not retried" not in said
    else:
        assert f"(not retried: {why}" in said
        assert str(pickle.loads(pickle.dumps(info.value))) == said


def test_an_overloaded_529_is_retried_and_x_should_retry_false_is_not(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    from tests.conftest import completion_json

    client = make_client(max_retries=2)
    httpx_mock.add_response(status_code=529, json={"error": {"type": "overloaded_error", "message": "Overloaded"}})
    httpx_mock.add_response(json=completion_json())
    assert client.chat.completions.create(model=MODEL, messages=user()).retries == 1
    httpx_mock.add_response(status_code=503, headers={"x-should-retry": "false"})
    with pytest.raises(deployai.ServiceUnavailableError) as info:
        client.chat.completions.create(model=MODEL, messages=user())
    assert (info.value.retries, deployai.is_retryable(info.value)) == (0, False)


def test_on_retry_is_told_each_retry_its_wait_and_the_error(sleeps: list[float]) -> None:
    emulator = Emulator(rate_limit=1_000_000)
    emulator.fail_next(429, headers={"retry-after": "0"})
    emulator.fail_next(503, headers={"retry-after": "0"})
    told: list[tuple[int, float, type[BaseException]]] = []
    with emulator.client(on_retry=lambda retry, wait, error: told.append((retry, wait, type(error)))) as client:
        client.chat.completions.create(model=MODEL, messages=user())
    assert told == [(1, sleeps[0], deployai.RateLimitError), (2, sleeps[1], deployai.ServiceUnavailableError)]


class HookBugError(Exception):
    """A bug in a user's `on_retry` hook."""


def _broken_hook(retry: int, wait: float, error: deployai.APIError) -> None:
    raise HookBugError("bug in my metrics hook")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_what_on_retry_raises_on_a_streams_retry_ends_the_call_as_it_is(kind: str, sleeps: list[float]) -> None:
    # A stream whose first event is an error is retried while it is read: the hook's bug came out as
    # `APIConnectionError` ("the stream broke"), which a caller's `except` for outages swallows.
    emulator = Emulator(rate_limit=1_000_000)
    emulator.error_event_after(0, {"message": "busy", "code": 503})
    with pytest.raises(HookBugError, match="bug in my metrics hook"):
        if kind == "sync":
            with emulator.client(on_retry=_broken_hook) as client:
                for _ in client.chat.completions.create(model=MODEL, messages=user(), stream=True):
                    pass
        else:

            async def read() -> None:
                async with emulator.async_client(on_retry=_broken_hook) as client:
                    stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
                    async for _ in stream:
                        pass

            asyncio.run(read())
    assert len(emulator.requests) == 1  # not sent again


def test_on_retry_on_a_copy_and_refused_when_not_callable(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    from tests.conftest import completion_json

    httpx_mock.add_response(status_code=500)
    httpx_mock.add_response(json=completion_json())
    told: list[int] = []
    client = make_client()
    client.with_options(on_retry=lambda retry, wait, error: told.append(retry)).chat.completions.create(
        model=MODEL, messages=user()
    )
    assert told == [1]
    with pytest.raises(deployai.InvalidParameterError, match="on_retry"):
        make_client(on_retry="print")


# total_timeout: one deadline for the whole call.


def test_the_plan_starts_no_retry_that_could_not_finish_before_the_deadline() -> None:
    from deployai._plan import Send, Sleep, call_plan

    now = [1000.0]
    plan = call_plan(
        REQUEST,
        stream=False,
        max_retries=5,
        max_retry_wait=60.0,
        clock=lambda: now[0],
        random=lambda: 0.0,
        total_timeout=5.0,
    )
    first = next(plan)
    assert isinstance(first, Send)
    assert first.time_left == 5.0  # each attempt is told the time left, to cap its timeouts
    sleep = plan.send(httpx.Response(503, headers={"retry-after": "1"}, request=REQUEST))
    assert isinstance(sleep, Sleep)
    now[0] += 1.5
    second = plan.send(None)
    assert isinstance(second, Send)
    assert second.time_left == 3.5
    now[0] += 1.0
    with pytest.raises(deployai.ServiceUnavailableError) as info:  # a 3 s wait would end past the deadline
        plan.send(httpx.Response(503, headers={"retry-after": "3"}, request=REQUEST))
    assert info.value.retries == 1
    assert info.value.retry_after == 3.0


def test_total_timeout_on_the_client_a_copy_and_one_call(sleeps: list[float]) -> None:
    emulator = Emulator(rate_limit=1_000_000)
    with emulator.client(max_retries=5, total_timeout=1.0) as client:
        emulator.fail_next(503, headers={"retry-after": "2"})
        with pytest.raises(deployai.ServiceUnavailableError):
            client.chat.completions.create(model=MODEL, messages=user())
        assert sleeps == []  # the 2 s wait could not end within the 1 s deadline: not started
        emulator.fail_next(503, headers={"retry-after": "2"})
        assert client.chat.completions.create(model=MODEL, messages=user(), total_timeout=60).retries == 1
        emulator.fail_next(503, headers={"retry-after": "2"})
        assert client.with_options(total_timeout=None).models.list().retries == 1
    assert len(sleeps) == 2


def test_total_timeout_caps_a_stalled_attempt() -> None:
    from deployai.testing import EmulatorServer

    with EmulatorServer(Emulator(rate_limit=1_000_000)) as server:
        server.emulator.stall_next(5.0)
        with (
            deployai.DeployAI(api_key="sk-deadline", base_url=server.base_url, timeout=60.0, max_retries=0) as client,
            pytest.raises(deployai.APITimeoutError),
        ):
            client.chat.completions.create(model=MODEL, messages=user(), total_timeout=0.2)


def _stream_text(kind: str, base_url: str, **options: Any) -> str:
    """Stream one answer from `base_url` with a client of `kind` (a read timeout of 60 s); its text."""
    arguments: dict[str, Any] = {"model": MODEL, "messages": user(), "stream": True, **options}
    if kind == "sync":
        with deployai.DeployAI(api_key="sk-deadline", base_url=base_url, timeout=60.0, max_retries=0) as client:
            return "".join(client.chat.completions.create(**arguments).text_stream)

    async def main() -> str:
        async with deployai.AsyncDeployAI(api_key="sk-deadline", base_url=base_url, timeout=60.0, max_retries=0) as c:
            return "".join([piece async for piece in (await c.chat.completions.create(**arguments)).text_stream])

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_total_timeout_bounds_a_streams_wait_for_its_headers_and_first_event(kind: str) -> None:
    from deployai.testing import EmulatorServer
    from tests.raw_server import RawSSEServer

    with EmulatorServer(Emulator(rate_limit=1_000_000)) as server:
        server.emulator.stall_next(30.0)  # the headers, within the read timeout: only the deadline ends it
        with pytest.raises(deployai.APITimeoutError):
            _stream_text(kind, server.base_url, total_timeout=0.3)
    with RawSSEServer([], after="stall") as raw:  # headers, then no event until released
        with pytest.raises(deployai.APITimeoutError):
            _stream_text(kind, raw.base_url, total_timeout=0.3)
        assert not raw.release.is_set()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_total_timeout_bounds_a_whole_answer_that_trickles_in(kind: str) -> None:
    # Each piece comes well within the read timeout, so only the call's deadline can end the call:
    # the whole answer would take 4 s.
    from tests.conftest import completion_json
    from tests.raw_server import RawSSEServer

    body = json.dumps(completion_json("Hello")).encode()
    pieces = [body[i : i + len(body) // 20 + 1] for i in range(0, len(body), len(body) // 20 + 1)]
    with RawSSEServer(pieces, pace=0.2) as raw:
        arguments: dict[str, Any] = {"model": MODEL, "messages": user(), "total_timeout": 0.5}
        options: dict[str, Any] = {"api_key": "sk-deadline", "base_url": raw.base_url, "timeout": 60.0}
        with pytest.raises(deployai.APITimeoutError):
            if kind == "sync":
                with deployai.DeployAI(**options, max_retries=0) as client:
                    client.chat.completions.create(**arguments)
            else:

                async def main() -> None:
                    async with deployai.AsyncDeployAI(**options, max_retries=0) as client:
                        await client.chat.completions.create(**arguments)

                asyncio.run(main())
        assert not raw.release.is_set()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_total_timeout_bounds_a_stream_that_sends_only_keep_alives(kind: str) -> None:
    from tests.raw_server import RawSSEServer

    with RawSSEServer([b"event: ping\ndata: {}\n\n", b"data: \n\n"], after="stall") as raw:
        with pytest.raises(deployai.APITimeoutError):
            _stream_text(kind, raw.base_url, total_timeout=0.3)
        assert not raw.release.is_set()


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("status", ["503 Service Unavailable", "200 OK"])
def test_total_timeout_bounds_the_body_of_a_stream_that_is_not_an_event_stream(kind: str, status: str) -> None:
    # An error answer to a stream (or one that is not an event stream) is read whole before it is
    # raised; its body stalls after one byte, within the read timeout: only the deadline ends it.
    from tests.raw_server import HoldingServer

    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    server = HoldingServer(head.encode())
    try:
        with pytest.raises(deployai.APITimeoutError):
            _stream_text(kind, server.base_url, total_timeout=0.3)
        assert not server.release.is_set()
    finally:
        server.release.set()
        server.listener.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_total_timeout_leaves_a_streams_body_once_it_started(kind: str) -> None:
    from deployai.testing import EmulatorServer

    with EmulatorServer(Emulator(rate_limit=1_000_000)) as server:
        server.emulator.reply(pieces=["a", "b", "c", "d", "e", "f"])
        server.emulator.slow_next(0.3)  # before each piece: about 1.8 s in all, the first after 0.3 s
        assert _stream_text(kind, server.base_url, total_timeout=1.0) == "abcdef"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True, 10**400])
def test_a_bad_total_timeout_is_refused(make_client: ClientFactory, httpx_mock: HTTPXMock, bad: Any) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="total_timeout"):
        make_client(total_timeout=bad)
    with pytest.raises(deployai.InvalidParameterError, match="total_timeout"):
        make_client().chat.completions.create(model=MODEL, messages=user(), total_timeout=bad)
    assert httpx_mock.get_requests() == []


def timeouts_seen(http_client_kind: str, **client_options: Any) -> tuple[Any, list[dict[str, float | None]]]:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        if request.headers.get("accept") == "text/event-stream":
            from tests.sse import DONE, chunk, event

            body = event(chunk("Hi")) + DONE
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx.Response(200, json={"object": "list", "data": []})

    borrowed = httpx.Client(transport=httpx.MockTransport(handler), timeout=httpx.Timeout(2.0, connect=0.5))
    return deployai.DeployAI(api_key="sk-timeouts", http_client=borrowed, **client_options), seen


def test_total_timeout_keeps_a_borrowed_clients_own_shorter_timeouts() -> None:
    client, seen = timeouts_seen("sync", total_timeout=60.0)
    client.models.list()
    assert seen[0]["connect"] == 0.5
    assert seen[0]["read"] == 2.0


def test_total_timeout_cuts_the_phases_but_leaves_a_streams_body_its_own_read_timeout() -> None:
    client, seen = timeouts_seen("sync", total_timeout=1.0, timeout=10.0)
    client.models.list()
    with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
        list(stream)
    whole, streamed = seen
    assert whole["read"] is not None
    assert whole["read"] <= 1.0
    assert streamed["read"] == 10.0  # the deadline bounds a stream until its first event, not its body
    assert streamed["connect"] is not None
    assert streamed["connect"] <= 1.0


def test_an_async_on_retry_is_refused() -> None:
    async def on_retry(retry: int, wait: float, error: deployai.APIError) -> None:
        pass

    with pytest.raises(deployai.InvalidParameterError, match="on_retry"):
        deployai.DeployAI(api_key="sk-x", on_retry=on_retry)  # type: ignore[arg-type]


def test_a_raw_stream_describes_the_answer_it_was_read_from_once_read(
    httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    # Retried before its first event, the stream is read from the retry's answer: every part of the
    # raw response then describes that one, not the first attempt's.
    from tests.sse import hello_stream, sse_response

    httpx_mock.add_callback(lambda request: sse_response([], None, **{"x-request-id": "req_first"}))  # no event
    httpx_mock.add_callback(lambda request: sse_response(hello_stream(), None, **{"x-request-id": "req_second"}))
    with deployai.DeployAI(api_key="sk-raw") as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user(), stream=True)
        assert (raw.request_id, raw.headers["x-request-id"]) == ("req_first", "req_first")
        with raw.parse() as stream:
            list(stream)
        assert (stream.retries, raw.retries) == (1, 1)
        assert (raw.request_id, raw.headers["x-request-id"]) == ("req_second", "req_second")
        assert raw.http_response is stream.response


def test_a_spread_wait_never_passes_max_retry_wait() -> None:
    from deployai._retry import decide

    decision = decide(
        retryable=True, server_wait=60.0, retry_number=0, max_retries=2, max_retry_wait=60.0, random_fraction=1.0
    )
    assert decision.wait_seconds == 60.0
