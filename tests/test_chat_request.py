"""ChatCompletionRequest: the same parameters, rules and errors as create, and exactly the body it sends."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import deployai
from deployai._request import CHAT_PARAMS
from deployai.testing import Emulator
from deployai.types import (
    AssistantMessage,
    ChatCompletionMessage,
    ChatCompletionRequest,
    MessageToolCall,
    ToolMessage,
    UserMessage,
)
from tests.conftest import API_KEY, ClientFactory, completion_json, user
from tests.emulator_helpers import error_of, raw_client

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
    # The call is answered before the conversation goes on: the API refuses any other turn after it.
    messages = (
        UserMessage(content="Hi"),
        AssistantMessage(tool_calls=[call]),
        {"role": "tool", "tool_call_id": "c1", "content": "Go"},
    )
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


# Tool calling: how tools, `tool_choice` and tool turns fit together. The API refuses what these
# break with a 400; the client refuses it before sending, by the code the emulator answers with.

WEATHER: dict[str, Any] = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL: dict[str, Any] = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
ASKED: dict[str, Any] = {"role": "user", "content": "Weather in Paris?"}
CALLED: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [CALL]}
ANSWERED: dict[str, Any] = {"role": "tool", "tool_call_id": "c1", "content": "21 degrees"}


def called(**call: Any) -> dict[str, Any]:
    """An assistant message making one call: `CALL` with some fields replaced (None leaves one out)."""
    fields = {key: value for key, value in {**CALL, **call}.items() if value is not None}
    return {**CALLED, "tool_calls": [fields]}


def function(**fields: Any) -> dict[str, Any]:
    """A list of one tool with these fields for its function."""
    return {"tools": [{"type": "function", "function": fields}]}


BAD_TOOL_USE: list[tuple[str, dict[str, Any], str, str]] = [
    ("name-with-a-space", function(name="get weather"), "tools[0].function.name", "1 to 64 letters"),
    ("name-too-long", function(name="f" * 65), "tools[0].function.name", "1 to 64 letters"),
    ("without-type", {"tools": [{"function": {"name": "f"}}]}, "tools[0].type", "'function'"),
    # The SDK's answer models read function calls only: a custom tool's call would fail once paid for.
    ("custom-tool", {"tools": [{"type": "custom", "custom": {"name": "g"}}]}, "tools[0].type", "'function'"),
    ("without-function", {"tools": [{"type": "function"}]}, "tools[0].function", "the function's name"),
    ("same-name-twice", {"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "a name no other tool has"),
    ("description-not-text", function(name="f", description=3), "tools[0].function.description", "a string"),
    ("description-falsy", function(name="f", description=0), "tools[0].function.description", "a string"),
    ("parameters-not-a-schema", function(name="f", parameters=[]), "tools[0].function.parameters", "JSON Schema"),
    ("choice-names-no-tool", {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "g"}}},
     "tool_choice", "one of ['get_weather']"),
    ("required-without-tools", {"tool_choice": "required"}, "tool_choice", "given only with tools"),
    ("choice-without-type", {"tools": [WEATHER], "tool_choice": {"function": {"name": "get_weather"}}},
     "tool_choice.type", "'function'"),
    ("auto-with-no-tools", {"tool_choice": "auto"}, "tool_choice", "given only with tools"),
    # OpenAI's 400s ("empty array", "only allowed when 'tools' are specified"); the emulator's now too.
    ("empty-tools", {"tools": []}, "tools", "a non-empty list of tool definitions"),
    ("parallel-calls-without-tools", {"parallel_tool_calls": False}, "parallel_tool_calls", "given only with tools"),
    ("call-without-id", {"messages": [ASKED, called(id=None)]}, "messages[1].tool_calls[0].id", "the call's id"),
    ("call-with-empty-id", {"messages": [ASKED, called(id="")]}, "messages[1].tool_calls[0].id", "the call's id"),
    ("other-kind-of-call-left-unanswered", {"messages": [ASKED, called(type="custom"), ASKED]},
     "messages[1].tool_calls", "every tool call answered"),
    ("arguments-as-a-dict",
     {"messages": [ASKED, called(function={"name": "get_weather", "arguments": {"city": "Paris"}}), ANSWERED]},
     "messages[1].tool_calls[0].function", "'arguments' as a JSON string"),
    ("result-without-call", {"messages": [ASKED, ANSWERED]}, "messages[1].tool_call_id", "unanswered tool call"),
    ("call-left-unanswered", {"messages": [ASKED, CALLED, ASKED]}, "messages[1].tool_calls",
     "every tool call answered"),
    ("call-answered-twice", {"messages": [ASKED, CALLED, ANSWERED, ANSWERED]}, "messages[3].tool_call_id",
     "unanswered tool call"),
    # One answer for two calls with one id, the other left unanswered: sent as it was.
    ("two-calls-with-one-id", {"messages": [ASKED, {**CALLED, "tool_calls": [CALL, CALL]}, ANSWERED]},
     "messages[1].tool_calls[1].id", "an id no other call of the message has"),
    # A call of no kind: its id, name and arguments went unchecked, and it was sent with "type": null.
    ("call-of-type-null", {"messages": [ASKED, {**CALLED, "tool_calls": [{**CALL, "type": None}]}, ANSWERED]},
     "messages[1].tool_calls[0].type", "'function'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"extra_body": {"tools": [WEATHER]}, "tool_choice": "auto"},
        {"extra_body": {"tools": [WEATHER]}, "parallel_tool_calls": False},
    ],
    ids=["tool_choice", "parallel_tool_calls"],
)
def test_tools_given_in_extra_body_count_as_tools(
    make_client: ClientFactory, httpx_mock: Any, change: dict[str, Any]
) -> None:
    # "tool_choice must be given only with tools", when they were given.
    httpx_mock.add_response(json=completion_json(), is_reusable=True)
    client = make_client()
    client.chat.completions.create(**{"model": MODEL, "messages": [ASKED], **change})
    assert json.loads(httpx_mock.get_requests()[0].content)["tools"] == [WEATHER]
    # They are the documented way to send a provider's own kinds of tool, which `tools` refuses:
    # sent as they are, with the rest of the call, for the server to judge.
    own = {"extra_body": {"tools": [{"type": "web_search_preview"}]}, "temperature": 0.2}
    client.chat.completions.create(**{"model": MODEL, "messages": [ASKED], **change, **own})
    assert json.loads(httpx_mock.get_requests()[1].content)["tools"] == [{"type": "web_search_preview"}]


BAD_FORMATS: list[tuple[str, dict[str, Any], str, str]] = [
    ("a-json-schema-itself", {"type": "object", "properties": {}}, "response_format.type", "'json_schema'"),
    ("no-type", {"json_schema": {"name": "a", "schema": {}}}, "response_format.type", "'json_schema'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("response_format", "param", "allowed"), [c[1:] for c in BAD_FORMATS], ids=[c[0] for c in BAD_FORMATS]
)
def test_a_response_format_the_api_refuses_is_refused_before_sending(
    make_client: ClientFactory, httpx_mock: Any, response_format: dict[str, Any], param: str, allowed: str
) -> None:
    with pytest.raises(deployai.InvalidParameterError, match=f"^{re.escape(param)} must be ") as info:
        make_client().chat.completions.create(model=MODEL, messages=[ASKED], response_format=response_format)
    assert allowed in str(info.value)
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "answer-1", "schema": {"type": "object"}, "strict": True}},
        {"type": "grammar", "grammar": "root ::= 'x'"},  # a provider's own (Fireworks): left to the server
        {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},  # Ollama's takes it without a name
        {"type": "json_schema", "schema": {"type": "object"}},  # Together's flat shape
    ],
    ids=["text", "json_object", "json_schema", "a-providers-own", "json-schema-without-name", "flat-schema"],
)
def test_the_response_formats_the_api_takes_are_sent_as_given(
    make_client: ClientFactory, httpx_mock: Any, response_format: dict[str, Any]
) -> None:
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(model=MODEL, messages=[ASKED], response_format=response_format)
    assert json.loads(httpx_mock.get_requests()[0].content)["response_format"] == response_format


@pytest.mark.parametrize(
    ("change", "param", "allowed"), [case[1:] for case in BAD_TOOL_USE], ids=[case[0] for case in BAD_TOOL_USE]
)
def test_tool_use_the_api_refuses_is_refused_before_sending(
    make_client: ClientFactory, httpx_mock: Any, change: dict[str, Any], param: str, allowed: str
) -> None:
    # These went out and came back as a 400 (`BadRequestError`), after a round trip.
    with pytest.raises(deployai.InvalidParameterError) as info:
        make_client().chat.completions.create(**{"model": MODEL, "messages": [ASKED], **change})
    assert info.value.param == param
    assert str(info.value).startswith(f"{param} must be ")
    assert allowed in str(info.value)
    assert API_KEY not in str(info.value)
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    ("change", "param"), [case[1:3] for case in BAD_TOOL_USE], ids=[case[0] for case in BAD_TOOL_USE]
)
def test_the_request_model_refuses_it_as_the_emulator_answers_a_raw_client(change: dict[str, Any], param: str) -> None:
    # One rule, one wording: what the SDK raises is the message and `param` of the emulator's 400.
    params = {"model": MODEL, "messages": [ASKED], **change}
    with pytest.raises(deployai.InvalidParameterError) as from_model:
        ChatCompletionRequest(**params)
    with raw_client(Emulator(rate_limit=None)) as raw:
        response = raw.post("/v1/chat/completions", json=params)
    error = error_of(response)
    assert (response.status_code, error["code"], error["param"]) == (400, "invalid_parameter", param)
    assert error["message"] == str(from_model.value)
    assert from_model.value.param == param


def _model_tool(name: str) -> Any:
    import pydantic

    class Function(pydantic.BaseModel):
        name: str

    class Tool(pydantic.BaseModel):
        type: str = "function"
        function: Function

    return Tool(function=Function(name=name))


def _model_call(**fields: Any) -> MessageToolCall:
    return MessageToolCall.model_validate({**CALL, **fields})


BAD_WITH_MODELS: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("tool-model-bad-name", lambda: {"tools": [_model_tool("get weather")]}, "tools[0].function.name"),
    ("choice-model-names-no-tool",
     lambda: {"tools": [WEATHER], "tool_choice": _model_tool("get_time")}, "tool_choice"),
    ("models-call-with-empty-id",
     lambda: {"messages": [UserMessage(content="Hi"), AssistantMessage(tool_calls=[_model_call(id="")]),
                           ToolMessage(tool_call_id="", content="21")]}, "messages[1].tool_calls[0].id"),
    ("models-result-without-call",
     lambda: {"messages": [UserMessage(content="Hi"), ToolMessage(tool_call_id="c1", content="21")]},
     "messages[1].tool_call_id"),
    ("models-call-answered-late",
     lambda: {"messages": [UserMessage(content="Hi"), AssistantMessage(tool_calls=[_model_call()]),
                           UserMessage(content="and?"), ToolMessage(tool_call_id="c1", content="21")]},
     "messages[1].tool_calls"),
    ("answer-message-left-unanswered",
     lambda: {"messages": [ASKED, ChatCompletionMessage(tool_calls=[_model_call()]), ASKED]}, "messages[1].tool_calls"),
    ("model-call-in-a-dict-of-another-kind-left-unanswered",
     lambda: {"messages": [ASKED, {**CALLED, "tool_calls": [_model_call(type="custom")]}, ASKED]},
     "messages[1].tool_calls"),
    ("assistant-model-then-a-dict", lambda: {"messages": [ASKED, AssistantMessage(tool_calls=[_model_call()]), ASKED]},
     "messages[1].tool_calls"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "param"), [case[1:] for case in BAD_WITH_MODELS], ids=[case[0] for case in BAD_WITH_MODELS]
)
def test_tool_use_given_as_models_is_refused_before_sending_too(
    make_client: ClientFactory, httpx_mock: Any, change: Callable[[], dict[str, Any]], param: str
) -> None:
    params = {"model": MODEL, "messages": [ASKED], **change()}
    with pytest.raises(deployai.InvalidParameterError) as from_create:
        make_client().chat.completions.create(**params)
    assert from_create.value.param == param
    assert httpx_mock.get_requests() == []
    with pytest.raises(deployai.InvalidParameterError) as from_model:
        ChatCompletionRequest(**params)
    assert str(from_model.value) == str(from_create.value)


def test_tool_use_the_api_takes_is_sent(make_client: ClientFactory, httpx_mock: Any) -> None:
    httpx_mock.add_response(json=completion_json(), is_reusable=True)
    second = {**CALL, "id": "c2"}
    good: list[dict[str, Any]] = [
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tools": [WEATHER, _model_tool("get_time")], "tool_choice": _model_tool("get_time")},
        {"tool_choice": "none"},
        {"tools": [WEATHER], "messages": [ASKED, CALLED]},  # the last message's calls wait for their results
        {"tools": [WEATHER], "messages": [ASKED, CALLED, ANSWERED, {"role": "assistant", "content": "21"}, ASKED]},
        # Parallel calls, answered in any order.
        {"messages": [ASKED, {**CALLED, "tool_calls": [CALL, second]}, {**ANSWERED, "tool_call_id": "c2"}, ANSWERED]},
        {"messages": [UserMessage(content="Hi"), AssistantMessage(tool_calls=[_model_call()]),
                      ToolMessage(tool_call_id="c1", content="21"), UserMessage(content="Thanks")]},
        {"messages": [ASKED, ChatCompletionMessage(tool_calls=[_model_call()]), ANSWERED]},
        {"messages": [ASKED, {**CALLED, "tool_calls": (_model_call(),)}, ANSWERED]},
        # Choices of other kinds are the server's to judge (OpenAI's `allowed_tools`), and so are a
        # null description and parameters.
        {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools",
                                             "allowed_tools": {"mode": "auto", "tools": [WEATHER]}}},
        function(name="f", description=None, parameters=None),
    ]  # fmt: skip
    client = make_client()
    for change in good:
        client.chat.completions.create(**{"model": MODEL, "messages": [ASKED], **change})
    assert len(httpx_mock.get_requests()) == len(good)
