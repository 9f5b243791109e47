"""`Stream` and `AsyncStream`: thin iterators over a lease from the I/O shell and one shared chunk decoder.

The I/O shell (`_http`) opens the response and hands the stream a *lease* on it: the events to read,
and the only ways to let go of it (`release`, `close` from anywhere, `abandon`). The stream reads
events, decodes them with `_sse.ChunkDecoder`, and tells the lease when it is done:

- at `data: [DONE]` it releases, and the shell reads the end of the body only if it comes at once,
  so that whatever the server does afterwards costs no more than that short wait;
- a body that ends before `[DONE]`, or breaks, raises `APIConnectionError` after the chunks that did
  arrive; an error event raises its typed `APIStatusError`;
- `close()` / `aclose()` may come from another thread or task: the reader stops at its next read;
- an iterator over a stream keeps the stream alive, so a stream is only abandoned when nothing can
  read it any more; its finalizer then hands the lease back to the shell (no I/O) and warns.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import httpx
from typing_extensions import Self

from ._exceptions import (
    APIConnectionError,
    APIError,
    DeployAIError,
    make_stream_error,
    make_validation_error,
    safe_cause,
    transport_error,
)
from ._meta import ResponseInfo, ResponseMeta
from ._sse import ChunkDecoder, ErrorEvent, InvalidEvent

if TYPE_CHECKING:
    from .types.chat import ChatCompletion, ChatCompletionChunk

__all__ = ["AsyncLease", "AsyncStream", "Lease", "Stream"]

_T = TypeVar("_T", bound="ChatCompletionChunk")


class _LeaseState(Protocol):
    """What both kinds of lease show a stream (see `_http.SyncLease`)."""

    response: httpx.Response
    started_at: float
    elapsed: float
    retries: int
    first_pending: bool
    reading: bool
    closing: bool
    cut_short: str | None  # why it is `closing`, when that was not the stream's own close()
    released: bool
    hook_raised: bool  # the client's `on_retry` raised on a retry before the first event

    def swept_unclosed(self) -> bool:
        """Whether its client's next request released it as abandoned, and the client is still open."""

    def abandon(self) -> None:
        """Hand the lease back to its shell, which releases it where that is safe (no I/O here)."""

    def mark_closed(self, cut_short: str | None = None) -> None:
        """Mark the stream closed; `cut_short` says why, for its reader, unless it was closed already."""

    def forked(self) -> bool:
        """Whether this process was forked from the one that opened the stream, whose connection it is."""


class Lease(_LeaseState, Protocol):
    """A blocking stream's hold on its response, given by `SyncHTTP`."""

    events: Iterator[tuple[str, str]]  # (event, data)

    def first_event(self) -> tuple[str, str] | None:
        """Read the first event, retrying the request if it fails before one arrives; None at the end."""

    def release(self, *, done: bool = False) -> None:
        """Let go of the response: back to the pool if it was read to its end, else closed.

        With `done`, the rest of the body is read first if it comes at once.
        """

    def close(self) -> None:
        """Stop the stream from any thread; never raises."""


class AsyncLease(_LeaseState, Protocol):
    """An asyncio stream's hold on its response, given by `AsyncHTTP`."""

    events: AsyncIterator[tuple[str, str]]  # (event, data)

    async def first_event(self) -> tuple[str, str] | None:
        """Read the first event, retrying the request if it fails before one arrives; None at the end."""

    def check_loop(self) -> None:
        """Raise `DeployAIError` if this is not the event loop the stream was opened on."""

    async def release(self, *, done: bool = False) -> None:
        """Let go of the response: back to the pool if it was read to its end, else closed.

        With `done`, the rest of the body is read first if it comes at once.
        """

    async def close(self) -> None:
        """Stop the stream from any task; never raises."""


_L = TypeVar("_L", bound=_LeaseState)
_E = TypeVar("_E", bound=APIError)


class _Reader(Generic[_T, _L]):
    """A stream's reading state: its lease, its decoder, and when its first chunk came.

    The iterators read through this object, not through the stream, so that an iterator the stream
    keeps for `next()` makes no reference cycle with it; the iterator `for` gets is handed the stream
    too (as `owner`), which keeps a stream alive for exactly as long as it is being iterated.
    """

    __slots__ = ("concluded", "decoder", "failure", "failure_trace", "first_chunk_at", "lease")

    def __init__(self, lease: _L, chunk_type: type[_T]) -> None:
        self.lease = lease
        self.decoder = ChunkDecoder(chunk_type)
        self.first_chunk_at: float | None = None
        self.concluded = False  # the program closed the stream, or read on to its end (or to why it ended)
        self.failure: DeployAIError | None = None  # the error the stream ended with, for a read after it
        self.failure_trace: TracebackType | None = None  # its traceback as its first raise left it

    def error_for(self, problem: Exception) -> APIError:
        """The typed error for a decoder's `ErrorEvent` or `InvalidEvent`, or a broken connection.

        Kept (see `failed`): a read after it raises it again, rather than find the body ended with no `[DONE]`.
        """
        error = self._marked(self._error_for(problem))
        error.retries = self.lease.retries
        self.failed(error)
        return error

    def failed(self, error: DeployAIError) -> None:
        """Keep `error`, which ended the stream, for a read after it to raise again (see `check_ended`)."""
        self.failure = error

    def _marked(self, error: _E) -> _E:
        """`error`, marked as met after the first chunk when it was (see `is_retryable`)."""
        if self.decoder.count:
            error._begun = True
        return error

    def _error_for(self, problem: Exception) -> APIError:
        response = self.lease.response
        if isinstance(problem, ErrorEvent):
            reported = make_stream_error(response, problem.payload)
            reported._took(self.lease.elapsed)  # the stream's, as its chunks have it
            return reported
        if isinstance(problem, InvalidEvent):
            # The error quotes the bad event, not the whole (still streaming) body.
            event = httpx.Response(
                response.status_code, headers=response.headers, text=problem.data, request=response.request
            )
            invalid = make_validation_error(event, problem.expected, problem.problems)
            invalid._took(self.lease.elapsed)
            return invalid
        error = transport_error(problem, response.request)
        error._go_on(f"The stream broke after {self.decoder.count} chunk(s): the answer is incomplete.")
        return error

    def check_ended(self) -> None:
        """At the end of the body: raise unless `[DONE]` arrived or the stream itself was closed."""
        self.concluded = True
        failure = self.failure
        if failure is not None:
            # Raised again from the traceback of its first raise, as an asyncio future's error is:
            # raised as it is, each read would add its frames to it for good.
            if self.failure_trace is None:
                self.failure_trace = failure.__traceback__
            raise failure.with_traceback(self.failure_trace)
        cut_short = self.lease.cut_short
        if self.decoder.done or (self.lease.closing and cut_short is None):
            return
        if cut_short is not None:
            raise DeployAIError(
                f"{cut_short} during the stream, after {self.decoder.count} chunk(s): the answer is incomplete."
            )
        raise self._marked(
            APIConnectionError(
                f"The stream ended after {self.decoder.count} chunk(s) without 'data: [DONE]': the answer is "
                "incomplete.",
                request=self.lease.response.request,
            )._after(self.lease.retries)
        )


def _article(name: str) -> str:
    return f"{'An' if name[:1] in 'AEIOU' else 'A'} {name}"


class _StreamBase(ResponseInfo, Generic[_T, _L]):
    """What `Stream` and `AsyncStream` share: metadata, and the finished answer."""

    _reader: _Reader[_T, _L]

    def __init__(self, lease: _L, chunk_type: type[_T]) -> None:
        self._received_at = time.time()  # the headers just arrived: relative resets count from here
        # Last: a stream interrupted before it holds its lease leaves the lease to its client to hand
        # back, and its finalizer does not warn of a stream the program never had.
        self._reader = _Reader(lease, chunk_type)

    @property
    def response(self) -> httpx.Response:
        """The `httpx.Response` the chunks are read from: available as soon as its headers arrived."""
        return self._reader.lease.response

    def __reduce__(self) -> tuple[Any, ...]:
        # An open connection cannot travel; pickle's own refusal named a socket or a weakref.
        raise TypeError(
            f"{_article(type(self).__name__)} does not pickle: it reads from a connection of this process. "
            "Read it here and send its get_final_completion() (a ChatCompletion, which pickles) instead."
        )

    def __copy__(self) -> Self:
        # `copy` would fall back to `__reduce__`: a copy reads from the same connection, as before it.
        copied = object.__new__(type(self))
        copied.__dict__.update(self.__dict__)
        return copied

    def _response_meta(self) -> ResponseMeta:
        lease = self._reader.lease
        return ResponseMeta(lease.response.headers, lease.elapsed, self._received_at, lease.retries)

    @property
    def time_to_first_chunk(self) -> float | None:
        """Seconds from the start of the call until the first chunk was received; None before that.

        The stream is read as you iterate: if you start iterating late, the wait is included.
        """
        reader = self._reader
        first = reader.first_chunk_at
        return None if first is None else first - reader.lease.started_at

    @property
    def chunk_count(self) -> int:
        """How many chunks have been decoded so far."""
        return self._reader.decoder.count

    def _final_completion(self) -> ChatCompletion:
        reader = self._reader
        reader.check_ended()
        closed_early = not reader.decoder.done  # by its own `close()`, before `[DONE]`
        if closed_early and not reader.decoder.choices:  # no part of the answer yet (Azure's filter chunk, say)
            raise self._closed_early()
        try:
            completion = reader.decoder.completion()
        except InvalidEvent as problem:
            raise reader.error_for(problem) from None
        # Closed early, it is whole only if every choice it asked for had finished, and the usage
        # chunk had come when `include_usage` asked for one (a running count before it is no total).
        if closed_early:
            choices, usage = _asked(reader.lease.response.request)
            if len(completion.choices) < choices or any(choice.finish_reason is None for choice in completion.choices):
                raise self._closed_early()
            if usage and not reader.decoder.usage_chunk:
                raise DeployAIError(
                    "This stream was closed after its answer but before the usage chunk that "
                    "stream_options={'include_usage': True} asked for: its final completion would have no usage. "
                    "Call get_final_completion() before closing it."
                )
        completion.__pydantic_private__["_meta"] = self._response_meta()  # type: ignore[index]
        return completion

    def _closed_early(self) -> DeployAIError:
        return DeployAIError(
            f"This stream was closed after {self._reader.decoder.count} chunk(s), before its answer ended: it has "
            "no final completion. Read the chunks instead, or call get_final_completion() before closing it."
        )

    def _was_abandoned(self) -> bool:
        """For a finalizer: hand an unreleased lease back to its shell; whether the stream was left unfinished."""
        reader: _Reader[_T, _L] | None = getattr(self, "_reader", None)  # None: never fully constructed
        if reader is None:
            return False
        lease = reader.lease
        if lease.released:
            # A cancelled read handed the lease back, and the client's next request released it: the
            # client's housekeeping, which left the stream as unfinished by the program as it was
            # (closing the client, as for any stream, closes it).
            return not reader.concluded and lease.swept_unclosed()
        lease.abandon()  # once: after a cancelled read, it was handed back already
        return True

    def _warn_unclosed(self) -> None:
        # Called after the lease was handed back, so that an "error" warnings filter cannot leak it.
        warnings.warn(
            f"{type(self).__name__} was dropped before it was read to the end or closed: "
            "iterate it to the end, or use it as a context manager.",
            ResourceWarning,
            stacklevel=2,
        )


def _forked_error() -> DeployAIError:
    return DeployAIError(
        "This stream was opened before this process was forked: its connection is the parent's, which "
        "reads it. Open the stream in this process."
    )


def _check_not_forked(lease: _LeaseState) -> None:
    """Refuse to read in a forked child a stream that still needs its connection (the parent's)."""
    if lease.forked() and not lease.released:  # one read to its end, or let go of, reads nothing more
        raise _forked_error()


def _check_here(lease: AsyncLease) -> None:
    """`_check_not_forked`, and refuse to read it on another event loop than its own."""
    _check_not_forked(lease)
    if not lease.closing and not lease.released:  # one closed with its loop says so when read
        lease.check_loop()


def _chunks(reader: _Reader[_T, Lease], owner: object) -> Iterator[_T]:
    """The chunks of a blocking stream; `owner` is only held, to keep the stream alive while iterated."""
    lease = reader.lease
    decoder = reader.decoder
    decode = decoder.decode
    _check_not_forked(lease)
    if lease.first_pending and lease.reading:  # another reader waits for the first event
        raise DeployAIError(_READ_ELSEWHERE)
    try:
        if lease.first_pending:
            sse = lease.first_event()
            chunk = None if sse is None else decode(*sse)
            if chunk is not None:
                reader.first_chunk_at = time.perf_counter()
                yield chunk
        # `reading` is set before `closing` is checked, and `close()` sets `closing` before it checks
        # `reading`: so either this reader sees the close, or the closer sees the read.
        lease.reading = True
        if not decoder.done and not lease.closing and not lease.released:
            for sse in lease.events:
                lease.reading = False
                if lease.closing:
                    break
                chunk = decode(*sse)
                if chunk is not None:
                    if reader.first_chunk_at is None:
                        reader.first_chunk_at = time.perf_counter()
                    yield chunk
                elif decoder.done:
                    break
                lease.reading = True
                if lease.closing:
                    break
        lease.reading = False
    except (ErrorEvent, InvalidEvent) as problem:
        sse = None  # what the server sent, which may echo the key: no local of a traceback shown with them
        lease.release()
        raise reader.error_for(problem) from None
    except Exception as exc:  # httpx's failure, or one from below it (a borrowed transport's own)
        if _read_elsewhere(exc):
            raise DeployAIError(_READ_ELSEWHERE) from None  # and the other reader reads on
        lease.reading = False
        if isinstance(exc, DeployAIError) or lease.hook_raised:  # the SDK's own, or `on_retry`'s, from a retry
            if isinstance(exc, DeployAIError):  # a failure before the first chunk, once retries ran out
                reader.failed(exc)
            raise
        lease.release()
        if lease.closing:
            reader.check_ended()  # raises if the client (or its loop) cut it short
            return
        raise reader.error_for(exc) from safe_cause(exc)
    except GeneratorExit:  # from a finalized iterator: the lease is left to the stream's finalizer
        lease.reading = False
        raise
    except BaseException:
        # Interrupted mid-read (Ctrl-C, a notebook's interrupt): the body was left part-read, and a
        # read again would find it cut. The stream says why it ended, as an async one cancelled does,
        # and is released by its close (or, dropped unclosed, before the client's next request).
        lease.reading = False
        lease.mark_closed("Its reading was interrupted")
        raise
    lease.release(done=decoder.done)
    reader.check_ended()


def _asked(request: httpx.Request) -> tuple[int, bool]:
    """The `n` a chat request asked for, and whether it asked for a usage chunk (1 and no when unread)."""
    try:
        body = json.loads(request.content)
        n, options = body.get("n"), body.get("stream_options")
    except (ValueError, AttributeError, httpx.RequestNotRead):
        return 1, False
    usage = isinstance(options, dict) and options.get("include_usage") is True
    return (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1), usage


def _read_elsewhere(exc: Exception) -> bool:
    """Whether `exc` is Python's refusal to step a stream's events while another reader steps them.

    Python raises it where the step was asked for: a failure inside the events' own code would
    have their frames after this one in its traceback.
    """
    trace = exc.__traceback__
    return isinstance(exc, (ValueError, RuntimeError)) and trace is not None and trace.tb_next is None


_READ_ELSEWHERE: Final = (
    "This stream is being read elsewhere (another thread or task): a stream has one reader at a time."
)


async def _achunks(reader: _Reader[_T, AsyncLease], owner: object) -> AsyncIterator[_T]:
    """The chunks of an asyncio stream: `_chunks`, awaiting."""
    lease = reader.lease
    decoder = reader.decoder
    decode = decoder.decode
    _check_here(lease)
    if lease.first_pending and lease.reading:  # another task waits for the first event
        raise DeployAIError(_READ_ELSEWHERE)
    try:
        if lease.first_pending:
            sse = await lease.first_event()
            chunk = None if sse is None else decode(*sse)
            if chunk is not None:
                reader.first_chunk_at = time.perf_counter()
                yield chunk
        # No `reading` flag here, unlike `_chunks`: on one event loop a close from another task can
        # only come while this reader waits, and the lease sees that wait as its events running.
        if not decoder.done and not lease.closing and not lease.released:
            async for sse in lease.events:
                if lease.closing:  # closed while this read waited: what it brought is not delivered
                    break
                chunk = decode(*sse)
                if chunk is not None:
                    if reader.first_chunk_at is None:
                        reader.first_chunk_at = time.perf_counter()
                    yield chunk
                    if lease.closing:
                        break
                elif decoder.done:
                    break
    except (ErrorEvent, InvalidEvent) as problem:
        sse = None  # as in `_chunks`
        await lease.release()
        raise reader.error_for(problem) from None
    except Exception as exc:  # httpx's failure, or one from below it (a borrowed transport's own)
        if _read_elsewhere(exc):
            raise DeployAIError(_READ_ELSEWHERE) from None
        if isinstance(exc, DeployAIError) or lease.hook_raised:  # the SDK's own, or `on_retry`'s, from a retry
            if isinstance(exc, DeployAIError):  # a failure before the first chunk, once retries ran out
                reader.failed(exc)
            raise
        if isinstance(exc, RuntimeError):  # asyncio's, if an `async for` started on one loop goes on on another
            _check_same_loop(lease, decoder.count)
        await lease.release()
        if lease.closing:
            reader.check_ended()  # raises if the client (or its loop) cut it short
            return
        raise reader.error_for(exc) from safe_cause(exc)
    except GeneratorExit:  # closed between two chunks: the stream's close or finalizer releases it
        raise
    except BaseException:
        # Cancelled mid-read (an interrupted cell, a timeout): the body was left part-read, and a read
        # again would find it ended. Nothing more is awaited here, in a cancelled task: the lease is
        # released before the client's next request, and the stream says why it ended.
        lease.mark_closed("Its reading was cancelled")
        lease.abandon()
        raise
    await lease.release(done=decoder.done)
    reader.check_ended()


def _check_same_loop(lease: AsyncLease, count: int) -> None:
    """After a `RuntimeError` from the read: raise if it came from reading on another event loop."""
    try:
        lease.check_loop()
    except DeployAIError:
        # asyncio's error went through the connection's reader and ended it: the rest is lost.
        lease.mark_closed("It was taken on to another event loop")
        raise DeployAIError(
            "This stream was opened on another event loop, and reading it on this one ended it: "
            f"the answer is incomplete after {count} chunk(s)."
        ) from None


class Stream(_StreamBase[_T, Lease]):
    """The chunks of a streamed completion, as they arrive: what `create(stream=True)` returns.

    It is returned as soon as the response headers arrive (`response`, `rate_limit` and `request_id`
    are readable at once) and reads the body as you iterate. Iterate over it once, inside `with` or
    to its end, so that the connection is released even when you stop early. A broken connection
    or a body that ends before `data: [DONE]` raises `APIConnectionError` after the chunks that did
    arrive; an error event raises the typed `APIStatusError` it maps to. `close()` may be called
    from another thread (a "stop generating" button): the reader stops at its next read.
    """

    _own: Iterator[_T] | None = None

    def __iter__(self) -> Iterator[_T]:
        return _chunks(self._reader, self)  # holds the stream: never abandoned under its reader

    def __next__(self) -> _T:
        own = self._own
        if own is None:
            own = self._own = _chunks(self._reader, None)
        else:  # a later step may come from a forked child
            _check_not_forked(self._reader.lease)
        try:
            return next(own)
        except StopIteration:
            raise
        except ValueError as exc:
            if _read_elsewhere(exc):  # `own` is running in another thread, which reads on
                raise DeployAIError(_READ_ELSEWHERE) from None
            self._own = None
            raise
        except BaseException:
            # Ended by an error (or an interrupt): a finished generator would answer the next step
            # with StopIteration, as if the answer were whole. The next step looks again instead, as
            # a new `for` does, and says why the stream ended.
            self._own = None
            raise

    def __enter__(self) -> Stream[_T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection and stop the stream; from any thread, more than once; never raises."""
        self._reader.concluded = True
        self._reader.lease.close()

    @property
    def text_stream(self) -> Generator[str, None, None]:
        """Only the text of the first choice, piece by piece, skipping chunks without text."""
        for chunk in self:
            text = _first_choice_text(chunk)
            if text:
                yield text

    def get_final_completion(self) -> ChatCompletion:
        """Read the rest of the stream (if any) and return the whole `ChatCompletion` it stands for."""
        for _ in self:
            pass
        return self._final_completion()

    def __del__(self) -> None:
        if self._was_abandoned():
            self._warn_unclosed()


class AsyncStream(_StreamBase[_T, AsyncLease]):
    """The chunks of a streamed completion for `AsyncDeployAI`: use `async with` and `async for`.

    It behaves as `Stream` does; `aclose()` releases the connection, and may come from another task.
    """

    _own: AsyncIterator[_T] | None = None

    def __aiter__(self) -> AsyncIterator[_T]:
        return _achunks(self._reader, self)  # holds the stream: never abandoned under its reader

    async def __anext__(self) -> _T:
        own = self._own
        if own is None:
            own = self._own = _achunks(self._reader, None)
        else:  # a later step may come from a forked child, or from another loop
            _check_here(self._reader.lease)
        try:
            return await own.__anext__()
        except StopAsyncIteration:
            raise
        except RuntimeError as exc:
            if _read_elsewhere(exc):  # `own` is running in another task, which reads on
                raise DeployAIError(_READ_ELSEWHERE) from None
            self._own = None
            raise
        except BaseException:  # as `Stream.__next__`
            self._own = None
            raise

    async def __aenter__(self) -> AsyncStream[_T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection and stop the stream; from any task, more than once; never raises."""
        self._reader.concluded = True
        await self._reader.lease.close()

    @property
    async def text_stream(self) -> AsyncGenerator[str, None]:
        """Only the text of the first choice, piece by piece, skipping chunks without text."""
        async for chunk in self:
            text = _first_choice_text(chunk)
            if text:
                yield text

    async def get_final_completion(self) -> ChatCompletion:
        """Read the rest of the stream (if any) and return the whole `ChatCompletion` it stands for."""
        async for _ in self:
            pass
        return self._final_completion()

    def __del__(self) -> None:
        if self._was_abandoned():
            self._warn_unclosed()


def _first_choice_text(chunk: ChatCompletionChunk) -> str | None:
    """The text a chunk adds to choice 0 (with `n` > 1, chunks of the other choices come between)."""
    text = None
    for choice in chunk.choices:
        if choice.index == 0:
            content = choice.delta.content
            # Nearly always one entry; a chunk with two for choice 0 adds both, as the final completion does.
            text = content if text is None else text + (content or "")
    return text
