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
