"""ChatCompletionRequest: the same parameters, rules and errors as create, and exactly the body it sends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import deployai
from deployai._request import CHAT_PARAMS
from deployai.testing import Emulator
from deployai.types import ChatCompletionRequest
from tests.conftest import API_KEY, completion_json, user

MODEL = "openai/gpt-4o"

CASES: list[dict[str, Any]] = [
    {"model": MODEL, "messages": user()},
    {"model": MODEL, "messages": user(), "temperature": 1, "top_p": 0.5, "max_tokens": 20, "seed": -3},
    {"model": MODEL, "messages": user(), "temperature": None, "stop": ["a", "b"], "n": 2, "user": "u-1"},
    {"model": "anthropic/claude-3.5-sonnet", "messages": [{"role": "system", "content": "Be brief."}, *user()],
     "max_completion_tokens": 5, "presence_penalty": -1.5, "frequency_penalty": 2, "logprobs": True,
     "top_logprobs": 3, "response_format": {"type": "json_object"}},
    {"model": MODEL, "messages": user(), "tool_choice": "auto",
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"model": MODEL, "messages": user(), "stream": True, "stream_options": {"include_usage": True}},
]  # fmt: skip


def body_sent(**params: Any) -> bytes:
    """The body `create` sends for `params` (the answer is not looked at)."""
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        if b'"stream":true' in request.content:
            return httpx.Response(200, content=b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=completion_json())

    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler))) as c:
        answer = c.chat.completions.create(**params)
        if isinstance(answer, deployai.Stream):
            answer.close()
    return sent[0]


@pytest.mark.parametrize("params", CASES, ids=range(len(CASES)))
def test_its_dump_is_exactly_the_body_create_sends(params: dict[str, Any]) -> None:
    dump = ChatCompletionRequest(**params).model_dump(exclude_unset=True)
    assert dump == params
    # The same bytes as create sends for the same arguments (in the model's order of fields).
    assert body_sent(**dump) == body_sent(**{name: params[name] for name in dump})
    assert json.loads(body_sent(**params)) == dump


@pytest.mark.parametrize(
    "bad",
    [{"model": "gpt-4o"}, {"messages": []}, {"temperature": 3}, {"n": 0}, {"stop": ["a"] * 5},
     {"stream_options": {"include_usage": True}}, {"tool_choice": "sometimes"}, {"messages": [{"role": "bot"}]}],
    ids=["model", "messages", "temperature", "n", "stop", "stream_options", "tool_choice", "role"],
)  # fmt: skip
def test_bad_values_raise_the_same_error_as_create(bad: dict[str, Any]) -> None:
    params = {"model": MODEL, "messages": user(), **bad}
    with pytest.raises(deployai.InvalidParameterError) as from_create:
        body_sent(**params)
    with pytest.raises(deployai.InvalidParameterError) as from_model:
        ChatCompletionRequest(**params)
    with pytest.raises(deployai.InvalidParameterError) as from_validate:
        ChatCompletionRequest.model_validate(params)
    assert str(from_model.value) == str(from_validate.value) == str(from_create.value)
    assert from_model.value.param == from_create.value.param


def test_it_takes_what_create_takes_and_dumps_what_create_sends() -> None:
    # A tuple of messages and message models: `create` takes both; this raised for them.
    from deployai.types import AssistantMessage, MessageToolCall, UserMessage

    call = MessageToolCall(id="c1", function={"name": "f", "arguments": "{}"})
    messages = (UserMessage(content="Hi"), AssistantMessage(tool_calls=[call]), {"role": "user", "content": "Go"})
    dump = ChatCompletionRequest(model=MODEL, messages=messages).model_dump(exclude_unset=True)
    assert json.dumps(dump, separators=(",", ":")).encode() == body_sent(model=MODEL, messages=messages)


@pytest.mark.parametrize("line", ['{"model": "openai/gpt-4o", "messages": [', "", "[1, 2]", b"\xff"])
def test_a_line_that_is_not_a_json_request_is_an_invalid_parameter(line: str | bytes) -> None:
    with pytest.raises(deployai.InvalidParameterError):
        ChatCompletionRequest.model_validate_json(line)


def test_an_unknown_name_is_a_type_error_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match="did you mean 'temperature'"):
        ChatCompletionRequest(model=MODEL, messages=user(), temprature=1)


def test_its_json_schema_names_every_body_parameter() -> None:
    schema = ChatCompletionRequest.model_json_schema()
    assert set(schema["properties"]) == CHAT_PARAMS
    assert set(schema["required"]) == {"model", "messages"}


def test_requests_round_trip_through_json_lines_and_run_through_create_many(tmp_path: Path) -> None:
    requests = [ChatCompletionRequest(model=MODEL, messages=user(f"question {n}"), max_tokens=50) for n in range(5)]
    queue = tmp_path / "requests.jsonl"
    queue.write_text("".join(r.model_dump_json(exclude_unset=True) + "\n" for r in requests))
    replayed = [ChatCompletionRequest.model_validate_json(line) for line in queue.read_text().splitlines()]
    assert replayed == requests
    queue.write_text('{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}], "top_p": 7}\n')
    with pytest.raises(deployai.InvalidParameterError, match="top_p"):
        ChatCompletionRequest.model_validate_json(queue.read_text())

    emulator = Emulator(rate_limit=1_000_000)
    with emulator.client() as client:
        results = client.chat.completions.create_many(replayed, concurrency=3)
    assert [r.choices[0].message.content for r in results] == [f"You said: question {n}" for n in range(5)]  # type: ignore[union-attr]

    async def main() -> list[Any]:
        async with emulator.async_client() as client:
            return await client.chat.completions.create_many([*replayed, {"model": MODEL, "messages": user("dict")}])

    answers = asyncio.run(main())
    assert answers[-1].choices[0].message.content == "You said: dict"
    assert all(isinstance(a, deployai.types.ChatCompletion) for a in answers)


def test_models_nested_in_message_dicts_are_dumped_as_create_sends_them() -> None:
    # Content parts and tool calls built as models inside plain message dicts: `create` sent their
    # `type`, while the request's `model_dump(exclude_unset=True)` left it out (a default), so
    # `create_many` and a JSON Lines replay refused the request, and a tool call went out without it.
    from deployai.types import FunctionCall, ImageContentPart, ImageURL, MessageToolCall, TextContentPart

    picture = ImageURL(url="https://x.test/b", detail=None)
    parts = [TextContentPart(text="What is this?"), ImageContentPart(image_url=ImageURL(url="https://x.test/a.png"))]
    call = MessageToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments="{}"))
    messages: list[Any] = [
        {"role": "user", "content": parts},
        {"role": "assistant", "tool_calls": (call,)},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": [{"type": "image_url", "image_url": picture}]},
    ]
    request = ChatCompletionRequest(model=MODEL, messages=messages)
    dump = request.model_dump(exclude_unset=True)
    assert json.dumps(dump, separators=(",", ":")).encode() == body_sent(model=MODEL, messages=messages)
    assert dump["messages"][0]["content"][0] == {"type": "text", "text": "What is this?"}
    assert dump["messages"][1]["tool_calls"][0]["type"] == "function"
    again = ChatCompletionRequest.model_validate_json(request.model_dump_json(exclude_unset=True))
    assert again == request
    emulator = Emulator(rate_limit=None)
    with emulator.client() as client:
        (answer,) = client.chat.completions.create_many([request])
    assert isinstance(answer, deployai.types.ChatCompletion)
    assert emulator.last_request is not None
    assert emulator.last_request.json["messages"] == dump["messages"]


def test_models_as_a_response_format_tool_or_tool_choice_are_taken_as_create_takes_them() -> None:
    # `create` sends a pydantic model given for these; the request raised pydantic's ValidationError.
    import pydantic

    class Format(pydantic.BaseModel):
        type: str = "json_object"

    class Function(pydantic.BaseModel):
        name: str = "f"
        parameters: dict[str, Any] = {"type": "object"}

    class Tool(pydantic.BaseModel):
        type: str = "function"
        function: Function = Function()

    params: dict[str, Any] = {"model": MODEL, "messages": user(), "response_format": Format(), "tools": [Tool()]}
    dump = ChatCompletionRequest(**params).model_dump(exclude_unset=True)
    assert json.dumps(dump, separators=(",", ":")).encode() == body_sent(**params)
    chosen = ChatCompletionRequest(model=MODEL, messages=user(), tool_choice=Tool(), tools=[Tool()])
    assert chosen.tool_choice == {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_a_value_create_cannot_send_is_refused_when_the_request_is_built() -> None:
    # NaN was taken, and written as `null` by `model_dump_json`: a replayed line sent another body.
    for bad in [object(), float("nan"), {("a", "b"): 1}]:
        message = {"role": "user", "content": "x", "meta": bad}
        with pytest.raises(deployai.InvalidParameterError):
            body_sent(model=MODEL, messages=[message])
        with pytest.raises(deployai.InvalidParameterError, match="messages"):
            ChatCompletionRequest(model=MODEL, messages=[message])


def test_text_utf8_cannot_carry_is_refused_when_the_request_is_built_as_create_refuses_it() -> None:
    # A lone surrogate (an emoji cut in half) was taken, and `model_dump_json` then raised pydantic's
    # own error: a queued request could not be written out, nor replayed.
    cases: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "a\ud800"}]},
        {"messages": [{"role": "user", "content": "a", "name": "b\udfff"}]},
        {"messages": user(), "user": "\ud800"},
        {"messages": user(), "metadata": {"k": "\ud800"}},
    ]
    for case in cases:
        params = {"model": MODEL, **case}
        with pytest.raises(deployai.InvalidParameterError, match="lone surrogates") as from_create:
            body_sent(**params)
        with pytest.raises(deployai.InvalidParameterError, match="lone surrogates") as from_model:
            ChatCompletionRequest(**params)
        assert from_model.value.param == from_create.value.param
    fine = ChatCompletionRequest(model=MODEL, messages=user("Grüße, 你好 👋"), user="ü")
    assert json.dumps(fine.model_dump(exclude_unset=True), separators=(",", ":"), ensure_ascii=False).encode() == (
        body_sent(model=MODEL, messages=user("Grüße, 你好 👋"), user="ü")
    )


def test_logit_bias_keeps_its_keys_whatever_its_values() -> None:
    for bias in [{50256: -100}, {50256: -100.0}, {"50256": 5.5}]:
        request = ChatCompletionRequest(model=MODEL, messages=user(), logit_bias=bias)
        assert request.logit_bias == bias
        assert json.dumps(request.model_dump(exclude_unset=True), separators=(",", ":")).encode() == body_sent(
            model=MODEL, messages=user(), logit_bias=bias
        )


def test_lists_of_a_list_subclass_are_taken_as_create_takes_them() -> None:
    class Conversation(list[Any]):
        pass

    parts = Conversation([{"type": "text", "text": "Hi"}])
    params: dict[str, Any] = {"model": MODEL, "messages": Conversation([{"role": "user", "content": parts}])}
    params["stop"] = Conversation(["END"])
    dump = ChatCompletionRequest(**params).model_dump(exclude_unset=True)
    assert json.dumps(dump, separators=(",", ":")).encode() == body_sent(**params)


def test_a_model_alias_stays_one_so_create_many_sends_it() -> None:
    emulator = Emulator(rate_limit=None)
    request = ChatCompletionRequest(model=deployai.ModelAlias("fast"), messages=user())
    assert type(request.model) is deployai.ModelAlias
    assert type(request.model_dump(exclude_unset=True)["model"]) is deployai.ModelAlias
    with emulator.client(max_retries=0) as client:
        (answer,) = client.chat.completions.create_many([request])
        assert isinstance(answer, deployai.BadRequestError)  # sent: the emulator knows no alias, and says so
        with pytest.raises(deployai.BadRequestError):
            client.chat.completions.create(**request.model_dump(exclude_unset=True))
    assert [r.json["model"] for r in emulator.requests] == ["fast", "fast"]
    # JSON cannot mark an alias: read back, the plain string is checked as a model id.
    with pytest.raises(deployai.InvalidParameterError, match="provider/model"):
        ChatCompletionRequest.model_validate_json(request.model_dump_json(exclude_unset=True))


def test_a_model_alias_can_be_retrieved_but_not_as_a_path_of_its_own() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"id": "fast", "object": "model", "created": 1, "owned_by": "gateway"})

    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler))) as c:
        assert c.models.retrieve(deployai.ModelAlias("fast")).id == "fast"
        for bad in ["..", "a/../b", "x y", "a?b", ""]:
            with pytest.raises(deployai.InvalidParameterError):
                c.models.retrieve(deployai.ModelAlias(bad))
        with pytest.raises(deployai.InvalidParameterError):
            c.models.retrieve("fast")  # a plain string is still checked as a provider/model id
    assert seen == ["/v1/models/fast"]
