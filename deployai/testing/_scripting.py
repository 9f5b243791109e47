"""What a test scripts: replies and faults, and which requests they are for.

A `Rule` pairs an action (a `Reply`, or a fault) with a `Match` (model, route, stream, predicate)
and a count of uses. The emulator asks for the first rule, in the order they were added, that
matches a request and has uses left; rules with no count (`times=None`) come after every counted one,
so "the next request" scripts still go first.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeAlias

from .._exceptions import InvalidParameterError
from ._routing import ROUTE_NAMES, RouteName
from ._wire import Draft, Piece, dumps, error_body

if TYPE_CHECKING:
    from ._records import RecordedRequest

__all__ = ["Fault", "Match", "Reply", "Rule", "ToolCall", "apply_fault", "fault_applies"]

_DEFAULT_STREAM_ERROR: dict[str, Any] = {
    "message": "The upstream provider failed in the middle of the stream.",
    "type": "server_error",
    "param": None,
    "code": "provider_error",
}


def check_seconds(name: str, value: float) -> float:
    """`value` as float seconds >= 0, or a typed error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise InvalidParameterError(name, value, "a number of seconds >= 0")
    return float(value)


def check_count(name: str, value: int, low: int) -> int:
    """`value` as a whole number >= `low`, or a typed error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameterError(name, value, f"a whole number >= {low}")
    return value


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
    pieces: tuple[str, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
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
            not isinstance(usage, Mapping) or not all(isinstance(v, int) and v >= 0 for v in usage.values())
        ):
            raise InvalidParameterError("usage", usage, "a dict of token counts such as {'prompt_tokens': 3, ...}")
        if not isinstance(self.extra, Mapping):
            raise InvalidParameterError("extra", self.extra, "a dict of extra fields")


# Faults. `fail` and `stall` apply to any request; the others change a successful response, and the
# stream faults only apply to successful streams.


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with this status, body and headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def build(
        cls,
        status: int,
        body: Mapping[str, Any] | list[Any] | str | bytes | None,
        headers: Mapping[str, str] | None,
    ) -> Fail:
        """Check the arguments of a `fail` and encode its body."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidParameterError("status", status, "an HTTP error status from 400 to 599")
        content_type = "application/json"
        if body is None:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            data = dumps(error_body(status, f"Emulated failure: {status} {phrase}."))
        elif isinstance(body, bytes):
            data, content_type = body, "application/octet-stream"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        else:
            data = dumps(body if isinstance(body, list) else dict(body))
        extra = {"content-type": content_type, **{k.lower(): v for k, v in (headers or {}).items()}}
        return cls(status, data, tuple(extra.items()))


@dataclass(frozen=True, slots=True)
class Stall:
    """Wait this long before the status and headers."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Slow:
    """Wait this long before the body, and between chunks of a stream."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Cut:
    """Drop the connection of a stream after this many events."""

    after_chunks: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Send this error event in a stream after this many events, then end it."""

    after_chunks: int
    payload: bytes

    @classmethod
    def build(cls, n_chunks: int, error: Mapping[str, Any] | None, *, as_event: bool) -> ErrorEvent:
        """Check the arguments of an `error_event_after` and encode its event."""
        payload = dumps({"error": dict(error) if error is not None else _DEFAULT_STREAM_ERROR})
        event = (b"event: error\n" if as_event else b"") + b"data: " + payload + b"\n\n"
        return cls(check_count("n_chunks", n_chunks, 0), event)


@dataclass(frozen=True, slots=True)
class Malformed:
    """Break the JSON of a body, or of event number `at_chunk` of a stream."""

    at_chunk: int


Fault: TypeAlias = Fail | Stall | Slow | Cut | ErrorEvent | Malformed
"""A scripted fault."""


def fault_applies(fault: Fault, route: RouteName, *, ok: bool, stream: bool) -> bool:
    """Whether `fault` can change this response (the stream faults wait for a successful stream)."""
    if isinstance(fault, (Cut, ErrorEvent)):
        return ok and stream and route == "chat"
    if isinstance(fault, Malformed):
        return ok
    return True


def apply_fault(fault: Fault, draft: Draft, base: list[tuple[str, str]]) -> Draft:
    """`draft` changed by `fault`; `base` holds the emulator's own headers (request id, rate limits)."""
    if isinstance(fault, Fail):
        failed = Draft(fault.status, [], fault.body, delay=draft.delay)
        replaced = {name for name, _ in fault.headers}
        failed.headers = [(k, v) for k, v in base if k not in replaced]
        failed.headers += [*fault.headers]
        if "content-length" not in replaced:
            failed.headers.append(("content-length", str(len(fault.body))))
        return failed
    if isinstance(fault, Stall):
        draft.delay = fault.seconds
    elif isinstance(fault, Slow):
        draft.slow = fault.seconds
    elif draft.events is None:
        assert isinstance(fault, Malformed)  # the stream faults only apply to streams
        draft.body = draft.body[: len(draft.body) // 2]
        draft.headers = [(k, str(len(draft.body)) if k == "content-length" else v) for k, v in draft.headers]
    elif isinstance(fault, Malformed):
        # The last event is [DONE]: a later `at_chunk` breaks the last chunk before it.
        index = min(fault.at_chunk, len(draft.events) - 2)
        delay, data = draft.events[index]
        json_text = data.removeprefix(b"data: ").rstrip(b"\n")
        draft.events[index] = (delay, b"data: " + json_text[: len(json_text) // 2] + b"\n\n")
    else:
        kept: list[Piece] = draft.events[: min(fault.after_chunks, len(draft.events) - 1)]
        if isinstance(fault, Cut):
            draft.events, draft.abort = kept, True
        else:
            draft.events = [*kept, (0.0, fault.payload)]
    return draft


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule is for: every criterion given must hold (none given: every request).

    Attributes:
        model: the `model` of a chat completion request.
        route: `chat`, `models` (the list) or `model` (one model).
        stream: whether the request asks for a stream.
        when: a predicate on the `RecordedRequest` (its response fields are not filled in yet).
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
        if self.when is not None and not callable(self.when):
            raise InvalidParameterError("when", self.when, "a function of the recorded request")

    def matches(self, route: RouteName, request: RecordedRequest) -> bool:
        """Whether `request`, for `route`, is one this rule is for."""
        if self.route is not None and route != self.route:
            return False
        body = request.json if isinstance(request.json, dict) else {}
        if self.model is not None and body.get("model") != self.model:
            return False
        if self.stream is not None and (body.get("stream") is True) != self.stream:
            return False
        return self.when is None or bool(self.when(request))

    def describe(self) -> str:
        """The criteria, for a message."""
        parts = [f"{name}={getattr(self, name)!r}" for name in ("model", "route", "stream") if getattr(self, name)]
        if self.when is not None:
            parts.append(f"when={getattr(self.when, '__name__', 'a predicate')}")
        return ", ".join(parts) or "any request"


_rule_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Rule:
    """A scripted reply or fault, what it is for, and how often it was used.

    Attributes:
        action: the `Reply`, or the fault.
        match: which requests it is for.
        times: how many requests it answers in all (None: every matching request).
        hits: how many requests it has answered so far.
        id: a number naming it (in the `/_emulator/` HTTP API too).
    """

    action: Reply | Fault
    match: Match
    times: int | None
    hits: int = 0
    id: int = field(default_factory=lambda: next(_rule_ids))

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
