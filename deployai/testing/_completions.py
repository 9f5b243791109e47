"""Chat completions as the emulator answers them: the reply (scripted or its own), whole or as SSE events.

Without a script, the emulator repeats the last user message (`"You said: ..."`). Given tools (and a
`tool_choice` other than `none`), it answers a user message with a call of the named tool, or of the
first one, whose arguments fill the tool's JSON Schema: each property gets its `default`, its `const`,
its first `enum` value, or for a string the last word of the user's message ("Paris" in "Weather in
Paris?"), 0 for a number (moved into its `minimum`/`maximum`), false, [] (or `minItems` filled
items) or {}. Local `$ref`s are followed, and `anyOf`/`oneOf` take their first branch that is not
null, as schemas made from pydantic models need. After tool results it answers `"Tool result: ..."`
with their contents. Asked for JSON by `response_format`, its answer is JSON: `{"reply": ...}` for
`json_object`, a `json_schema`'s schema filled as a tool's parameters are.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ._scripting import Reply, ToolCall
from ._text import count_tokens, message_text, reply_to, split_tokens
from ._wire import Draft, Piece, dumps, json_draft

__all__ = ["answer", "default_reply"]

_WORD = re.compile(r"\w+")
_PLACEHOLDERS: dict[str, Any] = {"boolean": False, "null": None}
# A string of a known format: the user's word would not be one.
_FORMATS: dict[str, str] = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
}
_MAX_DEPTH = 32  # a schema that refers to itself (a tree) is filled this deep, then with a plain value
_MAX_ITEMS = 100


def _fill(schema: Any, text: str, root: Any = None, depth: int = 0) -> Any:
    """A value that fits a JSON Schema, deterministically (see the module docstring); `root` holds its `$defs`."""
    if root is None:
        root = schema
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return text
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _fill(_resolved(ref, root), text, root, depth + 1)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combined in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(combined)
        if isinstance(branches, list) and branches:
            branch = next(
                (b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")), branches[0]
            )
            return _fill(branch, text, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), Mapping)):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {str(name): _fill(sub, text, root, depth + 1) for name, sub in properties.items()}
    if kind == "array" or (kind is None and "items" in schema):
        count = schema.get("minItems")
        count = min(count, _MAX_ITEMS) if type(count) is int and count > 0 else 0
        return [_fill(schema.get("items"), text, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind in _PLACEHOLDERS:
        return _PLACEHOLDERS[kind]
    return _string(schema, text)


def _resolved(ref: str, root: Any) -> Any:
    """The part of `root` a local `$ref` (`#/$defs/Unit`) points at; None for any other."""
    if not ref.startswith("#"):
        return None
    target = root
    for step in ref[1:].split("/")[1:]:
        step = step.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or step not in target:
            return None
        target = target[step]
    return target


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    """0, or the nearest value to it that the schema's bounds allow."""
    value: float = 0
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    low_out, high_out = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if low is not None and value < low:
        value = math.ceil(low) if integer else low
    if low_out is not None and value <= low_out:
        value = math.floor(low_out) + 1 if integer else low_out + 1
    if high is not None and value > high:
        value = math.floor(high) if integer else high
    if high_out is not None and value >= high_out:
        value = math.ceil(high_out) - 1 if integer else high_out - 1
    return int(value) if integer else value


def _bound(schema: Mapping[str, Any], name: str) -> float | None:
    bound = schema.get(name)
    if type(bound) is not int and type(bound) is not float:  # not a bool, which is an int too
        return None
    return float(bound) if math.isfinite(bound) else None


def _string(schema: Mapping[str, Any], text: str) -> str:
    """The user's word, or a value of the schema's `format`, made as long as `minLength`/`maxLength` say."""
    form = schema.get("format")
    if isinstance(form, str) and form in _FORMATS:
        text = _FORMATS[form]
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if type(shortest) is int and len(text) < shortest:
        text += "x" * (min(shortest, 10_000) - len(text))
    if type(longest) is int and longest >= 0 and len(text) > longest:
        text = text[:longest]
    return text


def default_reply(body: Mapping[str, Any], call_prefix: str) -> Reply:
    """The emulator's own reply to a validated chat completion body."""
    messages: list[dict[str, Any]] = body["messages"]
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        results = [message_text(m) for m in messages[len(messages) - _trailing_tools(messages) :]]
        return _formatted(body, "Tool result: " + " | ".join(results))
    functions = [tool["function"] for tool in body.get("tools") or ()]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "allowed_tools":  # of those, the ones allowed
        allowed = choice.get("allowed_tools") or {}
        named = {(tool.get("function") or {}).get("name") for tool in allowed.get("tools") or ()}
        functions = [function for function in functions if function["name"] in named]
    if functions and choice != "none" and last.get("role") == "user":
        chosen = functions[0]
        if isinstance(choice, Mapping) and choice.get("type") == "function":
            chosen = next(f for f in functions if f["name"] == choice["function"]["name"])
        arguments = _fill(chosen.get("parameters") or {}, _last_word(last))
        if not isinstance(arguments, dict):
            arguments = {}
        return Reply(tool_calls=(ToolCall(chosen["name"], arguments, f"{call_prefix}_0"),))
    return _formatted(body, reply_to(messages))


def _last_word(message: Mapping[str, Any]) -> str:
    """The last word of a message ("Paris" in "Weather in Paris?"): what a string in a schema is filled with."""
    words = _WORD.findall(message_text(message))
    return words[-1] if words else ""


def _formatted(body: Mapping[str, Any], text: str) -> Reply:
    """`text` as the reply, in the form `response_format` asks for.

    `json_object`: `{"reply": text}`. `json_schema`: its schema filled as a tool's parameters are,
    with the last word of the last user message for strings.
    """
    form = body.get("response_format")
    kind = form.get("type") if isinstance(form, Mapping) else None
    if kind == "json_object":
        return Reply(content=json.dumps({"reply": text}, ensure_ascii=False, separators=(",", ":")))
    if kind == "json_schema":
        spec = form.get("json_schema") if isinstance(form, Mapping) else None
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        users = [m for m in body["messages"] if m.get("role") == "user"]
        value = _fill(schema if isinstance(schema, Mapping) else {}, _last_word(users[-1]) if users else "")
        return Reply(content=json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return Reply(content=text)


def _trailing_tools(messages: list[dict[str, Any]]) -> int:
    count = 0
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        count += 1
    return count


def _pieces(reply: Reply, body: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The reply's content pieces, cut before the first stop sequence, then to `max_tokens`; whether capped.

    Scripted pieces are kept as given unless a cut falls inside them; `max_tokens` counts tokens, not
    pieces, so a capped reply is split into tokens where it is cut.
    """
    if reply.content is None:
        return [], False
    text = reply.content
    stop = body.get("stop")
    end = min((text.index(s) for s in ([stop] if isinstance(stop, str) else stop or []) if s and s in text), default=-1)
    if reply.pieces is None or end >= 0:
        text = text if end < 0 else text[:end]
        pieces = split_tokens(text) or ([text] if text else [])  # a reply of only spaces is one piece
        if reply.pieces is not None:  # keep the scripted pieces that come before the cut
            kept, length = [], 0
            for piece in reply.pieces:
                if length + len(piece) > end:
                    break
                kept.append(piece)
                length += len(piece)
            pieces = kept + ([text[length:]] if text[length:] else [])
    else:
        pieces = list(reply.pieces)
    # Reasoning models take max_completion_tokens; the others max_tokens. Either caps the reply.
    # A null is no cap given, as the SDK sends `max_completion_tokens=None`: the other one still counts.
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if cap is not None and count_tokens("".join(pieces)) > cap:
        return split_tokens("".join(pieces))[:cap], True
    return pieces, False


def answer(
    body: Mapping[str, Any],
    reply: Reply,
    *,
    request_number: int,
    created: int,
    token_latency: float,
    headers: list[tuple[str, str]],
) -> Draft:
    """The 200 answer carrying `reply` for a validated chat completion body."""
    model: str = body["model"]
    pieces, capped = _pieces(reply, body)
    calls = [(call.id or f"call_{request_number}_{i}", call) for i, call in enumerate(reply.tool_calls)]
    finish_reason = "length" if capped else reply.finish_reason or ("tool_calls" if calls else "stop")
    n: int = body.get("n") or 1
    prompt_tokens = sum(count_tokens(message_text(m)) for m in body["messages"])
    one_choice = count_tokens("".join(pieces)) + count_tokens(reply.refusal or "")
    one_choice += sum(count_tokens(call.name) + count_tokens(call.arguments_json) for _, call in calls)
    usage: dict[str, int] = {"prompt_tokens": prompt_tokens, "completion_tokens": one_choice * n}
    usage.update(reply.usage or {})
    if reply.usage is None or "total_tokens" not in reply.usage:
        usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    completion_id = f"chatcmpl-emu{request_number}"
    content = None if reply.content is None else "".join(pieces)
    if body.get("stream") is not True:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                for i, c in calls
            ]
        choices = [{"index": i, "message": message, "finish_reason": finish_reason} for i in range(n)]
        completion = {"id": completion_id, "object": "chat.completion", "created": created, "model": model}
        return json_draft(200, {**completion, "choices": choices, "usage": usage, **reply.extra}, headers)
    stream_options = body.get("stream_options") or {}
    include_usage = stream_options.get("include_usage") is True
    deltas: list[dict[str, Any]] = [{"content": piece} for piece in pieces]
    deltas += [{"refusal": piece} for piece in split_tokens(reply.refusal or "")]
    for index, (call_id, call) in enumerate(calls):
        start = {"index": index, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        deltas.append({"tool_calls": [start]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in split_tokens(call.arguments_json)
        ]
    chunk_head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def event(choices: list[dict[str, Any]], **fields: Any) -> bytes:
        chunk = {**chunk_head, "choices": choices, **fields}
        if include_usage and "usage" not in fields:
            chunk["usage"] = None
        return b"data: " + dumps({**chunk, **reply.extra}) + b"\n\n"

    role = {"role": "assistant", "content": "" if content is not None else None}
    events: list[Piece] = [(0.0, event([{"index": i, "delta": role, "finish_reason": None}])) for i in range(n)]
    for delta in deltas:
        for i in range(n):
            events.append(
                (token_latency if i == 0 else 0.0, event([{"index": i, "delta": delta, "finish_reason": None}]))
            )
    events += [(0.0, event([{"index": i, "delta": {}, "finish_reason": finish_reason}])) for i in range(n)]
    if include_usage:
        events.append((0.0, event([], usage=usage)))
    events.append((0.0, b"data: [DONE]\n\n"))
    return Draft(200, [*headers, ("content-type", "text/event-stream"), ("cache-control", "no-cache")], events=events)
