"""Many calls at once with bounded concurrency: `create_many` for both clients.

Results come back in input order, each the answer or the `DeployAIError` that ended that item, so one
failure never loses the others. The sync runner uses as many threads as the concurrency allows, the
async one as many tasks; both report progress as items finish, and both stop everything in flight
when the caller is interrupted or cancelled.

A blocking call cannot be interrupted from another thread. So when the caller of the sync runner is
interrupted (Ctrl-C), its threads start no other item and send no retry (each call is given
`stopped`), and they are daemon threads: a call still waiting for its answer keeps neither the caller
nor the exit of the interpreter waiting.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from ._exceptions import DeployAIError, InvalidParameterError

__all__ = ["Progress", "check_concurrency", "progress_reporter", "run_many", "run_many_async"]

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


def progress_reporter(on_progress: Progress | None, progress: bool, total: int) -> tuple[Progress, Callable[[], None]]:
    """What to call as items finish, and what to call at the end (closing a tqdm bar)."""
    callbacks: list[Progress] = [] if on_progress is None else [on_progress]
    finish: Callable[[], None] = lambda: None  # noqa: E731 - nothing to close without a bar
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


class _Batch(Generic[_I, _R]):
    """What both runners share: the items, their result slots in input order, and progress."""

    def __init__(self, requests: Iterable[_I], concurrency: int, on_progress: Progress | None, progress: bool) -> None:
        width = check_concurrency(concurrency)
        self.items = list(requests)
        self.total = len(self.items)
        self.width = min(width, self.total)  # never more workers than items
        self.results: list[_R | DeployAIError | None] = [None] * self.total
        self.done = 0
        self._report, self.finish = progress_reporter(on_progress, progress and self.total > 0, self.total)

    def settle(self, index: int, result: _R | DeployAIError) -> None:
        """Record one item's result and report progress."""
        self.results[index] = result
        self.done += 1
        self._report(self.done, self.total)

    def outcome(self) -> list[_R | DeployAIError]:
        """The results in input order (every slot filled once all items settled)."""
        return self.results  # type: ignore[return-value]


def run_many(
    call: Callable[[_I, Callable[[], bool]], _R],
    requests: Iterable[_I],
    *,
    concurrency: int,
    on_progress: Progress | None,
    progress: bool,
) -> list[_R | DeployAIError]:
    """Run `call(request, stopped)` on each request from `concurrency` threads; results in input order.

    `stopped()` turns true once the caller was interrupted: the call then sends nothing more.
    """
    batch: _Batch[_I, _R] = _Batch(requests, concurrency, on_progress, progress)
    if not batch.total:
        return []
    pending = iter(enumerate(batch.items))
    taking = threading.Lock()
    halt = threading.Event()
    finished: queue.SimpleQueue[tuple[int, _R | BaseException]] = queue.SimpleQueue()

    def worker() -> None:
        while not halt.is_set():
            with taking:  # one iterator shared by the threads: each item is taken once
                taken = next(pending, None)
            if taken is None:
                return
            index, item = taken
            try:
                result: _R | BaseException = call(item, halt.is_set)
            except BaseException as exc:  # handed over: raised in the caller's thread unless a DeployAIError
                result = exc
            finished.put((index, result))

    try:  # Ctrl-C can land while the threads are still being started, after the first ones sent
        for _ in range(batch.width):
            threading.Thread(target=worker, name="deployai create_many", daemon=True).start()
        for _ in range(batch.total):
            index, result = finished.get()
            batch.settle(index, _settled(result))
    except BaseException:
        halt.set()  # Ctrl-C, or an error not the SDK's: nothing more is sent
        raise
    finally:
        batch.finish()
    return batch.outcome()


def _settled(result: _R | BaseException) -> _R | DeployAIError:
    """An item's result or `DeployAIError`; any other exception is raised, in the caller's thread."""
    if isinstance(result, BaseException) and not isinstance(result, DeployAIError):
        raise result
    return result


async def run_many_async(
    call: Callable[[_I], Awaitable[_R]],
    requests: Iterable[_I],
    *,
    concurrency: int,
    on_progress: Progress | None,
    progress: bool,
) -> list[_R | DeployAIError]:
    """Run `call` on each request from `concurrency` tasks; results in input order; cancelling cancels all."""
    import asyncio  # imported by the async client already; a program that uses only `DeployAI` never does

    batch: _Batch[_I, _R] = _Batch(requests, concurrency, on_progress, progress)
    if not batch.total:
        return []
    pending = iter(enumerate(batch.items))

    async def worker() -> None:
        for index, item in pending:  # one iterator shared by the workers: each item is taken once
            try:
                result: _R | DeployAIError = await call(item)
            except DeployAIError as error:
                result = error
            batch.settle(index, result)

    workers = [asyncio.ensure_future(worker()) for _ in range(batch.width)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        batch.finish()
    return batch.outcome()
