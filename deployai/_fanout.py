"""Many calls at once with bounded concurrency: `as_completed` and `create_many` for both clients.

Results are handed over as the calls finish, with their place in the input (`create_many` puts them
back in input order), each the answer or the `DeployAIError` that ended that item, so one failure
never loses the others. A source without a length is read as the batch goes (see `_Batch`). The
sync runner uses as many threads as the concurrency allows, the async one as many tasks; both
report progress as items finish, and both stop everything in flight when the caller is
interrupted or cancelled.

A blocking call cannot be interrupted from another thread. So when the caller of the sync runner is
interrupted (Ctrl-C), its threads start no other item and send no retry (each call is given
`stopped`), and they are daemon threads: a call still waiting for its answer keeps neither the caller
nor the exit of the interpreter waiting.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from typing import Any, Generic, TypeVar

from ._config import is_async_function
from ._exceptions import DeployAIError, InvalidParameterError, RateLimitError

__all__ = ["Progress", "check_concurrency", "in_order", "progress_reporter", "run_many", "run_many_async"]

_R = TypeVar("_R")
_I = TypeVar("_I")

Progress = Callable[[int, int], object]
"""`on_progress(done, total)`: called each time an item finishes."""

_TQDM_HINT = "progress=True draws a progress bar with tqdm, which is not installed: pip install tqdm"


def check_concurrency(concurrency: object) -> int:
    """The number of calls allowed in flight at once: a whole number >= 1."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidParameterError("concurrency", concurrency, "a whole number >= 1")
    return concurrency


def _check_requests(requests: object, *, asynchronous: bool) -> None:
    """Refuse one request where many go (iterated, a dict gives its keys), and an async source to a sync client."""
    if isinstance(requests, (Mapping, str, bytes)) or hasattr(type(requests), "model_fields"):
        raise InvalidParameterError(
            "requests",
            type(requests).__name__,
            "an iterable of requests, such as a list of dicts (one request: [request])",
        )
    if not asynchronous and _reads_async(requests) and not hasattr(type(requests), "__iter__"):
        raise InvalidParameterError(
            "requests",
            type(requests).__name__,
            "an iterable of requests, such as a list of dicts (an async iterable goes to AsyncDeployAI's batches)",
        )


def _reads_async(requests: object) -> bool:
    """Whether `requests` is an async iterable (an async generator, a channel's receiver)."""
    return hasattr(type(requests), "__aiter__")


def _check_on_progress(on_progress: object) -> Progress | None:
    """`on_progress` as given, if it is None or a plain function."""
    # An async function would only be called to make a coroutine that nothing awaits: its progress
    # would never show, and Python would warn once, far from the call.
    if on_progress is not None and (not callable(on_progress) or is_async_function(on_progress)):
        raise InvalidParameterError(
            "on_progress", on_progress, "a plain (not async) function called as on_progress(done, total)"
        )
    return on_progress


def progress_reporter(
    on_progress: Progress | None, progress: bool, total: int | None
) -> tuple[Progress, Callable[[], None]]:
    """What to call as items finish, and what to call at the end (closing a tqdm bar of `total`, or of no end)."""
    callbacks: list[Progress] = [] if on_progress is None else [on_progress]
    finish: Callable[[], None] = _nothing
    if progress:
        try:  # imported only here: an optional integration (tqdm.auto picks the notebook bar in Jupyter)
            with warnings.catch_warnings():
                # Without ipywidgets, tqdm.auto warns and draws its text bar, which works in a notebook too.
                warnings.filterwarnings("ignore", message="IProgress not found")
                from tqdm.auto import tqdm  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "tqdm":
                raise
            raise ModuleNotFoundError(_TQDM_HINT, name="tqdm") from exc
        bar = tqdm(total=total, unit="call")
        callbacks.append(lambda done, _total: bar.update(done - bar.n))
        finish = bar.close

    def report(done: int, total: int) -> None:
        for callback in callbacks:
            callback(done, total)

    return report, finish


class _Batch(Generic[_I]):
    """What both runners share: the items, and progress as they finish.

    Requests given with a length (a list, a tuple) are taken as they are now; any other iterable
    (a generator, a file's lines, a queue's) is read as the batch goes, in the reader's thread,
    no more than `concurrency` items ahead of the results handed over: an endless source is a
    batch without end, and a source tied to its thread (a database cursor) is read in that thread.
    An async batch reads an async iterable (an async generator) likewise, from a task of its own,
    so that results are handed over while it waits for the next request.
    """

    _report: Progress
    finish: Callable[[], None]  # closes the bar, if any

    def __init__(
        self,
        requests: Iterable[_I] | AsyncIterable[_I],
        concurrency: int,
        on_progress: Progress | None,
        progress: bool,
        *,
        asynchronous: bool = False,
    ) -> None:
        _check_requests(requests, asynchronous=asynchronous)
        width = check_concurrency(concurrency)
        on_progress = _check_on_progress(on_progress)
        # Read through `__aiter__` whenever there is one, sized or not: a source that has both ways
        # (an ORM's query set) may refuse the blocking one inside async code.
        self.reads_async = asynchronous and _reads_async(requests)
        self.lazy = self.reads_async or not isinstance(requests, Sized)
        try:
            if self.reads_async:
                self._async_source: AsyncIterator[_I] = aiter(requests)  # type: ignore[arg-type]
                self._source: Iterator[tuple[int, _I]] = iter(())
            else:
                self._source = enumerate(requests)  # type: ignore[arg-type]
        except TypeError:  # no iterable at all
            raise InvalidParameterError(
                "requests", type(requests).__name__, "an iterable of requests, such as a list of dicts"
            ) from None
        if self.lazy:
            self.items: list[_I] = []
            self.total = 0  # the requests read so far, until the source is spent
            self.width = width
        else:
            self.items = list(requests)  # type: ignore[arg-type]
            self.total = len(self.items)
            self.width = min(width, self.total)  # never more workers than items
        self.spent = not self.lazy
        self.done = 0
        self._progress = on_progress, progress
        self._started = False
        self.finish = _nothing
        self.failure: BaseException | None = None  # the source's own error, raised at the end
        self.out = 0  # a lazy source's requests given to the runners, whose results are not yet handed over
        self.reading = self.reads_async  # an async source's reader task is at work

    def take(self) -> tuple[int, _I] | None:
        """The next request of a lazy source and its index, read here; None once it is spent.

        An error of the source's own ends the reading: it is kept as `failure`, raised once the
        results of the requests read before it are handed over.
        """
        if self.spent:
            return None
        try:
            taken = next(self._source, None)
        except Exception as exc:
            self.failure = exc
            taken = None
        return self._taken(taken)

    async def take_async(self) -> tuple[int, _I] | None:
        """The next request of an async source and its index (see `take`)."""
        if self.spent:
            return None
        try:
            taken: tuple[int, _I] | None = (self.total, await anext(self._async_source))
        except StopAsyncIteration:
            taken = None
        except Exception as exc:
            self.failure = exc
            taken = None
        return self._taken(taken)

    def _taken(self, taken: tuple[int, _I] | None) -> tuple[int, _I] | None:
        if taken is None:
            self.spent = True
            return None
        self.total += 1
        if not self._started:
            self.start()
        return taken

    def start(self) -> None:
        """As the first item is taken: a bar is drawn only for a batch that runs."""
        self._started = True
        on_progress, progress = self._progress
        total = None if self.lazy else self.total  # a bar without an end, for a source read as it goes
        self._report, self.finish = progress_reporter(on_progress, progress and self.total > 0, total)

    def settle(self, index: int, result: _R) -> tuple[int, _R]:
        """One item finished: report progress; the item's index and result, to hand on."""
        self.done += 1
        self._report(self.done, self.total)
        return index, result

    def handed(self, index: int, result: _R | BaseException) -> tuple[int, _R | DeployAIError]:
        """One result to hand over (see `settle`); for a lazy source, its place is free again."""
        settled = self.settle(index, _settled(result))
        if self.lazy:
            self.out -= 1
        return settled

    def waiting(self) -> bool:
        """Whether the reader waits for another result (or, from an async source, another request)."""
        return self.unfinished() and (self.out > 0 or not self.lazy or self.reading)

    def unfinished(self) -> bool:
        """Whether results are still to come: items in flight, or requests not yet read."""
        return self.done < self.total or not self.spent

    def counted(self) -> str:
        """Its results, for a message: "its 10 results", or "the results of the 10 requests read so far"."""
        return f"its {self.total} results" if self.spent else f"the results of the {self.total} requests read so far"


def _nothing() -> None:
    """What a batch without a bar does at its end."""


def in_order(finished: Iterable[tuple[int, _R]]) -> list[_R]:
    """The results of a whole batch, each item's once, in input order."""
    return [result for _, result in sorted(finished, key=_place)]


def _place(finished: tuple[int, object]) -> int:
    return finished[0]


def run_many(
    call: Callable[[_I, Callable[[], bool]], _R],
    requests: Iterable[_I],
    *,
    concurrency: int,
    on_progress: Progress | None,
    progress: bool,
    on_stop: Callable[[], None],
) -> Generator[tuple[int, _R | DeployAIError], None, None]:
    """Run `call(request, stopped)` on each request from `concurrency` threads; `(index, result)` as each finishes.

    `stopped()` turns true once the caller was interrupted or closed the iterator: the calls then
    send nothing more, and `on_stop()` is called to wake those that wait (at a rate limiter) to see
    it. The arguments are checked here, before the first item is taken.
    """
    return _in_threads(call, _Batch(requests, concurrency, on_progress, progress), on_stop)


def _in_threads(
    call: Callable[[_I, Callable[[], bool]], _R], batch: _Batch[_I], on_stop: Callable[[], None]
) -> Generator[tuple[int, _R | DeployAIError], None, None]:
    if not batch.lazy and not batch.total:
        return
    pending = iter(enumerate(batch.items))
    taking = threading.Lock()
    fed: queue.SimpleQueue[tuple[int, _I] | None] = queue.SimpleQueue()  # a lazy source's, read by the reader
    halt = threading.Event()
    finished: queue.SimpleQueue[tuple[int, _R | BaseException]] = queue.SimpleQueue()
    threads = 0

    def take() -> tuple[int, _I] | None:
        if batch.lazy:
            return fed.get()
        with taking:  # one iterator shared by the threads: each item is taken once
            return next(pending, None)

    def worker() -> None:
        while not halt.is_set():
            taken = take()
            if taken is None:
                return
            index, item = taken
            while True:
                try:
                    result: _R | BaseException = call(item, halt.is_set)
                except BaseException as exc:  # handed over: raised in the caller's thread unless a DeployAIError
                    again = _queue_again_in(exc)
                    if again is not None and not halt.wait(again):
                        continue
                    result = exc
                    if not isinstance(exc, DeployAIError):  # the batch ends: stopped here, before the caller sees it
                        halt.set()
                break
            finished.put((index, result))

    def start_thread() -> None:
        nonlocal threads
        threading.Thread(target=worker, name="deployai create_many", daemon=True).start()
        threads += 1

    def feed() -> None:
        """Read a lazy source, here in the reader's thread, until `width` items are out or a result waits.

        A result that waits is handed over first: a source that blocks (a queue's consumer) would
        hold it, and a producer that puts more work once it sees results would wait for good.
        """
        while batch.lazy and batch.out < batch.width and finished.empty() and not halt.is_set():
            taken = batch.take()
            if taken is None:
                return
            fed.put(taken)
            batch.out += 1
            if threads < batch.out:
                start_thread()

    parent = os.getpid()
    try:  # Ctrl-C can land while the threads are still being started, after the first ones sent
        if not batch.lazy:
            batch.start()
            for _ in range(batch.width):
                start_thread()
        while True:
            feed()  # before each wait: the reader reads its source (if lazy) in its own thread
            if not batch.waiting():
                break
            if os.getpid() != parent:  # its threads are the parent's: it would wait for good
                raise DeployAIError(
                    "This batch was started before this process was forked: its calls run in the parent's "
                    "threads. Start it in this process."
                )
            index, result = finished.get()
            yield batch.handed(index, result)
        if batch.failure is not None:
            raise batch.failure
    finally:
        for _ in range(threads if batch.lazy else 0):
            fed.put(None)  # the threads waiting for an item end
        # In a forked child, neither: a parent's thread may have held the event's lock at the fork.
        if os.getpid() == parent:
            halt.set()  # Ctrl-C, the iterator closed early, or an error not the SDK's: nothing more is sent
            # Its calls queued at a rate limiter would otherwise hold their places, ahead of every
            # other caller, until something else woke them. From a thread of its own: a batch
            # dropped in a reference cycle is closed by the garbage collector, in any thread, maybe
            # one that holds the limiter's lock (the wake takes it). Not at the interpreter's exit (a
            # batch kept in a variable, closed as the program ends): no waiter is left then, and on
            # 3.10 and 3.11 `start()` waits for good for a thread that never starts (3.12 raises).
            if batch.unfinished() and not sys.is_finalizing():
                with contextlib.suppress(RuntimeError):
                    threading.Thread(target=on_stop, name="deployai create_many stop", daemon=True).start()
            batch.finish()


def _queue_again_in(error: BaseException) -> float | None:
    """When a batch's call the rate limiter refused over the calls queued before it queues again; None if not.

    The batch's own calls fill the queue (`concurrency` beyond what a window holds): such a call
    waits its turn as the batch is paced, rather than fail for its place in the line. A refusal
    over the window itself (a quota spent for hours) ends the call, as outside a batch.
    """
    if isinstance(error, RateLimitError) and error._queued:
        return max(error.retry_after or 0.0, _LEAST_REQUEUE_SECONDS)
    return None


_LEAST_REQUEUE_SECONDS = 0.1


def _settled(result: _R | BaseException) -> _R | DeployAIError:
    """An item's result or `DeployAIError`; any other exception is raised, in the caller's thread or task."""
    if isinstance(result, BaseException) and not isinstance(result, DeployAIError):
        raise result
    return result


def run_many_async(
    call: Callable[[_I], Awaitable[_R]],
    requests: Iterable[_I] | AsyncIterable[_I],
    *,
    concurrency: int,
    on_progress: Progress | None,
    progress: bool,
) -> AsyncGenerator[tuple[int, _R | DeployAIError], None]:
    """Run `call` on each request from `concurrency` tasks; `(index, result)` as each finishes.

    Closing the iterator, or cancelling the task that reads it, cancels every call in flight. The
    arguments are checked here, before the first item is taken.
    """
    batch = _Batch(requests, concurrency, on_progress, progress, asynchronous=True)
    return _Results(_in_tasks(call, batch), batch)


class _Results(AsyncGenerator[tuple[int, _R | DeployAIError], None]):
    """An async batch's results, which say so when the batch was stopped by the end of its event loop.

    Its calls run as tasks of the loop that first read it. When that loop ends (`asyncio.run`
    returns), the loop cancels them and closes the generator; read on from another loop, a plain
    generator would then read as ended, and the results not handed over would go unnoticed.
    """

    __slots__ = ("__weakref__", "_batch", "_inner", "_loop", "_reading", "_settled")

    def __init__(self, inner: AsyncGenerator[tuple[int, _R | DeployAIError], None], batch: _Batch[Any]) -> None:
        self._inner = inner
        self._batch = batch
        self._settled = False  # closed by its reader, or ended by an exception its reader saw
        self._loop: object = None  # the event loop that first read it, whose tasks run its calls
        self._reading = False

    def __aiter__(self) -> _Results[_R]:
        return self

    async def __anext__(self) -> tuple[int, _R | DeployAIError]:
        return await self.asend(None)

    async def asend(self, value: None) -> tuple[int, _R | DeployAIError]:
        """The next `(index, result)`, as `__anext__`."""
        # Refused before the generator is stepped: a step from the wrong loop or a second reader
        # would fail inside it, and so end the batch for its own reader as well.
        self._check_reader()
        self._reading = True
        try:
            return await self._inner.asend(value)
        except StopAsyncIteration:
            if not self._settled and self._batch.unfinished():
                raise self._stopped() from None
            raise
        except BaseException:
            self._settled = True
            raise
        finally:
            self._reading = False

    def _check_reader(self) -> None:
        import asyncio  # loaded already: this batch was made by an async client

        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop and not self._settled and self._batch.unfinished():
            first: Any = self._loop
            inner: Any = self._inner  # a native async generator: `ag_frame` is None once it has ended
            if first.is_closed() or inner.ag_frame is None:  # the loop's end closed it
                raise self._stopped()
            raise DeployAIError(
                "This batch was read from an event loop other than the one that first read it, which runs its "
                f"calls ({self._batch.done} of {self._batch.counted()} handed over so far). Read a "
                "batch to its end on the loop that started it."
            )
        if self._reading:
            raise DeployAIError("This batch is being read elsewhere (another task): a batch has one reader at a time.")

    def _stopped(self) -> DeployAIError:
        batch = self._batch
        return DeployAIError(
            f"This batch was stopped when the event loop running its calls closed, after {batch.done} "
            f"of {batch.counted()} were handed over; the others are lost. Read a batch to "
            "its end on the loop that started it (within one asyncio.run)."
        )

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> tuple[int, _R | DeployAIError]:
        """Raise an exception in the batch, as in an async generator: it stops the calls in flight."""
        self._check_not_read()
        self._settled = True
        return await self._inner.athrow(typ, val, tb)

    async def aclose(self) -> None:
        """Stop the batch: cancel every call in flight (what leaving an `aclosing` block does).

        Raises:
            DeployAIError: another task is reading it (cancel that task to stop the batch).
        """
        self._check_not_read()
        self._settled = True
        await self._inner.aclose()

    def _check_not_read(self) -> None:
        if self._reading:
            raise DeployAIError(
                "This batch is being read by another task, which it cannot be stopped under: cancel that task to "
                "stop the batch (its calls in flight are cancelled with it)."
            )


async def _in_tasks(
    call: Callable[[_I], Awaitable[_R]], batch: _Batch[_I]
) -> AsyncGenerator[tuple[int, _R | DeployAIError], None]:
    import asyncio  # imported by the async client already; a program that uses only `DeployAI` never does

    if not batch.lazy and not batch.total:
        return
    pending = iter(enumerate(batch.items))
    fed: asyncio.Queue[tuple[int, _I]] = asyncio.Queue()  # a lazy source's, read by the reader
    # Each result, and (as None) the end of an async source, which the reader may be waiting for.
    finished: asyncio.Queue[tuple[int, _R | BaseException] | None] = asyncio.Queue()
    ended = False  # an error that is not the SDK's ends the batch: no worker takes another item
    workers: list[asyncio.Future[None]] = []
    room = asyncio.Event()  # set as a result is handed over: an async source may be read further

    async def take() -> tuple[int, _I] | None:
        # One iterator shared by the workers: each item is taken once.
        return await fed.get() if batch.lazy else next(pending, None)

    async def worker() -> None:
        nonlocal ended
        while (taken := await take()) is not None:
            index, item = taken
            if ended:
                return
            while True:
                try:
                    result: _R | BaseException = await call(item)
                except BaseException as exc:  # handed over, as in `_in_threads`; a cancel ends the worker too
                    again = _queue_again_in(exc)
                    if again is not None and not ended:
                        await asyncio.sleep(again)
                        continue
                    finished.put_nowait((index, exc))
                    if not isinstance(exc, DeployAIError):
                        ended = True
                    if not isinstance(exc, Exception):
                        raise
                else:
                    finished.put_nowait((index, result))
                break

    def hand_on(taken: tuple[int, _I]) -> None:
        fed.put_nowait(taken)
        batch.out += 1
        if len(workers) < batch.out:
            workers.append(asyncio.ensure_future(worker()))

    def feed() -> None:
        """Read a lazy source, here in the reader's task, until `width` items are out or a result waits."""
        while batch.lazy and not batch.reads_async and batch.out < batch.width and finished.empty() and not ended:
            taken = batch.take()
            if taken is None:
                return
            hand_on(taken)

    async def read() -> None:
        """Read an async source, in a task beside the reader's, no more than `width` items ahead of it."""
        try:
            while not ended:
                while batch.out >= batch.width:
                    room.clear()
                    await room.wait()
                taken = await batch.take_async()
                if taken is None or ended:  # spent, or the batch ended while it was read
                    return
                hand_on(taken)
        except BaseException as exc:
            # Not the source's end: the source unread is not spent (a batch stopped by its loop's end
            # says so when read on). A cancel from within the source, or a progress bar that cannot
            # be drawn, ends the batch; the batch's own end cancelling this task does not.
            if not ended:
                batch.failure = exc
            raise
        finally:
            batch.reading = False
            finished.put_nowait(None)  # the reader may be waiting for the next request

    reader = asyncio.ensure_future(read()) if batch.reads_async else None
    try:
        if not batch.lazy:
            batch.start()
            workers.extend(asyncio.ensure_future(worker()) for _ in range(batch.width))
        while True:
            feed()
            if not batch.waiting():
                break
            got = await finished.get()
            if got is not None:  # else the async source ended: whether results are still to come is checked again
                handed = batch.handed(*got)
                room.set()
                yield handed
        if batch.failure is not None:
            raise batch.failure
    finally:
        ended = True
        if reader is not None:
            workers.append(reader)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        batch.finish()
