"""A typed chat completion against bare httpx + json.loads, in-process (client-side cost only).

Run: python -m benchmarks.bench_call [N]. Target: the SDK costs at most 1.3x the baseline per call.
Both sides send the same request through an `httpx` client with the same canned transport; the
baseline reads the body with `json.loads`, the SDK validates it into a `ChatCompletion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from benchmarks._common import COMPLETION, HEADERS, CannedTransport, best_rate, on_loop, report
from deployai import AsyncDeployAI, DeployAI, _http
from deployai._pools import Settings

URL = "https://api.deployai.dev/v1/chat/completions"
KEY = "sk-bench-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello!"}]
BODY = {"model": "openai/gpt-4o", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 1000}
AUTH = {"Authorization": f"Bearer {KEY}"}
OWN = ", own client"


def sync_ratio(n: int, *, own: bool = False) -> float:
    """Calls per second of both with the blocking clients; returns the SDK's relative cost.

    With `own`, the SDK uses the httpx client it makes itself (under `owned_clients`), else a borrowed one.
    """
    bare = httpx.Client(transport=CannedTransport([COMPLETION], HEADERS))
    borrowed = None if own else httpx.Client(transport=CannedTransport([COMPLETION], HEADERS))
    sdk = DeployAI(api_key=KEY, http_client=borrowed)
    create = sdk.chat.completions.create

    def baseline(count: int) -> None:
        for _ in range(count):
            assert json.loads(bare.post(URL, headers=AUTH, json=BODY).content)["choices"][0]["message"]["content"]

    def typed(count: int) -> None:
        for _ in range(count):
            completion = create(model="openai/gpt-4o", messages=MESSAGES, temperature=0.7, max_tokens=1000)
            assert completion.choices[0].message.content

    return report("typed call, sync" + OWN * own, best_rate(baseline, n), best_rate(typed, n), "calls/s",
                  higher_is_better=False, target=1.3)  # fmt: skip


def async_ratio(n: int, *, own: bool = False) -> float:
    """Calls per second of both with the asyncio clients; returns the SDK's relative cost (`own`: as above)."""
    loop = asyncio.new_event_loop()
    bare = httpx.AsyncClient(transport=CannedTransport([COMPLETION], HEADERS))
    borrowed = None if own else httpx.AsyncClient(transport=CannedTransport([COMPLETION], HEADERS))
    sdk = AsyncDeployAI(api_key=KEY, http_client=borrowed)
    create = sdk.chat.completions.create

    async def baseline(count: int) -> None:
        for _ in range(count):
            response = await bare.post(URL, headers=AUTH, json=BODY)
            assert json.loads(response.content)["choices"][0]["message"]["content"]

    async def typed(count: int) -> None:
        for _ in range(count):
            completion = await create(model="openai/gpt-4o", messages=MESSAGES, temperature=0.7, max_tokens=1000)
            assert completion.choices[0].message.content

    try:
        return report("typed call, async" + OWN * own, best_rate(on_loop(loop, baseline), n),
                      best_rate(on_loop(loop, typed), n), "calls/s", higher_is_better=False, target=1.3)  # fmt: skip
    finally:
        # Let the loop finish the generators it still holds (and close the clients' pools) before it goes.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@contextlib.contextmanager
def owned_clients(
    pieces: list[bytes] | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> Iterator[None]:
    """Clients made meanwhile own their httpx client, as by default, on the canned transport.

    Its pools answer with `pieces` and `headers` (by default, the canned completion).
    """
    made = _http._Client, _http._AsyncClient
    body, head = pieces or [COMPLETION], headers or HEADERS

    class Owned(made[0]):  # type: ignore[misc,valid-type]
        def __init__(self, settings: Settings) -> None:
            super().__init__(settings, lambda context: CannedTransport(body, head))

    class AsyncOwned(made[1]):  # type: ignore[misc,valid-type]
        def __init__(self, settings: Settings) -> None:
            super().__init__(settings, lambda context: CannedTransport(body, head))

    _http._Client, _http._AsyncClient = Owned, AsyncOwned  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        _http._Client, _http._AsyncClient = made  # type: ignore[misc]


def owned_ratios(n: int) -> tuple[float, float]:
    """The same calls through clients that own their httpx client (the default, without `http_client=`)."""
    with owned_clients():
        return sync_ratio(n, own=True), async_ratio(n, own=True)


def main(n: int = 5_000) -> tuple[float, float]:
    """Run the comparisons; return the (sync, async) cost ratios of the clients on a borrowed httpx client."""
    ratios = sync_ratio(n), async_ratio(n)
    owned_ratios(n)
    return ratios


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
