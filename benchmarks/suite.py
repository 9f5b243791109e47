"""Every figure at once: floor / deployai / openai, with min, median and max, against a saved baseline.

Run: python -m benchmarks [--rounds R] [--save] [--check] [--quick]

- The floor is bare httpx (+ httpx-sse for streams) + `json.loads`; openai is the official SDK on the
  same transport. In-process figures use a canned transport (client-side work only); loopback
  figures use the emulator's server in another process (`bench_concurrency.server`).
- The sides of a figure are timed in alternating rounds, so a slow spell of the machine hits them
  all; each cell shows min / median / max over the rounds.
- The last column is deployai's median against the floor's, as a cost (lower is better; for a rate
  its inverse). `--save` writes these to `benchmarks/baseline.json`; every run compares with that
  file and flags a figure whose cost rose more than 10%. `--check` makes a flag fail the run.
- Under the table, deployai's CPU per call over loopback with 64 to 1,000 calls in flight (async)
  and from 32 threads (sync), against its own with 8: how it scales (`scaling`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource

from benchmarks import bench_build, bench_call, bench_concurrency, bench_stream
from benchmarks._common import COMPLETION, HEADERS, CannedTransport
from deployai import AsyncDeployAI, DeployAI
from deployai._request import build_chat_request
from deployai.resources.chat import CREATE

BASELINE = Path(__file__).with_name("baseline.json")
WORSE = 1.10  # a cost more than 10% above the baseline's is flagged
SIDES = ("floor", "deployai", "openai")
URL = "https://api.deployai.dev/v1"
KEY = "sk-bench-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello!"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Figure:
    """One row: per side, one value per round (in `unit`, lower is better)."""

    name: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)

    def cost(self) -> float:
        """deployai's median over the floor's (NaN if the floor's is 0, as memory can be at tiny sizes)."""
        floor = statistics.median(self.samples["floor"])
        return statistics.median(self.samples["deployai"]) / floor if floor else float("nan")


def _timed_rounds(sides: dict[str, Callable[[], None]], rounds: int, per: int) -> dict[str, list[float]]:
    """Microseconds per operation of each side, `per` operations a round, sides alternating (GC off while timing)."""
    samples: dict[str, list[float]] = {side: [] for side in sides}
    for run in sides.values():  # warm-up: first calls load models, open pools, fill caches
        run()
    for _ in range(rounds):
        for side, run in sides.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                run()
                samples[side].append((time.perf_counter() - start) / per * 1e6)
            finally:
                gc.enable()
    return samples


def _openai(asynchronous: bool, transport: httpx.BaseTransport | httpx.AsyncBaseTransport) -> Any:
    import openai  # a benchmark-only dependency

    if asynchronous:
        return openai.AsyncOpenAI(api_key=KEY, base_url=URL, http_client=httpx.AsyncClient(transport=transport))  # type: ignore[arg-type]
    return openai.OpenAI(api_key=KEY, base_url=URL, http_client=httpx.Client(transport=transport))  # type: ignore[arg-type]


def calls(rounds: int, n: int) -> list[Figure]:
    """A typed chat completion, in-process: the SDK with the httpx client it makes itself (the default)."""
    body: dict[str, Any] = {"model": "openai/gpt-4o", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 1000}
    with bench_call.owned_clients():  # the async client opens its pool at its first call
        return _calls(rounds, n, body)


def _calls(rounds: int, n: int, body: dict[str, Any]) -> list[Figure]:
    sync_sdk, async_sdk = DeployAI(api_key=KEY), AsyncDeployAI(api_key=KEY)
    bare = httpx.Client(transport=CannedTransport([COMPLETION], HEADERS))
    abare = httpx.AsyncClient(transport=CannedTransport([COMPLETION], HEADERS))
    oai = _openai(False, CannedTransport([COMPLETION], HEADERS))
    aoai = _openai(True, CannedTransport([COMPLETION], HEADERS))
    loop = asyncio.new_event_loop()

    def repeat(call: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                call()

        return run

    def arepeat(call: Callable[[], Awaitable[Any]]) -> Callable[[], None]:
        async def all_of() -> None:
            for _ in range(n):
                await call()

        return lambda: loop.run_until_complete(all_of())

    async def afloor() -> Any:
        return json.loads((await abare.post(URL + "/chat/completions", json=body, headers=AUTH)).content)

    try:
        sync = _timed_rounds({
            "floor": repeat(lambda: json.loads(bare.post(URL + "/chat/completions", json=body, headers=AUTH).content)),
            "deployai": repeat(lambda: sync_sdk.chat.completions.create(**body)),
            "openai": repeat(lambda: oai.chat.completions.create(**body)),
        }, rounds, n)  # fmt: skip
        asynchronous = _timed_rounds({
            "floor": arepeat(afloor),
            "deployai": arepeat(lambda: async_sdk.chat.completions.create(**body)),
            "openai": arepeat(lambda: aoai.chat.completions.create(**body)),
        }, rounds, n)  # fmt: skip
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return [Figure("typed call, sync", "us/call", sync), Figure("typed call, async", "us/call", asynchronous)]


def streams(rounds: int, chunks: int) -> list[Figure]:
    """A streamed completion's typed chunks, in-process (one event per network read)."""
    pieces = bench_stream.sse_body(chunks)
    with bench_call.owned_clients(pieces, bench_stream.SSE_HEADERS):
        return _streams(rounds, chunks, pieces)


def _streams(rounds: int, chunks: int, pieces: list[bytes]) -> list[Figure]:
    sse = bench_stream.SSE_HEADERS
    body: dict[str, Any] = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True}
    sync_sdk, async_sdk = DeployAI(api_key=KEY), AsyncDeployAI(api_key=KEY)
    bare = httpx.Client(transport=CannedTransport(pieces, sse))
    abare = httpx.AsyncClient(transport=CannedTransport(pieces, sse))
    oai, aoai = _openai(False, CannedTransport(pieces, sse)), _openai(True, CannedTransport(pieces, sse))
    loop = asyncio.new_event_loop()
    url = URL + "/chat/completions"

    def floor() -> None:
        with bare.stream("POST", url, json=body, headers=AUTH) as response:
            for event in EventSource(response).iter_sse():
                if event.data == "[DONE]":
                    break
                json.loads(event.data)

    def typed() -> None:
        with sync_sdk.chat.completions.create(**body) as stream:
            for _ in stream:
                pass

    def official() -> None:
        for _ in oai.chat.completions.create(**body):
            pass

    async def afloor() -> None:
        async with abare.stream("POST", url, json=body, headers=AUTH) as response:
            async for event in EventSource(response).aiter_sse():
                if event.data == "[DONE]":
                    break
                json.loads(event.data)

    async def atyped() -> None:
        async with await async_sdk.chat.completions.create(**body) as stream:
            async for _ in stream:
                pass

    async def aofficial() -> None:
        async for _ in await aoai.chat.completions.create(**body):
            pass

    def run(read: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        return lambda: loop.run_until_complete(read())

    try:
        sync = _timed_rounds({"floor": floor, "deployai": typed, "openai": official}, rounds, chunks)
        asynchronous = _timed_rounds(
            {"floor": run(afloor), "deployai": run(atyped), "openai": run(aofficial)}, rounds, chunks
        )
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return [Figure("stream chunk, sync", "us/chunk", sync), Figure("stream chunk, async", "us/chunk", asynchronous)]


def builds(rounds: int, n: int) -> list[Figure]:
    """Building a long conversation's request (checked and encoded) against `httpx.Request(json=...)`."""
    options = DeployAI(api_key=KEY)._options
    figures = []
    for length in (100, 1000):
        dicts = bench_build.conversation(length, models=False)
        models = bench_build.conversation(length, models=True)
        body = {"model": "openai/gpt-4o", "messages": dicts}
        count = max(1, n * 100 // length)

        def build(messages: list[Any], count: int = count) -> Callable[[], None]:
            params = {"model": "openai/gpt-4o", "messages": messages}

            def run() -> None:
                for _ in range(count):
                    build_chat_request(options, CREATE, params)

            return run

        def floor(count: int = count, body: dict[str, Any] = body) -> None:
            for _ in range(count):
                httpx.Request("POST", URL, headers=AUTH, json=body)

        # Models keep their JSON once a list is sent again: "first send" builds lists never sent (made
        # before the timing, one per request of every round and the warm-up), "sent again" one list.
        fresh = iter([bench_build.conversation(length, models=True) for _ in range((rounds + 1) * count)])

        def first_send(count: int = count, fresh: Iterator[list[Any]] = fresh) -> None:
            for _ in range(count):
                build_chat_request(options, CREATE, {"model": "openai/gpt-4o", "messages": next(fresh)})

        sides = {"floor": floor, "deployai": build(dicts), "models": build(models), "fresh models": first_send}
        samples = _timed_rounds(sides, rounds, count)
        for name, side in (
            (f"build, {length} messages", "deployai"),
            (f"build, {length} message models, sent again", "models"),
            (f"build, {length} message models, first send", "fresh models"),
        ):
            figures.append(Figure(name, "us/request", {"floor": samples["floor"], "deployai": samples[side]}))
    return figures


def loopback(rounds: int, n: int) -> list[Figure]:
    """Client CPU per call over loopback, with many calls in flight and from many threads (see `bench_concurrency`)."""
    with bench_concurrency.server() as url:
        return [*_in_flight(url, rounds, n), *_threads(url, rounds, n)]


def _in_flight(url: str, rounds: int, n: int) -> list[Figure]:
    import openai

    levels = bench_concurrency.ASYNC_CONCURRENCY
    loop = asyncio.new_event_loop()
    bare = httpx.AsyncClient(limits=bench_concurrency.LIMITS)
    sdk = AsyncDeployAI(api_key=KEY, base_url=url)
    official = openai.AsyncOpenAI(api_key=KEY, base_url=url)
    body = bench_concurrency.BODY

    async def floor() -> None:
        json.loads((await bare.post(f"{url}/chat/completions", json=body, headers=AUTH)).content)

    async def typed() -> None:
        await sdk.chat.completions.create(**body)

    async def other() -> None:
        await official.chat.completions.create(**body)

    sides = {"floor": floor, "deployai": typed, "openai": other}
    try:
        samples = bench_concurrency.in_flight_samples(loop, sides, levels, rounds, n)
    finally:
        loop.run_until_complete(bare.aclose())
        loop.run_until_complete(sdk.close())
        loop.run_until_complete(official.close())
        loop.close()
    return [
        Figure(f"loopback CPU, {level} in flight", "ms/call", {side: samples[side][level] for side in sides})
        for level in levels
    ]


def _threads(url: str, rounds: int, n: int) -> list[Figure]:
    import openai

    levels = bench_concurrency.THREADS
    bare = httpx.Client(limits=bench_concurrency.LIMITS)
    sdk = DeployAI(api_key=KEY, base_url=url)
    official = openai.OpenAI(api_key=KEY, base_url=url)
    body = bench_concurrency.BODY

    def floor() -> None:
        json.loads(bare.post(f"{url}/chat/completions", json=body, headers=AUTH).content)

    def typed() -> None:
        sdk.chat.completions.create(**body)

    def other() -> None:
        official.chat.completions.create(**body)

    sides = {"floor": floor, "deployai": typed, "openai": other}
    with bare, sdk, official:
        samples = bench_concurrency.thread_samples(sides, levels, rounds, n)
    return [
        Figure(f"loopback CPU, {level} threads", "ms/call", {side: samples[side][level] for side in sides})
        for level in levels
    ]


def scaling(figures: list[Figure]) -> dict[str, float]:
    """deployai's CPU per call at each loopback level over its CPU at the lowest level of its kind (target 1.2x)."""
    ratios: dict[str, float] = {}
    for kind, levels in (("in flight", bench_concurrency.ASYNC_CONCURRENCY), ("threads", bench_concurrency.THREADS)):
        medians = {
            figure.name: statistics.median(figure.samples["deployai"])
            for level in levels
            for figure in figures
            if figure.name == f"loopback CPU, {level} {kind}"
        }
        base = medians.get(f"loopback CPU, {levels[0]} {kind}")
        if base:
            ratios.update(
                {name: median / base for name, median in medians.items() if not name.endswith(f" {levels[0]} {kind}")}
            )
    return ratios


_IMPORTS = {
    "floor": "import httpx, httpx_sse, pydantic",
    "deployai": "import deployai; deployai.DeployAI(api_key='sk-x')",
    "openai": "import openai; openai.OpenAI(api_key='sk-x')",
}


def imports(rounds: int) -> list[Figure]:
    """A fresh interpreter importing each package and making a client (bytecode already compiled)."""
    # An installed package has its bytecode compiled by pip. A source tree (an editable install) has
    # it written at its first import, unless PYTHONDONTWRITEBYTECODE is set: then every import would
    # compile what changed since, and time the compiler. So the first imports write it regardless.
    writing = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    for code in _IMPORTS.values():
        subprocess.run([sys.executable, "-c", code], check=True, env=writing)
    samples: dict[str, list[float]] = {side: [] for side in _IMPORTS}
    for _ in range(rounds * 2):
        for side, code in _IMPORTS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            samples[side].append((time.perf_counter() - start) * 1e3)
    return [Figure("import + client", "ms", samples)]


_MEMORY = """
import asyncio, json, resource, sys
side, url, streams = sys.argv[1], sys.argv[2], int(sys.argv[3])
def peak_mib():
    # The peak of this process's own memory: ru_maxrss on Linux keeps the parent's peak across exec.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "one two three four five"}], "stream": True}
auth = {"Authorization": "Bearer sk-bench-0123456789"}
async def main():
    if side == "floor":
        import httpx, httpx_sse
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
        async def one():
            async with client.stream("POST", url + "/chat/completions", json=body, headers=auth) as response:
                async for event in httpx_sse.EventSource(response).aiter_sse():
                    if event.data == "[DONE]":
                        break
                    json.loads(event.data)
    elif side == "deployai":
        import deployai
        client = deployai.AsyncDeployAI(api_key="sk-bench-0123456789", base_url=url)
        async def one():
            async with await client.chat.completions.create(**body) as stream:
                async for _ in stream:
                    pass
    else:
        import openai, httpx
        client = openai.AsyncOpenAI(api_key="sk-bench-0123456789", base_url=url,
                                    http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=None)))
        async def one():
            async for _ in await client.chat.completions.create(**body):
                pass
    await one()
    before = peak_mib()
    await asyncio.gather(*(one() for _ in range(streams)))
    print(peak_mib() - before)
asyncio.run(main())
"""


def memory(rounds: int, streams: int) -> list[Figure]:
    """Peak memory added by `streams` concurrent streams over loopback (each side in a fresh process)."""
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    with bench_concurrency.server(token_latency=0.02) as url:  # slow enough for all streams to be open at once
        for _ in range(max(1, rounds // 2)):
            for side in SIDES:
                out = subprocess.run([sys.executable, "-c", _MEMORY, side, url, str(streams)],
                                     check=True, capture_output=True, text=True).stdout  # fmt: skip
                samples[side].append(float(out))
    return [Figure(f"memory, {streams} concurrent streams", "MiB", samples)]


def _cell(values: list[float] | None) -> str:
    if not values:
        return f"{'-':>22}"
    return f"{min(values):6.1f} {statistics.median(values):7.1f} {max(values):7.1f}"


def report(figures: list[Figure], baseline: dict[str, float]) -> list[str]:
    """Print the table; return the names of the figures more than 10% costlier than the baseline."""
    flagged = []
    width = max(34, *(len(figure.name) for figure in figures))
    print(
        f"{'figure':<{width}} {'unit':<10} "
        + " ".join(f"{side + ' min/med/max':>22}" for side in SIDES)
        + "  cost    baseline"
    )
    for figure in figures:
        cost = figure.cost()
        was = baseline.get(figure.name)
        note = ""
        if was is not None:
            note = f"{was:5.2f}x"
            if cost > was * WORSE:
                note += "  WORSE"
                flagged.append(figure.name)
        cells = " ".join(_cell(figure.samples.get(side)) for side in SIDES)
        print(f"{figure.name:<{width}} {figure.unit:<10} {cells}  {cost:5.2f}x  {note}".rstrip())
    return flagged


def main(argv: list[str] | None = None) -> int:
    """Run the suite (see the module docstring); the exit status is 1 only for `--check` with a flag."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per figure (default 7)")
    parser.add_argument("--save", action="store_true", help="save this run's costs as the baseline")
    parser.add_argument("--check", action="store_true", help="exit 1 if a cost rose more than 10%%")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: to see that it runs, not to measure")
    parser.add_argument("--baseline", type=Path, default=BASELINE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds, quick = args.rounds, args.quick
    figures = [
        *calls(rounds, 20 if quick else 2_000),
        *streams(rounds, 20 if quick else 2_000),
        *builds(rounds, 2 if quick else 200),
        *loopback(rounds, 20 if quick else 1_000),
        *imports(rounds),
        *memory(rounds, 20 if quick else 1_000),
    ]
    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else {}
    flagged = report(figures, baseline)
    print(
        "deployai's CPU per call over loopback against its own with 8 in flight or from 8 threads (target 1.2x): "
        + ", ".join(f"{name.removeprefix('loopback CPU, ')} {ratio:.2f}x" for name, ratio in scaling(figures).items())
    )
    if args.save:
        costs = {f.name: round(f.cost(), 3) for f in figures if f.cost() == f.cost()}  # NaN is no baseline
        args.baseline.write_text(json.dumps(costs, indent=2) + "\n")
        print(f"saved the costs to {args.baseline}")
    return 1 if args.check and flagged else 0
