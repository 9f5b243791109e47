"""`Stream` and `AsyncStream`: thin iterators over one shared, I/O-free chunk decoder.

SSE framing is httpx-sse's; `_StreamCore` turns each event into a typed chunk (pydantic's JSON
validation straight from the event's text), ends the stream at `data: [DONE]`, turns error events
into typed errors, keeps the chunks for `get_final_completion()`, and refuses to let a stream end
silently without `[DONE]`.
"""

from __future__ import annotations

import asyncio
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
    MessageToolCall,
    Usage,
)

__all__ = ["AsyncStream", "Stream"]

_T = TypeVar("_T", bound=ChatCompletionChunk)


class _StreamCore(Generic[_T]):
    """Everything about a stream that is not I/O, shared by `Stream` and `AsyncStream`."""

    __slots__ = ("_validate", "chunks", "done", "first_chunk_at", "response", "started_at")

    def __init__(self, response: httpx.Response, cast_to: type[_T], started_at: float) -> None:
        self.response = response
        self._validate = cast_to.__pydantic_validator__.validate_json
        self.started_at = started_at
        self.first_chunk_at: float | None = None
        self.chunks: list[_T] = []
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
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
        self.chunks.append(chunk)
        return chunk

    def check_finished(self) -> None:
        """Raise if the body ended before `[DONE]`: a silently short answer is never returned."""
        if not self.done:
            raise APIConnectionError(
                f"The stream ended after {len(self.chunks)} chunk(s) without 'data: [DONE]': the answer is incomplete.",
                request=self.response.request,
            )

    def connection_error(self, exc: httpx.HTTPError) -> APIConnectionError:
        """The typed error for a transport failure mid-stream, saying how much had arrived."""
        error = transport_error(exc, self.response.request)
        error.message = f"{error.message} The stream broke after {len(self.chunks)} chunk(s): the answer is incomplete."
        error.args = (error.message,)
        return error


def _loads_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def _event_response(response: httpx.Response, data: str) -> httpx.Response:
    # The validation error quotes the bad event, not the whole (still streaming) body.
    return httpx.Response(response.status_code, headers=response.headers, text=data, request=response.request)


def accumulate(chunks: list[ChatCompletionChunk], response: httpx.Response) -> ChatCompletion:
    """Merge a stream's chunks into the `ChatCompletion` they stand for.

    Content and refusals are concatenated per choice, the last role and finish reason win, tool
    call pieces are merged by their `index`, and usage comes from the chunk that carries it.
    """
    if not chunks:
        raise make_validation_error(
            httpx.Response(response.status_code, headers=response.headers, text="", request=response.request),
            "chat completion stream (it held no chunks)",
        )
    first = chunks[0]
    roles: dict[int, str] = {}
    texts: dict[int, list[str]] = {}
    refusals: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    usage: Usage | None = None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            i = choice.index
            delta = choice.delta
            texts.setdefault(i, [])
            if delta.role:
                roles[i] = delta.role
            if delta.content:
                texts[i].append(delta.content)
            if delta.refusal:
                refusals.setdefault(i, []).append(delta.refusal)
            if choice.finish_reason is not None:
                finish[i] = choice.finish_reason
            for piece in delta.tool_calls or ():
                call = calls.setdefault(i, {}).setdefault(
                    piece.index, {"id": "", "type": "function", "name": "", "args": []}
                )
                if piece.id:
                    call["id"] = piece.id
                if piece.type:
                    call["type"] = piece.type
                if piece.function is not None:
                    if piece.function.name:
                        call["name"] += piece.function.name
                    if piece.function.arguments:
                        call["args"].append(piece.function.arguments)
    choices = []
    for i in sorted(texts):
        tool_calls = [
            MessageToolCall(id=c["id"], type=c["type"], function={"name": c["name"], "arguments": "".join(c["args"])})
            for _, c in sorted(calls.get(i, {}).items())
        ]
        message = ChatCompletionMessage(
            role=roles.get(i, "assistant"),
            content="".join(texts[i]) if texts[i] or not tool_calls else None,
            refusal="".join(refusals[i]) if i in refusals else None,
            tool_calls=tool_calls or None,
        )
        choices.append(Choice(index=i, message=message, finish_reason=finish.get(i)))
    completion = ChatCompletion(
        id=first.id,
        object="chat.completion",
        created=first.created,
        model=first.model,
        choices=choices,
        usage=usage,
        system_fingerprint=first.system_fingerprint,
    )
    completion.__pydantic_private__["_headers"] = response.headers  # type: ignore[index]
    return completion


class _StreamBase(Generic[_T]):
    """What `Stream` and `AsyncStream` share: metadata, and reading the finished answer."""

    _core: _StreamCore[_T]
    _closed: bool

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
    def chunks(self) -> list[_T]:
        """The chunks received so far, in order."""
        return self._core.chunks

    def _final(self) -> ChatCompletion:
        self._core.check_finished()
        return accumulate(self._core.chunks, self._core.response)  # type: ignore[arg-type]

    def _warn_unclosed(self) -> bool:
        if self._closed:
            return False
        warnings.warn(
            f"{type(self).__name__} was never closed: iterate it to the end, or use it as a context manager.",
            ResourceWarning,
            stacklevel=3,
        )
        return True


class Stream(_StreamBase[_T]):
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
        self._core = _StreamCore(response, cast_to, started_at)
        self._events = events
        self._first = first
        self._closed = False
        self._iterator = self._iterate()

    def _iterate(self) -> Generator[_T, None, None]:
        core = self._core
        decode = core.decode
        try:
            if self._first is not None:
                first = decode(self._first)
                self._first = None
                if first is not None:
                    yield first
            # After [DONE] the rest is drained (not yielded) so that the connection can be reused.
            for sse in self._events:
                chunk = decode(sse)
                if chunk is not None:
                    yield chunk
            core.check_finished()
        except httpx.HTTPError as exc:
            raise core.connection_error(exc) from exc
        finally:
            self._release()

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
        self._release()

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close_events = getattr(self._events, "close", None)
            if close_events is not None:
                close_events()
        finally:
            self._core.response.close()

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
        return self._final()

    def __del__(self) -> None:
        if self._warn_unclosed():
            self._core.response.close()


class AsyncStream(_StreamBase[_T]):
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
        self._core = _StreamCore(response, cast_to, started_at)
        self._events = events
        self._first = first
        self._closed = False
        self._iterator = self._iterate()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    async def _iterate(self) -> AsyncGenerator[_T, None]:
        core = self._core
        decode = core.decode
        try:
            if self._first is not None:
                first = decode(self._first)
                self._first = None
                if first is not None:
                    yield first
            async for sse in self._events:
                chunk = decode(sse)
                if chunk is not None:
                    yield chunk
            core.check_finished()
        except httpx.HTTPError as exc:
            raise core.connection_error(exc) from exc
        finally:
            await self._release()

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
        await self._release()

    async def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close_events = getattr(self._events, "aclose", None)
            if close_events is not None:
                await close_events()
        finally:
            await self._core.response.aclose()

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
        return self._final()

    def __del__(self) -> None:
        if not self._warn_unclosed():
            return
        # An async response cannot be closed from a finalizer: hand the close to its event loop.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            response = self._core.response
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_schedule_close, loop, response)


_pending_closes: set[asyncio.Task[None]] = set()


def _schedule_close(loop: asyncio.AbstractEventLoop, response: httpx.Response) -> None:
    task = loop.create_task(response.aclose())
    _pending_closes.add(task)
    task.add_done_callback(_pending_closes.discard)
