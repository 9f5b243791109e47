"""Shared fixtures: every behaviour runs on both clients through one test body.

`make_client(**options)` builds a `DeployAI`, or an `AsyncDeployAI` seen through `Blocking`, which
runs each awaitable to completion on the test's own event loop and turns an `AsyncStream` into a
plain iterator. A test written once thus exercises the sync and the async shell alike.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import deployai
from deployai import _http

API_KEY = "sk-test-0123456789abcdef"
BASE_URL = "https://api.deployai.dev/v1"
CHAT_URL = BASE_URL + "/chat/completions"
MODELS_URL = BASE_URL + "/models"


def completion_json(content: str = "Hello! How can I help you today?", **extra: Any) -> dict[str, Any]:
    """A chat completion body as the API reference documents it."""
    body: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1708000000,
        "model": "openai/gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
    }
    body.update(extra)
    return body


RATE_HEADERS = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59", "x-ratelimit-reset": "1708000060"}


class StreamView:
    """An `AsyncStream` driven from synchronous test code."""

    def __init__(self, stream: deployai.AsyncStream[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self._loop.run_until_complete(self._stream.__anext__())
            except StopAsyncIteration:
                return

    def __enter__(self) -> StreamView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run_until_complete(self._stream.aclose())

    @property
    def text_stream(self) -> Iterator[str]:
        agen = self._stream.text_stream
        while True:
            try:
                yield self._loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return

    def get_final_completion(self) -> Any:
        return self._loop.run_until_complete(self._stream.get_final_completion())


class Blocking:
    """A proxy that runs an async client (or any part of it) from synchronous code on one loop."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return _wrap(getattr(self._target, name), self._loop)

    def __repr__(self) -> str:
        return repr(self._target)

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.run_until_complete(self._target.aclose())

    def close(self) -> None:
        self._loop.run_until_complete(self._target.aclose())

    @property
    def unwrapped(self) -> Any:
        return self._target


def _wrap(value: Any, loop: asyncio.AbstractEventLoop) -> Any:
    if inspect.isawaitable(value):
        return _wrap(loop.run_until_complete(value), loop)
    if isinstance(value, deployai.AsyncStream):
        return StreamView(value, loop)
    if isinstance(value, deployai.RawResponse):
        return Blocking(value, loop)
    if inspect.ismethod(value) or inspect.isfunction(value):
        return lambda *args, **kwargs: _wrap(value(*args, **kwargs), loop)
    if type(value).__module__.startswith(("deployai.resources", "deployai._client")) or isinstance(
        value, deployai.AsyncDeployAI
    ):
        return Blocking(value, loop)
    return value


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEPLOYAI_API_KEY", "DEPLOYAI_BASE_URL", "DEPLOYAI_LOG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.run_until_complete(event_loop.shutdown_asyncgens())
    event_loop.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


ClientFactory = Callable[..., Any]


@pytest.fixture
def make_client(kind: str, loop: asyncio.AbstractEventLoop) -> Iterator[ClientFactory]:
    """Build a client of the parametrized kind; every client made is closed after the test."""
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        options.setdefault("api_key", API_KEY)
        transport = options.pop("transport", None)
        if kind == "sync":
            if transport is not None:
                options["http_client"] = httpx.Client(transport=transport)
            client: Any = deployai.DeployAI(**options)
        else:
            if transport is not None:
                options["http_client"] = httpx.AsyncClient(transport=transport)

            async def build() -> deployai.AsyncDeployAI:
                return deployai.AsyncDeployAI(**options)

            client = Blocking(loop.run_until_complete(build()), loop)
        made.append((client, options.get("http_client")))
        return client

    yield factory
    for client, borrowed in made:
        client.close()
        if isinstance(borrowed, httpx.Client):
            borrowed.close()
        elif isinstance(borrowed, httpx.AsyncClient):
            loop.run_until_complete(borrowed.aclose())


@pytest.fixture
def client(make_client: ClientFactory) -> Any:
    return make_client()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the SDK's waits between retries instead of sleeping them."""
    waited: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(_http, "_sleep", waited.append)
    monkeypatch.setattr(_http, "_async_sleep", async_sleep)
    return waited


def target_of(client: Any) -> Any:
    """The real client behind a test client (the `AsyncDeployAI` behind a `Blocking` proxy)."""
    return client.unwrapped if isinstance(client, Blocking) else client


def user(content: str = "Hello!") -> list[Any]:
    """A one-message conversation."""
    return [{"role": "user", "content": content}]


def fork_and_report(child: Any) -> str:
    """Run `child()` in a forked child process and return what it printed (or its error)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the emulator's server thread is running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            message = str(child())
        except BaseException as exc:
            message = f"error: {type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        output = reader.read().decode()
    os.waitpid(pid, 0)
    return output
