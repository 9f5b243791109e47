"""Chat completions as the emulator answers them: the reply (scripted or its own), whole or as SSE events.

Without a script, the emulator repeats the last user message (`"You said: ..."`). Given tools (and a
`tool_choice` other than `none`), it answers a user message with a call of the named tool, or of the
first one, whose arguments fill the tool's JSON Schema (see `_schema_fill`; a string is the last
word of the user's message, "Paris" in "Weather in Paris?"). After tool results it answers `"Tool result: ..."`
with their contents. Asked for JSON by `response_format`, its answer is JSON: `{"reply": ...}` for
`json_object`, a `json_schema`'s schema filled as a tool's parameters are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._schema_fill import fill
from ._scripting import Reply, ToolCall
from ._text import count_tokens, message_text, reply_to, split_tokens
from ._wire import Draft, Piece, dumps, json_draft

__all__ = ["answer", "default_reply"]

_WORD = re.compile(r"\w+")


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
        arguments = fill(chosen.get("parameters") or {}, _last_word(last))
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
        value = fill(schema if isinstance(schema, Mapping) else {}, _last_word(users[-1]) if users else "")
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
