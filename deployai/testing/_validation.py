"""The emulator's checks of a chat completion body: the SDK's own rules, then whether the model exists.

The rules are those the SDK applies before sending (`deployai._request.check_chat_params`): each
parameter's shape, and, as the API checks them, how tool calling fits together (each tool a function
with a valid, unique name; `tool_choice` naming a tool that was given, or an `allowed_tools` choice
of OpenAI's shape, which the SDK leaves to the server; every assistant tool call with
an id, a name and string arguments; every `tool` message answering a call of the assistant message
just before it, and every call answered before the conversation goes on). Here they answer a raw
HTTP client that skips the SDK with the API's 400.
"""

from __future__ import annotations

from typing import Any, Final

from .._exceptions import InvalidParameterError
from .._request import check_chat_params
from ._text import MODELS
from ._wire import Draft, error_draft

__all__ = ["check_chat_body"]

_MODEL_IDS: Final = frozenset(model.id for model in MODELS)


def check_chat_body(body: Any, parse_error: str | None, headers: list[tuple[str, str]]) -> Draft | None:
    """The 400 or 404 to answer for a chat completion body, or None when it is one the API accepts."""
    if parse_error is not None or not isinstance(body, dict):
        detail = parse_error or "the body must be a JSON object"
        message = f"The request body is not a valid JSON object: {detail}."
        return error_draft(400, message, headers, code="invalid_json")
    try:
        check_chat_params(body)
        _check_allowed_tools(body.get("tool_choice"))
    except InvalidParameterError as exc:
        return error_draft(400, str(exc), headers, code="invalid_parameter", param=exc.param)
    if body["model"] not in _MODEL_IDS:
        message = f"The model '{body['model']}' does not exist or you do not have access to it."
        return error_draft(404, message, headers, code="model_not_found", param="model")
    return None


def _check_allowed_tools(choice: Any) -> None:
    """Refuse an `allowed_tools` choice of another shape than OpenAI's, which the SDK leaves to the server.

    `{"type": "allowed_tools", "allowed_tools": {"mode": "auto" | "required", "tools": [{"type":
    "function", "function": {"name": ...}}, ...]}}`
    """
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return
    allowed = choice.get("allowed_tools")
    if not isinstance(allowed, dict):
        raise InvalidParameterError("tool_choice.allowed_tools", allowed, "an object with 'mode' and 'tools'")
    if allowed.get("mode") not in ("auto", "required"):
        raise InvalidParameterError("tool_choice.allowed_tools.mode", allowed.get("mode"), "'auto' or 'required'")
    tools = allowed.get("tools")
    if not isinstance(tools, list):
        raise InvalidParameterError("tool_choice.allowed_tools.tools", tools, "a list of tools")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidParameterError(
                f"tool_choice.allowed_tools.tools[{i}]", tool, "{'type': 'function', 'function': {'name': ...}}"
            )
