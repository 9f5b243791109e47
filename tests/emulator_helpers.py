"""Helpers shared by the emulator's tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from deployai.testing import Emulator
from deployai.types import ChatCompletionMessageParam

TEST_KEY = "sk-test-helpers-0123456789"
HELLO: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
]


class FakeClock:
    """A unix clock that only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SleepRecorder:
    """A `sleep` for the transports that records each wait instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.calls.append(seconds)


def raw_client(emulator: Emulator, *, key: str | None = TEST_KEY, **transport: Any) -> httpx.Client:
    """A plain httpx client on the emulator's in-process transport: it sends whatever JSON it is given."""
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.Client(transport=emulator.transport(**transport), base_url="https://emulator.invalid", headers=headers)


def chat_body(**overrides: Any) -> dict[str, Any]:
    """A valid chat request body, with some fields replaced."""
    return {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], **overrides}


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of an error response, checking the API's error form on the way."""
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an event stream, in order."""
    return [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data: ")]


def sse_chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of an event stream (everything but `[DONE]`)."""
    return [json.loads(data) for data in sse_data(text) if data != "[DONE]"]
