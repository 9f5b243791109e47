"""Many calls at once with bounded concurrency: `create_many` for both clients.

Results come back in input order, each the answer or the `DeployAIError` that ended that item, so one
failure never loses the others. The sync runner uses a thread pool, the async one as many tasks as
the concurrency allows; both report progress as items finish, and both stop everything in flight
when the caller is interrupted or cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from ._exceptions import DeployAIError, InvalidParameterError

__all__ = ["Progress", "check_concurrency", "progress_reporter", "run_many", "run_many_async"]

_R = TypeVar("_R")

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


def run_many(
    call: Callable[[Mapping[str, Any]], _R],
    requests: Iterable[Mapping[str, Any]],
    *,
    concurrency: int,
    on_progress: Progress | None,
    progress: bool,
) -> list[_R | DeployAIError]:
    """Run `call` on each request from a pool of `concurrency` threads; results in input order."""
    workers = check_concurrency(concurrency)
    items = list(requests)
    total = len(items)
    if not total:
        return []
    results: list[_R | DeployAIError | None] = [None] * total
    report, finish = progress_reporter(on_progress, progress, total)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, total))
    futures = {pool.submit(call, item): index for index, item in enumerate(items)}
    try:
        for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            results[futures[future]] = _outcome(future)
            report(done, total)
    except BaseException:
        # Ctrl-C or a caller's own error: drop what has not started, and do not wait for the rest.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        finish()
    pool.shutdown(wait=True)
    return results  # type: ignore[return-value] # every slot was filled


def _outcome(future: concurrent.futures.Future[_R]) -> _R | DeployAIError:
    try:
        return future.result()
    except DeployAIError as error:
        return error


async def run_many_async(
    call: Callable[[Mapping[str, Any]], Awaitable[_R]],
    requests: Iterable[Mapping[str, Any]],
    *,
    concurrency: int,
    on_progress: Progress | None,
    progress: bool,
) -> list[_R | DeployAIError]:
    """Run `call` on each request from `concurrency` tasks; results in input order; cancelling cancels all."""
    count = check_concurrency(concurrency)
    items = list(requests)
    total = len(items)
    if not total:
        return []
    results: list[_R | DeployAIError | None] = [None] * total
    report, finish = progress_reporter(on_progress, progress, total)
    pending = iter(enumerate(items))
    done = 0

    async def worker() -> None:
        nonlocal done
        for index, item in pending:  # one iterator shared by the workers: each item is taken once
            try:
                results[index] = await call(item)
            except DeployAIError as error:
                results[index] = error
            done += 1
            report(done, total)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(count, total))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        finish()
    return results  # type: ignore[return-value] # every slot was filled
