"""From server-sent events to typed chunks: pure decoders that know nothing of responses, pools or clocks.

`EventParser` turns the bytes of an event stream into events as the SSE standard says. `ChunkDecoder`
takes each event's `event` and `data` fields, validates the data straight into the chunk type
(pydantic's JSON validation, no `json.loads` walk), notes `data: [DONE]`, reports error events, and
folds the chunks into the per-choice state that `completion()` turns into the whole `ChatCompletion`
they stand for.

Problems are raised as `ErrorEvent` and `InvalidEvent`, which carry only data: the stream that owns
the response turns them into the SDK's typed errors.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, TypeVar

from pydantic import ValidationError

from ._constants import MAX_EVENT_BYTES

if TYPE_CHECKING:  # the models are loaded with the first stream's chunk type (see deployai/__init__.py)
    from .types.chat import (
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionMessage,
        ChoiceDelta,
        ChoiceDeltaToolCall,
        ChoiceLogprobs,
        ChunkChoice,
        Usage,
    )

__all__ = [
    "DONE",
    "ChunkDecoder",
    "ErrorEvent",
    "EventParser",
    "InvalidEvent",
    "carries_nothing",
    "error_in_event",
    "is_done",
    "mended",
]

DONE = "[DONE]"
"""The data of the event that ends a stream."""
_BARE_DONE = (b"data: [DONE]", b"data:[DONE]")  # a last event without its blank line

_T = TypeVar("_T", bound="ChatCompletionChunk")


class ErrorEvent(Exception):  # noqa: N818 - an event, not an error of the decoder's
    """The server sent an error in the stream; `payload` is its parsed JSON (or its text)."""

    def __init__(self, payload: object) -> None:
        super().__init__(payload)
        self.payload = payload


class InvalidEvent(Exception):  # noqa: N818 - an event, not an error of the decoder's
    """An event's data is not what the API documents; `data` is that data, `expected` names what was expected.

    `problems` are what pydantic found wrong with it, without the values (see `ValidationError.errors`).
    """

    def __init__(self, data: str, expected: str, problem: ValidationError | None = None) -> None:
        super().__init__(expected)
        self.data = data
        self.expected = expected
        self.problems = () if problem is None else tuple(problem.errors(include_url=False, include_input=False))


_BOM: Final = b"\xef\xbb\xbf"


class EventParser:
    """The events of an SSE stream, from its bytes as they arrive (the standard's "event stream interpretation").

    https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

    - Lines end with CR LF, LF or CR, and with nothing else (not at U+2028, which JSON leaves unescaped).
    - A blank line ends an event. `data` lines are joined with LF, one space after the colon is
      dropped, comments (`:`) and the `id` and `retry` fields are skipped (nothing here uses them),
      and a leading BOM is dropped.
    - The text is UTF-8, with undecodable bytes replaced. An event not ended by a blank line when the
      body ends is dropped.

    An event is dispatched if it had a `data` line, even an empty one, or a named `event` line, so
    that `event: error` with no data is still seen (as httpx-sse saw it). Its name is "" when it had
    none. The common event, a single `data:` line, takes a fast path.
    """

    __slots__ = ("_cr", "_data", "_event", "_held", "_newline", "_pending", "_started")

    def __init__(self) -> None:
        # The bytes of lines not yet ended by a blank line, kept as they came: each read is looked
        # at once, so an event that arrives in many small reads costs its length, not its square.
        self._pending: list[bytes] = []
        self._held = 0  # their length, which `MAX_EVENT_BYTES` bounds
        self._newline = False  # whether the pending bytes end with a line end
        self._cr = False  # the last read ended with a CR: a LF starting the next one is the same line end
        self._started = False  # past a possible BOM
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """The events (`event`, `data`) that `chunk` completes."""
        if (  # the common read: one whole `data:` event (a token), nothing pending; read as the general way reads it
            not self._pending
            and chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk.endswith(b"\n")
            and self._started
            and not self._cr
            and b"\r" not in chunk
        ):
            return [("", chunk[6:-2].decode("utf-8", "replace"))]
        if not self._started:
            chunk = b"".join(self._pending) + chunk
            self._pending = []
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._pending = [chunk]
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # decided by the next read: CR LF is one line end
                chunk = chunk[:-1]
                self._cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk:
            return []
        pending = self._pending
        if b"\n\n" not in chunk and not (self._newline and chunk[0] == 0x0A):  # no blank line yet
            self._held += len(chunk)
            if self._held > MAX_EVENT_BYTES:  # an event without end: a server's fault, or a bomb's
                del chunk  # not kept alive by the error's traceback, which holds this frame
                self._too_large()
            pending.append(chunk)
            self._newline = chunk[-1] == 0x0A
            return []
        blocks = (b"".join(pending) + chunk if pending else chunk).split(b"\n\n")
        rest = blocks.pop()
        self._held = len(rest)
        if self._held > MAX_EVENT_BYTES:
            del chunk, blocks, rest  # as above
            self._too_large()
        self._pending = [rest] if rest else []
        self._newline = rest[-1:] == b"\n"
        events: list[tuple[str, str]] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:  # (a block starts with no event pending)
                events.append(("", block[6:].decode("utf-8", "replace")))
            else:
                self._lines(block, events)
        return events

    def _too_large(self) -> NoReturn:
        """Refuse an event past `MAX_EVENT_BYTES`, keeping none of it: the error's traceback holds `feed`'s frame."""
        import httpx  # loaded by then: the body came through it

        self._pending.clear()  # `feed` holds this list too
        raise httpx.DecodingError(f"An event of the stream is larger than {MAX_EVENT_BYTES:,} bytes.")

    def end(self) -> list[tuple[str, str]]:
        """The events the end of the body completes.

        A last CR ends its line. The standard drops an event that the body ended before its blank
        line; a last `data: [DONE]` is kept all the same, since it lacks nothing else.
        """
        events = []
        if self._cr:
            self._cr = False
            events = self.feed(b"\n")
        if self._pending and b"".join(self._pending).strip() in _BARE_DONE:
            self._pending = []
            events.append(("", DONE))
        return events

    def _lines(self, block: bytes, events: list[tuple[str, str]]) -> None:
        """The lines of `block`, which a blank line ended (so its last event is dispatched)."""
        for line in block.split(b"\n"):
            if not line:
                self._dispatch(events)
            elif line[0] != 0x3A:  # ":" starts a comment
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    self._data.append(value)
                elif name == b"event":
                    self._event = value
        self._dispatch(events)

    def _dispatch(self, events: list[tuple[str, str]]) -> None:
        if self._data or self._event:
            data = b"\n".join(self._data).decode("utf-8", "replace")
            events.append((self._event.decode("utf-8", "replace"), data))
            self._event, self._data = b"", []


def _count(value: object) -> int | None:
    """A token count as a whole number (`2` or `2.0`); None for anything else."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def mended(payload: Any, *, chunk: bool = False) -> Any:
    """`payload` as the API documents it, where a server left a field out or wrote it loosely.

    `usage.total_tokens` is counted when missing or null (some gateways leave it out), an empty
    `usage` (or one whose counts are all null) is none, and a `created` with a fraction of a second
    is cut to whole seconds (each model's too, in a list of models). In a
    whole answer (`chunk` false), a choice without `index` is the one at its place in the list, and
    a tool call's `arguments` written as a JSON object (not as the text of one) is that object's
    text. An answer's or a chunk's `id` and `model` left out or null are `""`, and its `created` `0`.
    In a stream chunk, `choices` null or left out (a usage chunk's) is no choices, and a `delta: null`
    adds nothing; a chunk's choice without `index` is left refused, as its place in one chunk says
    nothing of which choice it is. Only used on answers that failed validation: the answers that
    need none pay nothing.
    """
    if not isinstance(payload, dict):
        return payload
    usage = payload.get("usage")
    if isinstance(usage, dict) and all(value is None for value in usage.values()):
        payload = {**payload, "usage": None}  # some gateways put one, empty or all null, on every chunk
    elif isinstance(usage, dict) and usage.get("total_tokens") is None:
        prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        if prompt is not None and completion is not None:
            payload = {**payload, "usage": {**usage, "total_tokens": prompt + completion}}
    created = payload.get("created")
    if type(created) is float and math.isfinite(created):
        payload = {**payload, "created": int(created)}
    data = payload.get("data")  # a list of models: each its own `created`
    if isinstance(data, list) and any(isinstance(item, dict) and type(item.get("created")) is float for item in data):
        payload = {**payload, "data": [mended(item) for item in data]}
    # An answer or a chunk (a usage chunk may have no choices), not a list of models, nor another
    # kind of event (`{"type": "ping"}`), which stays no chunk.
    answer = "choices" in payload or (
        chunk
        and (
            payload.get("object") == "chat.completion.chunk"
            # A usage chunk's, with its id: not any JSON that mentions usage (an error's), taken for the end.
            or (usage is not None and payload.get("id") is not None)
        )
    )
    if answer:
        # Left out or null by some servers (OpenVINO's chunks have no id, Foundry Local's model is
        # null): the values a chunk without them stands for, as Azure's filter chunk has an id of "".
        blanks = {name: blank for name, blank in _BLANKS if payload.get(name) is None}
        if blanks:
            payload = {**payload, **blanks}
    choices = payload.get("choices")
    if chunk and answer and choices is None:  # a usage chunk's: null, or left out
        payload = {**payload, "choices": []}
    elif isinstance(choices, list) and any(isinstance(choice, dict) for choice in choices):
        if chunk:
            mended_choices = [_mended_delta(choice) for choice in choices]
        else:
            mended_choices = [_mended_choice(place, choice) for place, choice in enumerate(choices)]
        payload = {**payload, "choices": mended_choices}
    return payload


_BLANKS: Final = (("id", ""), ("model", ""), ("created", 0))


def _mended_delta(choice: Any) -> Any:
    if isinstance(choice, dict) and "delta" in choice:
        delta = choice["delta"]
        if delta is None:
            return {name: value for name, value in choice.items() if name != "delta"}
        if isinstance(delta, dict) and isinstance(delta.get("content"), list):
            return {**choice, "delta": _text_of_blocks(delta)}
    return choice


def _mended_choice(place: int, choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice
    choice = dict(choice)
    choice.setdefault("index", place)
    message = choice.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        message = choice["message"] = _text_of_blocks(message)
    if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
        choice["message"] = {**message, "tool_calls": [_mended_tool_call(call) for call in message["tool_calls"]]}
    return choice


def _text_of_blocks(message: dict[str, Any]) -> dict[str, Any]:
    """A message or delta whose `content` is a list of text and thinking blocks (Mistral's reasoning models), as text.

    `content` is the text blocks' text (None without any), and the thinking's text is
    `reasoning_content`, as other providers send it. A block of any other kind is left refused:
    read as text, it would be lost.
    """
    text: list[str] = []
    thinking: list[str] = []
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        thought = _thinking_text(block.get("thinking")) if kind == "thinking" else None
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif thought is not None:
            thinking.append(thought)
        else:
            return message
    mended = {**message, "content": "".join(text) if text else None}
    if thinking and message.get("reasoning_content") is None:
        mended["reasoning_content"] = ThoughtText("".join(thinking))
    return mended


class ThoughtText(str):
    """A `reasoning_content` the SDK read out of a content's thinking blocks, not one the server sent.

    An answer sent back in the conversation is sent without it: Mistral refuses a field it does
    not define on a message (a 422), and it had sent none.
    """

    __slots__ = ()


def _thinking_text(thinking: Any) -> str | None:
    """The text of a thinking block's `thinking`: a str, or a list of text blocks; None if it is neither."""
    if isinstance(thinking, str):
        return thinking
    if isinstance(thinking, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in thinking
    ):
        return "".join(part["text"] for part in thinking)
    return None


def _mended_tool_call(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if isinstance(function, dict) and isinstance(function.get("arguments"), dict):
        try:
            arguments = json.dumps(function["arguments"], ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):  # not JSON (NaN): left refused
            return call
        return {**call, "function": {**function, "arguments": arguments}}
    return call


def error_in_event(event: str, data: str) -> Any:
    """The error an event carries, as `ChunkDecoder.decode` would raise it (`ErrorEvent.payload`); None if none.

    For the first event of a stream, which is still retried as an error status would be.
    """
    if event == "error":
        if not data:
            return _empty_error_event()
        if is_done(data):
            return {"error": {"message": "The server sent an error event whose data is [DONE]."}}
        return _loads_or_text(data)
    if '"error"' not in data:  # JSON escapes a quote inside a string: no answer's text matches
        return None
    payload = _loads_or_text(data)
    return payload if isinstance(payload, dict) and payload.get("error") is not None else None


def _delta_from_whole(choice: ChunkChoice, data: str) -> None:
    """Give a chunk's choice that carries a whole `message` (or a legacy `text`), and no `delta`, that as its delta.

    Some gateways answer a stream from a provider that cannot stream with one such chunk; read as a
    chunk without a delta, it was an answer of nothing.

    Raises:
        InvalidEvent: a `message` that is no message.
    """
    from .types.chat import ChoiceDelta

    extra = choice.__pydantic_extra__ or {}
    message, text = extra.get("message"), extra.get("text")
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        message = _text_of_blocks(message)
    if isinstance(message, dict):
        calls = message.get("tool_calls")
        if isinstance(calls, list):  # a whole message's calls have no `index`: each is its own call
            calls = [
                {"index": i, **_mended_tool_call(call)} if isinstance(call, dict) else call
                for i, call in enumerate(calls)
            ]  # with `arguments` as a JSON string, as in a whole answer (`mended`)
            message = {**message, "tool_calls": calls}
        try:
            choice.delta = ChoiceDelta.model_validate(message)
        except ValidationError as problem:
            raise InvalidEvent(data, "chat completion chunk", problem) from None
    elif isinstance(text, str):
        choice.delta = ChoiceDelta(content=text)


def is_done(data: str) -> bool:
    """Whether an event's data is `[DONE]`, the end of a stream (spaces around it allowed)."""
    return data == DONE or (len(data) < 16 and data.strip() == DONE)


def carries_nothing(event: str, data: str) -> bool:
    """Whether an event is a keep-alive: empty, or named (not `message`) with data that is no chunk.

    `ChunkDecoder.decode` skips every such event (and some more); the first event of a stream that
    counts is one that may carry part of the answer, `[DONE]` or an error.
    """
    if not data:
        return event != "error"
    return bool(event) and event not in ("message", "error") and '"choices"' not in data and data.strip() != DONE


def _empty_error_event() -> dict[str, Any]:
    return {"error": {"message": "The server sent an empty error event."}}


def _loads_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data


class _ChoiceState:
    """What the chunks so far say about one choice."""

    __slots__ = (
        "calls",
        "choice_fields",
        "earlier_calls",
        "extra",
        "finish_reason",
        "logprobs",
        "refusal",
        "role",
        "text",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []
        self.refusal: list[str] | None = None
        self.finish_reason: str | None = None
        self.calls: dict[int, dict[str, Any]] | None = None
        # Calls a server gave the index of a later call (each of its calls as index 0), by that index.
        self.earlier_calls: dict[int, list[dict[str, Any]]] | None = None
        self.extra: dict[str, Any] | None = None  # fields a provider adds to the delta (`reasoning_content`)
        self.logprobs: dict[str, Any] | None = None
        self.choice_fields: dict[str, Any] | None = None  # fields a provider adds to the choice (`stop_reason`)

    def add_choice_fields(self, fields: dict[str, Any]) -> None:
        """A provider's own fields of a chunk's choice (`stop_reason`): the last value of each that is not None."""
        for name, value in fields.items():
            if value is not None and name not in _WHOLE_FIELDS:
                if self.choice_fields is None:
                    self.choice_fields = {}
                self.choice_fields[name] = value

    def add(self, delta: ChoiceDelta) -> None:
        """What a delta adds besides its text: a role, tool calls, a refusal, a provider's own fields."""
        if delta.role:
            self.role = delta.role
        if delta.tool_calls:
            self.add_tool_calls(delta.tool_calls)
        if delta.refusal:
            if self.refusal is None:
                self.refusal = []
            self.refusal.append(delta.refusal)
        extra = delta.__pydantic_extra__
        if extra:
            self.extra = _merged(self.extra, extra)

    def add_logprobs(self, logprobs: ChoiceLogprobs) -> None:
        # Its fields and a provider's own: each token list grows by the chunk's tokens.
        self.logprobs = _merged(self.logprobs, dict(logprobs))

    def add_tool_calls(self, pieces: list[ChoiceDeltaToolCall]) -> None:
        calls = self.calls if self.calls is not None else {}
        self.calls = calls
        for piece in pieces:
            index = piece.index
            if "index" not in piece.__pydantic_fields_set__ and calls:  # a server that numbers no calls
                index = max(calls)
                if piece.id and calls[index]["id"] not in ("", piece.id):
                    index += 1  # a new id: the next call
            elif (
                piece.id
                and piece.function is not None
                and piece.function.name
                and index in calls
                and calls[index]["id"] not in ("", piece.id)
            ):
                # A new id with a name at a call's index: a server that gives every call index 0.
                # Merged, two calls would be one, its arguments two JSON texts run together. (A new
                # id alone is the same call's: Poolside's later pieces carry an id of their own.)
                if self.earlier_calls is None:
                    self.earlier_calls = {}
                self.earlier_calls.setdefault(index, []).append(calls.pop(index))
            call = calls.setdefault(index, {"id": "", "type": "function", "name": "", "args": []})
            if piece.id:
                call["id"] = piece.id
            if piece.type:
                call["type"] = piece.type
            function = piece.function
            if function is not None:
                name = function.name
                # A server that repeats a call's header in every piece sends its whole name again: a
                # name equal to the call's, once its arguments have begun or with its id repeated, is
                # not its next part (a name sent in parts comes before the arguments, without the id).
                if name and not (name == call["name"] and (call["args"] or (piece.id and piece.id == call["id"]))):
                    call["name"] += name
                if function.arguments:
                    call["args"].append(function.arguments)
            extra = piece.__pydantic_extra__
            if extra:  # a provider's own, as Gemini's `extra_content.google.thought_signature`, to send back
                call["extra"] = _latest(call.get("extra"), extra)

    def message(self) -> ChatCompletionMessage:
        from .types.chat import ChatCompletionMessage, FunctionCall, MessageToolCall

        earlier = self.earlier_calls or {}
        tool_calls = [
            MessageToolCall(
                id=c["id"],
                type=c["type"],
                function=FunctionCall(name=c["name"], arguments=_paired("".join(c["args"]))),
                **copy.deepcopy(c.get("extra", {})),  # each completion its own, as each chunk has its own
            )
            for index, last in sorted((self.calls or {}).items())
            for c in [*earlier.get(index, ()), last]
        ]
        called = tool_calls or self.refusal or (self.extra and "function_call" in self.extra)
        return ChatCompletionMessage(
            role=self.role,
            # No text with a tool call or a refusal is None, as in a whole (not streamed) completion.
            content=_paired("".join(self.text)) if self.text or not called else None,
            refusal=_paired("".join(self.refusal)) if self.refusal is not None else None,
            tool_calls=tool_calls or None,
            **(_whole(self.extra) or {}),
        )


# A chunk's choice's fields that carry a whole message or a piece of text, read as its delta.
_WHOLE_FIELDS = frozenset({"message", "text"})

SURROGATE: Final = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """Whether `text` holds a UTF-16 surrogate (half of a character), which no encoding writes alone."""
    return not text.isascii() and SURROGATE.search(text) is not None


def _paired(text: str) -> str:
    """`text` with each UTF-16 surrogate pair that two pieces split made one character again.

    A server that cuts its text by UTF-16 code units (JavaScript's strings) can end one chunk with
    the first half of an emoji and begin the next with the second: each JSON string then holds a
    lone surrogate, and joined they would still be two, which cannot be printed or encoded.
    """
    if not has_surrogates(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# A chunk's own fields that are no field of the whole answer: `obfuscation` is OpenAI's padding of
# each chunk to a random length, and an `error` there is null (one that is not was raised).
_CHUNK_ONLY = frozenset({"obfuscation", "error"})


def _answer_fields(extra: dict[str, Any]) -> dict[str, Any]:
    """What a provider adds to its chunks (`service_tier`, Groq's `x_groq`), as the whole answer has it.

    Each field as the last chunk that had it gave it (a copy: the chunks handed over keep their
    own): Groq's last chunk adds its usage to `x_groq`, and Azure's `prompt_filter_results` come
    only on its first chunk.
    """
    return {name: copy.deepcopy(value) for name, value in extra.items() if name not in _CHUNK_ONLY}


def _whole(fields: dict[str, Any] | None) -> dict[str, Any] | None:
    if fields is None:
        return None
    return {name: _joined(value) for name, value in fields.items()}


def _joined(value: Any) -> Any:
    if isinstance(value, _Pieces):
        text = _paired("".join(value))
        return ThoughtText(text) if value and type(value[0]) is ThoughtText else text
    return _whole(value) if isinstance(value, dict) else value


class _Pieces(list[str]):
    """A provider's text field as it arrives in pieces, joined at the end (not once per piece)."""

    __slots__ = ()


def _merged(into: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """`into` with the fields of one more delta: text appended, lists extended, dicts merged alike, else replaced.

    That is how the pieces of a streamed answer add up to the whole one: `reasoning_content` arrives
    a piece of text at a time, `logprobs.content` a list of tokens at a time.
    """
    merged = {} if into is None else into
    for name, value in fields.items():
        if value is None:
            continue
        known = merged.get(name)
        if isinstance(value, str):
            if not isinstance(known, _Pieces):
                known = merged[name] = _Pieces()
            known.append(value)
        elif isinstance(value, dict):  # its fields in pieces too: a legacy `function_call`'s arguments
            merged[name] = _merged(known if isinstance(known, dict) else None, value)
        elif isinstance(value, list) and isinstance(known, list) and not isinstance(known, _Pieces):
            known.extend(value)
        else:
            merged[name] = list(value) if isinstance(value, list) else value
    return merged


def _latest(into: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """`into` with each field of `fields` that is not None in place of its own, dicts merged alike.

    For a tool call's own fields: a signature is sent whole, and a server that repeats a call's
    fields in every piece would have it joined to itself if appended as text is.
    """
    merged = {} if into is None else into
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, dict):  # a copy: the chunk handed over keeps its own
            known = merged.get(name)
            merged[name] = _latest(known if isinstance(known, dict) else None, value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


class ChunkDecoder(Generic[_T]):
    """Turns the events of one chat completion stream into chunks, and remembers what they add up to.

    Chunks are folded into per-choice state as they arrive (rather than kept) so that `completion()`
    costs little per chunk and memory grows with the text, not with the number of chunks.

    Attributes:
        done: whether `data: [DONE]` has arrived; every event after it is ignored.
        count: how many chunks have been decoded.
        first: the first chunk with an id (else the first chunk): its id, model and creation time are
            the completion's.
        usage: the usage of the last chunk that had one.
        usage_chunk: whether a chunk with usage and no choices has come: the last chunk `include_usage`
            asks for (a server may also put a running count on the chunks before it).
        fingerprint: the first `system_fingerprint` a chunk had (some servers send it on later chunks only).
        extra: the fields of its own a provider added to the chunks, each as the last chunk that had it
            (a later null leaves an earlier value).
    """

    __slots__ = (
        "_validate",
        "_validate_parsed",
        "choices",
        "count",
        "done",
        "extra",
        "fingerprint",
        "first",
        "usage",
        "usage_chunk",
    )

    def __init__(self, chunk_type: type[_T]) -> None:
        self._validate = chunk_type.__pydantic_validator__.validate_json
        self._validate_parsed = chunk_type.__pydantic_validator__.validate_python
        self.done = False
        self.count = 0
        self.first: _T | None = None
        self.choices: dict[int, _ChoiceState] = {}
        self.usage: Usage | None = None
        self.usage_chunk = False
        self.fingerprint: str | None = None
        self.extra: dict[str, Any] = {}

    def decode(self, event: str, data: str) -> _T | None:
        """The chunk an event carries; None for an event that carries none (empty data, `[DONE]`, after `[DONE]`).

        Raises:
            ErrorEvent: an `event: error`, or data that is an `{"error": ...}` object.
            InvalidEvent: data that is not a chunk.
        """
        if self.done:
            return None
        if event == "error":  # before `[DONE]`: an error event that says only that is no end of the answer
            raise ErrorEvent(error_in_event(event, data))
        if not data:
            return None
        if is_done(data):
            self.done = True
            return None
        try:
            chunk: _T = self._validate(data)
        except ValidationError:
            payload = _loads_or_text(data)
            if isinstance(payload, dict) and payload.get("error") is not None:
                raise ErrorEvent(payload) from None
            if event and event != "message" and not (isinstance(payload, dict) and "choices" in payload):
                return None  # an event of another kind (a keep-alive `ping`, `metrics`): no part of the answer
            try:  # valid JSON that pydantic's parser does not take (a lone surrogate), or loosely written
                chunk = self._validate_parsed(mended(payload, chunk=True))
            except ValidationError as problem:
                raise InvalidEvent(data, "chat completion chunk", problem) from None
        extra = chunk.__pydantic_extra__
        if extra:
            if extra.get("error") is not None:  # some servers write `"error": null` in every chunk
                raise ErrorEvent(_loads_or_text(data))
            kept = self.extra
            if None not in extra.values():
                kept.update(extra)
            else:
                for name, value in extra.items():
                    if value is not None or name not in kept:  # a later null says nothing new: the value stays
                        kept[name] = value
        first = self.first
        if first is None or (not first.id and chunk.id):  # not a chunk with no id (Azure's prompt filter's)
            self.first = chunk
        self.count += 1
        for choice in chunk.choices:
            state = self.choices.get(choice.index)
            if state is None:
                if choice.index < 0:  # sorted first, it would be read as `choices[0]`
                    raise InvalidEvent(data, "chat completion chunk (a choice's index is below 0)")
                state = self.choices[choice.index] = _ChoiceState()
            if choice.__pydantic_extra__:
                if "delta" not in choice.__pydantic_fields_set__:
                    _delta_from_whole(choice, data)
                state.add_choice_fields(choice.__pydantic_extra__)
            delta = choice.delta
            content = delta.content
            if content:
                state.text.append(content)
            # Most deltas carry their text alone: the other fields are looked at only when given.
            given = delta.__pydantic_fields_set__
            if len(given) > 1 or (given and content is None):
                state.add(delta)
            if choice.finish_reason:  # some servers write "" in every chunk until the last
                state.finish_reason = choice.finish_reason
            if choice.logprobs:
                state.add_logprobs(choice.logprobs)
        if chunk.usage is not None:
            self.usage = chunk.usage
            # Only the last chunk, with no choices, is sure to hold the total: vLLM puts a running
            # count on every chunk, the one that ends the answer too.
            self.usage_chunk = not chunk.choices
        if self.fingerprint is None and chunk.system_fingerprint:
            self.fingerprint = chunk.system_fingerprint
        return chunk

    def completion(self) -> ChatCompletion:
        """The `ChatCompletion` the chunks stand for (content joined, tool calls merged by index).

        Raises:
            InvalidEvent: no chunk arrived at all, or none had a choice.
        """
        from .types.chat import ChatCompletion, Choice

        first = self.first
        if first is None:
            raise InvalidEvent("", "chat completion stream (no chunks)")
        if not self.choices:  # only chunks without a choice (a usage chunk): no answer at all
            raise InvalidEvent("", "chat completion stream (no chunk had a choice)")
        return ChatCompletion(
            id=first.id,
            object="chat.completion",
            created=first.created,
            model=first.model,
            choices=[
                Choice(
                    index=i,
                    message=state.message(),
                    finish_reason=state.finish_reason,
                    logprobs=_whole(state.logprobs),
                    **(state.choice_fields or {}),
                )
                for i, state in sorted(self.choices.items())
            ],
            usage=self.usage,
            system_fingerprint=self.fingerprint,
            **_answer_fields(self.extra),
        )
