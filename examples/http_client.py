"""Your own httpx client: its limits, timeout, event hooks and proxy, used as given and never closed by the SDK.

`http_client=` takes an `httpx.Client` you built (an `httpx.AsyncClient` for `AsyncDeployAI`): for a
proxy, certificates of your own, HTTP/2, a mock transport, hooks that log or trace every request, or a
pool with other limits. The SDK sends through it as it is, and leaves it open when it closes: it is
yours. Set `PROXY_URL` (for example `http://127.0.0.1:3128`) to send the calls through that proxy.
(Without `http_client=`, the SDK's own client already follows `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.)

    python examples/http_client.py
    PROXY_URL=http://127.0.0.1:3128 python examples/http_client.py
"""

from __future__ import annotations

import asyncio
import os

import httpx
from _connect import base_url_and_key

from deployai import AsyncDeployAI, DeployAI
from deployai.types import ChatCompletionMessageParam

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello through my own client!"}]
# A borrowed client keeps its own pool: past a few dozen calls in flight, let the SDK make its client.
LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=8)
# The SDK leaves the timeout to your client, unless you also pass timeout= to DeployAI or to a call.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def log_exchange(response: httpx.Response) -> None:
    """An httpx event hook: one line per answer, as an app would log or trace it."""
    request = response.request
    print(f"  {request.method} {request.url.path} -> {response.status_code} ({response.headers.get('x-request-id')})")


async def log_exchange_async(response: httpx.Response) -> None:
    """The same hook for an `httpx.AsyncClient`, which awaits its hooks."""
    log_exchange(response)


def ask(base_url: str | None, api_key: str | None, proxy: str | None) -> None:
    """Two calls with `DeployAI` over an `httpx.Client` of your own, which stays open after the SDK's client."""
    hooks = {"response": [log_exchange]}
    with httpx.Client(limits=LIMITS, timeout=TIMEOUT, proxy=proxy, event_hooks=hooks) as http:
        with DeployAI(base_url=base_url, api_key=api_key, http_client=http) as client:
            model = client.models.list().data[0].id
            completion = client.chat.completions.create(model=model, messages=MESSAGES)
            print(f"DeployAI: {completion.choices[0].message.content!r}")
        print(f"DeployAI closed; your httpx.Client is still open: {not http.is_closed}")


async def ask_async(base_url: str | None, api_key: str | None, proxy: str | None) -> None:
    """A stream with `AsyncDeployAI` over an `httpx.AsyncClient` of your own."""
    hooks = {"response": [log_exchange_async]}
    async with (
        httpx.AsyncClient(limits=LIMITS, timeout=TIMEOUT, proxy=proxy, event_hooks=hooks) as http,
        AsyncDeployAI(base_url=base_url, api_key=api_key, http_client=http) as client,
    ):
        stream = await client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True)
        async with stream:
            text = "".join([piece async for piece in stream.text_stream])
        print(f"AsyncDeployAI: {text!r}")


def main() -> None:
    """Send through your own clients, and through the proxy at PROXY_URL when it is set."""
    proxy = os.environ.get("PROXY_URL") or None
    if proxy:
        print(f"through the proxy at {httpx.URL(proxy).netloc.decode()}")  # not the whole URL: it may hold a password
    with base_url_and_key() as (base_url, api_key):
        ask(base_url, api_key, proxy)
        asyncio.run(ask_async(base_url, api_key, proxy))


if __name__ == "__main__":
    main()
