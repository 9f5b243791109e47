"""Client CPU per call as concurrency rises, over loopback against the emulator's server.

Run: python -m benchmarks.bench_concurrency [N]. Target: with 64, 256 and 1,000 calls in flight, one
client's CPU per call is at most 1.2x its CPU per call with 8 (async), and likewise from 32 threads
against 8 (sync). The server runs in its own process, pinned to another CPU than this one where the
machine allows it (as a remote server would be), so this process's CPU time is the client's alone.
Each figure is the median of `ROUNDS` rounds of N calls on open connections, after one round not counted.
The floor is bare httpx (its default pool, sized as the SDK's), with `json.loads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from deployai import AsyncDeployAI, DeployAI

ROUNDS = 5
ASYNC_CONCURRENCY = (8, 64, 256, 1000)
THREADS = (8, 32)
KEY = "sk-bench-0123456789"
BODY: dict[str, Any] = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
# Bare httpx does not retry: its connections are let go before the server's 5 s keep-alive ends, so
# that it never sends on a connection the server is closing.
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=4.0)


@contextlib.contextmanager
def server(token_latency: float = 0.0) -> Iterator[str]:
    """The emulator's server on a free loopback port, in its own process; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "deployai.testing", "serve", "--port", str(port), "--rate-limit", "1000000000",
               "--log-level", "critical", "--token-latency", str(token_latency)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    mine = _pin(process.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator's server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)
        if mine is not None:
            os.sched_setaffinity(0, mine)


def _pin(server_pid: int) -> set[int] | None:
    """Put the server on the last CPU and this process on the first; return this process's CPUs before."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(server_pid, {cpus[-1]})
    os.sched_setaffinity(0, {cpus[0]})
    return set(cpus)


def _cpu_per_call(run: Callable[[], None], n: int) -> float:
    # Each run starts from a heap without garbage: the run before it (the other side's, or another
    # level's) leaves its calls' cyclic garbage among the old objects, and the next full collection,
    # in whichever run it falls, would charge that run for it. The collector runs as usual within.
    gc.collect()
    start = time.process_time()
    run()
    return (time.process_time() - start) / n * 1e3


async def _in_flight(call: Callable[[], Awaitable[None]], concurrency: int, n: int) -> None:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


_C = TypeVar("_C")


def _samples(
    calls: Mapping[str, _C], levels: Sequence[int], rounds: int, n: int, run: Callable[[_C, int, int], None]
) -> dict[str, dict[int, list[float]]]:
    """CPU per call (ms) of each side at each level (`run(call, level, n)`), sides alternating, one value a round.

    A round before the counted ones is not counted. Each counted run starts on open connections:
    `level` calls at that level (at most `n`), uncounted, go just before it. A round lasts longer
    than a connection stays idle (the server's keep-alive is 5 s), so the connections the last run at
    1,000 opened have closed by the next one, which would otherwise pay for opening about 750 of them
    in 2,000 calls.
    """
    samples: dict[str, dict[int, list[float]]] = {side: {level: [] for level in levels} for side in calls}
    for round_ in range(rounds + 1):
        for level in levels:
            for side, call in calls.items():
                run(call, level, min(level, n))  # a run of n calls has at most n in flight
                cpu = _cpu_per_call(lambda: run(call, level, n), n)  # noqa: B023
                if round_:
                    samples[side][level].append(cpu)
    return samples


def in_flight_samples(
    loop: asyncio.AbstractEventLoop,
    calls: Mapping[str, Callable[[], Awaitable[None]]],
    levels: Sequence[int],
    rounds: int,
    n: int,
) -> dict[str, dict[int, list[float]]]:
    """CPU per call (ms) of each side at each number of calls in flight on `loop` (see `_samples`)."""
    return _samples(
        calls, levels, rounds, n, lambda call, level, n: loop.run_until_complete(_in_flight(call, level, n))
    )


def _in_threads(call: Callable[[], None], threads: int, n: int) -> None:
    lock = threading.Lock()
    left = n

    def worker() -> None:
        nonlocal left
        while True:
            with lock:
                if left <= 0:
                    return
                left -= 1
            call()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


def thread_samples(
    calls: Mapping[str, Callable[[], None]], levels: Sequence[int], rounds: int, n: int
) -> dict[str, dict[int, list[float]]]:
    """CPU per call (ms) of each side from each number of threads (see `_samples`)."""
    return _samples(calls, levels, rounds, n, _in_threads)


def async_rows(url: str, n: int) -> dict[str, dict[int, float]]:
    """Median CPU per call (ms) of the floor and the SDK at each concurrency, on one event loop."""
    loop = asyncio.new_event_loop()
    bare = httpx.AsyncClient(limits=LIMITS)
    sdk = AsyncDeployAI(api_key=KEY, base_url=url)
    headers = {"Authorization": f"Bearer {KEY}"}

    async def floor() -> None:
        response = await bare.post(f"{url}/chat/completions", json=BODY, headers=headers)
        assert json.loads(response.content)["choices"]

    async def typed() -> None:
        assert (await sdk.chat.completions.create(**BODY)).choices

    try:
        samples = in_flight_samples(loop, {"floor": floor, "deployai": typed}, ASYNC_CONCURRENCY, ROUNDS, n)
        return {side: {c: statistics.median(v) for c, v in by.items()} for side, by in samples.items()}
    finally:
        loop.run_until_complete(bare.aclose())
        loop.run_until_complete(sdk.close())
        loop.close()


def sync_rows(url: str, n: int) -> dict[str, dict[int, float]]:
    """Median CPU per call (ms) of the floor and the SDK from each number of threads."""
    bare = httpx.Client(limits=LIMITS)
    sdk = DeployAI(api_key=KEY, base_url=url)
    headers = {"Authorization": f"Bearer {KEY}"}

    def floor() -> None:
        assert json.loads(bare.post(f"{url}/chat/completions", json=BODY, headers=headers).content)["choices"]

    def typed() -> None:
        assert sdk.chat.completions.create(**BODY).choices

    with bare, sdk:
        samples = thread_samples({"floor": floor, "deployai": typed}, THREADS, ROUNDS, n)
    return {side: {t: statistics.median(v) for t, v in by.items()} for side, by in samples.items()}


def _print(title: str, rows: dict[str, dict[int, float]], unit: str) -> list[float]:
    base = min(rows["deployai"])
    print(f"{title}: client CPU per call (ms), median of {ROUNDS} rounds")
    ratios = []
    for level, sdk in rows["deployai"].items():
        floor = rows["floor"][level]
        ratio = sdk / rows["deployai"][base]
        ratios.append(ratio)
        print(f"  {level:>5} {unit:<8} floor {floor:6.2f} ({floor / rows['floor'][base]:4.2f}x)"
              f"  deployai {sdk:6.2f} ({ratio:4.2f}x its cost at {base}; target <= 1.20x)")  # fmt: skip
    return ratios


def main(n: int = 2_000) -> list[float]:
    """Run both; return the SDK's CPU per call at each level relative to its lowest level (async, then sync)."""
    with server() as url:
        async_ratios = _print("async, calls in flight", async_rows(url, n), "in flight")
        sync_ratios = _print("sync, threads", sync_rows(url, n), "threads")
    return async_ratios + sync_ratios


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
