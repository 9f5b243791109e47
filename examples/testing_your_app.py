"""Testing your app with deployai's pytest fixtures: scripted replies, tool calls, aimed faults, no waiting.

The app below is three small functions a real app might have; the tests after it are what you would
put in your own test suite. Installing deployai registers the fixtures (`deployai_emulator`,
`deployai_client`, `deployai_async_client`, `deployai_clock`, `deployai_emulator_server`). Run it
with pytest, or as a script (which runs pytest on itself):

    pytest examples/testing_your_app.py
    python examples/testing_your_app.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import deployai
from deployai import AsyncDeployAI, DeployAI
from deployai.testing import Emulator, ToolCall, VirtualClock

# The app


def summarize(client: DeployAI, text: str) -> str:
    """One call, one answer."""
    completion = client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": f"Summarize: {text}"}], max_tokens=50
    )
    return completion.choices[0].message.content or ""


def answer_with_fallback(client: DeployAI, question: str) -> tuple[str, str]:
    """Ask Claude; when its provider is down, ask GPT-4o instead. Returns (model, answer)."""
    messages: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": question}]
    for model in ("anthropic/claude-3.5-sonnet", "openai/gpt-4o"):
        try:
            completion = client.chat.completions.create(model=model, messages=messages)
        except deployai.ServiceUnavailableError:
            continue
        return model, completion.choices[0].message.content or ""
    raise RuntimeError("every provider is down")


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def weather_bot(client: DeployAI, question: str) -> str:
    """Let the model call `get_weather`; return its final answer."""
    messages: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": question}]
    first = client.chat.completions.create(model="openai/gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    if not message.tool_calls:
        return message.content or ""
    messages.append({"role": "assistant", "content": message.content, "tool_calls": [
        {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in message.tool_calls
    ]})  # fmt: skip
    for call in message.tool_calls:
        city = json.loads(call.function.arguments)["city"]
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"Sunny in {city}"})
    second = client.chat.completions.create(model="openai/gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    return second.choices[0].message.content or ""


# The tests


def test_summarize_sends_the_text_and_returns_the_reply(deployai_emulator: Emulator, deployai_client: DeployAI) -> None:
    """A scripted reply comes back, and the request sent can be read back."""
    deployai_emulator.reply("A short summary.")
    assert summarize(deployai_client, "a long text") == "A short summary."
    sent = deployai_emulator.last_request.json
    assert sent["messages"][0]["content"] == "Summarize: a long text"
    assert sent["max_tokens"] == 50


def test_the_tool_branch_runs_the_tool_and_sends_its_result_back(
    deployai_emulator: Emulator, deployai_client: DeployAI
) -> None:
    """Two scripted turns: a tool call, then the answer that follows the tool's result."""
    deployai_emulator.reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})])
    deployai_emulator.reply("It is sunny in Oslo.")
    assert weather_bot(deployai_client, "Weather in Oslo?") == "It is sunny in Oslo."
    assert deployai_emulator.last_request.json["messages"][-1]["content"] == "Sunny in Oslo"
    deployai_emulator.assert_scripts_used()


def test_the_app_falls_back_when_claude_is_down(deployai_emulator: Emulator, deployai_client: DeployAI) -> None:
    """A fault aimed at one model leaves the other answering."""
    deployai_emulator.on(model="anthropic/claude-3.5-sonnet").fail(503, times=None)
    model, _ = answer_with_fallback(deployai_client, "Hi")
    assert model == "openai/gpt-4o"
    # The SDK retried Claude twice (its default) before the app moved on; no real time was spent waiting.
    assert deployai_emulator.statuses == [503, 503, 503, 200]


@pytest.mark.deployai_emulator(rate_limit=3, window_seconds=60)
def test_a_burst_over_the_rate_limit_waits_for_the_window(
    deployai_emulator: Emulator, deployai_client: DeployAI, deployai_clock: VirtualClock
) -> None:
    """A rate limit asked for with the marker; the 429's wait passes on the virtual clock."""
    answers = [summarize(deployai_client, str(i)) for i in range(4)]
    assert len(answers) == 4
    assert deployai_emulator.statuses == [200, 200, 200, 429, 200]
    assert deployai_clock.waited >= 60  # virtual seconds: the test itself takes milliseconds


@pytest.mark.deployai_emulator(rate_limit=2)
def test_the_limiter_keeps_under_the_limit(deployai_emulator: Emulator, deployai_clock: VirtualClock) -> None:
    """A `RateLimiter` on the test's clock: the calls it holds move the clock, and none is refused."""
    limiter = deployai.RateLimiter(clock=deployai_clock)
    with deployai_emulator.client(rate_limiter=limiter) as client:
        for i in range(5):
            summarize(client, str(i))
    assert deployai_emulator.statuses == [200] * 5  # none refused: the limiter held the 3rd and the 5th
    assert deployai_clock.waited >= 120  # two resets of the 60 s window, in no real time


@pytest.mark.anyio
async def test_streams_arrive_in_the_scripted_pieces(
    deployai_emulator: Emulator, deployai_async_client: AsyncDeployAI
) -> None:
    """The async fixture client; a stream split exactly as scripted."""
    deployai_emulator.reply(pieces=["Hel", "lo", "!"])
    stream = await deployai_async_client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert [text async for text in stream.text_stream] == ["Hel", "lo", "!"]


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only."""
    return "asyncio"


if __name__ == "__main__":
    sys.exit(subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]).returncode)
