"""Validating parameters and building requests: pure, shared by both clients and by the emulator."""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import numbers
import operator
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx
import pydantic_core
from pydantic import BaseModel

from ._config import ClientOptions, check_headers, check_total_timeout, kind_of, merge_headers, to_httpx_timeout
from ._constants import COMPLETION_CAP
from ._endpoint import Endpoint, PreparedRequest
from ._exceptions import InvalidParameterError
from ._sse import ThoughtText
from ._types import NOT_GIVEN, ModelAlias, NotGiven

if TYPE_CHECKING:
    from .types.chat import ChatCompletionMessage

MODEL_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._:+-][A-Za-z0-9._:+/-]*")
MESSAGE_ROLES: Final = ("system", "developer", "user", "assistant", "tool")
# Roles whose message needs nothing but its content (a string is always valid content). A tuple, not
# a set: a role can be any value, unhashable ones included.
_TEXT_ROLES: Final = ("user", "system", "developer")
TOOL_CHOICE_MODES: Final = ("none", "auto", "required")

CHAT_PARAMS: Final = frozenset(
    {
        "model",
        "messages",
        "stream",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "response_format",
        "tools",
        "tool_choice",
        "stream_options",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "reasoning_effort",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
    }
)
CALL_OPTIONS: Final = frozenset({"extra_headers", "extra_query", "extra_body", "timeout", "total_timeout"})
_KNOWN: Final = CHAT_PARAMS | CALL_OPTIONS
CHAT_ARGUMENTS: Final = _KNOWN  # every keyword `chat.completions.create` takes
_LIST_PARAMS: Final = ("messages", "tools", "stop")
_MOST_TOKENS: Final = 2**31 - 1
_GET_OPTIONS: Final = CALL_OPTIONS - {"extra_body"}


def _is_number(value: object) -> bool:
    # The exact types first: the ABC check is slow, and almost every value is a plain int or float.
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    if type(value) is int:
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number_in(name: str, value: object, low: float, high: float) -> None:
    if value is None:
        return
    if not _is_number(value) or not low <= value <= high:  # type: ignore[operator]
        raise InvalidParameterError(name, value, f"a number from {low:g} to {high:g} (inclusive)")


def _int_at_least(name: str, value: object, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if not _is_whole(value) or value < low or (high is not None and value > high):  # type: ignore[operator]
        allowed = f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"
        raise InvalidParameterError(name, value, allowed)


def _is_token_id(token: object) -> bool:
    """Whether `token` is a key `logit_bias` takes: a token id from 0 to 2**31 - 1, as an int or its digits, or text.

    Text that is no number is left to the server (llama.cpp's tokenizes it). JSON's keys are strings:
    `"-1"` is refused as `-1` is, and the emulator, which sees only strings, refuses both.
    """
    if type(token) is str:
        digits = token[1:] if token[:1] == "-" else token
        if not (digits.isascii() and digits.isdigit()):
            return True
        return token[:1] != "-" and len(digits) <= 10 and int(digits) < _TOKEN_IDS
    return isinstance(token, int) and not isinstance(token, bool) and 0 <= token < _TOKEN_IDS


_TOKEN_IDS: Final = 2**31
_RESPONSE_FORMAT: Final = 'a dict such as {"type": "json_schema", "json_schema": {"name": "answer", "schema": {...}}}'
_SCHEMA_TYPES: Final = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _check_response_format(response_format: object) -> None:
    """Refuse the mistaken shapes of `response_format`: no `type`, or a JSON Schema itself as it.

    A `type` the SDK does not know (a provider's own, such as `grammar`) and the fields of
    `json_schema` (Ollama's takes one without a name, Together's a flat `schema`) are the server's.
    """
    if not isinstance(response_format, Mapping):
        raise InvalidParameterError("response_format", response_format, _RESPONSE_FORMAT)
    kind = response_format.get("type")
    if not isinstance(kind, str) or kind in _SCHEMA_TYPES:  # a model's `model_json_schema()` passed as it is
        raise InvalidParameterError(
            "response_format.type", kind, f"'text', 'json_object' or 'json_schema': {_RESPONSE_FORMAT}"
        )


def _speaks_otherwise(message: Mapping[str, Any] | None) -> bool:
    """Whether an assistant message without content says something else: a legacy call, or audio (by its id)."""
    return message is not None and (message.get("function_call") is not None or message.get("audio") is not None)


def _given_in_body(name: str, extra_body: object) -> bool:
    """Whether `extra_body` sets `name` to true (it goes out in the body as if given by name)."""
    return isinstance(extra_body, Mapping) and extra_body.get(name) is True


def _of_type(name: str, value: object, kind: type | tuple[type, ...], allowed: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise InvalidParameterError(name, value, allowed)


def _check_content(name: str, content: object, *, optional: bool) -> None:
    if isinstance(content, str):
        return
    if content is None:
        if optional:
            return
        raise InvalidParameterError(name, content, "a string or a list of content parts")
    if isinstance(content, (list, tuple)):  # what JSON writes as an array
        if not content:
            raise InvalidParameterError(name, content, "a string or a non-empty list of content parts")
        for i, part in enumerate(content):
            if isinstance(part, BaseModel):
                part = _dumped(f"{name}[{i}]", part)  # checked as the dict it is sent as, any model's
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise InvalidParameterError(
                    f"{name}[{i}]", part, 'a content part such as {"type": "text", "text": ...}'
                )
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise InvalidParameterError(f"{name}[{i}].text", part.get("text"), "a string")
        return
    raise InvalidParameterError(name, content, "a string or a list of content parts")


def _dumped(name: str, value: object) -> Any:
    """`_as_sent`, for a check: a model that cannot be sent (`name`) is refused as the encoder would refuse it."""
    try:
        return _as_sent(value)
    except (TypeError, ValueError) as exc:  # pydantic's serialization error is a ValueError
        raise InvalidParameterError(name, type(value).__name__, f"JSON-serializable values ({exc})") from None


# The pydantic model classes met among messages, so that the next ones skip the ABC check (weakly
# held: classes made at run time can still go).
_model_types: weakref.WeakSet[type] = weakref.WeakSet()


def check_message(index: int, message: object) -> None:
    """Check one message of `messages` (a dict; the SDK's message models are valid by construction).

    Another pydantic model is checked as the dict it is sent as.
    """
    name = f"messages[{index}]"
    if isinstance(message, BaseModel):
        if isinstance(message, _valid_message_models()):
            if isinstance(message, _answer_message_type()):
                # Valid by construction but for this, and looked at each time (its class is not
                # remembered): an answer without text or calls (a refusal, or an empty answer).
                if message.content is None and not message.tool_calls and not _speaks_otherwise(message.model_extra):
                    raise InvalidParameterError(
                        f"{name}.content",
                        None,
                        "a string or a list of content parts: an answer without text (a refusal) has none to send",
                    )
                return
            _model_types.add(type(message))
            return
        message = _dumped(name, message)
    if not isinstance(message, Mapping):
        raise InvalidParameterError(
            name, message, 'a dict such as {"role": "user", "content": "Hello!"} or a message model'
        )
    role = message.get("role")
    if role not in MESSAGE_ROLES:
        raise InvalidParameterError(f"{name}.role", role, "one of " + ", ".join(repr(r) for r in MESSAGE_ROLES))
    if role == "assistant":
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and (
            not isinstance(tool_calls, (list, tuple))
            or not all(isinstance(c, (Mapping, BaseModel)) for c in tool_calls)
        ):
            raise InvalidParameterError(f"{name}.tool_calls", tool_calls, "a list of tool calls (dicts)")
        _check_content(
            f"{name}.content", message.get("content"), optional=bool(tool_calls) or _speaks_otherwise(message)
        )
        return
    if "content" not in message:
        raise InvalidParameterError(f"{name}.content", None, "given for a message with role " + repr(role))
    _check_content(f"{name}.content", message["content"], optional=False)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidParameterError(
            f"{name}.tool_call_id", message.get("tool_call_id"), "a string naming the tool call answered"
        )


_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _as_sent(value: Any) -> Any:
    """A pydantic model as the dict it is sent as; anything else as it is."""
    # The exact types first: `isinstance` against BaseModel (an ABC) costs more than the rest of a check.
    if type(value) is dict or type(value) is str or value is None or not isinstance(value, BaseModel):
        return value
    return _json_default(value)


def _is_mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _check_tools(tools: list[Any]) -> list[str]:
    """Refuse a tool that is no function with a valid name no other tool has; return the names, in order.

    Tools of other kinds (OpenAI's `custom`) are refused too: their calls carry no `function`, and
    the SDK's answer models could not read them, after the call was sent and paid for.
    """
    names: list[str] = []
    for i, tool in enumerate(tools):
        tool = _dumped(f"tools[{i}]", tool)
        if not _is_mapping(tool) or tool.get("type") != "function":
            raise InvalidParameterError(
                f"tools[{i}].type", tool.get("type") if _is_mapping(tool) else tool, "'function'"
            )
        function = _dumped(f"tools[{i}].function", tool.get("function"))
        if not _is_mapping(function):
            raise InvalidParameterError(f"tools[{i}].function", function, "a dict with the function's name")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidParameterError(f"tools[{i}].function.name", name, "1 to 64 letters, digits, '_' or '-'")
        if name in names:
            raise InvalidParameterError(f"tools[{i}].function.name", name, "a name no other tool has")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidParameterError(f"tools[{i}].function.description", function["description"], "a string")
        parameters = function.get("parameters")
        if parameters is not None and not _is_mapping(parameters):
            raise InvalidParameterError(f"tools[{i}].function.parameters", parameters, "a JSON Schema object (a dict)")
        names.append(name)
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    """Refuse a `tool_choice` other than 'none' without tools, or one naming a function not among `names`.

    A choice of another kind (OpenAI's `allowed_tools`) is the server's to judge.
    """
    choice = _dumped("tool_choice", choice)
    if choice is None or choice == "none":
        return
    if not names:  # one per tool: a tool that is no named function was refused already
        raise InvalidParameterError("tool_choice", choice, "given only with tools")
    if not _is_mapping(choice):
        return
    kind = choice.get("type")
    if not isinstance(kind, str):
        raise InvalidParameterError("tool_choice.type", kind, "'function' or another kind of choice the API takes")
    if kind == "function":
        function = _dumped("tool_choice.function", choice.get("function"))
        name = function.get("name") if _is_mapping(function) else None
        if name not in names:
            raise InvalidParameterError(
                "tool_choice", choice, f"{{'type': 'function', 'function': {{'name': one of {names}}}}}"
            )


@functools.cache
def _valid_message_models() -> tuple[type[BaseModel], ...]:
    """The models a message is valid as by construction: the SDK's messages, and an answer's message sent back."""
    from .types.chat import ChatCompletionMessage

    return (*_message_types(), ChatCompletionMessage)


@functools.cache
def _answer_message_type() -> type[ChatCompletionMessage]:
    """An answer's message (`ChatCompletionMessage`). Loaded at first use: the models import this module."""
    from .types.chat import ChatCompletionMessage

    return ChatCompletionMessage


@functools.cache
def _tool_message_type() -> type[BaseModel]:
    """The SDK's `ToolMessage`. Loaded at first use: the models import this module."""
    from .types.chat import ToolMessage

    return ToolMessage


@functools.cache
def _turn_kinds() -> frozenset[type[BaseModel]]:
    """The SDK's message models that may take part in a tool turn: `AssistantMessage` and `ToolMessage`."""
    from .types.chat import AssistantMessage, ToolMessage

    return frozenset((AssistantMessage, ToolMessage))


def _takes_tool_turn(message: Any) -> bool:
    """Whether a message (a dict or a model, already checked on its own) is a tool result or makes tool calls."""
    if type(message) is dict or not isinstance(message, BaseModel):
        role = message.get("role")
        return role == "tool" or (role == "assistant" and bool(message.get("tool_calls")))
    role = getattr(message, "role", None)
    return role == "tool" or (role == "assistant" and bool(getattr(message, "tool_calls", None)))


def _turn_fields(message: Any) -> Mapping[str, Any]:
    """What `_check_tool_turns` reads of a message that is neither a dict nor one of the SDK's message models.

    A model that takes part in a tool turn as its dump, what is sent; of any other, only its role.
    """
    if not isinstance(message, BaseModel):
        return message  # type: ignore[no-any-return]
    return _as_sent(message) if _takes_tool_turn(message) else {"role": getattr(message, "role", None)}


def _check_tool_turns(messages: list[Any], turns: Iterable[int]) -> None:
    """Refuse tool calls without an id, a name or string arguments, and tool results out of turn.

    Every `tool` message answers a call of the assistant message just before it, and every call is
    answered before the conversation goes on (calls in the last message may stay unanswered).
    `turns` are the indices, in order, of every tool result and every message making calls (others
    may be among them): only those are read, so a long conversation with one tool turn costs one.
    """
    waiting: dict[str, int] = {}  # ids of the calls of the last assistant message not answered yet
    models = _message_types()
    last = -1
    for i in itertools.chain(turns, (len(messages),)):
        if waiting and i != last + 1:  # a message in between, neither a tool result nor making calls
            first = next(iter(waiting))
            raise InvalidParameterError(
                f"messages[{waiting[first]}].tool_calls", first, "every tool call answered by a tool message"
            )
        if i == len(messages):
            return
        last = i
        message = messages[i]
        kind = type(message)
        if kind in models:
            message = message.__dict__  # its fields by name: a dump would cost microseconds a message
        elif kind is not dict:
            message = _turn_fields(message)
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in waiting:  # a model of the caller's may hold a list
                raise InvalidParameterError(
                    f"messages[{i}].tool_call_id", call_id, "the id of an unanswered tool call just before"
                )
            del waiting[call_id]
            continue
        if waiting:
            first = next(iter(waiting))
            raise InvalidParameterError(
                f"messages[{waiting[first]}].tool_calls", first, "every tool call answered by a tool message"
            )
        if role == "assistant":
            for j, call in enumerate(message.get("tool_calls") or ()):
                where = f"messages[{i}].tool_calls[{j}]"
                call = _dumped(where, call)
                function = _dumped(f"{where}.function", call.get("function"))
                if not isinstance(call.get("id"), str) or not call["id"]:
                    raise InvalidParameterError(f"{where}.id", call.get("id"), "the call's id (a string)")
                if call["id"] in waiting:  # one answer would do for both, and the other stay unanswered
                    raise InvalidParameterError(f"{where}.id", call["id"], "an id no other call of the message has")
                kind = call.get("type", "function")
                if not isinstance(kind, str):  # null: no kind at all, whose id, name and arguments went unchecked
                    raise InvalidParameterError(f"{where}.type", kind, "'function', or another kind the API takes")
                if kind != "function":  # another kind (`custom`): the server's to judge
                    waiting[call["id"]] = i
                    continue
                if not _is_mapping(function):
                    raise InvalidParameterError(
                        where, call, "{'id', 'type': 'function', 'function': {'name', 'arguments'}}"
                    )
                if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
                    raise InvalidParameterError(
                        f"{where}.function", function, "a 'name' and its 'arguments' as a JSON string"
                    )
                waiting[call["id"]] = i


def check_chat_params(params: Mapping[str, Any], extra_body: object = None) -> bool:
    """Refuse bad chat parameters with an `InvalidParameterError` naming the parameter and what it allows.

    The same rules run in the client before sending and in the emulator (which answers 400): each
    parameter's shape, and how the tool parameters and messages fit together (`_check_tools`,
    `_check_tool_choice`, `_check_tool_turns`). `extra_body` is the call's, whose fields go out
    beside them (a parameter that needs another may find it there).

    Returns:
        Whether every message is one of the SDK's message models, which `encode_chat_body` can be told.
    """
    model = params.get("model")
    if not isinstance(model, str) or (
        MODEL_ID_PATTERN.fullmatch(model) is None and not (type(model) is ModelAlias and model.strip())
    ):
        raise InvalidParameterError("model", model, "a model id in provider/model form, such as 'openai/gpt-4o'")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidParameterError("messages", messages, "a non-empty list of messages")
    kinds = _model_kinds(messages)
    only_models = kinds is not None
    # The indices of the tool results and of the messages making calls, for `_check_tool_turns`: a
    # conversation without them pays nothing for that rule. Message models alone are valid one by
    # one, and looking through them for calls would cost a long conversation more than all its other
    # checks: the rule runs when a `ToolMessage` is among them (a set lookup), over the assistant and
    # tool messages (found in C), so the calls of a conversation of models without one are the
    # server's to judge.
    turns: Iterable[int] = ()
    if kinds is not None:
        if _tool_message_type() in kinds:
            turns = itertools.compress(range(len(messages)), map(_turn_kinds().__contains__, map(type, messages)))
    else:
        found: list[int] = []
        models = _message_types()
        answer = _answer_message_type()
        for index, message in enumerate(messages):
            # Most messages of a long conversation are plain dicts with text content: settled here
            # without the ABC checks (against Mapping and BaseModel) of `check_message`, with the same verdict.
            kind = type(message)
            if kind is dict and type(message.get("content")) is str:
                role = message.get("role")
                if role in _TEXT_ROLES or (role == "assistant" and message.get("tool_calls") is None):
                    continue
                check_message(index, message)
            elif kind is answer:  # an answer's message sent back (an agent's loop): valid but for one rule
                if message.content is None:
                    check_message(index, message)
            elif kind not in models and kind not in _model_types:  # a message model is valid by construction
                check_message(index, message)
            if _takes_tool_turn(message):
                found.append(index)
        turns = found
    if "stream" in params:
        _of_type("stream", params["stream"], bool, "True or False")
    if len(params) == 2 + ("stream" in params):
        if turns:
            _check_tool_turns(messages, turns)
        return only_models
    get = params.get
    _number_in("temperature", get("temperature"), 0, 2)
    _number_in("top_p", get("top_p"), 0, 1)
    # No model answers in more than a 32-bit count of tokens: a larger one (`10**30`) would be sent
    # for the server to refuse, or to overflow in, after a round trip.
    _int_at_least("max_tokens", get("max_tokens"), 1, _MOST_TOKENS)
    _int_at_least("max_completion_tokens", get("max_completion_tokens"), 1, _MOST_TOKENS)
    _int_at_least("n", get("n"), 1, 128)
    _int_at_least("seed", get("seed"), -(2**63), 2**64 - 1)
    _number_in("presence_penalty", get("presence_penalty"), -2, 2)
    _number_in("frequency_penalty", get("frequency_penalty"), -2, 2)
    top_logprobs = get("top_logprobs")
    _int_at_least("top_logprobs", top_logprobs, 0, 20)
    _of_type("logprobs", get("logprobs"), bool, "True or False")
    if top_logprobs is not None and get("logprobs") is not True and not _given_in_body("logprobs", extra_body):
        raise InvalidParameterError("top_logprobs", top_logprobs, "given only with logprobs=True")  # the API's 400
    _of_type("user", get("user"), str, "a string identifying your end user")
    stop = get("stop")
    if (stop is not None and not isinstance(stop, str)) and (
        not isinstance(stop, list) or not 1 <= len(stop) <= 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise InvalidParameterError("stop", stop, "a string or a list of 1 to 4 strings")
    response_format = get("response_format")
    _of_type("response_format", response_format, (Mapping, BaseModel), 'a dict such as {"type": "json_object"}')
    if response_format is not None:
        _check_response_format(_dumped("response_format", response_format))
    stream_options = get("stream_options")
    _of_type("stream_options", stream_options, Mapping, 'a dict such as {"include_usage": True}')
    if stream_options is not None and get("stream") is not True:
        raise InvalidParameterError("stream_options", stream_options, "given only with stream=True")
    tools = get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, (Mapping, BaseModel)) for t in tools)
    ):
        raise InvalidParameterError("tools", tools, "a list of tool definitions")
    if tools == []:  # OpenAI's 400 ("empty array"), and DeepSeek's
        raise InvalidParameterError("tools", tools, "a non-empty list of tool definitions (leave it out for none)")
    # Tools in `extra_body` (a provider's own kinds, which `tools` refuses) are sent as they are: they
    # count as tools for `tool_choice` and `parallel_tool_calls`, which are then the server's to judge.
    tools_in_body = tools is None and isinstance(extra_body, Mapping) and bool(extra_body.get("tools"))
    tool_choice = get("tool_choice")
    if (
        tool_choice is not None
        and tool_choice not in TOOL_CHOICE_MODES
        and not isinstance(tool_choice, (Mapping, BaseModel))
    ):
        raise InvalidParameterError("tool_choice", tool_choice, "'none', 'auto', 'required' or a dict naming a tool")
    parallel_tool_calls = get("parallel_tool_calls")
    _of_type("parallel_tool_calls", parallel_tool_calls, bool, "True or False")
    if parallel_tool_calls is not None and not tools and not tools_in_body:  # the API's 400 without tools
        raise InvalidParameterError("parallel_tool_calls", parallel_tool_calls, "given only with tools")
    _of_type("store", get("store"), bool, "True or False")
    _of_type("reasoning_effort", get("reasoning_effort"), str, "a string such as 'low', 'medium' or 'high'")
    _of_type("service_tier", get("service_tier"), str, "a string such as 'auto' or 'default'")
    logit_bias = get("logit_bias")
    if logit_bias is not None and (
        not isinstance(logit_bias, Mapping)
        or not all(
            _is_token_id(token) and _is_number(bias) and -100 <= bias <= 100 for token, bias in logit_bias.items()
        )
    ):
        raise InvalidParameterError(
            "logit_bias",
            logit_bias,
            "a dict of token ids from 0 to 2147483647 (or text) to numbers from -100 to 100",
        )
    if logit_bias is not None and len({str(token) for token in logit_bias}) != len(logit_bias):
        # 50256 and "50256" are one key in JSON: sent twice, the server would pick one.
        raise InvalidParameterError("logit_bias", logit_bias, "one bias per token id (50256 and '50256' are one)")
    metadata = get("metadata")
    if metadata is not None and (
        not isinstance(metadata, Mapping)
        or not all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items())
    ):
        raise InvalidParameterError("metadata", metadata, "a dict of strings to strings")
    # How the tool parameters and messages fit together, once each has the right shape.
    if tools is not None or (tool_choice is not None and not tools_in_body):
        _check_tool_choice(tool_choice, _check_tools(tools or []))
    if turns:
        _check_tool_turns(messages, turns)
    return only_models


_MODEL_DUMP: Final = BaseModel.model_dump


def _json_default(value: object) -> Any:
    if isinstance(value, BaseModel):
        if type(value).model_dump is _MODEL_DUMP:  # what it returns, without its keyword handling
            dumped = value.__pydantic_serializer__.to_python(value, mode="json", exclude_none=True)
            extra = value.__pydantic_extra__
            if extra and type(extra.get("reasoning_content")) is ThoughtText:  # not the server's own: not sent
                del dumped["reasoning_content"]
            return dumped
        return value.model_dump(mode="json", exclude_none=True)  # a model that dumps itself its own way
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):  # read-only or custom mappings, which the checks take as dicts
        return dict(value)
    # numpy scalars and the like: numbers that are not Python's own int and float.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=False).encode


def encode_json(body: object) -> bytes:
    """Encode a request body; pydantic models inside it are dumped without their None fields."""
    try:
        return _encode(body).encode("utf-8")
    except RecursionError:
        raise InvalidParameterError("body", type(body).__name__, "JSON nested less deeply") from None
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"), which UTF-8 cannot carry
        where, text = _unencodable(body, "")
        raise InvalidParameterError(where or "body", text, "text without lone surrogates (U+D800 to U+DFFF)") from None
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("body", type(body).__name__, f"JSON-serializable values ({exc})") from None


def _unencodable(value: object, where: str, depth: int = 0) -> tuple[str, str | None]:
    """Where in `value` the first string UTF-8 cannot encode is (`messages[1].content`), and the string."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where, value
        return "", None
    if depth > 64:
        return "", None
    if isinstance(value, BaseModel):
        value = _json_default(value)
    if isinstance(value, Mapping):
        for key in value:
            if isinstance(key, str) and _unencodable(key, where)[1] is not None:
                return where or "body", key  # a key of its own
        items: Iterable[tuple[str, object]] = (
            (f"{where}.{key}" if where else str(key), item) for key, item in value.items()
        )
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    else:
        return "", None
    for place, item in items:
        found = _unencodable(item, place, depth + 1)
        if found[1] is not None:
            return found
    return "", None


# From this many messages on, a list of messages that holds only strings is encoded by pydantic-core
# (several times faster than `json`); below it, one call into pydantic-core costs more than it saves.
_BULK_MESSAGES: Final = 16


@functools.cache
def _message_types() -> frozenset[type[BaseModel]]:
    """The SDK's message models. Loaded at first use: the models import this module."""
    from .types.chat import AssistantMessage, SystemMessage, ToolMessage, UserMessage

    return frozenset((AssistantMessage, SystemMessage, ToolMessage, UserMessage))


_fields_of: Final = operator.attrgetter("__dict__")
_extra_of: Final = operator.attrgetter("__pydantic_extra__")
_STRING_OR_NONE: Final = frozenset((str, type(None)))


def _model_kinds(messages: list[Any]) -> set[type] | None:
    """The types of the messages if every one is one of the SDK's message models, else None."""
    models = _message_types()
    if type(messages[0]) not in models:
        return None
    kinds = set(map(type, messages))
    return kinds if kinds <= models else None


def _only_models(messages: list[Any]) -> bool:
    """Whether every message is one of the SDK's message models: valid by construction, written from its fields."""
    return _model_kinds(messages) is not None


def _plain_fields(message: Any) -> dict[str, Any] | None:
    """A message model's fields (its `__dict__`) if they hold only strings or None and it has no extra fields."""
    if message.__pydantic_extra__:
        return None
    fields: dict[str, Any] = message.__dict__
    for value in fields.values():
        if value is not None and type(value) is not str:
            return None
    return fields


def _bulk_writer(
    messages: list[Any], only_models: bool | None = None
) -> tuple[Callable[[Any], bytes], list[Any]] | None:
    """How pydantic-core writes these messages exactly as `json` does, or None if they hold anything but strings.

    Returns a writer and what to give it: a list of dicts as it is; a list of the SDK's message models
    alone as their fields (each one's `__dict__`), for `_fields_writers`; dicts and models together as
    they are, the models left to their own serializer. A message qualifies if it is a dict of strings
    to strings, or a message model with no extra fields whose fields hold strings or None. Then
    pydantic-core writes exactly the bytes `json` writes (strings are escaped alike). It writes some
    floats differently (`1e-7` for `1e-07`) and some keys that `json` refuses, and it would use up an
    iterator put in a model past validation, so anything else takes the `json` path, checked first.
    `only_models` is `_only_models(messages)` if already known.
    """
    if _only_models(messages) if only_models is None else only_models:
        # The common case of a conversation built from models: checked without a Python loop per
        # message, every value of every message at once.
        try:
            if any(map(_extra_of, messages)):
                return None
            fields = list(map(_fields_of, messages))
        except AttributeError:  # another thread put a dict in the list since it was checked
            return None
        if set(map(type, itertools.chain.from_iterable(map(dict.values, fields)))) <= _STRING_OR_NONE:
            return _fields_writers()[1], fields
        return None
    models = _message_types()
    with_models = False
    for message in messages:
        kind = type(message)
        if kind is dict:
            for key, value in message.items():
                if type(key) is not str or type(value) is not str:
                    return None
        elif kind in models and _plain_fields(message) is not None:
            with_models = True
        else:
            return None
    return (_with_models if with_models else pydantic_core.to_json), messages


def _with_models(messages: list[Any]) -> bytes:
    """Dicts and message models together: each model by its own serializer, as `encode_json` dumps it."""
    return pydantic_core.to_json(messages, exclude_none=True)


@functools.cache
def _fields_writers() -> tuple[Callable[[dict[str, Any]], bytes], Callable[[list[dict[str, Any]]], bytes]]:
    """Write one message model's fields, and a list of them, as dumping the models with `exclude_none` writes them.

    From their `__dict__`s, which hold their fields alone, in their order (pydantic, and the models'
    `copy`, put any other key among the extra fields): a serializer of dicts that leaves out None
    values costs less than half of what each model's own serializer costs, which checks every value
    against its field's type. A key put in a `__dict__` past pydantic is written with the fields.
    """
    from pydantic_core import SchemaSerializer, core_schema

    message = core_schema.typed_dict_schema({}, extra_behavior="allow")  # keys stay in their order
    one, many = SchemaSerializer(message), SchemaSerializer(core_schema.list_schema(message))
    return functools.partial(one.to_json, exclude_none=True), functools.partial(many.to_json, exclude_none=True)


# What a message model's `_deployai_json` slot holds besides its JSON: seen in a list encoded whole (its
# JSON is kept the next time), or not made of strings only (never encoded on its own).
_SEEN: Final = b""
_NOT_PLAIN: Final = b"!"


@functools.cache
def _kept_slot() -> tuple[Callable[[Any], bytes], Callable[[Any, bytes], None]]:
    """Get and set the slot directly: a missing value then raises at once, without pydantic's `__getattr__`."""
    from .types.chat import _Message

    slot = _Message.__dict__["_deployai_json"]
    return slot.__get__, slot.__set__


def _own_json(message: Any, keep: Callable[[Any, bytes], None]) -> bytes:
    """A message model's JSON, kept in its slot (the model is frozen), or `_NOT_PLAIN`."""
    data = _NOT_PLAIN
    fields = _plain_fields(message)  # once per model: the check the whole-list encoding makes
    if fields is not None:
        try:
            data = _fields_writers()[0](fields)
        except pydantic_core.PydanticSerializationError:  # a lone surrogate: `encode_json` reports it
            data = _NOT_PLAIN
    keep(message, data)
    return data


def _joined_models(messages: list[Any]) -> bytes | None:
    """The JSON of a list of message models joined from their kept JSON, or None to encode the list whole.

    A conversation is sent again and again, a turn longer each time: each message model's JSON is
    kept in the model, so that sending it again costs a lookup and only new turns are encoded. A list
    whose first or middle message was never sent is new (a one-off request, or a shared system prompt
    before new turns): it is encoded whole, which costs less than message by message, and those two
    are marked, so that if the same list is sent again its messages' JSON is kept from then on.
    """
    models = _message_types()
    get, keep = _kept_slot()
    probes = (messages[0], messages[len(messages) // 2])
    if type(probes[0]) not in models or type(probes[1]) not in models:
        return None
    fresh = False
    for probe in probes:
        try:
            get(probe)
        except AttributeError:
            keep(probe, _SEEN)
            fresh = True
    if fresh:
        return None
    joined: list[bytes] = []
    for message in messages:
        # A model with extra fields now (`model_extra` is a dict it hands out) may have had none when
        # its JSON was kept: encoded whole instead.
        if type(message) not in models or message.__pydantic_extra__:
            return None
        try:
            data = get(message)
        except AttributeError:
            data = _SEEN
        if not data:  # new, or seen once
            data = _own_json(message, keep)
        if data is _NOT_PLAIN:
            return None
        joined.append(data)
    return b"[" + b",".join(joined) + b"]"


def encode_chat_body(body: dict[str, Any], only_models: bool | None = None) -> bytes:
    """Encode a chat request's body: `encode_json`, byte for byte, with a long list of text messages done in bulk.

    `only_models` is what `check_chat_params` returned for these messages, if it was asked.
    """
    messages = body.get("messages")
    if (
        type(messages) is not list
        or len(messages) < _BULK_MESSAGES
        or not all(type(key) is str for key in body)  # `json` writes other keys (from extra_body) its own way
    ):
        return encode_json(body)
    bulk = _joined_models(messages)
    if bulk is None:
        found = _bulk_writer(messages, only_models)
        if found is None:
            return encode_json(body)
        write, items = found
        try:
            bulk = write(items)
        except pydantic_core.PydanticSerializationError:  # a lone surrogate: `encode_json` says what is wrong
            return encode_json(body)
    try:
        parts = [
            encode_json(key) + b":" + (bulk if key == "messages" else encode_json(value)) for key, value in body.items()
        ]
    except InvalidParameterError:  # raised again for the whole body, as `encode_json` words it
        return encode_json(body)
    return b"{" + b",".join(parts) + b"}"


def _merge_headers(base: dict[str, str], extra: Any) -> dict[str, str]:
    if extra is None or isinstance(extra, NotGiven):
        return base
    return merge_headers(base, check_headers("extra_headers", extra))


def _extensions(options: ClientOptions, timeout: object) -> dict[str, Any]:
    if isinstance(timeout, NotGiven):
        return {} if options.timeout_extension is None else {"timeout": options.timeout_extension}
    return {"timeout": to_httpx_timeout(timeout).as_dict()}  # type: ignore[arg-type]


def _total_timeout(options: ClientOptions, params: Mapping[str, Any]) -> float | None:
    value = params.get("total_timeout", NOT_GIVEN)
    return options.total_timeout if isinstance(value, NotGiven) else check_total_timeout(value)


# Options of the client, not of a call: a hint to `with_options` is worth more than a near name
# (`max_retries` is near `max_tokens`, which means something else entirely).
_CLIENT_OPTIONS = frozenset({"max_retries", "max_retry_wait", "default_headers", "on_retry", "rate_limiter"})


def unknown_params(method: str, given: Iterable[str], known: frozenset[str]) -> TypeError:
    unknown = sorted(set(given) - known)
    hints = [
        f"{name!r} (an option of the client, for one call too: client.with_options({name}=...))"
        if name in _CLIENT_OPTIONS
        else f"{name!r} (did you mean {m[0]!r}?)"
        if (m := difflib.get_close_matches(name, known, 1))
        else repr(name)
        for name in unknown
    ]
    return TypeError(f"{method}() got unexpected keyword argument(s): " + ", ".join(hints))


def _with_query(url: httpx.URL, extra_query: object) -> httpx.URL:
    if extra_query is None or isinstance(extra_query, NotGiven):
        return url
    # Values are not quoted in the errors: a gateway may take its key in the query.
    if not isinstance(extra_query, Mapping):
        raise InvalidParameterError("extra_query", kind_of(extra_query), "a mapping of query parameter names to values")
    for name, value in extra_query.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        if not isinstance(name, str) or not all(
            v is None or (isinstance(v, _QUERY_VALUE_TYPES) and not (isinstance(v, float) and not math.isfinite(v)))
            for v in values
        ):
            # httpx would send str(value): an object's repr (or `nan`, `inf`) is never what the caller meant.
            raise InvalidParameterError(
                f"extra_query[{name!r}]", kind_of(value), "a str, int, finite float, bool or None, or a list of them"
            )
    try:
        return url.copy_merge_params(extra_query)
    except (httpx.InvalidURL, TypeError, ValueError, RecursionError) as exc:
        # Too long a URL, a value that is not a str, number or bool: httpx's error would not name the parameter.
        raise InvalidParameterError(
            "extra_query", type(extra_query).__name__, f"short query parameters of str, int, float or bool ({exc})"
        ) from None


_QUERY_VALUE_TYPES: Final = (str, int, float)  # bool is an int


@functools.lru_cache(maxsize=256)
def endpoint_url(base_url: str, path: str) -> httpx.URL:
    """The URL of `path` under `base_url` (parsed once: most calls go to the same few URLs)."""
    return httpx.URL(base_url + path)


def as_lists(body: dict[str, Any]) -> None:
    """Make the list parameters of `body` that were given as other iterables (a tuple, a generator) lists."""
    for key in _LIST_PARAMS:
        value = body.get(key)
        if value is not None and not isinstance(value, (list, str, bytes, Mapping)) and isinstance(value, Iterable):
            body[key] = list(value)


def build_chat_request(options: ClientOptions, endpoint: Endpoint[Any], params: Mapping[str, Any]) -> PreparedRequest:
    """Validate `chat.completions.create` arguments and build the request, before any byte is sent."""
    if not params.keys() <= _KNOWN:
        raise unknown_params(endpoint.name, params, _KNOWN)
    if not params.keys() >= {"model", "messages"}:
        missing = sorted({"model", "messages"} - params.keys())
        raise TypeError(f"{endpoint.name}() missing required keyword argument(s): " + ", ".join(map(repr, missing)))
    body = {key: value for key, value in params.items() if key in CHAT_PARAMS and not isinstance(value, NotGiven)}
    if "messages" not in body:  # `messages=NOT_GIVEN`, as a wrapper passing its own optional arguments on gives it
        raise InvalidParameterError("messages", params["messages"], "a non-empty list of messages")
    as_lists(body)
    messages = body["messages"]  # `extra_body` may replace them: then they are not what was checked
    extra_body = params.get("extra_body")
    only_models = check_chat_params(body, extra_body)
    if extra_body is not None and not isinstance(extra_body, NotGiven):
        if not isinstance(extra_body, Mapping):
            raise InvalidParameterError("extra_body", extra_body, "a mapping of extra JSON fields")
        if "stream" in extra_body:  # it decides what the call returns, which `create`'s types say from `stream=`
            raise InvalidParameterError(
                "extra_body['stream']", extra_body["stream"], "left out: pass stream= to create() instead"
            )
        body.update(extra_body)
    stream = body.get("stream") is True
    headers = _merge_headers(options.stream_headers if stream else options.json_headers, params.get("extra_headers"))
    extensions = _extensions(options, params.get("timeout", NotGiven()))
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if type(cap) is int and cap > 0:  # what a rate limiter counts against a token budget (`token_cost`)
        choices = body.get("n")
        extensions[COMPLETION_CAP] = cap * (choices if type(choices) is int and choices > 0 else 1)
    request = httpx.Request(
        endpoint.method,
        _with_query(endpoint_url(options.base_url, endpoint.path), params.get("extra_query")),
        headers=headers,
        content=encode_chat_body(body, only_models if body["messages"] is messages else None),
        extensions=extensions,
    )
    return PreparedRequest(request, stream, _total_timeout(options, params))


def _path_part(name: str, value: object) -> str:
    """A path argument such as a model id, refused unless it names exactly one resource.

    A `ModelAlias` may be a single segment (`"fast"`), of the characters a model id's segments have.
    """
    alias = type(value) is ModelAlias and _ALIAS_PATH.fullmatch(value) is not None
    # Checked and sent as a plain str: a subclass's own methods (`__format__`, an Enum's `Model.GPT4O`;
    # `split`) would otherwise say another thing than the text the path is made of.
    text = str.__str__(value) if isinstance(value, str) else None
    if text is None or (MODEL_ID_PATTERN.fullmatch(text) is None and not alias) or {".", ".."} & set(text.split("/")):
        raise InvalidParameterError(name, value, "a model id in provider/model form, such as 'openai/gpt-4o'")
    return text


_ALIAS_PATH: Final = re.compile(r"[A-Za-z0-9._:+-]+")


def build_get_request(options: ClientOptions, endpoint: Endpoint[Any], params: Mapping[str, Any]) -> PreparedRequest:
    """Build a GET request such as `models.list()` or `models.retrieve(id)`, with the per-call options."""
    known = _GET_OPTIONS.union(endpoint.path_params)
    if not params.keys() <= known:
        raise unknown_params(endpoint.name, params, known)
    path = endpoint.path
    if endpoint.path_params:
        path = path.format(**{name: _path_part(name, params.get(name)) for name in endpoint.path_params})
    request = httpx.Request(
        endpoint.method,
        _with_query(endpoint_url(options.base_url, path), params.get("extra_query")),
        headers=_merge_headers(options.json_headers, params.get("extra_headers")),
        extensions=_extensions(options, params.get("timeout", NotGiven())),
    )
    return PreparedRequest(request, stream=False, total_timeout=_total_timeout(options, params))
