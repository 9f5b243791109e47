"""Shared pieces of the benchmarks: canned responses served in-process, and a fair timer."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx

COMPLETION = (
    b'{"id":"chatcmpl-abc123","object":"chat.completion","created":1708000000,"model":"openai/gpt-4o",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}'
)
HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-ratelimit-limit", b"60"),
    (b"x-ratelimit-remaining", b"59"),
    (b"x-ratelimit-reset", b"1708000060"),
    (b"x-request-id", b"req_1"),
]


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.pieces)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


class CannedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers every request with the same body (in pieces), so that only client-side work is measured."""

    def __init__(self, pieces: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.pieces = pieces
        self.headers = headers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, headers=self.headers, stream=_Pieces(self.pieces))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return httpx.Response(200, headers=self.headers, stream=_Pieces(self.pieces))


def best_rate(run: Callable[[int], Any], n: int, rounds: int = 7) -> float:
    """Operations per second of the fastest of `rounds` runs of `n` operations (GC off while timing)."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run(n)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed)
    return n / best


def best_rates(
    first: Callable[[int], Any], second: Callable[[int], Any], n: int, rounds: int = 15
) -> tuple[float, float]:
    """`best_rate` of two workloads timed in alternating rounds: a slow spell of the machine hits both."""
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, run in enumerate((first, second)):
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                run(n)
                best[side] = min(best[side], time.perf_counter() - start)
            finally:
                gc.enable()
    return n / best[0], n / best[1]


def on_loop(loop: asyncio.AbstractEventLoop, run: Callable[[int], Awaitable[None]]) -> Callable[[int], None]:
    """A blocking version of an async workload, run on `loop` (one loop for both sides of a comparison)."""
    return lambda n: loop.run_until_complete(run(n))


def report(label: str, base_rate: float, sdk_rate: float, unit: str, *, higher_is_better: bool, target: float) -> float:
    """Print both rates and the ratio the target is about; return that ratio."""
    ratio = sdk_rate / base_rate if higher_is_better else base_rate / sdk_rate
    sign = ">=" if higher_is_better else "<="
    print(f"{label:<34} baseline {base_rate:10.0f} {unit}  deployai {sdk_rate:10.0f} {unit}  ratio {ratio:5.2f}x"
          f" (target {sign} {target:.2f}x)")  # fmt: skip
    return ratio
