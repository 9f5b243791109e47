"""`Stream` and `AsyncStream`: thin iterators over one shared, I/O-free chunk decoder.

SSE framing is httpx-sse's; `_StreamCore` turns each event into a typed chunk (pydantic's JSON
validation straight from the event's text), ends the stream at `data: [DONE]`, turns error events
into typed errors, folds the chunks into what `get_final_completion()` returns, and refuses to let a
stream end silently without `[DONE]`. The shells only read: `next` or `await anext`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent
from pydantic import ValidationError

from ._exceptions import APIConnectionError, make_stream_error, make_validation_error
from ._ratelimit import RateLimit
from ._retry import safe_cause, transport_error
from .types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDeltaToolCall,
    FunctionCall,
    MessageToolCall,
    Usage,
)

if TYPE_CHECKING:
    from ._http import Opened

__all__ = ["AsyncStream", "Stream"]

_T = TypeVar("_T", bound=ChatCompletionChunk)
_E = TypeVar("_E")


class _ChoiceState:
    """What the chunks so far say about one choice."""

    __slots__ = ("calls", "finish_reason", "refusal", "role", "text")

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []
        self.refusal: list[str] | None = None
        self.finish_reason: str | None = None
        self.calls: dict[int, dict[str, Any]] | None = None

    def add_tool_calls(self, pieces: list[ChoiceDeltaToolCall]) -> None:
        calls = self.calls if self.calls is not None else {}
        self.calls = calls
        for piece in pieces:
            call = calls.setdefault(piece.index, {"id": "", "type": "function", "name": "", "args": []})
            if piece.id:
                call["id"] = piece.id
            if piece.type:
                call["type"] = piece.type
            function = piece.function
            if function is not None:
                if function.name:
                    call["name"] += function.name
                if function.arguments:
                    call["args"].append(function.arguments)

    def message(self) -> ChatCompletionMessage:
        tool_calls = [
            MessageToolCall(
                id=c["id"], type=c["type"], function=FunctionCall(name=c["name"], arguments="".join(c["args"]))
            )
            for _, c in sorted((self.calls or {}).items())
        ]
        return ChatCompletionMessage(
            role=self.role,
            content="".join(self.text) if self.text or not tool_calls else None,
            refusal="".join(self.refusal) if self.refusal is not None else None,
            tool_calls=tool_calls or None,
        )


class _StreamCore(Generic[_T]):
    """Everything about a stream that is not I/O, shared by `Stream` and `AsyncStream`.

    Chunks are folded into per-choice state as they arrive (rather than kept) so that
    `get_final_completion()` costs little per chunk and memory grows with the text, not the chunks.
    """

    __slots__ = ("_validate", "choices", "count", "done", "first", "first_chunk_at", "source", "started_at", "usage")

    def __init__(self, source: _Source[Any], cast_to: type[_T], started_at: float) -> None:
        self.source = source
        self._validate = cast_to.__pydantic_validator__.validate_json
        self.started_at = started_at
        self.first_chunk_at: float | None = None
        self.first: _T | None = None
        self.count = 0
        self.choices: dict[int, _ChoiceState] = {}
        self.usage: Usage | None = None
        self.done = False

    @property
    def response(self) -> httpx.Response:
        """The response being read (a retry before the first event replaces it)."""
        return self.source.response

    def decode(self, sse: ServerSentEvent) -> _T | None:
        """The chunk an event carries; None for an event that carries none (or for `[DONE]`)."""
        data = sse.data
        if self.done or not data:
            if sse.event == "error" and not self.done:
                raise make_stream_error(self.response, {"error": {"message": "The server sent an empty error event."}})
            return None
        if data == "[DONE]":
            self.done = True
            return None
        if sse.event == "error":
            raise make_stream_error(self.response, _loads_or_text(data))
        try:
            chunk: _T = self._validate(data)
        except ValidationError:
            payload = _loads_or_text(data)
            if isinstance(payload, dict) and "error" in payload:
                raise make_stream_error(self.response, payload) from None
            raise make_validation_error(_event_response(self.response, data), "chat completion chunk") from None
        extra = chunk.__pydantic_extra__
        if extra and "error" in extra:
            raise make_stream_error(self.response, {"error": extra["error"]})
        if self.first is None:
            self.first = chunk
            self.first_chunk_at = time.perf_counter()
        self.count += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            state = self.choices.get(choice.index)
            if state is None:
                state = self.choices[choice.index] = _ChoiceState()
            delta = choice.delta
            if delta.content:
                state.text.append(delta.content)
            if delta.role:
                state.role = delta.role
            if delta.tool_calls:
                state.add_tool_calls(delta.tool_calls)
            if delta.refusal:
                if state.refusal is None:
                    state.refusal = []
                state.refusal.append(delta.refusal)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason
        return chunk

    def check_finished(self) -> None:
        """Raise if the body ended before `[DONE]`: a silently short answer is never returned."""
        if not self.done:
            raise APIConnectionError(
                f"The stream ended after {self.count} chunk(s) without 'data: [DONE]': the answer is incomplete.",
                request=self.response.request,
            )

    def connection_error(self, exc: httpx.HTTPError) -> APIConnectionError:
        """The typed error for a transport failure mid-stream, saying how much had arrived."""
        error = transport_error(exc, self.response.request)
        error.message = f"{error.message} The stream broke after {self.count} chunk(s): the answer is incomplete."
        error.args = (error.message,)
        return error

    def final_completion(self) -> ChatCompletion:
        """The `ChatCompletion` the whole stream stands for (content joined, tool calls merged by index)."""
        self.check_finished()
        first = self.first
        if first is None:
            raise make_validation_error(_event_response(self.response, ""), "chat completion stream (no chunks)")
        completion = ChatCompletion(
            id=first.id,
            object="chat.completion",
            created=first.created,
            model=first.model,
            choices=[
                Choice(index=i, message=state.message(), finish_reason=state.finish_reason)
                for i, state in sorted(self.choices.items())
            ],
            usage=self.usage,
            system_fingerprint=first.system_fingerprint,
        )
        completion.__pydantic_private__["_headers"] = self.response.headers  # type: ignore[index]
        return completion


def _loads_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def _event_response(response: httpx.Response, data: str) -> httpx.Response:
    # The validation error quotes the bad event, not the whole (still streaming) body.
    return httpx.Response(response.status_code, headers=response.headers, text=data, request=response.request)


class _Source(Generic[_E]):
    """The response and its events: what a stream must release, kept apart from the `Stream` object.

    The iterating generator holds this, not the stream, so that a stream dropped unclosed has no
    reference cycle and is finalized at once, by reference counting.

    Attributes:
        retry: until the first event is read, how to hand a failure back to the request's retry
            plan (see `Opened.retry`); None afterwards.
    """

    __slots__ = ("closed", "events", "response", "retry")

    def __init__(self, response: httpx.Response, events: _E, retry: Any) -> None:
        self.reset(response, events, retry)

    def reset(self, response: httpx.Response, events: _E, retry: Any) -> None:
        """Read from a new response (a retry before the first event)."""
        # The SSE standard: the stream is UTF-8 whatever the headers say, and a leading BOM is dropped.
        response.encoding = "utf-8-sig"
        self.response = response
        self.events = events
        self.retry = retry
        self.closed = False


_SyncSource: TypeAlias = "_Source[Iterator[ServerSentEvent]]"
_AsyncSource: TypeAlias = "_Source[AsyncIterator[ServerSentEvent]]"

# Sources of open sync streams, held strongly: a stream dropped unclosed must not leave its event
# generators (down to httpcore's) to the garbage collector, whose finalizer would take the pool's
# non-reentrant lock, maybe while this very thread holds it. `Stream.__del__` queues the source in
# `_abandoned` instead, and the client's next request (or `close()`) releases it.
_open_sources: set[_SyncSource] = set()
_abandoned: collections.deque[_SyncSource] = collections.deque()


def close_abandoned() -> None:
    """Release the sources of `Stream`s dropped unclosed; called where no pool lock is held."""
    while _abandoned:
        try:
            source = _abandoned.popleft()
        except IndexError:  # another thread emptied it first
            return
        with contextlib.suppress(Exception):
            _release(source)


def is_event_stream(response: httpx.Response) -> bool:
    """Whether the response says it is a server-sent event stream."""
    return "text/event-stream" in response.headers.get("content-type", "").partition(";")[0]


def needs_body(response: httpx.Response) -> bool:
    """Whether a streaming response must be read whole: an error status, or no event stream at all."""
    return response.status_code >= 400 or not is_event_stream(response)


def check_event_stream(response: httpx.Response) -> None:
    """Refuse a success response to a streaming request that is not an event stream (its body was read)."""
    if response.status_code < 400 and not is_event_stream(response):
        raise make_validation_error(response, "event stream (text/event-stream)")


def _ended_early() -> httpx.HTTPError:
    # Handed to the retry plan like a dropped connection: an empty stream is retried like one.
    return httpx.RemoteProtocolError("The stream ended before its first event.")


def _release(source: _SyncSource) -> None:
    if source.closed:
        return
    source.closed = True
    _open_sources.discard(source)
    try:
        source.events.close()  # type: ignore[attr-defined]
    finally:
        source.response.close()


async def _arelease(source: _AsyncSource) -> None:
    if source.closed:
        return
    source.closed = True
    try:
        await source.events.aclose()  # type: ignore[attr-defined]
    finally:
        await source.response.aclose()


def _first_event(source: _SyncSource) -> ServerSentEvent | None:
    """Read the first event; until it arrives, a failure goes back to the request's retry plan."""
    while True:
        try:
            return next(source.events)
        except StopIteration:
            if source.retry is None:
                return None  # `check_finished` reports the early end
            failure = _ended_early()
        except httpx.HTTPError as exc:
            if source.retry is None:
                raise
            failure = exc
        retry = source.retry
        _release(source)
        opened = retry(failure)  # sleeps and sends again, or raises the typed error
        source.reset(opened.response, EventSource(opened.response).iter_sse(), opened.retry)
        _open_sources.add(source)


async def _afirst_event(source: _AsyncSource) -> ServerSentEvent | None:
    """Read the first event; until it arrives, a failure goes back to the request's retry plan."""
    while True:
        try:
            return await anext(source.events)
        except StopAsyncIteration:
            if source.retry is None:
                return None
            failure = _ended_early()
        except httpx.HTTPError as exc:
            if source.retry is None:
                raise
            failure = exc
        retry = source.retry
        await _arelease(source)
        opened = await retry(failure)
        source.reset(opened.response, EventSource(opened.response).aiter_sse(), opened.retry)


def _iterate(core: _StreamCore[_T], source: _SyncSource) -> Generator[_T, None, None]:
    decode = core.decode
    exiting = False
    try:
        sse = _first_event(source)
        source.retry = None  # an event was read: from here on a failure is raised, never retried
        if sse is not None:
            chunk = decode(sse)
            if chunk is not None:
                yield chunk
            # After [DONE] the rest is drained (not yielded) so that the connection can be reused.
            for sse in source.events:
                chunk = decode(sse)
                if chunk is not None:
                    yield chunk
        core.check_finished()
    except GeneratorExit:
        # Closed by `Stream.close()`, which releases, or finalized unclosed (see `Stream.__del__`).
        exiting = True
        raise
    except httpx.HTTPError as exc:
        raise core.connection_error(exc) from safe_cause(exc)
    finally:
        if not exiting:
            _release(source)


async def _aiterate(core: _StreamCore[_T], source: _AsyncSource) -> AsyncGenerator[_T, None]:
    decode = core.decode
    exiting = False
    try:
        sse = await _afirst_event(source)
        source.retry = None
        if sse is not None:
            chunk = decode(sse)
            if chunk is not None:
                yield chunk
            async for sse in source.events:
                chunk = decode(sse)
                if chunk is not None:
                    yield chunk
        core.check_finished()
    except GeneratorExit:
        exiting = True
        raise
    except httpx.HTTPError as exc:
        raise core.connection_error(exc) from safe_cause(exc)
    finally:
        if not exiting:
            await _arelease(source)


class _StreamBase(Generic[_T, _E]):
    """What `Stream` and `AsyncStream` share: metadata, and the finished answer."""

    _core: _StreamCore[_T]
    _source: _Source[_E]

    @property
    def response(self) -> httpx.Response:
        """The `httpx.Response` the chunks are read from: available as soon as its headers arrived."""
        return self._source.response

    @property
    def rate_limit(self) -> RateLimit:
        """The rate-limit window reported with the stream's headers."""
        return RateLimit.from_headers(self._source.response.headers)

    @property
    def request_id(self) -> str | None:
        """The `x-request-id` of the stream's response, if the server sent one."""
        request_id: str | None = self._source.response.headers.get("x-request-id")
        return request_id

    @property
    def time_to_first_chunk(self) -> float | None:
        """Seconds from the start of the call until the first chunk was received; None before that.

        The stream is read as you iterate: if you start iterating late, the wait is included.
        """
        core = self._core
        return None if core.first_chunk_at is None else core.first_chunk_at - core.started_at

    @property
    def chunk_count(self) -> int:
        """How many chunks have been decoded so far."""
        return self._core.count

    def _abandoned_source(self) -> _Source[_E] | None:
        """For a finalizer: the source of a stream dropped unclosed; None if it was closed."""
        source: _Source[_E] | None = getattr(self, "_source", None)  # None: never fully constructed
        if source is None or source.closed:
            return None
        return source

    def _warn_unclosed(self) -> None:
        # Called after the release was arranged, so that an "error" warnings filter cannot leak it.
        warnings.warn(
            f"{type(self).__name__} was never closed: iterate it to the end, or use it as a context manager.",
            ResourceWarning,
            stacklevel=2,
        )


class Stream(_StreamBase[_T, Iterator[ServerSentEvent]]):
    """The chunks of a streamed completion, as they arrive: what `create(stream=True)` returns.

    It is returned as soon as the response headers arrive (`response`, `rate_limit` and `request_id`
    are readable at once) and reads the body as you iterate. Iterate over it once, preferably inside
    `with` so that the connection is released even when you stop early. A broken connection or a
    body that ends before `data: [DONE]` raises `APIConnectionError` after the chunks that did
    arrive; an error event raises the typed `APIStatusError` it maps to.
    """

    def __init__(self, opened: Opened[Any], cast_to: type[_T]) -> None:
        self._source = _Source(opened.response, EventSource(opened.response).iter_sse(), opened.retry)
        _open_sources.add(self._source)
        self._core = _StreamCore(self._source, cast_to, opened.started_at)
        self._iterator = _iterate(self._core, self._source)

    def __iter__(self) -> Iterator[_T]:
        return self._iterator

    def __next__(self) -> _T:
        return next(self._iterator)

    def __enter__(self) -> Stream[_T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection. Safe to call more than once; iteration stops."""
        self._iterator.close()
        _release(self._source)

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the text of the first choice, piece by piece, skipping chunks without text."""
        for chunk in self:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    yield content

    def get_final_completion(self) -> ChatCompletion:
        """Read the rest of the stream (if any) and return the whole `ChatCompletion` it stands for."""
        for _ in self:
            pass
        return self._core.final_completion()

    def __del__(self) -> None:
        source = self._abandoned_source()
        if source is not None:
            _abandoned.append(source)  # not closed here: a finalizer may run inside the pool's lock
            self._warn_unclosed()


class AsyncStream(_StreamBase[_T, AsyncIterator[ServerSentEvent]]):
    """The chunks of a streamed completion for `AsyncDeployAI`: use `async with` and `async for`.

    It behaves as `Stream` does; `aclose()` releases the connection.
    """

    def __init__(self, opened: Opened[Any], cast_to: type[_T]) -> None:
        self._source = _Source(opened.response, EventSource(opened.response).aiter_sse(), opened.retry)
        self._core = _StreamCore(self._source, cast_to, opened.started_at)
        self._iterator = _aiterate(self._core, self._source)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def __aiter__(self) -> AsyncIterator[_T]:
        return self._iterator

    async def __anext__(self) -> _T:
        return await self._iterator.__anext__()

    async def __aenter__(self) -> AsyncStream[_T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection. Safe to call more than once; iteration stops."""
        await self._iterator.aclose()
        await _arelease(self._source)

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """Only the text of the first choice, piece by piece, skipping chunks without text."""
        async for chunk in self:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    yield content

    async def get_final_completion(self) -> ChatCompletion:
        """Read the rest of the stream (if any) and return the whole `ChatCompletion` it stands for."""
        async for _ in self:
            pass
        return self._core.final_completion()

    def __del__(self) -> None:
        source = self._abandoned_source()
        loop = getattr(self, "_loop", None)
        if source is not None:
            if loop is not None and not loop.is_closed():
                # An async response cannot be closed from a finalizer: hand the close to its event loop.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_schedule_close, loop, source)
            self._warn_unclosed()


_pending_closes: set[asyncio.Task[None]] = set()


def _schedule_close(loop: asyncio.AbstractEventLoop, source: _AsyncSource) -> None:
    task = loop.create_task(_arelease(source))
    _pending_closes.add(task)
    task.add_done_callback(_pending_closes.discard)
