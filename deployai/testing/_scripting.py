"""What a test scripts: replies and faults, and which requests they are for.

A `Rule` pairs an action (a `Reply`, or a fault) with a `Match` (model, route, stream, predicate)
and a count of uses. The emulator asks for the first rule, in the order they were added, that
matches a request and has uses left; rules with no count (`times=None`) come after every counted one,
so "the next request" scripts still go first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidParameterError
from ._faults import Fault, check_json
from ._routing import ROUTE_NAMES, RouteName

if TYPE_CHECKING:
    from ._records import RecordedRequest

__all__ = ["Match", "Reply", "Rule", "ScriptError", "ToolCall", "check_seconds", "first_rule"]


def check_seconds(name: str, value: float, *, above_zero: bool = False) -> float:
    """`value` as float seconds >= 0 (> 0 with `above_zero`), or a typed error."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < math.inf
        or (above_zero and value == 0)
    ):
        raise InvalidParameterError(name, value, f"a number of seconds {'>' if above_zero else '>='} 0")
    return float(value)


def _optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidParameterError(name, value, "a string or None")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call for a scripted reply: the function's `name` and its `arguments` (a dict, or a JSON string).

    `id` defaults to `call_<request number>_<index>`.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidParameterError("name", self.name, "the function's name (a non-empty string)")
        if not isinstance(self.arguments, (str, Mapping)):
            raise InvalidParameterError("arguments", self.arguments, "a dict or a JSON string")
        check_json("arguments", self.arguments)
        _optional_str("id", self.id)

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string the API sends."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Reply:
    """A scripted chat completion answer.

    Attributes:
        content: the assistant's text (None: no text, as with a tool call or a refusal).
        pieces: how a stream splits `content`, chunk by chunk (by default one token per chunk); given
            alone, `content` is the pieces joined.
        tool_calls: tool calls to answer with; streamed as deltas (the name first, then the
            arguments a token at a time).
        finish_reason: by default `tool_calls` when there are tool calls, else `stop` (`length` when
            `max_tokens` cut the reply).
        usage: token counts to report instead of the emulator's own count.
        refusal: a refusal message (content is then None unless given).
        extra: fields added to the completion object, and to every chunk of a stream.
    """

    content: str | None = None
    pieces: list[str] | tuple[str, ...] | None = None  # not any Sequence: a str is one too
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: str | None = None
    usage: Mapping[str, int] | None = None
    refusal: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _optional_str("content", self.content)
        _optional_str("finish_reason", self.finish_reason)
        _optional_str("refusal", self.refusal)
        if self.pieces is not None:
            pieces = tuple(self.pieces) if isinstance(self.pieces, (list, tuple)) else None
            if pieces is None or not all(isinstance(p, str) for p in pieces):
                raise InvalidParameterError("pieces", self.pieces, "a list of strings")
            joined = "".join(pieces)
            if self.content is not None and joined != self.content:
                raise InvalidParameterError("pieces", self.pieces, "pieces that join into `content`")
            object.__setattr__(self, "pieces", pieces)
            object.__setattr__(self, "content", joined)
        calls = self.tool_calls
        if not isinstance(calls, (list, tuple)) or not all(isinstance(c, ToolCall) for c in calls):
            raise InvalidParameterError("tool_calls", calls, "a list of deployai.testing.ToolCall")
        object.__setattr__(self, "tool_calls", tuple(calls))
        usage = self.usage
        if usage is not None and (
            not isinstance(usage, Mapping)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in usage.values())
        ):
            raise InvalidParameterError("usage", usage, "a dict of token counts such as {'prompt_tokens': 3, ...}")
        if not isinstance(self.extra, Mapping):
            raise InvalidParameterError("extra", self.extra, "a dict of extra fields")
        check_json("extra", self.extra)


class ScriptError(Exception):
    """A test's script failed while the emulator answered (a `when` predicate raised); answered as a 500."""


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule is for: every criterion given must hold (none given: every request).

    Attributes:
        model: the `model` of a chat completion request.
        route: `chat`, `models` (the list) or `model` (one model).
        stream: whether a chat completion request asks for a stream (given, only chat completions match).
        when: a predicate on the `RecordedRequest` (its response fields are not filled in yet); it
            may be called more than once per request.
    """

    model: str | None = None
    route: RouteName | None = None
    stream: bool | None = None
    when: Callable[[RecordedRequest], bool] | None = None

    def __post_init__(self) -> None:
        _optional_str("model", self.model)
        if self.route is not None and self.route not in ROUTE_NAMES:
            raise InvalidParameterError("route", self.route, f"one of {list(ROUTE_NAMES)}")
        if self.stream is not None and not isinstance(self.stream, bool):
            raise InvalidParameterError("stream", self.stream, "True, False or None")
        if self.stream is not None and self.route not in (None, "chat"):  # it would never match
            raise InvalidParameterError("stream", self.stream, f"None for route {self.route!r} (only chat streams)")
        if self.when is not None and not callable(self.when):
            raise InvalidParameterError("when", self.when, "a function of the recorded request")

    def matches(self, route: RouteName, request: RecordedRequest) -> bool:
        """Whether `request`, for `route`, is one this rule is for."""
        if self.route is not None and route != self.route:
            return False
        body = request.json if isinstance(request.json, dict) else {}
        if self.model is not None and body.get("model") != self.model:
            return False
        # A listing of models is no whole answer: `stream=False` is for chat completions too.
        if self.stream is not None and (route != "chat" or (body.get("stream") is True) != self.stream):
            return False
        if self.when is None:
            return True
        try:
            return bool(self.when(request))
        except Exception as exc:
            name = getattr(self.when, "__name__", "predicate")
            raise ScriptError(f"The `when` predicate {name} raised {type(exc).__name__}: {exc}") from exc

    def describe(self) -> str:
        """The criteria, for a message."""
        parts = [
            f"{name}={getattr(self, name)!r}"
            for name in ("model", "route", "stream")
            if getattr(self, name) is not None
        ]
        if self.when is not None:
            parts.append(f"when={getattr(self.when, '__name__', 'a predicate')}")
        return ", ".join(parts) or "any request"


@dataclass(eq=False, slots=True)
class Rule:
    """A scripted reply or fault, what it is for, and how often it was used.

    Attributes:
        action: the `Reply`, or the fault.
        match: which requests it is for.
        times: how many requests it answers in all (None: every matching request).
        hits: how many requests it has answered so far.
        id: a number naming it, from 1 in each emulator (in the `/_emulator/` HTTP API too).
    """

    action: Reply | Fault
    match: Match
    times: int | None
    hits: int = 0
    id: int = 0  # numbered by the emulator it is added to

    @property
    def remaining(self) -> int | None:
        """Uses left (None: unlimited)."""
        return None if self.times is None else self.times - self.hits

    @property
    def used_up(self) -> bool:
        """Whether it has answered all the requests it was scripted for."""
        return self.times is not None and self.hits >= self.times

    def describe(self) -> str:
        """One line for a message: the action, what it matches, how often it was used."""
        kind = "reply" if isinstance(self.action, Reply) else type(self.action).__name__.lower()
        count = "always" if self.times is None else f"{self.hits} of {self.times} used"
        return f"rule {self.id}: {kind} for {self.match.describe()} ({count})"


def first_rule(rules: Iterable[Rule], accept: Callable[[Rule], bool]) -> Rule | None:
    """The first rule with uses left that `accept`s, counted rules before unlimited ones."""
    fallback = None
    for rule in rules:
        if rule.used_up or not accept(rule):
            continue
        if rule.times is not None:
            return rule
        if fallback is None:
            fallback = rule
    return fallback
