"""The emulator's checks of a chat completion body: the SDK's own rules, then what the SDK leaves to the API.

The SDK checks each parameter's shape before sending (`deployai._request.check_chat_params`); the
API also checks how parameters fit together. For tool calling that means: each tool is a function
with a valid, unique name; `tool_choice` names a tool that was given; every assistant tool call has
an id, a name and string arguments; every `tool` message answers a call of the assistant message just
before it, and every call is answered before the conversation goes on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from .._exceptions import InvalidParameterError
from .._request import check_chat_params
from ._text import MODELS
from ._wire import Draft, error_draft

__all__ = ["check_chat_body"]

_MODEL_IDS: Final = frozenset(model.id for model in MODELS)
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _fail(param: str, value: object, expected: str) -> InvalidParameterError:
    return InvalidParameterError(param, value, expected)


def _check_tools(tools: list[Any]) -> list[str]:
    names: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise _fail(f"tools[{i}].type", tool.get("type") if isinstance(tool, Mapping) else tool, "'function'")
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise _fail(f"tools[{i}].function", function, "a dict with the function's name")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise _fail(f"tools[{i}].function.name", name, "1 to 64 letters, digits, '_' or '-'")
        if name in names:
            raise _fail(f"tools[{i}].function.name", name, "a name no other tool has")
        if not isinstance(function.get("description", ""), str):
            raise _fail(f"tools[{i}].function.description", function["description"], "a string")
        parameters = function.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise _fail(f"tools[{i}].function.parameters", parameters, "a JSON Schema object (a dict)")
        names.append(name)
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None or choice == "none":
        return
    if not names:
        raise _fail("tool_choice", choice, "given only with tools")
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if choice.get("type") != "function" or name not in names:
            raise _fail("tool_choice", choice, f"{{'type': 'function', 'function': {{'name': one of {names}}}}}")


def _check_tool_turns(messages: list[Any]) -> None:
    waiting: dict[str, int] = {}  # ids of the calls of the last assistant message not answered yet
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in waiting:
                raise _fail(f"messages[{i}].tool_call_id", call_id, "the id of an unanswered tool call just before")
            del waiting[call_id]
            continue
        if waiting:
            first = next(iter(waiting))
            raise _fail(f"messages[{waiting[first]}].tool_calls", first, "every tool call answered by a tool message")
        if role == "assistant":
            for j, call in enumerate(message.get("tool_calls") or []):
                where = f"messages[{i}].tool_calls[{j}]"
                function = call.get("function")
                if not isinstance(call.get("id"), str) or not call["id"]:
                    raise _fail(f"{where}.id", call.get("id"), "the call's id (a string)")
                if call.get("type", "function") != "function" or not isinstance(function, Mapping):
                    raise _fail(where, call, "{'id', 'type': 'function', 'function': {'name', 'arguments'}}")
                if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
                    raise _fail(f"{where}.function", function, "a 'name' and its 'arguments' as a JSON string")
                waiting[call["id"]] = i


def check_chat_body(body: Any, parse_error: str | None, headers: list[tuple[str, str]]) -> Draft | None:
    """The 400 or 404 to answer for a chat completion body, or None when it is one the API accepts."""
    if parse_error is not None or not isinstance(body, dict):
        detail = parse_error or "the body must be a JSON object"
        message = f"The request body is not a valid JSON object: {detail}."
        return error_draft(400, message, headers, code="invalid_json")
    try:
        check_chat_params(body)
        names = _check_tools(body.get("tools") or [])
        _check_tool_choice(body.get("tool_choice"), names)
        _check_tool_turns(body["messages"])
    except InvalidParameterError as exc:
        return error_draft(400, str(exc), headers, code="invalid_parameter", param=exc.param)
    if body["model"] not in _MODEL_IDS:
        message = f"The model '{body['model']}' does not exist or you do not have access to it."
        return error_draft(404, message, headers, code="model_not_found", param="model")
    return None
