"""stream=True on both clients: typed chunks, SSE edge cases, errors mid-stream, retries, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import pickle
import threading
import traceback
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import deployai
from deployai.testing import Emulator
from deployai.types import ChatCompletion, ChatCompletionChunk
from tests.conftest import API_KEY, ClientFactory, completion_json, user
from tests.sse import DONE, Pieces, chunk, event, hello_stream, sse_response

MODEL = "openai/gpt-4o"
SSE_ONLY = {"content-type": "text/event-stream"}


def stream_of(client: Any, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=user(), stream=True, **kwargs)


def add_stream(
    httpx_mock: HTTPXMock,
    pieces: list[bytes],
    *,
    fail_with: Exception | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    httpx_mock.add_callback(lambda request: sse_response(pieces, fail_with, **(headers or {})))


def final_tool_calls(client: Any, httpx_mock: HTTPXMock, pieces: list[bytes]) -> list[tuple[str, str, str]]:
    """The id, name and arguments of each tool call in the final completion of a stream of `pieces`."""
    add_stream(httpx_mock, pieces)
    with stream_of(client) as stream:
        message = stream.get_final_completion().choices[0].message
    return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]


def texts(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_chunks_are_typed_and_complete(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, hello_stream())
    with stream_of(make_client()) as stream:
        assert stream.request_id == "req_stream"
        assert stream.rate_limit.remaining == 41
        assert stream.response.status_code == 200
        chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert texts(chunks) == "Hello world"
    assert chunks[-1].choices[0].finish_reason == "stop"
    request = httpx_mock.get_requests()[0]
    assert json.loads(request.content)["stream"] is True
    assert request.headers["Accept"] == "text/event-stream"


def test_sse_fields_comments_multiline_data_and_empty_events(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    payload = json.dumps(chunk("multi"))
    half = payload.index(', "model"') + 1  # multi-line data joins with "\n": split where JSON allows whitespace
    pieces = [
        b": keep-alive comment\n\n",
        b"id: 7\nretry: 1000\nevent: message\n" + event(chunk("a")),
        b"data:\n\n",  # an event with empty data dispatches nothing
        b"data: " + payload[:half].encode() + b"\ndata: " + payload[half:].encode() + b"\n\n",
        b"event: ping\n\n",
        b"data: " + json.dumps(chunk("b")).encode() + b"\r\n\r\n",
        b"data: " + json.dumps(chunk("c")).encode() + b"\r\r",
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "amultibc"


def test_final_usage_chunk_with_empty_choices_is_delivered(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    final = {**chunk(), "choices": [], "usage": usage}
    add_stream(httpx_mock, [*hello_stream()[:-1], event(final), DONE])
    with stream_of(make_client(), stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 8
    assert json.loads(httpx_mock.get_requests()[0].content)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("error_event", "cls"),
    [
        (event({"error": {"message": "slow down", "type": "rate_limit_error"}}), deployai.RateLimitError),
        (event({"error": {"message": "gone", "code": 503}}), deployai.ServiceUnavailableError),
        (event({"message": "bad", "type": "invalid_request_error"}, name="error"), deployai.BadRequestError),
        (event({"error": {"message": "?"}}, name="error"), deployai.InternalServerError),
    ],
    ids=["data-error-type", "data-error-code", "error-event", "unknown-kind"],
)
def test_error_mid_stream_raises_its_typed_error_after_earlier_chunks(
    make_client: ClientFactory, httpx_mock: HTTPXMock, error_event: bytes, cls: type[deployai.APIStatusError]
) -> None:
    add_stream(httpx_mock, [event(chunk("partial")), error_event, DONE])
    received: list[str] = []
    with stream_of(make_client()) as stream, pytest.raises(cls) as info:
        for piece in stream:
            received.append(piece.choices[0].delta.content)
    assert received == ["partial"]
    assert type(info.value) is cls
    assert info.value.request_id == "req_stream"


@pytest.mark.parametrize(
    "failure",
    [httpx.RemoteProtocolError("peer closed connection"), httpx.ReadError("reset")],
    ids=["protocol", "read"],
)
def test_dropped_connection_raises_after_delivering_received_chunks(
    make_client: ClientFactory, httpx_mock: HTTPXMock, failure: Exception
) -> None:
    add_stream(httpx_mock, hello_stream()[:3], fail_with=failure)
    received: list[str] = []
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIConnectionError) as info:
        for piece in stream:
            received.append(piece.choices[0].delta.content)
    assert received == ["", "Hel", "lo"]
    assert type(info.value) is deployai.APIConnectionError
    assert info.value.__cause__ is failure
    assert "incomplete" in str(info.value)
    # Not to be tried again, as the SDK does not: a retry recipe built on it repeated the answer.
    assert not deployai.is_retryable(info.value)
    assert not deployai.is_retryable(pickle.loads(pickle.dumps(info.value)))


def test_read_timeout_mid_stream_is_a_timeout_error(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, hello_stream()[:2], fail_with=httpx.ReadTimeout("no bytes for 600 s"))
    with stream_of(make_client()) as stream, pytest.raises(deployai.APITimeoutError):
        list(stream)


def test_body_ending_without_done_is_never_a_silent_short_answer(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    add_stream(httpx_mock, hello_stream()[:3])
    received: list[ChatCompletionChunk] = []
    with (
        stream_of(make_client()) as stream,
        pytest.raises(deployai.APIConnectionError, match=r"after 3 chunk\(s\)") as info,
    ):
        received.extend(stream)
    assert texts(received) == "Hello"
    assert not deployai.is_retryable(info.value)  # as the SDK does not send it again: "Hello" would come twice


def test_malformed_chunk_is_a_validation_error(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, [event(chunk("ok")), b'data: {"id": "x", "choi\n\n', DONE])
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIResponseValidationError, match="choi"):
        list(stream)


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
def test_error_status_on_a_stream_is_the_same_typed_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock, status: int
) -> None:
    body = {"error": {"message": f"failed with {status}", "type": "x"}}
    httpx_mock.add_response(status_code=status, json=body, headers={"x-ratelimit-remaining": "0", "retry-after": "999"})
    with pytest.raises(deployai.APIStatusError) as info:
        stream_of(make_client(max_retries=0))
    assert info.value.status_code == status
    assert info.value.message == f"failed with {status}"
    assert info.value.body == body
    assert info.value.rate_limit.remaining == 0


def test_a_200_that_is_not_an_event_stream_is_a_validation_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"id": "x"}, headers={"content-type": "application/json"})
    with pytest.raises(deployai.APIResponseValidationError, match="event stream"):
        stream_of(make_client())


def test_a_media_type_in_any_case_is_an_event_stream(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Media types are case-insensitive (RFC 9110, 8.3.1).
    add_stream(httpx_mock, hello_stream(), headers={"content-type": "Text/Event-Stream; charset=UTF-8"})
    with stream_of(make_client()) as events:
        assert "".join(events.text_stream) == "Hello world"


class _ResetAfterOneEvent(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body whose transport raises its own error, not httpx's, after the first event (as a custom one may)."""

    def __iter__(self) -> Iterator[bytes]:
        yield event(chunk("Hel"))
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield event(chunk("Hel"))
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_borrowed_transports_own_error_mid_stream_is_a_connection_error(kind: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_ResetAfterOneEvent())

    received: list[str] = []
    expected = r"Connection reset by peer\. The stream broke after 1 chunk\(s\): the answer is incomplete"
    if kind == "sync":
        http_client = httpx.Client(transport=httpx.MockTransport(answer))
        with (
            deployai.DeployAI(api_key="sk-stream", http_client=http_client) as client,
            pytest.raises(deployai.APIConnectionError, match=expected),
        ):
            received += stream_of(client).text_stream
    else:

        async def main() -> None:
            http_client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
            async with deployai.AsyncDeployAI(api_key="sk-stream", http_client=http_client) as client:
                with pytest.raises(deployai.APIConnectionError, match=expected):
                    async for text in (await stream_of(client)).text_stream:
                        received.append(text)

        asyncio.run(main())
    assert received == ["Hel"]


def test_retried_before_the_first_event_never_after(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_response(status_code=503, json={"error": {"message": "busy"}})
    add_stream(httpx_mock, [], fail_with=httpx.RemoteProtocolError("dropped before any event"))
    add_stream(httpx_mock, [event(chunk("once"))], fail_with=httpx.RemoteProtocolError("dropped mid-answer"))
    received: list[str] = []
    with stream_of(make_client(max_retries=5)) as stream, pytest.raises(deployai.APIConnectionError):
        for piece in stream:
            received.append(piece.choices[0].delta.content)
    assert received == ["once"]
    assert len(httpx_mock.get_requests()) == 3
    assert len(sleeps) == 2


def test_final_completion_after_iterating(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    add_stream(httpx_mock, [*hello_stream()[:-1], event({**chunk(), "choices": [], "usage": usage}), DONE])
    with stream_of(make_client()) as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()
    assert isinstance(completion, ChatCompletion)
    assert completion.id == "chatcmpl-s1"
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 8
    assert completion.request_id == "req_stream"


def test_final_completion_instead_of_iterating_merges_tool_calls_by_index(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"index": index, **fields}

    pieces = [
        event(chunk(None, role="assistant", tool_calls=[call(0, id="c0", type="function", function={"name": "get_"})])),
        event(chunk(None, tool_calls=[call(0, function={"name": "weather", "arguments": '{"city"'})])),
        event(chunk(None, tool_calls=[call(1, id="c1", type="function", function={"name": "now", "arguments": ""})])),
        event(chunk(None, tool_calls=[call(0, function={"arguments": ': "Paris"}'})])),
        event(chunk(None, tool_calls=[call(1, function={"arguments": "{}"})])),
        event(chunk(finish="tool_calls")),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        message = stream.get_final_completion().choices[0]
    assert message.finish_reason == "tool_calls"
    assert message.message.content is None
    calls = message.message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("c0", "get_weather", '{"city": "Paris"}'),
        ("c1", "now", "{}"),
    ]


def test_several_choices_are_kept_apart(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    pieces = [event(chunk("A", index=0)), event(chunk("B", index=1)), event(chunk("a", index=0)), DONE]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client(), n=2) as stream:
        choices = stream.get_final_completion().choices
    assert [(c.index, c.message.content) for c in choices] == [(0, "Aa"), (1, "B")]


def test_final_completion_keeps_the_fields_a_provider_adds_to_its_chunks_but_their_padding(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # OpenAI's chunks carry `service_tier`, as its whole answers do, and `obfuscation`, a padding of
    # each chunk that no whole answer has.
    def padded(piece: dict[str, Any], padding: str) -> dict[str, Any]:
        return {**piece, "service_tier": "default", "obfuscation": padding, "error": None}

    add_stream(httpx_mock, [event(padded(chunk("Hi"), "x1")), event(padded(chunk(finish="stop"), "yz")), DONE])
    with stream_of(make_client()) as stream:
        final = stream.get_final_completion()
    assert final.model_extra == {"service_tier": "default"}
    assert final.choices[0].message.content == "Hi"


def test_final_completion_keeps_the_fields_a_provider_adds_to_a_later_chunk_or_to_an_id_less_first(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Azure's prompt filter results come on a first chunk without id; Groq adds its usage to `x_groq`
    # on the last chunk, and llama.cpp's server its `timings`: each was missing from the final answer.
    nameless = {**chunk(), "id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}
    first = {**chunk("Hi"), "x_groq": {"id": "req_1"}, "citations": ["https://example.com"]}
    between = {**chunk("!"), "citations": None}  # a later null said nothing new: it erased the value
    last = {**chunk(finish="stop"), "x_groq": {"id": "req_1", "usage": {"queue_time": 0.01}}, "timings": {"n": 2}}
    add_stream(httpx_mock, [event(nameless), event(first), event(between), event(last), DONE])
    with stream_of(make_client()) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    assert final.id == "chatcmpl-s1"
    assert final.model_extra == {
        "prompt_filter_results": [{"prompt_index": 0}],
        "x_groq": {"id": "req_1", "usage": {"queue_time": 0.01}},
        "citations": ["https://example.com"],
        "timings": {"n": 2},
    }
    final.model_extra["x_groq"]["usage"]["queue_time"] = 5.0  # the chunks handed over keep their own
    assert chunks[3].model_extra is not None
    assert chunks[3].model_extra["x_groq"]["usage"]["queue_time"] == 0.01


def test_final_completion_keeps_what_a_provider_adds_as_the_whole_answer_would(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A prompt-filter chunk with no id comes first (Azure); deepseek-r1 streams `reasoning_content`;
    # logprobs come a list of tokens per chunk.
    nameless = {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": []}

    def token(text: str) -> dict[str, Any]:
        return {"content": [{"token": text, "logprob": -0.5}]}

    thinking = [chunk(role="assistant", reasoning_content="Let me think. "), chunk(reasoning_content="2+2=4.")]
    answer = [{**chunk("4"), "choices": [{"index": 0, "delta": {"content": "4"}, "logprobs": token("4")}]}]
    answer.append({**chunk("!"), "choices": [{"index": 0, "delta": {"content": "!"}, "logprobs": token("!")}]})
    pieces = [event(nameless), *map(event, thinking), *map(event, answer), event(chunk(finish="stop")), DONE]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        deltas = [piece.choices[0].delta for piece in stream if piece.choices]
        final = stream.get_final_completion()
    assert (final.id, final.model, final.created) == ("chatcmpl-s1", "openai/gpt-4o", 1708000000)
    (choice,) = final.choices
    assert choice.message.content == "4!"
    assert choice.message.model_extra == {"reasoning_content": "Let me think. 2+2=4."}
    # Read as an attribute, as the docs say, and typed (it was an error to mypy): None where none came.
    assert choice.message.reasoning_content == "Let me think. 2+2=4."
    assert [delta.reasoning_content for delta in deltas] == ["Let me think. ", "2+2=4.", None, None, None]
    assert choice.logprobs is not None
    assert [(t.token, t.logprob) for t in choice.logprobs.content or ()] == [("4", -0.5), ("!", -0.5)]


def test_a_legacy_function_call_streamed_in_pieces_adds_up(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    pieces = [
        event(chunk(role="assistant", function_call={"name": "add", "arguments": ""})),
        event(chunk(function_call={"arguments": '{"a": '})),
        event(chunk(function_call={"arguments": "1}"})),
        event(chunk(finish="function_call")),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        message = stream.get_final_completion().choices[0].message
    assert message.model_extra == {"function_call": {"name": "add", "arguments": '{"a": 1}'}}
    assert message.content is None  # as in a whole answer (it was "")


def test_pieces_some_servers_shorten_still_add_up(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # No `index` on tool-call pieces (a new id starts the next call), a last choice without `delta`,
    # usage without `total_tokens`, and an escaped lone surrogate (text cut in an emoji).
    def call(**piece: Any) -> bytes:
        return event(chunk(tool_calls=[piece]))

    pieces = [
        event(chunk("Hi \ud83d")),
        call(id="c1", type="function", function={"name": "get_weather", "arguments": '{"city":'}),
        call(function={"arguments": ' "Oslo"}'}),
        call(id="c2", type="function", function={"name": "get_time", "arguments": "{}"}),
        event({**chunk(), "choices": [{"index": 0, "finish_reason": "tool_calls"}]}),
        event({**chunk(), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Hi \ud83d"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("c1", "get_weather", '{"city": "Oslo"}'),
        ("c2", "get_time", "{}"),
    ]
    assert (final.choices[0].finish_reason, final.usage and final.usage.total_tokens) == ("tool_calls", 7)


def test_a_stream_with_an_empty_usage_on_each_chunk_and_a_null_total_adds_up(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A gateway that writes `usage: {}` (or all null) on every chunk, then a usage chunk whose total is
    # null, its counts written as JSON numbers with a fraction.
    pieces = [
        event({**chunk("Hel"), "usage": {}}),
        event({**chunk("lo"), "usage": {}}),
        event({**chunk(finish="stop"), "usage": {"prompt_tokens": None, "completion_tokens": None}}),
        event(
            {**chunk(), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2.0, "total_tokens": None}}
        ),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    assert [piece.usage for piece in chunks[:3]] == [None, None, None]
    assert final.choices[0].message.content == "Hello"
    assert final.usage is not None
    assert final.usage.total_tokens == 5


def test_final_completion_of_a_broken_stream_raises(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, hello_stream()[:2])
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIConnectionError):
        stream.get_final_completion()


def test_text_stream_yields_only_text(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, hello_stream())
    with stream_of(make_client()) as stream:
        assert list(stream.text_stream) == ["Hel", "lo", " world"]


def test_raw_response_for_streams(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, hello_stream())
    raw = make_client().chat.completions.with_raw_response.create(model=MODEL, messages=user(), stream=True)
    assert raw.status_code == 200
    assert raw.request_id == "req_stream"
    assert raw.rate_limit.remaining == 41
    assert 0 < raw.elapsed.total_seconds() < 5
    with raw.parse() as stream:
        assert texts(list(stream)) == "Hello world"
        assert stream.time_to_first_chunk is not None
        assert 0 <= stream.time_to_first_chunk < 5


@pytest.mark.parametrize("how", ["exhausted", "break-in-with", "close", "exception"])
def test_the_response_is_closed_on_every_path(make_client: ClientFactory, httpx_mock: HTTPXMock, how: str) -> None:
    body = Pieces(hello_stream())
    httpx_mock.add_callback(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)
    )
    stream = stream_of(make_client())
    if how == "exhausted":
        list(stream)
    elif how == "break-in-with":
        with stream:
            for _ in stream:
                break
    elif how == "close":
        next(iter(stream))
        stream.close()
    else:
        with pytest.raises(ZeroDivisionError), stream:
            for _ in stream:
                1 / 0  # noqa: B018
    assert stream.response.is_closed
    assert body.closed
    assert list(stream) == []


def test_an_abandoned_sync_stream_warns_and_the_next_request_releases_it(httpx_mock: HTTPXMock) -> None:
    body = Pieces(hello_stream())
    httpx_mock.add_callback(lambda request: httpx.Response(200, headers=SSE_ONLY, stream=body))
    httpx_mock.add_response(json={"object": "list", "data": []})
    client = deployai.DeployAI(api_key="sk-test-abandon")
    stream = client.chat.completions.create(model=MODEL, messages=user(), stream=True)
    next(iter(stream))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del stream
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    client.models.list()
    assert body.closed
    client.close()


def test_an_abandoned_async_stream_warns_and_the_next_request_releases_it(httpx_mock: HTTPXMock) -> None:
    body = Pieces(hello_stream())
    httpx_mock.add_callback(lambda request: httpx.Response(200, headers=SSE_ONLY, stream=body))
    httpx_mock.add_response(json={"object": "list", "data": []})

    async def abandon() -> None:
        client = deployai.AsyncDeployAI(api_key="sk-test-abandon")
        stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
        await stream.__anext__()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del stream
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught)
        assert not body.closed  # a finalizer does no I/O: it only hands the lease back to the client
        await client.models.list()
        assert body.closed
        await client.aclose()

    asyncio.run(abandon())


class Watched(Pieces):
    """A body that records whether anyone started reading it."""

    started = False

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        yield from super().__iter__()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for piece in super().__aiter__():
            yield piece


def test_metadata_is_readable_as_soon_as_the_headers_arrive(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    body = Watched(hello_stream())
    headers = {**SSE_ONLY, "x-request-id": "req_early", "x-ratelimit-remaining": "7"}
    httpx_mock.add_callback(lambda request: httpx.Response(200, headers=headers, stream=body))
    with stream_of(make_client()) as stream:
        assert not body.started
        assert stream.request_id == "req_early"
        assert stream.rate_limit.remaining == 7
        assert stream.response.status_code == 200
        assert stream.time_to_first_chunk is None
        assert texts(list(stream)) == "Hello world"
        assert stream.time_to_first_chunk is not None
        assert stream.time_to_first_chunk >= 0


def test_an_empty_stream_is_retried_like_a_dropped_connection(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    add_stream(httpx_mock, [])
    add_stream(httpx_mock, hello_stream(), headers={"x-request-id": "req_second"})
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "Hello world"
        assert stream.request_id == "req_second"
    assert len(httpx_mock.get_requests()) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("name", [None, "error"])
def test_an_error_event_before_the_first_chunk_is_retried_as_its_status_and_after_it_never(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float], name: str | None
) -> None:
    # A gateway whose provider failed before answering: nothing has been received, so it is sent again.
    add_stream(httpx_mock, [event({"error": {"message": "overloaded", "code": 503}}, name=name)])
    add_stream(httpx_mock, [event(chunk("Hel")), event({"error": {"message": "overloaded", "code": 503}}, name=name)])
    received: list[str] = []
    with stream_of(make_client(max_retries=5)) as stream, pytest.raises(deployai.ServiceUnavailableError) as info:
        for piece in stream:
            received.append(piece.choices[0].delta.content)
    assert received == ["Hel"]
    assert len(httpx_mock.get_requests()) == 2
    assert len(sleeps) == 1
    assert info.value.message == "overloaded"
    assert not deployai.is_retryable(info.value)  # as the SDK decided: after a chunk, never


@pytest.mark.parametrize("ending", ["error event", "bad chunk", "broken connection", "error event first"])
def test_a_stream_read_again_after_it_failed_raises_that_failure_again(
    make_client: ClientFactory, httpx_mock: HTTPXMock, ending: str
) -> None:
    # Read again, it said that the body had ended without [DONE]: a connection failure that never
    # was (for a bad chunk, [DONE] had even come), in place of the rate limit it had met.
    pieces = [event(chunk("Hel"))]
    broken = None
    if ending == "error event first":  # before any chunk: as a 429 would be, once retries ran out
        pieces = [event({"error": {"message": "slow down", "type": "rate_limit_error"}})]
    elif ending == "error event":
        pieces.append(event({"error": {"message": "slow down", "type": "rate_limit_error"}}))
    elif ending == "bad chunk":
        pieces += [event('{"id": "x", "choices": [{"index": 0, "delta": 5}]}'), event(chunk("lo")), DONE]
    else:
        broken = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    add_stream(httpx_mock, pieces, fail_with=broken)
    with stream_of(make_client(max_retries=0)) as stream:
        with pytest.raises(deployai.APIError) as first:
            for _ in stream:
                pass
        for again in (lambda: list(stream), stream.get_final_completion, lambda: "".join(stream.text_stream)):
            with pytest.raises(deployai.APIError) as later:
                again()
            assert later.value is first.value  # with its request, response and cause
    kinds = {
        "error event": deployai.RateLimitError,
        "error event first": deployai.RateLimitError,
        "bad chunk": deployai.APIResponseValidationError,
    }
    assert type(first.value) is kinds.get(ending, deployai.APIConnectionError)


def test_a_failed_stream_read_again_and_again_keeps_the_traceback_of_its_first_raise(httpx_mock: HTTPXMock) -> None:
    # Raised as it was, each read added its frames to the one error's traceback, for good.
    add_stream(httpx_mock, [event(chunk("Hel")), event({"error": {"message": "slow down", "code": 429}})])
    with deployai.DeployAI(api_key=API_KEY, max_retries=0) as client:
        stream = stream_of(client)
        depths = []
        for _ in range(4):
            with pytest.raises(deployai.RateLimitError) as info:
                list(stream)
            depths.append(len(traceback.extract_tb(info.value.__traceback__)))
    assert depths[1] == depths[2] == depths[3]


class GiveUp(deployai.DeployAIError):
    """An `on_retry` hook's own error, made with arguments of its own."""

    def __init__(self, retry: int, cause: BaseException) -> None:
        super().__init__(f"gave up at retry {retry}: {cause}")


def test_an_on_retry_hooks_own_error_ends_a_stream_as_it_is(httpx_mock: HTTPXMock) -> None:
    # A copy of it, kept for a read after it, was made as `GiveUp(*args)`: a TypeError in its place.
    def give_up(retry: int, wait: float, error: deployai.APIError) -> None:
        raise GiveUp(retry, error)

    add_stream(httpx_mock, [event({"error": {"message": "busy", "code": 503}})])
    with deployai.DeployAI(api_key=API_KEY, max_retries=2, on_retry=give_up) as client:
        stream = stream_of(client)
        with pytest.raises(GiveUp):
            list(stream)


def test_a_stream_left_unread_when_its_loop_ends_says_so_without_a_warning_about_the_sdks_own_generator(
    httpx_mock: HTTPXMock,
) -> None:
    # A notebook's stream opened by one `asyncio.run` and read by the next: the first loop's end
    # closed its events never started, and asyncio warned of the SDK's `_aevents` "scheduled after
    # loop.shutdown_asyncgens()", pointing at nothing of the user's.
    add_stream(httpx_mock, hello_stream())
    client = deployai.AsyncDeployAI(api_key=API_KEY)

    async def opened() -> deployai.AsyncStream[ChatCompletionChunk]:
        return await client.chat.completions.create(model=MODEL, messages=user(), stream=True)

    async def read(stream: deployai.AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
        return [chunk async for chunk in stream]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = asyncio.run(opened())
        with pytest.raises(deployai.DeployAIError, match="event loop shut down"):
            asyncio.run(read(stream))
        asyncio.run(client.close())
    assert [str(w.message) for w in caught if "_aevents" in str(w.message)] == []


def test_a_blocking_stream_interrupted_mid_read_says_so_and_is_no_connection_error(httpx_mock: HTTPXMock) -> None:
    # Ctrl-C, or a notebook's interrupt, in the middle of a read: what the stream says next must not
    # invite a retry of the request the user just stopped.
    httpx_mock.add_callback(lambda request: sse_response(hello_stream()[:3], KeyboardInterrupt()))
    with deployai.DeployAI(api_key="sk-interrupt-test", base_url="https://api.deployai.dev/v1") as client:
        stream = stream_of(client)
        received: list[ChatCompletionChunk] = []
        with pytest.raises(KeyboardInterrupt):
            for piece in stream:
                received.append(piece)
        assert texts(received) == "Hello"
        with pytest.raises(deployai.DeployAIError, match="interrupted") as info:
            stream.get_final_completion()
        assert not isinstance(info.value, deployai.APIConnectionError)
        assert not deployai.is_retryable(info.value)
        with pytest.raises(deployai.DeployAIError, match="interrupted"):
            list(stream)
    # Read with next(), as a UI loop does: the step after the interrupt says so too.
    httpx_mock.add_callback(lambda request: sse_response(hello_stream()[:3], KeyboardInterrupt()))
    with deployai.DeployAI(api_key="sk-interrupt-test", base_url="https://api.deployai.dev/v1") as client:
        stream = stream_of(client)
        assert texts([next(stream) for _ in range(3)]) == "Hello"
        with pytest.raises(KeyboardInterrupt):
            next(stream)
        with pytest.raises(deployai.DeployAIError, match="interrupted"):
            next(stream)  # not StopIteration, which would pass the cut answer off as whole


@pytest.mark.parametrize("when", ["as-it-is-made", "inside-its-constructor"])
def test_a_stream_interrupted_before_it_holds_its_response_is_released_before_the_next_request(
    make_client: ClientFactory, httpx_mock: HTTPXMock, kind: str, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    # Ctrl+C just as the stream object was being made: its response used to stay held (and, on a
    # real pool, its connection checked out) until the client closed. Once the half-made stream
    # held its lease, that lease was handed back twice, and its finalizer warned of a stream the
    # program never had.
    add_stream(httpx_mock, hello_stream())
    add_stream(httpx_mock, hello_stream())
    client = make_client()
    inner: Any = client.unwrapped._http if kind == "async" else client._http
    with monkeypatch.context() as patched, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        if when == "as-it-is-made":
            patched.setattr(deployai._client, "AsyncStream" if kind == "async" else "Stream", _interrupted)
        else:
            patched.setattr(deployai._streaming, "time", _Clock())
        with pytest.raises(KeyboardInterrupt):
            stream_of(client)
        gc.collect()
    assert [str(w.message) for w in warned if w.category is ResourceWarning] == []
    assert len(inner._current.abandoned if kind == "async" else inner.abandoned) == 1
    with stream_of(client) as stream:
        assert texts(list(stream)) == "Hello world"
    assert not (inner._current.leases if kind == "async" else inner._leases)  # each released


def _interrupted(*args: object) -> Any:
    raise KeyboardInterrupt


class _Clock:
    """`time` for `deployai._streaming`, where a stream reads the time as it is made: interrupted there."""

    time = staticmethod(_interrupted)


def test_keep_alive_events_are_no_first_event_so_a_failure_after_them_is_still_retried(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    ping, empty = event({}, name="ping"), b"data: \n\n"
    add_stream(httpx_mock, [ping, empty])  # then the body ends: nothing was said yet
    add_stream(httpx_mock, [ping, event({"error": {"message": "overloaded", "code": 503}})])
    add_stream(httpx_mock, [ping, *hello_stream()])
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "Hello world"
    assert len(httpx_mock.get_requests()) == 3
    assert len(sleeps) == 2


def test_an_error_event_first_that_names_no_status_is_raised_at_once(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    add_stream(httpx_mock, [event({"error": {"message": "Your prompt was flagged."}})])
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIStatusError, match="flagged") as info:
        list(stream)
    assert not deployai.is_retryable(info.value)
    assert len(httpx_mock.get_requests()) == 1


def test_an_error_event_first_that_is_not_retryable_is_raised_at_once(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    add_stream(httpx_mock, [event({"error": {"message": "no such model", "code": "model_not_found"}}), DONE])
    with stream_of(make_client()) as stream, pytest.raises(deployai.NotFoundError, match="no such model") as info:
        list(stream)
    assert (info.value.retries, stream.chunk_count) == (0, 0)
    assert len(httpx_mock.get_requests()) == 1


def test_an_empty_stream_with_no_retries_left_is_a_connection_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    add_stream(httpx_mock, [])
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(deployai.APIConnectionError, match="before"):
        list(stream)


@pytest.mark.parametrize(
    "before", [[], [b": keep-alive\n\n", b"event: ping\ndata: {}\n\n"]], ids=["alone", "after-pings"]
)
def test_a_stream_of_only_done_is_retried_like_an_empty_one_and_then_a_connection_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float], before: list[bytes]
) -> None:
    # `[DONE]` with no chunk before it is no answer at all: an empty answer read as a whole one would
    # hide that nothing came.
    add_stream(httpx_mock, [*before, DONE])
    add_stream(httpx_mock, hello_stream())
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "Hello world"
    assert len(httpx_mock.get_requests()) == 2
    add_stream(httpx_mock, [*before, DONE])
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(deployai.APIConnectionError, match="DONE"):
        list(stream)


@pytest.mark.parametrize("first", [True, False], ids=["first-event", "mid-stream"])
def test_an_error_event_whose_data_is_done_is_an_error_not_the_end(
    make_client: ClientFactory, httpx_mock: HTTPXMock, first: bool
) -> None:
    before = [] if first else [event(chunk("Partial ans"))]
    add_stream(httpx_mock, [*before, b"event: error\ndata: [DONE]\n\n"])
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(deployai.InternalServerError, match="DONE"):
        list(stream)


def _whole(**choice: Any) -> dict[str, Any]:
    """A chunk whose choice carries `choice`, not a delta (a gateway answering for a provider that cannot stream)."""
    whole = chunk()
    whole["choices"] = [{"index": 0, "finish_reason": "stop", **choice}]
    return whole


def test_a_chunk_that_carries_a_whole_message_and_no_delta_is_the_answer(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # The second's arguments an object, as some servers write them, and as a whole answer mends them.
    calls = [
        {"id": f"call_{n}", "type": "function", "function": {"name": n, "arguments": a}}
        for n, a in (("a", "{}"), ("b", {"x": 1}))
    ]
    message = {"role": "assistant", "content": "The whole answer.", "tool_calls": calls}
    add_stream(httpx_mock, [event(_whole(message=message)), DONE])
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "The whole answer."
        final = stream.get_final_completion().choices[0]
    assert final.message.content == "The whole answer."
    calls_made = [(call.function.name, call.function.arguments) for call in final.message.tool_calls or []]
    assert calls_made == [("a", "{}"), ("b", '{"x": 1}')]  # two calls, not one
    assert final.finish_reason == "stop"
    add_stream(httpx_mock, [event(_whole(text="A legacy answer.")), DONE])
    with stream_of(make_client()) as stream:
        assert "".join(stream.text_stream) == "A legacy answer."
    add_stream(httpx_mock, [event(_whole(message={"content": ["not", "text"]})), DONE])
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIResponseValidationError):
        list(stream)


def test_an_empty_error_event_is_still_an_error(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, [event(chunk("a")), b"event: error\ndata:\n\n", DONE])
    with stream_of(make_client()) as stream, pytest.raises(deployai.InternalServerError):
        list(stream)


def test_a_leading_byte_order_mark_is_dropped(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    pieces = hello_stream()
    add_stream(httpx_mock, [b"\xef\xbb\xbf" + pieces[0], *pieces[1:]])
    with stream_of(make_client()) as stream:
        chunks = list(stream)
    assert len(chunks) == 5
    assert texts(chunks) == "Hello world"


def test_nothing_after_done_is_delivered(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    add_stream(httpx_mock, [*hello_stream(), event(chunk(" invented")), event({"error": {"message": "late"}})])
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "Hello world"
        assert stream.get_final_completion().choices[0].message.content == "Hello world"


@pytest.mark.parametrize(
    ("code", "cls"),
    [("model_not_found", deployai.NotFoundError), ("rate_limit_exceeded", deployai.RateLimitError)],
)
def test_an_error_event_with_only_a_code_maps_by_its_code(
    make_client: ClientFactory, httpx_mock: HTTPXMock, code: str, cls: type[deployai.APIStatusError]
) -> None:
    add_stream(httpx_mock, [event({"error": {"message": "m", "code": code}}), DONE])
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(cls):
        list(stream)


def test_a_null_error_field_in_every_chunk_is_no_error(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Servers that write every optional field send `"error": null` in each chunk.
    add_stream(httpx_mock, [event({**piece, "error": None}) for piece in (chunk("Hel"), chunk("lo"))] + [DONE])
    with stream_of(make_client(max_retries=0)) as stream:
        assert texts(list(stream)) == "Hello"


def test_an_event_of_another_kind_is_skipped_but_an_unnamed_bad_chunk_is_not(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    pieces = hello_stream()
    add_stream(httpx_mock, [pieces[0], event({}, name="ping"), *pieces[1:]])
    with stream_of(make_client()) as stream:
        assert texts(list(stream)) == "Hello world"
    add_stream(httpx_mock, [pieces[0], event({}), *pieces[1:]])
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIResponseValidationError):
        list(stream)
    # A named event shaped as a chunk is part of the answer: a bad one is never passed over in silence.
    bad = {**chunk(" world"), "choices": [{"index": "zero", "delta": {"content": " world"}}]}
    add_stream(httpx_mock, [event(chunk("Hello"), name="completion"), event(bad, name="completion"), DONE])
    with stream_of(make_client()) as stream, pytest.raises(deployai.APIResponseValidationError):
        list(stream)


@pytest.mark.parametrize("last", [b"data: [DONE]\n", b"data: [DONE]", b"data: [DONE] \n\n", b"data:[DONE]\r\n"])
def test_a_last_done_without_its_blank_line_still_ends_the_answer(
    make_client: ClientFactory, httpx_mock: HTTPXMock, last: bytes
) -> None:
    add_stream(httpx_mock, [*hello_stream()[:-1], last])
    with stream_of(make_client(max_retries=0)) as stream:
        assert stream.get_final_completion().choices[0].message.content == "Hello world"


def test_text_stream_keeps_to_the_first_choice_when_there_are_several(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    pieces = [event(chunk("Hello", index=0)), event(chunk("Bonjour", index=1)), event(chunk(" world", index=0))]
    add_stream(httpx_mock, [*pieces, event(chunk(" monde", index=1)), DONE])
    with stream_of(make_client(), n=2) as stream:
        assert "".join(stream.text_stream) == "Hello world"


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        ("\u00b2", deployai.InternalServerError, 500),  # a digit to `str.isdigit`, not to `int`
        ("9" * 5000, deployai.InternalServerError, 500),
        (True, deployai.InternalServerError, 500),
        (200, deployai.InternalServerError, 500),
        (1113, deployai.InternalServerError, 500),  # a provider's own code
        ("429", deployai.RateLimitError, 429),
        (503, deployai.ServiceUnavailableError, 503),
    ],
)
def test_an_error_events_code_counts_as_a_status_only_when_it_is_one(
    make_client: ClientFactory, httpx_mock: HTTPXMock, code: object, cls: type[deployai.APIStatusError], status: int
) -> None:
    add_stream(httpx_mock, [event(chunk("a")), event({"error": {"message": "m", "code": code}}), DONE])
    with stream_of(make_client()) as stream, pytest.raises(cls) as info:
        list(stream)
    assert info.value.status_code == status


def test_async_with_on_a_real_async_stream_releases_it_after_a_break(httpx_mock: HTTPXMock) -> None:
    body = Pieces(hello_stream())
    httpx_mock.add_callback(lambda request: httpx.Response(200, headers=SSE_ONLY, stream=body))

    async def read_one() -> None:
        async with deployai.AsyncDeployAI(api_key="sk-test-async-with") as client:
            stream = await client.chat.completions.create(model=MODEL, messages=user(), stream=True)
            async with stream:
                async for _ in stream:
                    break
            assert body.closed
            assert stream.response.is_closed

    asyncio.run(read_one())


def _every_chunk(stream: Any, step: str) -> list[str | None]:
    if step == "for":
        return [c.choices[0].delta.content for c in stream]
    read = []
    with contextlib.suppress(StopIteration):
        while True:
            read.append(next(stream).choices[0].delta.content)
    return read


async def _every_chunk_async(stream: Any, step: str) -> list[str | None]:
    if step == "for":
        return [c.choices[0].delta.content async for c in stream]
    read = []
    with contextlib.suppress(StopAsyncIteration):
        while True:
            read.append((await stream.__anext__()).choices[0].delta.content)
    return read


@pytest.mark.parametrize("step", ["for", "next"])
@pytest.mark.parametrize("waiting_for", ["the first event", "a later event"])
def test_a_stream_read_from_two_threads_at_once_refuses_the_second_reader_only(step: str, waiting_for: str) -> None:
    # The second reader stepped the connection under the first: both got an `APIConnectionError`
    # (which `is_retryable` took for a dropped connection) and the answer was lost to both.
    entered, gate = threading.Event(), threading.Event()
    later = waiting_for == "a later event"

    def body() -> Iterator[bytes]:
        if later:
            yield event(chunk("a"))
        entered.set()  # the first reader is inside its read of the connection
        gate.wait(10)
        yield (b"" if later else event(chunk("a"))) + event(chunk("b")) + DONE

    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=SSE_ONLY, content=body()))
    read: list[str | None] = []
    client = deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport))
    with client, stream_of(client) as stream:
        first = threading.Thread(target=lambda: read.extend(_every_chunk(stream, step)))
        first.start()
        assert entered.wait(10)
        with pytest.raises(deployai.DeployAIError, match="one reader at a time") as info:
            next(iter(stream) if step == "for" else stream)
        gate.set()
        first.join(10)
    assert not isinstance(info.value, deployai.APIError)
    assert read == ["a", "b"]  # the first reader got the whole answer


@pytest.mark.parametrize("step", ["for", "next"])
@pytest.mark.parametrize("waiting_for", ["the first event", "a later event"])
def test_a_stream_read_from_two_tasks_at_once_refuses_the_second_reader_only(step: str, waiting_for: str) -> None:
    later = waiting_for == "a later event"

    async def main() -> list[str | None]:
        entered, gate = asyncio.Event(), asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            if later:
                yield event(chunk("a"))
            entered.set()
            await gate.wait()
            yield (b"" if later else event(chunk("a"))) + event(chunk("b")) + DONE

        transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=SSE_ONLY, content=body()))
        http_client = httpx.AsyncClient(transport=transport)
        async with deployai.AsyncDeployAI(api_key=API_KEY, http_client=http_client) as client:
            stream = await stream_of(client)
            async with stream:
                task = asyncio.create_task(_every_chunk_async(stream, step))
                await entered.wait()
                with pytest.raises(deployai.DeployAIError, match="one reader at a time") as info:
                    await (stream.__aiter__() if step == "for" else stream).__anext__()
                assert not isinstance(info.value, deployai.APIError)
                gate.set()
                return await task

    assert asyncio.run(main()) == ["a", "b"]


def test_get_final_completion_of_a_stream_closed_before_its_end_raises(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # It returned the chunks read so far as the whole answer (finish_reason None), with no error.
    add_stream(httpx_mock, hello_stream())
    with stream_of(make_client()) as stream:
        chunks = iter(stream)
        next(chunks), next(chunks)
        stream.close()  # a "stop generating" button
        with pytest.raises(deployai.DeployAIError, match=r"closed after 2 chunk\(s\), before its answer ended"):
            stream.get_final_completion()


def test_get_final_completion_of_a_stream_closed_before_any_chunk_or_any_choice_raises_as_closed(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Closed unread, it blamed the server (`APIResponseValidationError`: "no chunks"); with n=2,
    # closed once choice 0 had finished, it passed one choice off as the whole answer.
    add_stream(httpx_mock, hello_stream())
    add_stream(httpx_mock, [event(chunk("A")), event(chunk(finish="stop")), event(chunk("B", index=1)), DONE])
    client = make_client()
    with stream_of(client) as unread:
        pass
    with pytest.raises(deployai.DeployAIError, match=r"closed after 0 chunk\(s\)") as info:
        unread.get_final_completion()
    assert not isinstance(info.value, deployai.APIError)
    with stream_of(client, n=2) as stream:
        for piece in stream:
            if piece.choices[0].finish_reason:
                break
    with pytest.raises(deployai.DeployAIError, match="before its answer ended"):
        stream.get_final_completion()


def test_get_final_completion_of_a_stream_closed_once_its_answer_finished_returns_it(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Only `[DONE]` was left unread: the answer is whole.
    add_stream(httpx_mock, hello_stream())
    with stream_of(make_client()) as stream:
        for piece in stream:
            if piece.choices[0].finish_reason:
                break
    completion = stream.get_final_completion()
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].finish_reason == "stop"


def test_get_final_completion_of_a_stream_closed_before_the_usage_it_asked_for_raises(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # With `include_usage`, it returned the answer with `usage` None, as if the server had sent none.
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    with_usage = [*hello_stream()[:-1], event({**chunk(), "choices": [], "usage": usage}), DONE]
    add_stream(httpx_mock, with_usage)
    add_stream(httpx_mock, with_usage)
    client = make_client()
    with stream_of(client, stream_options={"include_usage": True}) as stream:
        for piece in stream:
            if piece.choices and piece.choices[0].finish_reason:
                break
    with pytest.raises(deployai.DeployAIError, match="before the usage chunk"):
        stream.get_final_completion()
    with stream_of(client, stream_options={"include_usage": True}) as stream:
        for piece in stream:
            if piece.usage is not None and not piece.choices:
                break  # only `[DONE]` is left
    completion = stream.get_final_completion()
    assert completion.usage is not None
    assert completion.usage.total_tokens == 8
    assert completion.choices[0].message.content == "Hello world"


def test_a_running_usage_count_is_not_taken_for_the_total_of_a_stream_closed_before_its_usage_chunk(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # vLLM's `continuous_usage_stats` puts a running count on every chunk: closed after the finish,
    # the final completion gave that count (6 tokens) for the total the last chunk held (8).
    def counted(piece: dict[str, Any], tokens: int) -> dict[str, Any]:
        return {**piece, "usage": {"prompt_tokens": 5, "completion_tokens": tokens - 5, "total_tokens": tokens}}

    add_stream(
        httpx_mock,
        [
            event(counted(chunk("Hi"), 6)),
            event(counted(chunk(finish="stop"), 6)),
            event(counted({**chunk(), "choices": []}, 8)),
            DONE,
        ],
    )
    with stream_of(make_client(), stream_options={"include_usage": True}) as stream:
        for piece in stream:
            if piece.choices and piece.choices[0].finish_reason:
                break
    with pytest.raises(deployai.DeployAIError, match="before the usage chunk"):
        stream.get_final_completion()


@pytest.mark.parametrize(
    "then", ["nothing", "another call", "aclose, another call", "client closed", "another call, client closed"]
)
def test_an_async_stream_dropped_after_its_reading_was_cancelled_warns_unless_the_program_closed_it(then: str) -> None:
    # `asyncio.wait_for(...)` timing out mid-stream, with no `async with`: the lease goes back as the
    # read is cancelled, and the stream dropped afterwards is as unclosed as a sync stream is after
    # a Ctrl+C. Handing the lease back once must not silence the warning; nor must another call on
    # the client, which releases that lease: the client's housekeeping, not the program's close.
    # Closing the client closes its streams, whichever call came before.
    emulator = Emulator(token_latency=1.0)

    async def main() -> list[str]:
        client = emulator.async_client()
        stream = await client.chat.completions.create(model=MODEL, messages=user("one two three"), stream=True)
        first = asyncio.Event()

        async def read(chunks: deployai.AsyncStream[ChatCompletionChunk]) -> None:
            async for _ in chunks:
                first.set()

        task = asyncio.ensure_future(read(stream))
        await first.wait()  # the next chunk is a second away: the read is cancelled waiting for it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if then.startswith("aclose"):
            await stream.aclose()
        if "another call" in then:
            assert (await client.chat.completions.create(model=MODEL, messages=user("hi"), max_tokens=1)).choices
        if then.endswith("client closed"):
            await client.aclose()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            del stream, task
            await asyncio.sleep(0)  # one turn of the loop: it lets go of the cancelled task's frames
            gc.collect()
        await client.aclose()
        return [str(w.message) for w in warned if w.category is ResourceWarning]

    closed = then.startswith("aclose") or then.endswith("client closed")
    expected = [] if closed else ["AsyncStream was dropped before it was read to the end or closed"]
    assert [message.split(":")[0] for message in asyncio.run(main())] == expected


def test_chunks_other_servers_write_loosely_still_add_up(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Each of these failed the whole stream with APIResponseValidationError: a `delta: null` on the
    # last choice, and a usage chunk with `choices: null`.
    bare = {k: v for k, v in chunk().items() if k != "choices"}
    pieces = [
        event(chunk("Hi", role="assistant")),
        event({**bare, "choices": [{"index": 0, "delta": None, "finish_reason": "stop"}]}),
        event({**bare, "choices": None, "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    assert chunks[1].choices[0].delta.content is None
    assert chunks[-1].choices == []
    assert final.choices[0].message.content == "Hi"
    assert (final.choices[0].finish_reason, final.usage and final.usage.total_tokens) == ("stop", 7)


@pytest.mark.parametrize(
    "loose",
    [{"id": None}, {"model": None}, {"created": None}, {"id": None, "model": None, "created": None}],
    ids=["id-null", "model-null", "created-null", "all-null"],
)
@pytest.mark.parametrize("left_out", [False, True], ids=["null", "left-out"])
def test_chunks_without_an_id_model_or_creation_time_still_add_up(
    make_client: ClientFactory, httpx_mock: HTTPXMock, loose: dict[str, None], left_out: bool
) -> None:
    # OpenVINO's chunks have no id, Foundry Local's model is null: the stream failed at its first chunk.
    def loosened(payload: dict[str, Any]) -> bytes:
        payload = {**payload, **loose}
        return event({k: v for k, v in payload.items() if k not in loose} if left_out else payload)

    # The usage chunk of Fireworks and FastChat has no `choices` key at all: the answer was lost there.
    usage_only = {k: v for k, v in chunk().items() if k != "choices"}
    usage_only["usage"] = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    pieces = [loosened(chunk("Hi", role="assistant")), loosened(chunk(finish="stop")), loosened(usage_only), DONE]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client(max_retries=0)) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    assert [c.choices[0].delta.content for c in chunks[:1]] == ["Hi"]
    assert chunks[-1].choices == []
    assert final.choices[0].message.content == "Hi"
    assert final.usage is not None
    assert final.usage.total_tokens == 4
    expected = {"id": "", "model": "", "created": 0}
    assert {name: getattr(chunks[0], name) for name in loose} == {name: expected[name] for name in loose}


def test_a_content_of_text_and_thinking_blocks_is_read_as_text_and_reasoning(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Mistral's reasoning models write a delta's content as blocks: the stream failed at the first.
    def thinking(text: str) -> dict[str, Any]:
        return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}

    pieces = [
        event(chunk("", role="assistant")),
        event(chunk(content=[thinking("Let me")])),  # type: ignore[arg-type]
        event(chunk(content=[thinking(" think.")])),  # type: ignore[arg-type]
        event(chunk(content=[{"type": "text", "text": "4"}])),  # type: ignore[arg-type]
        event(chunk(finish="stop")),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    # A gateway in front of a provider that cannot stream sends the whole message in one chunk.
    whole = {"role": "assistant", "content": [thinking("Hmm."), {"type": "text", "text": "5"}]}
    add_stream(httpx_mock, [with_choices({"index": 0, "message": whole, "finish_reason": "stop"}), DONE])
    client = make_client(max_retries=0)
    with stream_of(client) as stream:
        chunks = list(stream)
        message = stream.get_final_completion().choices[0].message
    assert [c.choices[0].delta.content for c in chunks] == ["", None, None, "4", None]
    assert (message.content, (message.model_extra or {}).get("reasoning_content")) == ("4", "Let me think.")
    with stream_of(client) as stream:
        second = stream.get_final_completion().choices[0].message
    assert (second.content, (second.model_extra or {}).get("reasoning_content")) == ("5", "Hmm.")
    # Sent back, the answer has no field Mistral did not send: it refuses one it does not define (a 422).
    httpx_mock.add_response(json=completion_json())
    client.chat.completions.create(model=MODEL, messages=[*user(), message, *user("and?"), second])
    sent = json.loads(httpx_mock.get_requests()[-1].content)["messages"]
    assert sent[1] == {"role": "assistant", "content": "4"}
    assert sent[3] == {"role": "assistant", "content": "5"}


def test_a_content_block_of_another_kind_is_still_refused(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Read as text, a block of a kind the SDK does not know (a citation, an image) would be lost.
    pieces = [event(chunk(content=[{"type": "text", "text": "4"}, {"type": "reference", "ids": [1]}])), DONE]  # type: ignore[arg-type]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(deployai.APIResponseValidationError):
        list(stream)


def test_an_event_of_another_kind_with_no_choices_is_still_no_chunk(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A keep-alive `ping`, or a `metrics` event with usage of its own, is passed over: not made into
    # a chunk by the mending of loose chunks (whose usage would have replaced the answer's).
    usage = {"prompt_tokens": 100, "completion_tokens": 900, "total_tokens": 1000}
    pieces = [
        event({"type": "ping"}, name="ping"),
        event(chunk("Hi")),
        event({"id": "m", "usage": usage}, name="metrics"),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    assert [c.choices[0].delta.content for c in chunks] == ["Hi"]
    assert final.usage is None


def test_json_that_mentions_usage_in_the_middle_of_a_stream_is_no_end_of_it(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Without an id, it is not a usage chunk: taken for one, a cut answer was handed over as whole.
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    pieces = [event(chunk("Hel")), event({"message": "quota exceeded", "usage": usage}), DONE]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(deployai.APIResponseValidationError):
        list(stream)


def test_a_chunk_whose_choice_has_no_index_is_still_refused(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Its place in one chunk says nothing of which choice it is: with `n=2`, every chunk holds one
    # choice at place 0, and both answers would run together into one.
    bare = {k: v for k, v in chunk().items() if k != "choices"}
    add_stream(httpx_mock, [event({**bare, "choices": [{"delta": {"content": "A1"}, "finish_reason": None}]}), DONE])
    with stream_of(make_client(max_retries=0)) as stream, pytest.raises(deployai.APIResponseValidationError):
        list(stream)


def test_a_tool_call_whose_header_every_piece_repeats_keeps_its_name_once(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Some servers repeat a call's id, type and name in every piece: the name came out doubled
    # ("get_weatherget_weather"), while a name sent in parts still adds up.
    def call(index: int, arguments: str, name: str | None = None, **header: str) -> bytes:
        function = {"arguments": arguments} if name is None else {"name": name, "arguments": arguments}
        return event(chunk(tool_calls=[{"index": index, **header, "function": function}]))

    pieces = [
        call(0, "", "get_weather", id="c1", type="function"),  # as OpenAI's first piece: no arguments yet
        call(0, '{"city":', "get_weather", id="c1", type="function"),
        call(0, '"Oslo"}', "get_weather", id="c1", type="function"),
        call(1, "", "get_", id="c2", type="function"),
        call(1, "{}", "time"),
        # A name in parts: a part equal to the name so far still adds to it.
        call(2, "", "l", id="c3", type="function"),
        call(2, "", "l", type="function"),
        call(2, "{}", "m"),
        event(chunk(finish="tool_calls")),
        DONE,
    ]
    assert final_tool_calls(make_client(), httpx_mock, pieces) == [
        ("c1", "get_weather", '{"city":"Oslo"}'),
        ("c2", "get_time", "{}"),
        ("c3", "llm", "{}"),
    ]


@pytest.mark.parametrize("failure", [ConnectionResetError("reset by peer"), ValueError("a transport's own")])
def test_a_streams_error_body_that_fails_to_read_with_a_transports_own_error_is_a_typed_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock, failure: Exception
) -> None:
    # A custom transport's byte stream raising its own error: a whole answer's was typed, a stream's raw.
    def broken_body() -> Iterator[bytes]:
        yield b'{"error": {"mess'
        raise failure

    class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            return broken_body()

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for piece in broken_body():
                yield piece

    httpx_mock.add_callback(
        lambda request: httpx.Response(503, stream=Body(), headers={"content-type": "application/json"})
    )
    with pytest.raises(deployai.APIConnectionError):
        stream_of(make_client(max_retries=0))


def test_a_tool_calls_own_fields_reach_the_final_completion_and_go_back_with_it(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Gemini 3 puts a signature on each call and refuses the next turn without it: a whole answer
    # kept it, a stream's final completion lost it.
    signed = {"extra_content": {"google": {"thought_signature": "SIG=="}}}
    header = {"index": 0, "id": "c1", "type": "function"}
    pieces = [
        event(chunk(tool_calls=[{**header, "function": {"name": "f", "arguments": ""}, **signed}])),
        # Repeated by a server that repeats a call's fields in every piece: a signature is not text to append.
        event(chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"a":1}'}, **signed, "x_seq": 2}])),
        # A later value in a field of a field: it replaces its own, and only in the call.
        event(chunk(tool_calls=[{"index": 0, "extra_content": {"google": {"thought_signature": "SIG2"}}}])),
        event(chunk(finish="tool_calls")),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    client = make_client()
    with stream_of(client) as stream:
        chunks = list(stream)
        message = stream.get_final_completion().choices[0].message
        again = stream.get_final_completion().choices[0].message
    assert message.tool_calls is not None
    assert again.tool_calls is not None
    assert message.tool_calls[0].model_extra == {"extra_content": {"google": {"thought_signature": "SIG2"}}, "x_seq": 2}
    first_piece = chunks[0].choices[0].delta.tool_calls
    assert first_piece is not None
    assert first_piece[0].model_extra == signed  # the chunk handed over keeps its own
    message.tool_calls[0].extra_content["google"]["changed"] = True
    assert again.tool_calls[0].model_extra == {"extra_content": {"google": {"thought_signature": "SIG2"}}, "x_seq": 2}
    httpx_mock.add_response(json=completion_json())
    tool = {"role": "tool", "tool_call_id": "c1", "content": "2"}
    client.chat.completions.create(model=MODEL, messages=[*user(), message, tool])
    sent = json.loads(httpx_mock.get_requests()[-1].content)["messages"][1]["tool_calls"][0]
    assert sent["extra_content"] == {"google": {"thought_signature": "SIG2", "changed": True}}


def with_choices(*choices: dict[str, Any], **fields: Any) -> bytes:
    """One event of a chunk with these choices as given (and the chunk's own `fields`)."""
    return event({**chunk(), "choices": list(choices), **fields})


def test_parallel_tool_calls_that_all_say_index_0_stay_separate_calls(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Ollama numbers every parallel call 0: merged, two calls were one, its arguments two JSON texts.
    def call(call_id: str, path: str) -> dict[str, Any]:
        header = {"index": 0, "id": call_id, "type": "function"}
        return {**header, "function": {"name": "read_file", "arguments": json.dumps({"path": path})}}

    pieces = [
        event(chunk(role="assistant", tool_calls=[call("call_a", "a")])),
        event(chunk(tool_calls=[call("call_b", "b"), call("call_c", "c")])),
        event(chunk(tool_calls=[{"index": 0, "function": {"arguments": ""}}])),  # a piece of the last one
        event(chunk(finish="tool_calls")),
        DONE,
    ]
    calls = final_tool_calls(make_client(), httpx_mock, pieces)
    assert [(call_id, name, json.loads(arguments)) for call_id, name, arguments in calls] == [
        ("call_a", "read_file", {"path": "a"}),
        ("call_b", "read_file", {"path": "b"}),
        ("call_c", "read_file", {"path": "c"}),
    ]


def test_an_empty_finish_reason_is_no_finish(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Ollama and SGLang write "" in every chunk: a stream closed after its first piece gave "Hel" as
    # a whole answer, and a "" after "stop" made the finish "".
    add_stream(httpx_mock, [event(chunk("Hel", finish="")), event(chunk("lo", finish="")), DONE])
    with stream_of(make_client()) as stream:
        next(iter(stream))
    with pytest.raises(deployai.DeployAIError, match="before its answer ended"):
        stream.get_final_completion()
    add_stream(httpx_mock, [event(chunk("Hi", finish="")), event(chunk(finish="stop")), event(chunk(finish="")), DONE])
    with stream_of(make_client()) as stream:
        assert stream.get_final_completion().choices[0].finish_reason == "stop"


def test_a_choice_index_below_0_is_refused_not_read_as_the_first_choice(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    add_stream(httpx_mock, [event(chunk("bogus", index=-1)), event(chunk("real", finish="stop")), DONE])
    with (
        pytest.raises(deployai.APIResponseValidationError, match="index is below 0"),
        stream_of(make_client()) as stream,
    ):
        stream.get_final_completion()


def test_a_tool_call_whose_id_changes_after_its_first_piece_stays_one_call(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Poolside: the first piece has one id and the name, every later piece another id. Only a new
    # id that comes with a name is a new call (as Ollama's, each whole, all numbered 0).
    pieces = [
        event(
            chunk(tool_calls=[{"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather"}}])
        ),
        event(chunk(tool_calls=[{"index": 0, "id": "call_B", "function": {"arguments": '{"city": '}}])),
        event(chunk(tool_calls=[{"index": 0, "id": "call_B", "function": {"arguments": '"Paris"}'}}])),
        event(chunk(finish="tool_calls")),
        DONE,
    ]
    assert final_tool_calls(make_client(), httpx_mock, pieces) == [("call_B", "get_weather", '{"city": "Paris"}')]


def test_a_stream_whose_pieces_come_as_messages_adds_them_up(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    def piece(text: str) -> bytes:
        return with_choices({"index": 0, "message": {"role": "assistant", "content": text}})

    add_stream(httpx_mock, [piece("Hel"), piece("lo "), piece("world"), event(chunk(finish="stop")), DONE])
    with stream_of(make_client()) as stream:
        assert list(stream.text_stream) == ["Hel", "lo ", "world"]
        assert stream.get_final_completion().choices[0].message.content == "Hello world"


def test_a_stream_closed_after_a_chunk_without_choices_was_closed_before_its_answer(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Azure's prompt-filter chunk comes first, with no choice: closed there, nothing of the answer came.
    prompt_filter = event({**chunk(), "id": "", "choices": [], "prompt_filter_results": []})
    add_stream(httpx_mock, [prompt_filter, *hello_stream()])
    with stream_of(make_client()) as stream:
        next(iter(stream))
    with pytest.raises(deployai.DeployAIError, match="before its answer ended") as info:
        stream.get_final_completion()
    assert not isinstance(info.value, deployai.APIResponseValidationError)


def test_what_chunks_add_to_a_choice_and_to_the_answer_is_kept(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    pieces = [
        with_choices({"index": 0, "delta": {"content": "A"}}, {"index": 0, "delta": {"content": "B"}}),
        # A JavaScript server cuts its text by UTF-16 code units: an emoji's halves in two chunks.
        event(chunk("\ud83d", refusal="\ud83d", reasoning_content="\ud83d")),
        event(chunk("\ude00", refusal="\ude00", reasoning_content="\ude00")),
        # vLLM's `stop_reason`, OpenRouter's `native_finish_reason`; a fingerprint on a later chunk.
        with_choices(
            {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END", "native_finish_reason": "STOP"},
            system_fingerprint="fp_2",
        ),
        DONE,
    ]
    add_stream(httpx_mock, pieces)
    with stream_of(make_client()) as stream:
        assert list(stream.text_stream) == ["AB", "\ud83d", "\ude00"]
        completion = stream.get_final_completion()
    (choice,) = completion.choices
    assert choice.message.content == "AB\U0001f600"
    assert choice.message.refusal == "\U0001f600"
    assert (choice.message.model_extra or {})["reasoning_content"] == "\U0001f600"
    assert (choice.model_extra or {}) == {"stop_reason": "END", "native_finish_reason": "STOP"}
    assert completion.system_fingerprint == "fp_2"
