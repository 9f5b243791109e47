"""Responses are typed, lenient about additions, and carry their rate limit and request id."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import deployai
from deployai.types import ChatCompletion
from tests.conftest import API_KEY, RATE_HEADERS, ClientFactory, completion_json, user
from tests.sse import DONE, SSE_HEADERS, chunk, event, hello_stream, sse_response


def test_completion_is_typed_with_usage(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    completion = make_client().chat.completions.create(
        model="openai/gpt-4o", messages=user(), temperature=0.7, max_tokens=1000
    )
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "Hello! How can I help you today?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 29


def test_unknown_fields_are_kept_and_open_enums_accepted(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    body = completion_json(provider="openai", cost={"usd": 0.0001})
    body["choices"][0]["finish_reason"] = "guardrail_intervened"
    body["choices"][0]["message"]["role"] = "model"
    body["choices"][0]["message"]["reasoning"] = "thought about it"
    httpx_mock.add_response(json=body)
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert completion.model_extra == {"provider": "openai", "cost": {"usd": 0.0001}}
    assert completion.choices[0].finish_reason == "guardrail_intervened"
    assert completion.choices[0].message.role == "model"
    assert completion.choices[0].message.reasoning == "thought about it"
    assert completion.model_dump()["provider"] == "openai"


def test_missing_optional_fields_are_none(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    body = completion_json()
    del body["usage"]
    del body["choices"][0]["finish_reason"]
    httpx_mock.add_response(json=body)
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert completion.usage is None
    assert completion.choices[0].finish_reason is None
    assert completion.system_fingerprint is None


def test_a_200_whose_body_is_an_error_raises_that_error_as_a_stream_would(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"error": {"message": "provider overloaded", "code": 503}})
    with pytest.raises(deployai.ServiceUnavailableError, match="provider overloaded"):
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())
    httpx_mock.add_response(json={"error": None, "id": "x"})  # no error in it: still not a completion
    with pytest.raises(deployai.APIResponseValidationError):
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())


def test_a_200_whose_body_is_an_error_is_retried_as_the_status_it_names(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_response(json={"error": {"message": "provider overloaded", "code": 503}})
    httpx_mock.add_response(json=completion_json("Hello"))
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert completion.choices[0].message.content == "Hello"
    assert len(httpx_mock.get_requests()) == 2
    assert len(sleeps) == 1
    # The raw response is looked at for the same error before it is handed over.
    httpx_mock.add_response(json={"error": {"message": "slow down", "type": "rate_limit_error"}})
    httpx_mock.add_response(json=completion_json("Again"))
    raw = make_client().chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user())
    assert raw.parse().choices[0].message.content == "Again"
    assert len(sleeps) == 2


def test_raw_responses_of_any_result_go_to_one_helper_that_takes_raw_responses_of_objects() -> None:
    # `RawResponse[object]` took none of them under a type checker: its parameter was invariant.
    def logged(raw: deployai.RawResponse[object]) -> str:
        return f"{raw.status_code} {type(raw.parse()).__name__}"

    answers = iter([completion_json(), {"object": "list", "data": []}])
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=next(answers)))
    client = deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport))
    chat = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user())
    assert [logged(chat), logged(client.models.with_raw_response.list())] == ["200 ChatCompletion", "200 ModelList"]


def test_a_raw_response_tells_an_error_from_an_answer_as_a_parsed_call_does(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    client = make_client()
    # A valid answer that also carries an error object is the answer, raw or parsed.
    model = {"id": "openai/gpt-4o", "object": "model", "error": {"message": "deprecated soon"}}
    httpx_mock.add_response(json=model, is_reusable=True)
    assert client.models.with_raw_response.retrieve("openai/gpt-4o").parse().id == "openai/gpt-4o"
    assert client.models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"
    assert sleeps == []
    # A body that is neither an answer nor an error is handed over raw; its parse() says what is wrong.
    httpx_mock.reset()
    httpx_mock.add_response(json={"nothing": "useful"})
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user())
    assert raw.http_response.json() == {"nothing": "useful"}
    with pytest.raises(deployai.APIResponseValidationError):
        raw.parse()


def test_an_error_status_answered_as_an_event_stream_gives_the_servers_message(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    body = b'data: {"error": {"message": "slow down", "type": "rate_limit_error"}}\n\n'
    httpx_mock.add_response(status_code=429, content=body, headers={"content-type": "text/event-stream"})
    client = make_client(max_retries=0)
    with pytest.raises(deployai.RateLimitError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True)
    assert info.value.message == "slow down"


def test_answers_json_clients_take_are_taken(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    body = completion_json("Hi \ud83d")  # an emoji cut in half by max_tokens, as a JS server writes it
    del body["usage"]["total_tokens"]
    body["created"] = 1708000000.25  # a server that counts time in fractions
    httpx_mock.add_response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert (completion.choices[0].message.content, completion.created) == ("Hi \ud83d", 1708000000)
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0


def test_an_answer_that_is_no_valid_completion_says_what_is_wrong_and_its_request_id(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # The message was the body's first 500 characters: past a long reply, nothing said what was wrong.
    body = completion_json("word " * 120)
    body["usage"]["prompt_tokens"] = "n/a"
    httpx_mock.add_response(json=body, headers={"x-request-id": "req_abc"})
    with pytest.raises(deployai.APIResponseValidationError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    message = str(info.value)
    assert message.startswith(
        "The API answered 200 with a body that is not a valid ChatCompletion "
        "(usage.prompt_tokens: Input should be a valid integer, unable to parse string as an integer): {"
    )
    assert message.endswith("... (request id req_abc)")


def test_a_chunk_that_is_no_valid_chunk_says_what_is_wrong(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    bad = {**chunk("Hi"), "choices": [{"delta": {"content": "Hi"}}], "created": "soon"}
    httpx_mock.add_callback(lambda request: sse_response([event(bad), DONE]))
    with (
        pytest.raises(deployai.APIResponseValidationError, match=r"not a valid chat completion chunk \(") as info,
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True) as stream,
    ):
        list(stream)
    assert "created: Input should be a valid integer" in str(info.value)
    assert "choices.0.index: Field required" in str(info.value)


@pytest.mark.parametrize("usage", [{}, {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": None}])
def test_an_empty_usage_or_a_null_total_is_read(
    make_client: ClientFactory, httpx_mock: HTTPXMock, usage: dict[str, Any]
) -> None:
    # Some gateways write `usage: {}` when they count nothing, or a null total: the answer was refused.
    body = {**completion_json(), "usage": usage}
    httpx_mock.add_response(json=body)
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert completion.choices[0].message.content == completion_json()["choices"][0]["message"]["content"]
    total = None if completion.usage is None else completion.usage.total_tokens
    assert total == (29 if usage else None)


def test_results_are_equal_when_their_data_is(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # What came with each response (request id, timing) made equal answers unequal.
    httpx_mock.add_response(json=completion_json(), headers={"x-request-id": "req_1"}, is_reusable=True)
    client = make_client()
    first = client.chat.completions.create(model="openai/gpt-4o", messages=user())
    again = client.chat.completions.create(model="openai/gpt-4o", messages=user())
    assert first == again == ChatCompletion.model_validate(first.model_dump())
    assert first != ChatCompletion.model_validate(completion_json("Another answer"))


def test_usage_details_are_typed(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    body = completion_json()
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 12}
    body["usage"]["completion_tokens_details"] = {"reasoning_tokens": 5, "audio_tokens": 0}
    httpx_mock.add_response(json=body)
    usage = make_client().chat.completions.create(model="openai/gpt-4o", messages=user()).usage
    assert usage is not None
    prompt, completion = usage.prompt_tokens_details, usage.completion_tokens_details
    assert prompt is not None
    assert completion is not None
    assert (prompt.cached_tokens, completion.reasoning_tokens) == (12, 5)
    plain = ChatCompletion.model_validate(completion_json()).usage
    assert str(plain) == "prompt_tokens=20 completion_tokens=9 total_tokens=29"  # details shown only when given


def _token(text: str, logprob: float, *alternatives: tuple[str, float]) -> dict[str, object]:
    top = [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in alternatives]
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": top}


TOKENS = [_token("Hi", -0.1, ("Hi", -0.1), ("Hey", -2.5)), _token("!", -0.3, ("!", -0.3))]
REFUSAL = [{"token": "No", "logprob": -9.0, "top_logprobs": None}]  # null: none asked for
LOGPROBS = {"content": TOKENS, "refusal": REFUSAL, "provider_note": "kept"}


def test_logprobs_are_typed_and_a_stream_adds_its_chunks_up_to_the_whole_answers(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    body = completion_json("Hi!")
    body["choices"][0]["logprobs"] = LOGPROBS
    httpx_mock.add_response(json=body)
    client = make_client()
    logprobs = client.chat.completions.create(model="openai/gpt-4o", messages=user(), logprobs=True).choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    first = logprobs.content[0]
    assert (first.token, first.logprob, bytes(first.bytes or ())) == ("Hi", -0.1, b"Hi")
    assert [(t.token, t.logprob) for t in first.top_logprobs] == [("Hi", -0.1), ("Hey", -2.5)]
    assert logprobs.refusal is not None
    assert [(t.token, t.bytes, t.top_logprobs) for t in logprobs.refusal] == [("No", None, [])]
    assert logprobs.model_extra == {"provider_note": "kept"}

    # The same tokens streamed one per chunk (the provider's note in pieces, as text fields come).
    pieces = []
    for text, token, note in [("Hi", TOKENS[0], "ke"), ("!", TOKENS[1], "pt")]:
        piece = chunk(text)
        piece["choices"][0]["logprobs"] = {"content": [token], "provider_note": note}
        if text == "!":
            piece["choices"][0]["logprobs"]["refusal"] = REFUSAL
        pieces.append(event(piece))
    httpx_mock.add_response(headers=SSE_HEADERS, content=b"".join([*pieces, event(chunk(finish="stop")), DONE]))
    with client.chat.completions.create(model="openai/gpt-4o", messages=user(), logprobs=True, stream=True) as stream:
        chunks = list(stream)
        streamed = stream.get_final_completion().choices[0].logprobs
    assert chunks[0].choices[0].logprobs is not None
    assert chunks[0].choices[0].logprobs.content == logprobs.content[:1]
    assert streamed == logprobs


def test_rate_limit_and_request_id_are_read_only_attributes_not_fields(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=completion_json(), headers={**RATE_HEADERS, "x-request-id": "req_7"})
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert completion.rate_limit == deployai.RateLimit(
        limit=60, remaining=59, reset_at=datetime.datetime(2024, 2, 15, 12, 27, 40, tzinfo=datetime.timezone.utc)
    )
    assert completion.request_id == "req_7"
    assert "rate_limit" not in completion.model_dump()
    assert "x-ratelimit" not in completion.model_dump_json()


def test_models_list_carries_rate_limit(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"object": "list", "data": []}, headers={"x-ratelimit-remaining": "3"})
    assert make_client().models.list().rate_limit.remaining == 3


def test_a_models_created_with_a_fraction_of_a_second_is_read_in_a_list_as_alone(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # One model's loosely written `created` made `models.list()` refuse the whole list.
    model = {"id": "openai/gpt-4o", "object": "model", "created": 1715367049.5, "owned_by": "openai"}
    httpx_mock.add_response(json={"object": "list", "data": [model, {**model, "id": "openai/o3-mini"}]})
    httpx_mock.add_response(json=model)
    client = make_client()
    assert [(found.id, found.created) for found in client.models.list().data] == [
        ("openai/gpt-4o", 1715367049),
        ("openai/o3-mini", 1715367049),
    ]
    assert client.models.retrieve("openai/gpt-4o").created == 1715367049


def test_raw_response_gives_http_details_and_parses_once(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json(), headers={**RATE_HEADERS, "x-request-id": "req_9"})
    raw = make_client().chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user())
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == "req_9"
    assert raw.request_id == "req_9"
    assert raw.rate_limit.remaining == 59
    assert isinstance(raw.elapsed, datetime.timedelta)
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    assert raw.parse() is completion
    assert completion.request_id == "req_9"


def test_raw_models_list(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"object": "list", "data": [{"id": "meta/llama-3.1-405b"}]})
    raw = make_client().models.with_raw_response.list()
    assert raw.status_code == 200
    assert raw.parse().data[0].id == "meta/llama-3.1-405b"


def test_raw_response_of_a_failed_call_still_raises(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=401, json={"error": {"message": "bad key"}})
    with pytest.raises(deployai.AuthenticationError, match="bad key"):
        make_client().models.with_raw_response.list()


@contextlib.contextmanager
def _left_for_the_collector() -> Iterator[list[object]]:
    """The requests, responses and errors that the block left in reference cycles (filled at its end)."""
    left: list[object] = []
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept in `gc.garbage` instead of freed
    try:
        yield left
        gc.collect()
        left += [o for o in gc.garbage if isinstance(o, (httpx.Request, httpx.Response, deployai.DeployAIError))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body["model"] == "openai/none":
        return httpx.Response(404, json={"error": {"message": "no such model", "type": "not_found"}})
    return sse_response(hello_stream()) if body.get("stream") else httpx.Response(200, json=completion_json())


# What a call leaves in a reference cycle waits for the garbage collector, and makes it run more
# often: a service pays for that on every call (issue 16). Each case runs twice: the first opens the
# pool and its connection, which live on.
def test_a_finished_call_or_stream_is_freed_at_once_not_left_for_the_garbage_collector(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_callback(_answer, is_reusable=True)
    left: list[object] = []
    with deployai.DeployAI(api_key=API_KEY, max_retries=0) as client:
        create = client.chat.completions.create
        for _ in range(2):
            with _left_for_the_collector() as left:
                create(model="openai/gpt-4o", messages=user())
            assert left == []
            with _left_for_the_collector() as left, pytest.raises(deployai.NotFoundError):
                create(model="openai/none", messages=user())
            assert left == []
            with (
                _left_for_the_collector() as left,
                create(model="openai/gpt-4o", messages=user(), stream=True) as events,
            ):
                assert "".join(events.text_stream)
            assert left == []

    # Asynchronously, inside one coroutine, as a program runs it (a call driven by `run_until_complete`
    # leaves a cycle of asyncio's own: the finished task keeps its error or the end of its iteration).
    async def main() -> None:
        async with deployai.AsyncDeployAI(api_key=API_KEY, max_retries=0) as client:
            create = client.chat.completions.create
            for _ in range(2):
                with _left_for_the_collector() as left:
                    await create(model="openai/gpt-4o", messages=user())
                assert left == []
                with _left_for_the_collector() as left, pytest.raises(deployai.NotFoundError):
                    await create(model="openai/none", messages=user())
                assert left == []
                with _left_for_the_collector() as left:
                    async with await create(model="openai/gpt-4o", messages=user(), stream=True) as events:
                        assert "".join([text async for text in events.text_stream])
                assert left == []

    asyncio.run(main())


class _CutBeforeTheFirstEvent(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body whose connection drops before any byte: each read raises an error it does not keep."""

    def __iter__(self) -> Iterator[bytes]:
        raise httpx.ReadError("connection reset")
        yield b""  # pragma: no cover - makes this a generator

    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise httpx.ReadError("connection reset")
        yield b""  # pragma: no cover - makes this an async generator


def test_a_stream_retried_before_its_first_event_is_freed_at_once(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    # The dropped attempt's error passes through the lease's frames; kept by one of them, it would
    # hold the frame, its response and its request in a cycle with its traceback.
    attempts: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) % 2:
            return httpx.Response(200, headers=SSE_HEADERS, stream=_CutBeforeTheFirstEvent())
        return sse_response(hello_stream())

    httpx_mock.add_callback(answer, is_reusable=True)
    with deployai.DeployAI(api_key=API_KEY, max_retries=1) as client:
        for _ in range(2):
            with (
                _left_for_the_collector() as left,
                client.chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True) as events,
            ):
                assert "".join(events.text_stream) == "Hello world"
            assert left == []

    async def main() -> None:
        async with deployai.AsyncDeployAI(api_key=API_KEY, max_retries=1) as client:
            create = client.chat.completions.create
            for _ in range(2):
                with _left_for_the_collector() as left:
                    async with await create(model="openai/gpt-4o", messages=user(), stream=True) as events:
                        assert "".join([text async for text in events.text_stream]) == "Hello world"
                assert left == []

    asyncio.run(main())
    assert len(attempts) == 8


def test_answers_other_servers_write_loosely_are_taken(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # A choice without `index` and tool-call arguments written as a JSON object (not as its text):
    # both failed the call with APIResponseValidationError.
    body = completion_json()
    choice = body["choices"][0]
    del choice["index"]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": "é"}}}
    choice["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
    httpx_mock.add_response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    (only,) = completion.choices
    assert only.index == 0
    (tool_call,) = only.message.tool_calls or []
    assert json.loads(tool_call.function.arguments) == {"x": 1, "y": "é"}


@pytest.mark.parametrize("left_out", [False, True], ids=["null", "left-out"])
def test_an_answer_without_an_id_model_or_creation_time_is_taken(
    make_client: ClientFactory, httpx_mock: HTTPXMock, left_out: bool
) -> None:
    loose = ("id", "model", "created")
    body = {k: v for k, v in completion_json().items() if k not in loose}
    if not left_out:
        body.update(dict.fromkeys(loose))
    httpx_mock.add_response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    completion = make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())
    assert (completion.id, completion.model, completion.created) == ("", "", 0)
    assert completion.choices[0].message.content == completion_json()["choices"][0]["message"]["content"]


def test_an_answers_content_of_text_and_thinking_blocks_is_read_as_text_and_reasoning(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Mistral's reasoning models (magistral, `reasoning_effort`): every such answer was refused.
    body = completion_json()
    body["choices"][0]["message"]["content"] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "2 and 2."}]},
        {"type": "text", "text": "4"},
    ]
    httpx_mock.add_response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    client = make_client()
    message = client.chat.completions.create(model="openai/gpt-4o", messages=user()).choices[0].message
    assert (message.content, (message.model_extra or {}).get("reasoning_content")) == ("4", "2 and 2.")
    # Sent back, without the field the SDK made: Mistral refuses a field it does not define (a 422).
    httpx_mock.add_response(json=completion_json())
    client.chat.completions.create(model="openai/gpt-4o", messages=[*user(), message, *user("and?")])
    assert json.loads(httpx_mock.get_requests()[-1].content)["messages"][1] == {"role": "assistant", "content": "4"}
    # A `reasoning_content` the server sent itself (deepseek's, which some servers want back) still goes back.
    own = completion_json()
    own["choices"][0]["message"]["reasoning_content"] = "mine"
    httpx_mock.add_response(json=own)
    theirs = client.chat.completions.create(model="openai/gpt-4o", messages=user()).choices[0].message
    httpx_mock.add_response(json=completion_json())
    client.chat.completions.create(model="openai/gpt-4o", messages=[*user(), theirs, *user("and?")])
    assert json.loads(httpx_mock.get_requests()[-1].content)["messages"][1]["reasoning_content"] == "mine"


def test_a_whole_answer_with_choices_null_is_still_refused(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # Only a stream's usage chunk has no choices: a whole answer without any is no answer.
    body = {**completion_json(), "choices": None}
    httpx_mock.add_response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with pytest.raises(deployai.APIResponseValidationError):
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())


def test_a_whole_answer_with_no_choice_is_refused_not_handed_over_empty(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # `completion.choices[0]` would be the caller's IndexError, far from the answer that caused it.
    body = {**completion_json(), "choices": []}
    httpx_mock.add_response(
        content=json.dumps(body).encode(), headers={"content-type": "application/json"}, is_reusable=True
    )
    client = make_client(max_retries=0)
    with pytest.raises(deployai.APIResponseValidationError, match="no choices"):
        client.chat.completions.create(model="openai/gpt-4o", messages=user())
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user())
    assert raw.http_response.json()["choices"] == []  # the raw answer is still handed over
    with pytest.raises(deployai.APIResponseValidationError, match="no choices"):
        raw.parse()


def test_a_stream_whose_chunks_had_no_choice_has_no_final_completion(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}
    body = b"".join([event({**chunk(), "choices": [], "usage": usage}), DONE])
    httpx_mock.add_response(content=body, headers=SSE_HEADERS)
    with make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True) as stream:
        (only,) = list(stream)  # the chunk itself is delivered as it came
        assert only.usage is not None
        with pytest.raises(deployai.APIResponseValidationError, match="no chunk had a choice"):
            stream.get_final_completion()


def test_an_error_beside_an_answer_with_no_choice_is_that_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A gateway's 429 in a 200, with an empty answer beside it: retried as a 429, not refused as no answer.
    body = {**completion_json(), "choices": [], "error": {"message": "slow down", "code": 429}}
    httpx_mock.add_response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with pytest.raises(deployai.RateLimitError, match="slow down"):
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())
