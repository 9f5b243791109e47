"""`Stream` and `AsyncStream`: thin iterators over one shared, I/O-free chunk decoder.

SSE framing is httpx-sse's; `_StreamCore` turns each event into a typed chunk (pydantic's JSON
validation straight from the event's text), ends the stream at `data: [DONE]`, turns error events
into typed errors, keeps the chunks for `get_final_completion()`, and refuses to let a stream end
silently without `[DONE]`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from functools import cached_property
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx
from httpx_sse import ServerSentEvent
from pydantic import ValidationError

from ._exceptions import APIConnectionError, make_stream_error, make_validation_error
from ._ratelimit import RateLimit
from ._retry import transport_error
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

    __slots__ = ("_validate", "choices", "count", "done", "first", "first_chunk_at", "response", "started_at", "usage")

    def __init__(self, response: httpx.Response, cast_to: type[_T], started_at: float) -> None:
        self.response = response
        self._validate = cast_to.__pydantic_validator__.validate_json
        self.started_at = started_at
        self.first_chunk_at: float | None = None
        self.first: _T | None = None
        self.count = 0
        self.choices: dict[int, _ChoiceState] = {}
        self.usage: Usage | None = None
        self.done = False

    def decode(self, sse: ServerSentEvent) -> _T | None:
        """The chunk an event carries; None for an event that carries none (or for `[DONE]`)."""
        data = sse.data
        if self.done or not data:
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
    reference cycle: it is finalized at once (by reference counting), never by the cyclic garbage
    collector at some arbitrary point.
    """

    __slots__ = ("closed", "events", "first", "response")

    def __init__(self, response: httpx.Response, events: _E, first: ServerSentEvent | None) -> None:
        self.response = response
        self.events: _E = events
        self.first = first
        self.closed = False


def _release(source: _Source[Iterator[ServerSentEvent]]) -> None:
    if source.closed:
        return
    source.closed = True
    try:
        close_events = getattr(source.events, "close", None)
        if close_events is not None:
            close_events()
    finally:
        source.response.close()


async def _arelease(source: _Source[AsyncIterator[ServerSentEvent]]) -> None:
    if source.closed:
        return
    source.closed = True
    try:
        close_events = getattr(source.events, "aclose", None)
        if close_events is not None:
            await close_events()
    finally:
        await source.response.aclose()


def _iterate(core: _StreamCore[_T], source: _Source[Iterator[ServerSentEvent]]) -> Generator[_T, None, None]:
    decode = core.decode
    exiting = False
    try:
        first = source.first
        if first is not None:
            source.first = None
            chunk = decode(first)
            if chunk is not None:
                yield chunk
        # After [DONE] the rest is drained (not yielded) so that the connection can be reused.
        for sse in source.events:
            chunk = decode(sse)
            if chunk is not None:
                yield chunk
        core.check_finished()
    except GeneratorExit:
        # Closed by `Stream.close()`, which releases, or finalized unclosed, when releasing here could
        # deadlock inside the pool's lock (see `Stream.__del__`).
        exiting = True
        raise
    except httpx.HTTPError as exc:
        raise core.connection_error(exc) from exc
    finally:
        if not exiting:
            _release(source)


async def _aiterate(core: _StreamCore[_T], source: _Source[AsyncIterator[ServerSentEvent]]) -> AsyncGenerator[_T, None]:
    decode = core.decode
    exiting = False
    try:
        first = source.first
        if first is not None:
            source.first = None
            chunk = decode(first)
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
        raise core.connection_error(exc) from exc
    finally:
        if not exiting:
            await _arelease(source)


class _StreamBase(Generic[_T, _E]):
    """What `Stream` and `AsyncStream` share: construction, metadata, and the finished answer."""

    def __init__(
        self,
        *,
        response: httpx.Response,
        events: _E,
        first: ServerSentEvent | None,
        cast_to: type[_T],
        started_at: float,
    ) -> None:
        self._core = _StreamCore(response, cast_to, started_at)
        self._source: _Source[_E] = _Source(response, events, first)

    @property
    def response(self) -> httpx.Response:
        """The `httpx.Response` the chunks are read from (its headers arrived before the first chunk)."""
        return self._core.response

    @cached_property
    def rate_limit(self) -> RateLimit:
        """The rate-limit window reported with the stream's headers."""
        return RateLimit.from_headers(self._core.response.headers)

    @property
    def request_id(self) -> str | None:
        """The `x-request-id` of the stream's response, if the server sent one."""
        request_id: str | None = self._core.response.headers.get("x-request-id")
        return request_id

    @property
    def time_to_first_chunk(self) -> float | None:
        """Seconds from sending the request until the first chunk was decoded; None before that."""
        core = self._core
        return None if core.first_chunk_at is None else core.first_chunk_at - core.started_at

    @property
    def chunk_count(self) -> int:
        """How many chunks have been decoded so far."""
        return self._core.count

    def _abandon(self) -> httpx.Response | None:
        """Mark a stream dropped unclosed as closed, warn, and return the response to release."""
        source: _Source[_E] | None = getattr(self, "_source", None)
        if source is None or source.closed:  # closed, or never fully constructed
            return None
        source.closed = True
        warnings.warn(
            f"{type(self).__name__} was never closed: iterate it to the end, or use it as a context manager.",
            ResourceWarning,
            stacklevel=3,
        )
        return source.response


class Stream(_StreamBase[_T, Iterator[ServerSentEvent]]):
    """The chunks of a streamed completion, as they arrive: what `create(stream=True)` returns.

    Iterate over it (once), preferably inside `with` so that the connection is released even when
    you stop early. A broken connection or a body that ends before `data: [DONE]` raises
    `APIConnectionError` after the chunks that did arrive; an error event raises the typed
    `APIStatusError` it maps to.
    """

    def __init__(
        self,
        *,
        response: httpx.Response,
        events: Iterator[ServerSentEvent],
        first: ServerSentEvent | None,
        cast_to: type[_T],
        started_at: float,
    ) -> None:
        super().__init__(response=response, events=events, first=first, cast_to=cast_to, started_at=started_at)
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
        response = self._abandon()
        if response is not None:
            # A finalizer may run inside the connection pool's own (non-reentrant) lock, when garbage
            # collection strikes there: closing here could deadlock. The next request closes it.
            _abandoned.append(response)


class AsyncStream(_StreamBase[_T, AsyncIterator[ServerSentEvent]]):
    """The chunks of a streamed completion for `AsyncDeployAI`: use `async with` and `async for`.

    It behaves as `Stream` does; `aclose()` releases the connection.
    """

    def __init__(
        self,
        *,
        response: httpx.Response,
        events: AsyncIterator[ServerSentEvent],
        first: ServerSentEvent | None,
        cast_to: type[_T],
        started_at: float,
    ) -> None:
        super().__init__(response=response, events=events, first=first, cast_to=cast_to, started_at=started_at)
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
        response = self._abandon()
        loop = getattr(self, "_loop", None)
        if response is not None and loop is not None and not loop.is_closed():
            # An async response cannot be closed from a finalizer: hand the close to its event loop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_schedule_close, loop, response)


_abandoned: collections.deque[httpx.Response] = collections.deque()
_pending_closes: set[asyncio.Task[None]] = set()


def close_abandoned() -> None:
    """Close the responses of `Stream`s that were dropped unclosed; called where no pool lock is held."""
    while _abandoned:
        try:
            response = _abandoned.popleft()
        except IndexError:  # another thread emptied it first
            return
        with contextlib.suppress(Exception):
            response.close()


def _schedule_close(loop: asyncio.AbstractEventLoop, response: httpx.Response) -> None:
    task = loop.create_task(response.aclose())
    _pending_closes.add(task)
    task.add_done_callback(_pending_closes.discard)
