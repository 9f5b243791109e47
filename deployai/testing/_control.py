"""The emulator's control API over HTTP, under `/_emulator/`: script, read back, reset, from any language.

| Request | Does |
|---|---|
| `POST /_emulator/replies` | add a reply: the fields of `Reply` (a tool call as `{"name", "arguments", "id"}`) |
| `POST /_emulator/faults` | add a fault: `{"fault": "fail", "status": 503}`, with the arguments of `Aim.fail` |
| `GET /_emulator/rules` | the scripted rules with uses left |
| `GET /_emulator/requests` | every exchange recorded, oldest first |
| `POST /_emulator/reset` | forget rules, exchanges, rate-limit windows and the counter |

Both also take `times` and `match`; `match` holds `model`, `route` and `stream` (predicates need
Python). `times` defaults to 1; null means every matching request. Control requests need no API
key and are not recorded.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import InvalidParameterError
from ._aim import Aim, make_reply
from ._faults import fault_name
from ._scripting import Reply, Rule, ToolCall
from ._wire import Draft, error_draft, json_draft

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["control", "rule_json"]

# Each fault's arguments, by the name of the `Aim` method that adds it.
_FAULTS: Final[dict[str, tuple[str, ...]]] = {
    "fail": ("status", "body", "headers"),
    "stall": ("seconds",),
    "slow": ("seconds",),
    "cut_stream_after": ("n_chunks",),
    "error_event_after": ("n_chunks", "error", "as_event"),
    "malformed_json": ("at_chunk",),
}
_REPLY_FIELDS: Final = ("content", "pieces", "tool_calls", "finish_reason", "usage", "refusal", "extra")


def rule_json(rule: Rule) -> dict[str, Any]:
    """A rule as the control API lists it."""
    kind = "reply" if isinstance(rule.action, Reply) else fault_name(rule.action)
    match: dict[str, Any] = {"model": rule.match.model, "route": rule.match.route, "stream": rule.match.stream}
    if rule.match.when is not None:  # a Python predicate: it cannot be shown, but it must not look like "any"
        match["when"] = getattr(rule.match.when, "__name__", "predicate")
    return {"id": rule.id, "kind": kind, "match": match, "times": rule.times, "hits": rule.hits}


def _aim(emulator: Emulator, spec: Mapping[str, Any]) -> tuple[Aim, Any]:
    match = spec.get("match", {})
    if not isinstance(match, Mapping) or set(match) - {"model", "route", "stream"}:
        raise InvalidParameterError("match", match, "an object with 'model', 'route' and/or 'stream'")
    return emulator.on(**match), spec.get("times", 1)


def _only(spec: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(spec) - {*allowed, "match", "times"})
    if unknown:
        raise InvalidParameterError(unknown[0], spec[unknown[0]], f"one of the fields {sorted(allowed)}")


def _add_reply(emulator: Emulator, spec: Mapping[str, Any]) -> Rule:
    _only(spec, _REPLY_FIELDS)
    aim, times = _aim(emulator, spec)
    fields = {name: spec[name] for name in _REPLY_FIELDS if name in spec}
    calls = fields.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list) or not all(isinstance(c, Mapping) for c in calls):
            raise InvalidParameterError("tool_calls", calls, "a list of {'name', 'arguments', 'id'} objects")
        fields["tool_calls"] = [ToolCall(**c) for c in calls]
    return aim.reply(make_reply(None, fields), times=times)  # type: ignore[arg-type]


def _add_fault(emulator: Emulator, spec: Mapping[str, Any]) -> Rule:
    kind = spec.get("fault")
    if kind not in _FAULTS:
        raise InvalidParameterError("fault", kind, f"one of {sorted(_FAULTS)}")
    _only(spec, ("fault", *_FAULTS[kind]))
    aim, times = _aim(emulator, spec)
    method: Callable[..., Rule] = getattr(aim, kind)
    for name, parameter in inspect.signature(method).parameters.items():
        if parameter.default is parameter.empty and parameter.kind is not parameter.VAR_KEYWORD and name not in spec:
            raise InvalidParameterError(name, None, f"given: the {kind!r} fault needs it")
    return method(**{name: spec[name] for name in _FAULTS[kind] if name in spec}, times=times)


def _reset(emulator: Emulator) -> dict[str, bool]:
    emulator.reset()
    return {"reset": True}


def _object(spec: object) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise InvalidParameterError("body", spec, "a JSON object")
    return spec


def control(emulator: Emulator, method: str, action: str, body: bytes) -> Draft:
    """Answer one control request (`action` is the path after `/_emulator/`)."""
    headers: list[tuple[str, str]] = []
    routes: dict[tuple[str, str], Callable[[Any], object]] = {
        ("POST", "replies"): lambda spec: rule_json(_add_reply(emulator, spec)),
        ("POST", "faults"): lambda spec: rule_json(_add_fault(emulator, spec)),
        ("GET", "rules"): lambda _: {"data": [rule_json(rule) for rule in emulator.rules]},
        ("GET", "requests"): lambda _: {"data": [r.to_json() for r in emulator.requests]},
        ("POST", "reset"): lambda _: _reset(emulator),
    }
    handler = routes.get((method, action.rstrip("/")))
    if handler is None:
        known = any(name == action.rstrip("/") for _, name in routes)
        if not known:
            return error_draft(404, f"No control endpoint /_emulator/{action}.", headers, code="unknown_url")
        draft = error_draft(405, f"No control endpoint {method} /_emulator/{action}.", headers)
        draft.headers.append(("allow", ", ".join(m for m, name in routes if name == action.rstrip("/"))))
        return draft
    try:
        spec = json.loads(body) if body else {}
    except (ValueError, RecursionError) as exc:
        return error_draft(400, f"The body is not valid JSON: {exc}", headers, code="invalid_json")
    try:
        return json_draft(200, handler(_object(spec)), headers)
    except InvalidParameterError as exc:
        return error_draft(400, str(exc), headers, code="invalid_parameter", param=exc.param)
    except (TypeError, AttributeError, ValueError) as exc:  # JSON of the wrong shape, such as unknown arguments
        return error_draft(400, f"Bad control request: {exc}", headers, code="invalid_parameter")
