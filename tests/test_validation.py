"""Bad input is refused with a typed error naming the parameter before any byte is sent."""

from __future__ import annotations

import copy
import gc
import json
import math
import pickle
import re
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic.warnings import PydanticDeprecatedSince20
from pytest_httpx import HTTPXMock

import deployai
from deployai._request import (
    _bulk_writer,
    _check_tool_turns,
    _kept_slot,
    _only_models,
    check_chat_params,
    check_message,
    encode_chat_body,
    encode_json,
)
from deployai.types import (
    AssistantMessage,
    ChatCompletionMessage,
    FunctionCall,
    MessageToolCall,
    SystemMessage,
    TextContentPart,
    ToolMessage,
    UserMessage,
)
from tests.conftest import ClientFactory, completion_json, user


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("a value whose own repr fails")


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("temperature", {"temperature": 2.5}, "0 to 2"),
    ("temperature", {"temperature": -0.1}, "0 to 2"),
    ("temperature", {"temperature": float("nan")}, "0 to 2"),
    ("temperature", {"temperature": "0.7"}, "0 to 2"),
    ("temperature", {"temperature": True}, "0 to 2"),
    ("top_p", {"top_p": 1.5}, "0 to 1"),
    ("max_tokens", {"max_tokens": 0}, "from 1 to 2147483647"),
    ("max_tokens", {"max_tokens": 10.5}, "from 1 to 2147483647"),
    ("max_tokens", {"max_tokens": 10**30}, "from 1 to 2147483647"),  # sent, for the server to refuse
    ("n", {"n": 0}, "1 to 128"),
    ("presence_penalty", {"presence_penalty": 3}, "-2 to 2"),
    ("frequency_penalty", {"frequency_penalty": -2.5}, "-2 to 2"),
    ("top_logprobs", {"top_logprobs": 21}, "0 to 20"),
    ("top_logprobs", {"top_logprobs": 3}, "only with logprobs=True"),  # the API's 400, after a round trip
    ("top_logprobs", {"top_logprobs": 3, "logprobs": False}, "only with logprobs=True"),
    ("parallel_tool_calls", {"parallel_tool_calls": "yes"}, "True or False"),
    ("store", {"store": 1}, "True or False"),
    ("reasoning_effort", {"reasoning_effort": 2}, "'low', 'medium' or 'high'"),
    ("service_tier", {"service_tier": 3}, "'auto' or 'default'"),
    ("logit_bias", {"logit_bias": {"50256": -101}}, "-100 to 100"),
    ("logit_bias", {"logit_bias": [50256]}, "-100 to 100"),
    ("logit_bias", {"logit_bias": {50256: -100, "50256": 100}}, "one bias per token id"),  # a JSON key twice
    # No token id: the API's 400 (and `10**5000` a raw ValueError from `str()`). Strings are the server's.
    ("logit_bias", {"logit_bias": {10**5000: 5}}, "token ids from 0 to 2147483647 (or text)"),
    ("logit_bias", {"logit_bias": {-1: 5}}, "token ids from 0 to 2147483647 (or text)"),
    ("logit_bias", {"logit_bias": {"-1": 5}}, "token ids from 0 to 2147483647 (or text)"),  # the same JSON
    ("logit_bias", {"logit_bias": {"4294967296": 5}}, "token ids from 0 to 2147483647 (or text)"),
    ("messages", {"messages": deployai.NOT_GIVEN}, "non-empty list"),  # a raw KeyError
    (
        "messages[1].content",  # an answer that refused, sent back: the API's 400 as for the same dict
        {"messages": [*user(), ChatCompletionMessage(content=None, refusal="I can't."), *user()]},
        "an answer without text (a refusal) has none to send",
    ),
    ("metadata", {"metadata": {"team": 7}}, "strings to strings"),
    ("stop", {"stop": ["a", "b", "c", "d", "e"]}, "1 to 4"),
    ("stop", {"stop": 5}, "string"),
    ("stream", {"stream": "yes"}, "True or False"),
    ("user", {"user": 42}, "string"),
    ("tool_choice", {"tool_choice": "sometimes"}, "'auto'"),
    ("tools", {"tools": "search"}, "list"),
    ("stream_options", {"stream_options": {"include_usage": True}}, "stream=True"),
    ("model", {"model": "gpt-4o"}, "provider/model"),
    ("model", {"model": ""}, "provider/model"),
    ("model", {"model": "openai/"}, "provider/model"),
    ("model", {"model": 4}, "provider/model"),
    ("messages", {"messages": []}, "non-empty list"),
    ("messages", {"messages": "Hello!"}, "non-empty list"),
    ("messages[0].role", {"messages": [{"role": "robot", "content": "hi"}]}, "'user'"),
    ("messages[0].role", {"messages": [{"content": "hi"}]}, "'user'"),
    ("messages[1].content", {"messages": [*user(), {"role": "user", "content": 5}]}, "string"),
    ("messages[0].content", {"messages": [{"role": "user"}]}, "given"),
    ("messages[0].tool_call_id", {"messages": [{"role": "tool", "content": "42"}]}, "tool call"),
    ("messages[0]", {"messages": ["Hello!"]}, "dict"),
    ("messages[0].content[0]", {"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "content part"),
    (
        "messages[0].content[0].text",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "string",
    ),
    ("messages[0].tool_calls", {"messages": [{"role": "assistant", "tool_calls": [1, 2]}]}, "tool calls"),
    ("temperature", {"temperature": 10**5000}, "0 to 2"),  # too long for `repr`: Python refuses to write it
    ("user", {"user": _Unprintable()}, "string"),
]


def _call_id(call: tuple[str, dict[str, Any], str]) -> str:
    try:
        return f"{call[0]}={call[1]}"
    except Exception:
        return f"{call[0]}=<unprintable>"


@pytest.mark.parametrize(("param", "change", "allowed"), BAD_CALLS, ids=list(map(_call_id, BAD_CALLS)))
def test_bad_parameter_is_refused_before_sending(
    make_client: ClientFactory, httpx_mock: HTTPXMock, param: str, change: dict[str, Any], allowed: str
) -> None:
    arguments: dict[str, Any] = {"model": "openai/gpt-4o", "messages": user(), **change}
    with pytest.raises(deployai.InvalidParameterError) as info:
        make_client().chat.completions.create(**arguments)
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, deployai.DeployAIError)
    assert error.param == param
    assert param in str(error)
    assert allowed in str(error)
    assert httpx_mock.get_requests() == []


def test_the_message_names_the_value_given(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(deployai.InvalidParameterError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), temperature=3.5)
    assert str(info.value) == "temperature must be a number from 0 to 2 (inclusive); got 3.5"


def test_unknown_keyword_is_a_type_error_with_a_suggestion(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(TypeError, match="'temprature' \\(did you mean 'temperature'\\?\\)"):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), temprature=1)


def test_a_client_option_given_to_a_call_points_to_with_options(make_client: ClientFactory) -> None:
    # `max_retries` is close to `max_tokens`: a hint to that would trade a retry count for a token cap.
    with pytest.raises(TypeError, match=r"'max_retries' \(an option of the client") as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), max_retries=0)
    assert "client.with_options(max_retries=...)" in str(info.value)
    assert "max_tokens" not in str(info.value)


def test_missing_required_keyword_is_a_type_error(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(TypeError, match="'model'"):
        make_client().chat.completions.create(messages=user())


@pytest.mark.parametrize(
    "edge",
    [{"temperature": 0}, {"temperature": 2}, {"top_p": 0}, {"top_p": 1}, {"max_tokens": 1}, {"stop": "\n"}],
    ids=str,
)
def test_range_edges_are_accepted(make_client: ClientFactory, httpx_mock: HTTPXMock, edge: dict[str, Any]) -> None:
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), **edge)
    assert json.loads(httpx_mock.get_requests()[0].content).items() >= edge.items()


def test_top_logprobs_with_logprobs_set_in_extra_body_is_sent(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(
        model="openai/gpt-4o", messages=user(), top_logprobs=3, extra_body={"logprobs": True}
    )
    sent = json.loads(httpx_mock.get_requests()[0].content)
    assert (sent["top_logprobs"], sent["logprobs"]) == (3, True)


def test_omitted_parameters_are_not_sent_and_none_is_sent_as_null(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=completion_json())
    httpx_mock.add_response(json=completion_json())
    client = make_client()
    client.chat.completions.create(model="openai/gpt-4o", messages=user(), temperature=deployai.NOT_GIVEN)
    client.chat.completions.create(model="openai/gpt-4o", messages=user(), temperature=None)
    first, second = (json.loads(r.content) for r in httpx_mock.get_requests())
    assert first == {"model": "openai/gpt-4o", "messages": user()}
    assert second == {"model": "openai/gpt-4o", "messages": user(), "temperature": None}


def test_every_documented_parameter_is_passed_on(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    arguments: dict[str, Any] = {
        "temperature": 0.7,
        "max_tokens": 1000,
        "top_p": 0.9,
        "stop": ["END"],
        "n": 1,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "user": "u-1",
        "response_format": {"type": "json_object"},
        "tools": tools,
        "tool_choice": "auto",
        "logprobs": True,
        "top_logprobs": 3,
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "logit_bias": {"50256": -100},
        "metadata": {"team": "search"},
        "store": False,
        "service_tier": "auto",
    }
    make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), **arguments)
    sent = json.loads(httpx_mock.get_requests()[0].content)
    assert sent == {"model": "openai/gpt-4o", "messages": user(), **arguments}


@pytest.mark.parametrize(
    ("make", "as_dict"),
    [
        (lambda: AssistantMessage(), {"role": "assistant"}),
        (lambda: AssistantMessage(tool_calls=[]), {"role": "assistant", "tool_calls": []}),
        (lambda: UserMessage(content=[]), {"role": "user", "content": []}),
        (lambda: SystemMessage(content=[]), {"role": "system", "content": []}),
        (lambda: ToolMessage(content=[], tool_call_id="c"), {"role": "tool", "content": [], "tool_call_id": "c"}),
    ],
)
def test_a_message_model_is_refused_where_the_same_dict_is(
    make: Callable[[], Any], as_dict: dict[str, Any], make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # "Valid by construction" was true only of the fields' types: these went out as models.
    client = make_client()
    with pytest.raises(deployai.InvalidParameterError):
        client.chat.completions.create(model="openai/gpt-4o", messages=[as_dict])
    with pytest.raises(pydantic.ValidationError):
        make()
    assert httpx_mock.get_requests() == []


def test_stop_given_as_a_tuple_is_sent_as_a_list(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), stop=("END", "STOP"))
    assert json.loads(httpx_mock.get_requests()[0].content)["stop"] == ["END", "STOP"]


def test_message_models_and_content_parts_are_sent_as_json(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    call = MessageToolCall(id="call_1", function=FunctionCall(name="add", arguments='{"a": 1}'))
    messages: list[Any] = [
        SystemMessage(content="Be brief."),
        UserMessage(content=[TextContentPart(text="What is 1+1?")]),
        AssistantMessage(tool_calls=[call]),
        ToolMessage(content="2", tool_call_id="call_1"),
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
    ]
    make_client().chat.completions.create(model="openai/gpt-4o", messages=messages)
    sent = json.loads(httpx_mock.get_requests()[0].content)["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is 1+1?"}]},
        {
            "role": "assistant",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "content": "2", "tool_call_id": "call_1"},
        messages[4],
    ]


def test_parts_and_tool_calls_as_tuples_and_an_answers_message_are_sent_as_lists_would_be(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # What the types take, the call takes: a tuple of parts, a developer message model, and the
    # message of an earlier answer appended as it is (the openai habit).
    httpx_mock.add_response(json=completion_json(), is_reusable=True)
    client = make_client()
    answer = client.chat.completions.create(model="openai/gpt-4o", messages=user()).choices[0].message
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages: list[Any] = [
        SystemMessage(role="developer", content="Be brief."),
        {"role": "user", "content": (TextContentPart(text="a"), {"type": "text", "text": "b"})},
        answer,
        {"role": "assistant", "tool_calls": (call,)},
    ]
    client.chat.completions.create(model="openai/gpt-4o", messages=messages)
    sent = json.loads(httpx_mock.get_requests()[1].content)["messages"]
    assert sent == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": answer.content},
        {"role": "assistant", "tool_calls": [call]},
    ]


def test_assistant_message_with_tool_calls_needs_no_content(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages: list[Any] = [
        *user(),
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "content": "ok", "tool_call_id": "c1"},
    ]
    make_client().chat.completions.create(model="openai/gpt-4o", messages=messages)
    assert len(httpx_mock.get_requests()) == 1


class _Note(pydantic.BaseModel):
    """A model of the user's own that is no message."""

    text: str = "remember this"


class _OwnMessage(pydantic.BaseModel):
    """A model of the user's own that is one."""

    role: str = "user"
    content: str = "Hi"


@pytest.mark.parametrize(
    ("message", "where"),
    [(_Note(), "messages[0].role"), ({"role": "user", "content": [_Note()]}, "messages[0].content[0]")],
    ids=["as a message", "as a content part"],
)
def test_a_model_of_another_kind_is_checked_as_the_dict_it_is_sent_as(
    make_client: ClientFactory, httpx_mock: HTTPXMock, message: Any, where: str
) -> None:
    # It was let through as if it were a message model, and sent with no role: {"text": ...}.
    with pytest.raises(deployai.InvalidParameterError, match=re.escape(where)):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=[message])
    assert httpx_mock.get_requests() == []


class _Unsendable(pydantic.BaseModel):
    """A model of the user's own with a field that cannot be written as JSON."""

    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    role: str = "user"
    content: object = object()


class _UnsendableTool(pydantic.BaseModel):
    """A tool of the user's own with a field that cannot be written as JSON."""

    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    type: str = "function"
    function: object = object()


@pytest.mark.parametrize(
    ("options", "where"),
    [({"messages": [_Unsendable()]}, "messages[0]"), ({"messages": user(), "tools": [_UnsendableTool()]}, "tools[0]")],
    ids=["a message", "a tool"],
)
def test_a_users_own_model_that_cannot_be_sent_is_refused_as_an_invalid_parameter(
    make_client: ClientFactory, httpx_mock: HTTPXMock, options: dict[str, Any], where: str
) -> None:
    # pydantic's own serialization error came out of `create()`, past `except DeployAIError`.
    with pytest.raises(deployai.InvalidParameterError, match=re.escape(where) + " must be JSON-serializable"):
        make_client().chat.completions.create(model="openai/gpt-4o", **options)
    assert httpx_mock.get_requests() == []


def test_a_users_own_message_model_and_a_read_only_mapping_are_sent_as_their_dicts(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A read-only mapping passed the checks, then was refused as "body must be JSON-serializable".
    httpx_mock.add_response(json=completion_json())
    messages = [_OwnMessage(), types.MappingProxyType({"role": "user", "content": "Hello"})]
    make_client().chat.completions.create(model="openai/gpt-4o", messages=messages)
    sent = json.loads(httpx_mock.get_requests()[0].content)["messages"]
    assert sent == [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello"}]


def test_messages_may_be_any_iterable(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(model="openai/gpt-4o", messages=(m for m in user()))
    assert json.loads(httpx_mock.get_requests()[0].content)["messages"] == user()


def test_unserializable_extra_body_is_refused(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="JSON"):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), extra_body={"x": object()})
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize("timeout", [-1, 2_147_484, 4_294_967.396, 1e10])
def test_bad_per_call_timeout_is_refused(make_client: ClientFactory, httpx_mock: HTTPXMock, timeout: float) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="timeout"):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), timeout=timeout)
    with pytest.raises(deployai.InvalidParameterError, match=r"up to 2147483 \(about 24\.8 days\)"):
        make_client(timeout=timeout)
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    ("timeout", "param"),
    [
        (httpx.Timeout(-1), "timeout.connect"),
        (httpx.Timeout(10.0, read=math.nan), "timeout.read"),
        (httpx.Timeout(10.0, pool=-1), "timeout.pool"),
        (httpx.Timeout(10.0, write=math.inf), "timeout.write"),
        (httpx.Timeout(10.0, read=4_294_967.396), "timeout.read"),  # poll()'s wait wrapped round to 0.1 s
    ],
)
def test_an_httpx_timeout_with_a_bad_phase_is_refused(
    make_client: ClientFactory, httpx_mock: HTTPXMock, timeout: httpx.Timeout, param: str
) -> None:
    # httpx takes them, and fails only once sending (a negative one reads as a connection error).
    with pytest.raises(deployai.InvalidParameterError, match=rf"^{param} must be a .*number of seconds"):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), timeout=timeout)
    with pytest.raises(deployai.InvalidParameterError, match=rf"^{param} must be"):
        make_client(timeout=timeout)
    assert httpx_mock.get_requests() == []


def test_a_pool_timeout_of_zero_is_taken(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    # httpx's meaning: fail at once when no connection is free, rather than wait for one.
    httpx_mock.add_response(json={"object": "list", "data": []})
    assert make_client(timeout=httpx.Timeout(10.0, pool=0)).models.list().data == []


def test_models_list_refuses_unknown_options(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(TypeError, match=r"list\(\) got unexpected keyword argument\(s\): 'extra_body'"):
        make_client().models.list(extra_body={"x": 1})


@pytest.mark.parametrize("value", [math.nan, math.inf, [1.0, -math.inf]], ids=["nan", "inf", "in a list"])
def test_extra_query_refuses_numbers_that_are_no_numbers(
    make_client: ClientFactory, httpx_mock: HTTPXMock, value: Any
) -> None:
    # Sent as `a=nan`, though NaN is refused in the JSON body.
    with pytest.raises(deployai.InvalidParameterError, match=r"extra_query\['a'\] must be a str, int, finite float"):
        make_client().models.list(extra_query={"a": value})
    assert httpx_mock.get_requests() == []


def test_extra_query_must_be_a_mapping(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="extra_query"):
        make_client().models.list(extra_query="debug=1")


@pytest.mark.parametrize(
    "value",
    [1, None, "caf\u00e9", "a\nb", " tok-SECRET", "tok-SECRET ", "\t"],
    ids=["int", "none", "non-ascii", "newline", "a space first", "a space last", "a tab alone"],
)
def test_bad_extra_header_values_are_refused_before_sending(
    make_client: ClientFactory, httpx_mock: HTTPXMock, value: Any
) -> None:
    # A space or tab at either end got past, and h11 refused the value as it was sent: a
    # connection error that quoted it, secret and all.
    with pytest.raises(deployai.InvalidParameterError, match="extra_headers") as info:
        make_client().models.list(extra_headers={"X-Trace": value})
    assert httpx_mock.get_requests() == []
    assert "SECRET" not in f"{info.value} {info.value!r}"


def test_header_values_with_inner_spaces_and_empty_ones_are_sent_as_given(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"object": "list", "data": []})
    make_client().models.list(extra_headers={"X-Trace": "a b\tc", "X-Empty": ""})
    sent = httpx_mock.get_requests()[0].headers
    assert (sent["x-trace"], sent["x-empty"]) == ("a b\tc", "")


def test_max_completion_tokens_is_sent_and_checked_like_max_tokens(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    import json

    httpx_mock.add_response(json=completion_json())
    client = make_client()
    client.chat.completions.create(model="openai/o3-mini", messages=user(), max_completion_tokens=256)
    assert json.loads(httpx_mock.get_requests()[0].content)["max_completion_tokens"] == 256
    for bad in (0, -1, 2.5, True, "256", 2**31):
        with pytest.raises(deployai.InvalidParameterError, match="max_completion_tokens"):
            client.chat.completions.create(model="openai/o3-mini", messages=user(), max_completion_tokens=bad)
    assert len(httpx_mock.get_requests()) == 1


def test_max_completion_tokens_caps_the_emulators_reply() -> None:
    from deployai.testing import Emulator

    with Emulator().client() as client:
        completion = client.chat.completions.create(
            model="openai/o3-mini", messages=user("one two three four five"), max_completion_tokens=2
        )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


def test_a_model_alias_is_sent_as_given_while_plain_ids_are_still_checked(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    import json

    httpx_mock.add_response(json=completion_json())
    client = make_client()
    with pytest.raises(deployai.InvalidParameterError, match="provider/model"):
        client.chat.completions.create(model="fast", messages=user())
    client.chat.completions.create(model=deployai.ModelAlias("fast"), messages=user())
    assert json.loads(httpx_mock.get_requests()[0].content)["model"] == "fast"
    with pytest.raises(deployai.InvalidParameterError, match="model"):
        client.chat.completions.create(model=deployai.ModelAlias("  "), messages=user())


_ANY_VALUE = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.integers(),
    st.lists(st.dictionaries(st.sampled_from(["type", "text"]), st.text(max_size=3)), max_size=2),
)


@settings(deadline=None)  # checks take microseconds; a cold first example must not fail on time
@given(
    st.dictionaries(
        st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "name"]),
        st.one_of(st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"]), _ANY_VALUE),
    )
)
def test_the_fast_path_for_plain_messages_gives_check_messages_verdict(message: dict[str, Any]) -> None:
    """Long conversations skip `check_message` for plain text dicts: with exactly the same verdicts.

    A message `check_message` takes then meets the tool-turn rule (read over every message here).
    """
    expected: str | None = None
    try:
        check_message(0, message)
        _check_tool_turns([message], range(1))
    except deployai.InvalidParameterError as exc:
        expected = str(exc)
    if expected is None:
        check_chat_params({"model": "openai/gpt-4o", "messages": [message]})
    else:
        with pytest.raises(deployai.InvalidParameterError) as info:
            check_chat_params({"model": "openai/gpt-4o", "messages": [message]})
        assert str(info.value) == expected


def _turn_message(kind: str, as_model: bool) -> Any:
    """A message of a tool conversation, by kind, as a dict or as a message model."""
    calls = {"call": ["c1"], "calls": ["c1", "c2"]}.get(kind, [])
    made = [{"id": c, "type": "function", "function": {"name": "f", "arguments": "{}"}} for c in calls]
    kinds: dict[str, dict[str, Any]] = {
        "ask": {"role": "user", "content": "q"},
        "say": {"role": "assistant", "content": "a"},
        "call": {"role": "assistant", "tool_calls": made},
        "calls": {"role": "assistant", "tool_calls": made},
        "result1": {"role": "tool", "tool_call_id": "c1", "content": "r"},
        "result2": {"role": "tool", "tool_call_id": "c2", "content": "r"},
    }
    fields = kinds[kind]
    if not as_model:
        return fields
    return {"user": UserMessage, "assistant": AssistantMessage, "tool": ToolMessage}[fields["role"]](**fields)


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ask", "say", "call", "calls", "result1", "result2"]), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_the_tool_turn_rule_reads_only_tool_turns_with_a_full_readings_verdict(drawn: list[tuple[str, bool]]) -> None:
    """The rule reads only tool results and messages making calls: its verdict is a read of every message's.

    Except for a conversation of message models alone without a `ToolMessage`, left to the server.
    """
    messages = [_turn_message(kind, as_model) for kind, as_model in drawn]
    expected: str | None = None
    if not (all(as_model for _, as_model in drawn) and not any(k.startswith("result") for k, _ in drawn)):
        try:
            _check_tool_turns(messages, range(len(messages)))
        except deployai.InvalidParameterError as exc:
            expected = str(exc)
    if expected is None:
        check_chat_params({"model": "openai/gpt-4o", "messages": messages})
    else:
        with pytest.raises(deployai.InvalidParameterError) as info:
            check_chat_params({"model": "openai/gpt-4o", "messages": messages})
        assert str(info.value) == expected


_MESSAGE_MODELS: dict[str, Any] = {
    "system": SystemMessage,
    "user": UserMessage,
    "assistant": AssistantMessage,
    "tool": ToolMessage,
}


def _text_message(draw: st.DrawFn, spoiler: bool = False) -> Any:
    """A text message as a dict or a model; a `spoiler` also holds something that is not a string."""
    role = draw(st.sampled_from(sorted(_MESSAGE_MODELS)))
    fields: dict[str, Any] = {"content": draw(st.text())}  # any text: escapes, non-ASCII, lone surrogates
    if role == "tool":
        fields["tool_call_id"] = "call_1"
    if role != "tool" and draw(st.booleans()):
        fields["name"] = draw(st.text(max_size=3))
    if not spoiler:
        return {"role": role, **fields} if draw(st.booleans()) else _MESSAGE_MODELS[role](**fields)
    # Floats that pydantic-core writes differently from `json` (or NaN, which `json` refuses); keys
    # that `json` writes its own way or refuses.
    odd = draw(st.sampled_from([1e-07, 1e16, float("nan"), None, 3]) | st.floats())
    where = draw(st.sampled_from(["dict value", "dict key", "model extra", "model field", "model copy"]))
    if where == "dict value":
        return {"role": role, **fields, "weight": odd}
    if where == "dict key":
        return {"role": role, **fields, draw(st.sampled_from([1, None, 1.5, float("nan"), ("a", "b"), True])): "v"}
    if where == "model extra":
        return _MESSAGE_MODELS[role](**fields, weight=odd)  # kept: the models allow extra fields
    if where == "model copy":  # another model's field, or none, given to the deprecated `copy(update=...)`
        stray = draw(st.sampled_from(["foo", "role", "name", "tool_calls", "tool_call_id"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PydanticDeprecatedSince20)
            return _MESSAGE_MODELS[role](**fields).copy(update={stray: draw(st.sampled_from(["a string", odd]))})
    return _MESSAGE_MODELS[role].model_construct(**{**fields, "name": odd})  # past validation


@pytest.mark.parametrize("count", [2, 20])  # alone, and among enough messages to be encoded in bulk
@pytest.mark.parametrize("as_model", [False, True])
def test_a_lone_surrogate_is_refused_naming_where_it_is(
    count: int, as_model: bool, make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    messages: list[Any] = [{"role": "user", "content": "fine"} for _ in range(count)]
    bad = "half an emoji \ud83d"
    messages[1] = UserMessage(content=bad) if as_model else {"role": "user", "content": bad}
    with pytest.raises(deployai.InvalidParameterError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=messages)
    assert (info.value.param, info.value.value) == ("messages[1].content", bad)
    assert httpx_mock.get_requests() == []
    with pytest.raises(deployai.InvalidParameterError) as info:  # in a key of its own
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), extra_body={bad: 1})
    assert (info.value.param, info.value.value) == ("body", bad)


def _same_bytes_or_error_from(make: Callable[[], dict[str, Any]]) -> None:
    """As `_same_bytes_or_error`, each encoder given a body of its own (for bodies read as they are written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydantic's, dumping a field built past validation
        try:
            expected: bytes | str = encode_json(make())
        except deployai.InvalidParameterError as exc:
            expected = str(exc)
        for told in (False, True):  # as `build_chat_request` calls it, told what `check_chat_params` found
            body = make()
            messages = body.get("messages")
            only_models = _only_models(messages) if told and isinstance(messages, list) and messages else None
            try:
                got: bytes | str = encode_chat_body(body, only_models)
            except deployai.InvalidParameterError as exc:
                got = str(exc)
            assert got == expected


def _same_bytes_or_error(body: dict[str, Any]) -> None:
    _same_bytes_or_error_from(lambda: body)


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.composite(_text_message)(), min_size=16, max_size=24),
    st.dictionaries(st.text(max_size=4), _ANY_VALUE | st.floats()),
)
def test_long_text_conversations_encoded_in_bulk_are_byte_for_byte_what_json_writes(
    messages: list[Any], extra: dict[str, Any]
) -> None:
    """Requests are identical whichever encoder wrote them, and fail alike (a lone surrogate, a NaN)."""
    assert _bulk_writer(messages) is not None  # encoded in bulk
    _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages, **extra})


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.composite(_text_message)(), min_size=16, max_size=24),
    st.integers(0, 24),
    st.composite(_text_message)(spoiler=True),
)
def test_a_conversation_with_anything_but_strings_is_encoded_as_json_writes_it(
    messages: list[Any], where: int, spoiler: Any
) -> None:
    messages.insert(where, spoiler)
    _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})


def _models_only(draw: st.DrawFn, spoiler: bool = False) -> Any:
    message = draw(st.composite(_text_message)(spoiler=spoiler))
    return message if not isinstance(message, dict) else UserMessage(content=str(message.get("content", "")))


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.composite(_models_only)(), min_size=16, max_size=24),
    st.lists(st.composite(_models_only)(), min_size=1, max_size=3),
    st.integers(0, 24),
    st.none() | st.composite(_models_only)(spoiler=True),
)
def test_a_conversation_of_models_sent_again_and_again_is_encoded_as_json_writes_it_every_time(
    messages: list[Any], new_turns: list[Any], where: int, spoiler: Any
) -> None:
    """Each send of a growing conversation: a first time (marked), again (kept), with new turns (mixed)."""
    if spoiler is not None:
        messages.insert(where, spoiler)
    for _ in range(3):
        _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})
    for turn in new_turns:
        messages.append(turn)
        _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})


def _dict_message(draw: st.DrawFn, spoiler: bool = False) -> dict[Any, Any]:
    """A text message as a dict; a `spoiler` also holds a key or value that is no string (or a lone surrogate)."""
    message = draw(st.composite(_text_message)())
    fields = message if isinstance(message, dict) else message.model_dump(exclude_none=True)
    if spoiler:
        odd = st.sampled_from([None, 1, 1.5, 1e-07, 1e16, float("nan"), True, ("a", "b"), ["x"], {"a": "b"}])
        key = draw(
            st.sampled_from(["weight", "content", "name", "\udc80"])
            | odd.filter(lambda key: not isinstance(key, (list, dict)))
        )
        fields = {**fields, key: draw(odd | st.text(max_size=3)) if isinstance(key, str) else draw(st.text(max_size=3))}
    return fields


@settings(deadline=None, max_examples=80)
@given(
    st.lists(st.composite(_dict_message)(), min_size=16, max_size=24),
    st.integers(0, 24),
    st.none() | st.composite(_dict_message)(spoiler=True),
)
def test_a_conversation_of_dicts_alone_is_encoded_as_json_writes_it(
    messages: list[Any], where: int, spoiler: Any
) -> None:
    """Dicts alone, with a None key, a lone surrogate in a key, a float or a NaN among them."""
    if spoiler is None:
        assert _bulk_writer(messages) is not None  # encoded in bulk
    else:
        messages.insert(where, spoiler)
    _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})


@pytest.mark.parametrize(
    ("role", "stray"),
    [
        (role, stray)
        for role, model in sorted(_MESSAGE_MODELS.items())
        for stray in ("foo", "name", "tool_calls", "tool_call_id")
        if stray not in model.model_fields
    ],
)
def test_a_key_given_to_the_deprecated_copy_is_sent_as_the_copy_dumps_it(role: str, stray: str) -> None:
    """Another model's field or none: an extra field of the copy, as with `model_copy`, and sent."""
    fields = {"content": "hi", "tool_call_id": "call_1"} if role == "tool" else {"content": "hi"}
    with pytest.warns(PydanticDeprecatedSince20):
        odd = _MESSAGE_MODELS[role](**fields).copy(update={stray: "x"})
    assert odd.model_dump(exclude_none=True)[stray] == "x"
    messages = [*(UserMessage(content=f"turn {n}") for n in range(15)), odd]
    for _ in range(3):  # a first send, a second (each model's JSON kept), a third (the kept JSON)
        _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})
    assert json.loads(encode_chat_body({"model": "openai/gpt-4o", "messages": messages}))["messages"][-1][stray] == "x"
    with pytest.warns(PydanticDeprecatedSince20):
        messages.append(_MESSAGE_MODELS[role](**fields).copy(update={stray: "x"}, exclude={"content"}))
    _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})  # a new turn, encoded on its own


@pytest.mark.parametrize("given", [{}, {"exclude": {"name"}}, {"include": {"role", "content"}}])
def test_the_deprecated_copy_of_a_message_model_warns_at_the_callers_line_and_sets_fields_as_pydantics(
    given: dict[str, Any],
) -> None:
    original = UserMessage(content="hi")
    with pytest.warns(PydanticDeprecatedSince20) as caught:
        copied = original.copy(**given, update={"name": "n", "content": "yo"})
    assert __file__ in {warning.filename for warning in caught}  # so that the default filters show it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticDeprecatedSince20)
        stock = pydantic.BaseModel.copy(original, **given, update={"name": "n", "content": "yo"})
    assert copied.__dict__ == stock.__dict__
    assert copied.model_fields_set == stock.model_fields_set
    assert copied.model_dump() == stock.model_dump()


@pytest.mark.parametrize("kind", ["model_construct", "model_copy", "dict"])
def test_an_iterator_put_in_a_message_past_validation_is_read_once_as_json_reads_it(kind: str) -> None:
    """Not used up by the bulk path before the `json` path, which would then write what is left of it."""
    reads: list[list[int]] = []

    def body() -> dict[str, Any]:
        read = [0]
        reads.append(read)

        def parts() -> Iterator[str]:
            for n in range(3):
                read[0] += 1
                yield f"part {n}"

        content: Any = parts()
        if kind == "model_construct":
            odd: Any = UserMessage.model_construct(content=content)
        elif kind == "model_copy":
            odd = UserMessage(content="hi").model_copy(update={"content": content})
        else:
            odd = {"role": "user", "content": "hi", "parts": content}
        turns = [
            {"role": "user", "content": f"turn {n}"} if kind == "dict" else UserMessage(content=f"turn {n}")
            for n in range(15)
        ]
        return {"model": "openai/gpt-4o", "messages": [*turns, odd]}

    _same_bytes_or_error_from(body)
    assert reads[0] == reads[1]  # `json` alone, then the SDK: as much read by each


def test_an_extra_field_added_through_model_extra_after_the_json_was_kept_is_sent() -> None:
    messages = [UserMessage(content=f"turn {n}") for n in range(16)]
    for _ in range(2):  # the second send keeps each message's JSON
        _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})
    assert messages[-1].model_extra is not None
    messages[-1].model_extra["metadata"] = "late"  # public, and the model is frozen only to attributes
    _same_bytes_or_error({"model": "openai/gpt-4o", "messages": messages})


def test_the_kept_json_of_a_message_is_no_part_of_its_equality_copies_or_pickles() -> None:
    sent = [UserMessage(content=f"turn {i}") for i in range(20)]
    for _ in range(2):
        encode_chat_body({"model": "openai/gpt-4o", "messages": sent})
    get_kept, _ = _kept_slot()
    assert get_kept(sent[0]) == b'{"role":"user","content":"turn 0"}'  # kept, so the checks below mean something
    fresh = UserMessage(content="turn 0")
    assert sent[0] == fresh
    assert sent[0].model_dump() == fresh.model_dump() == {"role": "user", "content": "turn 0", "name": None}
    for copied in (pickle.loads(pickle.dumps(sent[0])), copy.copy(sent[0]), sent[0].model_copy()):
        assert copied == fresh
        assert getattr(copied, "_deployai_json", None) is None


def test_a_model_that_dumps_itself_its_own_way_is_sent_as_it_dumps() -> None:
    class Part(pydantic.BaseModel):
        type: str = "text"
        text: str = "as stored"

        def model_dump(self, **options: Any) -> dict[str, Any]:
            return {"type": "text", "text": "as dumped"}

    assert encode_json({"content": [Part()]}) == b'{"content":[{"type":"text","text":"as dumped"}]}'


def test_message_model_classes_made_at_run_time_are_not_kept_alive() -> None:
    model = pydantic.create_model("Made", role=(str, "user"), content=(str, "hi"))
    check_chat_params({"model": "openai/gpt-4o", "messages": [model(), model()]})
    made = weakref.ref(model)
    del model
    gc.collect()
    assert made() is None


@pytest.mark.parametrize(
    "said", [{"function_call": {"name": "f", "arguments": "{}"}}, {"audio": {"id": "audio_abc"}}], ids=["call", "audio"]
)
def test_an_answer_without_content_that_says_something_else_is_sent_back_as_a_model_and_as_a_dict(
    make_client: ClientFactory, httpx_mock: Any, said: dict[str, Any]
) -> None:
    # A legacy function call, or audio referred to by its id, has no content: not a refusal.
    httpx_mock.add_response(json=completion_json(), is_reusable=True)
    answer = ChatCompletionMessage.model_validate({"role": "assistant", "content": None, **said})
    for message in (answer, answer.model_dump(exclude_none=True)):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=[*user(), message, *user()])
    assert len(httpx_mock.get_requests()) == 2


def test_logit_bias_text_is_sent_for_the_server_to_tokenize(make_client: ClientFactory, httpx_mock: Any) -> None:
    # llama.cpp's server takes the text of a token: it is no id the SDK could check.
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(model="openai/gpt-4o", messages=user(), logit_bias={"hello": 5, "50256": -1})
    assert json.loads(httpx_mock.get_requests()[0].content)["logit_bias"] == {"hello": 5, "50256": -1}
