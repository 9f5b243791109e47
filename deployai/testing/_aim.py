"""`Aim`: script replies and faults for the requests that match, as in `emulator.on(model=...).reply(...)`."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from typing_extensions import Unpack

from .._exceptions import InvalidParameterError
from ._faults import Cut, ErrorEvent, Fail, Fault, Malformed, Slow, Stall, check_count
from ._scripting import Match, Reply, Rule, ToolCall, check_seconds

if TYPE_CHECKING:
    from ._records import RecordedRequest
    from ._routing import RouteName

__all__ = ["Aim", "ReplyFields", "Scripts"]


class ReplyFields(TypedDict, total=False):
    """The fields of a `Reply`, as keyword arguments (see `Reply` for each)."""

    content: str | None
    pieces: list[str] | tuple[str, ...] | None
    tool_calls: Sequence[ToolCall]
    finish_reason: str | None
    usage: Mapping[str, int] | None
    refusal: str | None
    extra: Mapping[str, Any]


def _times(times: int | None) -> int | None:
    return None if times is None else check_count("times", times, 1)


def make_reply(reply: Reply | str | None, fields: ReplyFields) -> Reply:
    """A `Reply` from a `Reply`, a content string, or the fields as keywords."""
    if isinstance(reply, Reply):
        if fields:
            raise InvalidParameterError("reply", reply, "a Reply, or its fields as keywords, not both")
        return reply
    if reply is None and not fields:  # `reply()`: most likely its text was forgotten
        raise InvalidParameterError("reply", None, "its content, or its fields as keywords (content=None for none)")
    if reply is not None:
        if "content" in fields:
            raise InvalidParameterError("content", reply, "given once")
        fields = {**fields, "content": reply}
    given: dict[str, Any] = dict(fields)
    for name in ("pieces", "tool_calls"):
        if given.get(name) is not None:
            given[name] = tuple(given[name]) if isinstance(given[name], (list, tuple)) else given[name]
    return Reply(**given)


class Aim:
    """Replies and faults for the requests that match; from `Emulator.on()` (or `Emulator` itself for any request).

    Each method adds a rule and returns it (`rule.hits` counts its uses). `times` is how many
    matching requests it answers; None answers every one, for as long as the emulator lives.
    """

    def __init__(self, add: Callable[[Rule], None], match: Match) -> None:
        self._add = add
        self.match = match

    def __repr__(self) -> str:
        return f"Aim({self.match.describe()})"

    def _rule(self, action: Reply | Fault, times: int | None) -> Rule:
        rule = Rule(action, self.match, _times(times))
        self._add(rule)
        return rule

    def reply(
        self, reply: Reply | str | None = None, /, *, times: int | None = 1, **fields: Unpack[ReplyFields]
    ) -> Rule:
        """Answer matching chat completions with this reply (a `Reply`, its content, or its fields).

        ```python
        emulator.on(model="anthropic/claude-3.5-sonnet").reply("Bonjour !", times=2)
        emulator.on(route="chat").reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})])
        ```

        The request's own parameters still apply: `stream`, `n`, `stop`, `max_tokens` and
        `stream_options`. A reply is used up by the answer it is built into, unless a fault replaced
        or broke that answer (a failure, a cut stream, an error event, broken JSON): then the reply
        waits for the retry. A stalled or slowed answer uses it even when its client gives up on it.
        """
        if self.match.route not in (None, "chat"):
            raise InvalidParameterError("route", self.match.route, "'chat' (or None): replies answer chat completions")
        return self._rule(make_reply(reply, fields), times)

    def fail(
        self,
        status: int,
        body: Mapping[str, Any] | list[Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        times: int | None = 1,
    ) -> Rule:
        """Answer matching requests with `status` and `body`, whatever they ask.

        Args:
            status: any status from 400 to 599.
            body: a dict or list (sent as JSON), a str (sent as given: `text/html` when it starts with
                `<`, else `text/plain`), bytes, or None for the API's error form for that status.
            headers: extra response headers; they replace the emulator's headers of the same name (so
                `{"retry-after": "0"}` makes the SDK retry at once).
            times: how many requests fail this way.
        """
        return self._rule(Fail.build(status, body, headers), times)

    def stall(self, seconds: float, *, times: int | None = 1) -> Rule:
        """Wait `seconds` before sending the status and headers: a read timeout for the client."""
        return self._rule(Stall(check_seconds("seconds", seconds)), times)

    def slow(self, seconds: float, *, times: int | None = 1) -> Rule:
        """Send the headers at once, then wait `seconds` before the body.

        In a stream the first chunk goes with the headers, and each later one `seconds` after the one
        before (`stall` delays the first).
        """
        return self._rule(Slow(check_seconds("seconds", seconds)), times)

    def cut_stream_after(self, n_chunks: int, *, times: int | None = 1) -> Rule:
        """Drop the connection of matching successful streams after `n_chunks` events, before `[DONE]`.

        The first event is the one with `role`. In-process, reading further raises
        `httpx.RemoteProtocolError`; over HTTP the server closes the connection in the middle of the
        chunked body, which httpx reports the same way. The SDK raises `APIConnectionError`.
        Requests that are not successful streams leave the rule for later.
        """
        return self._rule(Cut(check_count("n_chunks", n_chunks, 0)), times)

    def error_event_after(
        self, n_chunks: int, error: Mapping[str, Any] | None = None, *, as_event: bool = False, times: int | None = 1
    ) -> Rule:
        """Send an error in the middle of matching successful streams, after `n_chunks` events; then end them.

        Args:
            n_chunks: events sent before the error (the first is the one with `role`).
            error: the error object, for example `{"message": "...", "type": "rate_limit_error"}`;
                by default a `server_error`. It is sent as `data: {"error": {...}}`.
            as_event: send it as an SSE `event: error` instead of a plain data event.
            times: how many streams get the error.
        """
        return self._rule(ErrorEvent.build(n_chunks, error, as_event=as_event), times)

    def malformed_json(self, *, at_chunk: int = 1, times: int | None = 1) -> Rule:
        """Answer matching successful requests with broken JSON, status 200.

        A JSON body is cut in half. In a stream, event number `at_chunk` (0 is the `role` event) carries
        half of its JSON instead, and the stream goes on to `[DONE]`.
        """
        return self._rule(Malformed(check_count("at_chunk", at_chunk, 0)), times)


class Scripts(Aim):
    """The scripting half of `Emulator`: rules for the next requests, or aimed with `on()`; what is left of them."""

    def __init__(self) -> None:
        # The emulator takes this lock to answer a request, so that one request uses a rule's count.
        # Reentrant: a `when` predicate may read the emulator (its requests, its rules) while it answers.
        self._lock = threading.RLock()
        self._rules: list[Rule] = []
        self._rule_ids = itertools.count(1)  # numbered per emulator, again from 1 after a reset
        super().__init__(self._add_rule, Match())

    def _add_rule(self, rule: Rule) -> None:
        with self._lock:
            rule.id = next(self._rule_ids)
            self._rules.append(rule)

    def on(
        self,
        *,
        model: str | None = None,
        route: RouteName | None = None,
        stream: bool | None = None,
        when: Callable[[RecordedRequest], bool] | None = None,
    ) -> Aim:
        """Aim replies and faults at the requests that match every criterion given.

        ```python
        emulator.on(model="openai/gpt-4o", stream=True).cut_stream_after(3)
        emulator.on(when=lambda r: "tools" in r.json).reply(tool_calls=[ToolCall("lookup", {"q": "x"})])
        ```

        Args:
            model: the `model` of a chat completion.
            route: `chat`, `models` (the list) or `model` (one model).
            stream: whether a chat completion request asks for a stream (given, only chat completions match).
            when: a predicate on the `RecordedRequest` (its response fields are not filled in yet).
        """
        return Aim(self._add_rule, Match(model, route, stream, when))

    def reply(
        self, reply: Reply | str | None = None, /, *, times: int | None = 1, **fields: Unpack[ReplyFields]
    ) -> Rule:
        """Answer the next chat completion(s) with this reply; queued replies are used in order. See `Aim.reply`."""
        return super().reply(reply, times=times, **fields)

    def fail_next(
        self,
        status: int,
        body: Mapping[str, Any] | list[Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        times: int | None = 1,
    ) -> Rule:
        """Answer the next request(s) with `status` and `body`, whatever they ask. See `Aim.fail`."""
        return self.fail(status, body, headers, times=times)

    def stall_next(self, seconds: float, *, times: int | None = 1) -> Rule:
        """Wait `seconds` before the status and headers of the next request(s). See `Aim.stall`."""
        return self.stall(seconds, times=times)

    def slow_next(self, seconds: float, *, times: int | None = 1) -> Rule:
        """Wait `seconds` before the body (in a stream, between chunks) of the next request(s). See `Aim.slow`."""
        return self.slow(seconds, times=times)

    def malformed_json_next(self, *, at_chunk: int = 1, times: int | None = 1) -> Rule:
        """Break the JSON of the next successful request(s). See `Aim.malformed_json`."""
        return self.malformed_json(at_chunk=at_chunk, times=times)

    @property
    def rules(self) -> list[Rule]:
        """The scripted replies and faults with uses left, in the order they were added; a copy."""
        with self._lock:
            return list(self._rules)

    @property
    def pending_faults(self) -> int:
        """How many uses of counted faults are still waiting for a request."""
        with self._lock:
            return sum(r.remaining or 0 for r in self._rules if not isinstance(r.action, Reply))

    def assert_scripts_used(self) -> None:
        """Raise `AssertionError` naming every counted reply or fault that has uses left, and every other never used."""
        left = [rule.describe() for rule in self.rules if rule.times is not None or not rule.hits]
        if left:
            raise AssertionError("Scripted but never used:\n  " + "\n  ".join(left))
