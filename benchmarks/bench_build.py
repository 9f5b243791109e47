"""Building the request of a long conversation, against httpx building the same request from a dict.

Run: python -m benchmarks.bench_build [N]. Targets: building a request (checking every message and
encoding the body) costs at most 1.0x the baseline at 100 and 1,000 messages, and messages given as
the SDK's pydantic models cost at most 1.2x plain dicts. The baseline is
`httpx.Request("POST", url, headers=..., json=body)`: encoding without any checks. Alternating rounds.
The same list of models is built again and again, so it measures models sent again (their JSON kept);
`python -m benchmarks` also measures a first send.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from benchmarks._common import best_rates, report
from deployai import DeployAI
from deployai._request import build_chat_request
from deployai.resources.chat import CREATE
from deployai.types.chat import AssistantMessage, UserMessage

URL = "https://api.deployai.dev/v1/chat/completions"
KEY = "sk-bench-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def conversation(length: int, *, models: bool) -> list[Any]:
    """Alternating user and assistant turns, as dicts or as message models."""
    turns: list[Any] = []
    for n in range(length):
        text = f"turn {n}: a sentence or two about the question at hand"
        if models:
            turns.append(UserMessage(content=text) if n % 2 == 0 else AssistantMessage(content=text))
        else:
            turns.append({"role": "user" if n % 2 == 0 else "assistant", "content": text})
    return turns


def ratios(length: int, n: int, rounds: int = 15) -> tuple[float, float]:
    """(SDK over baseline with dicts, models over dicts) for a conversation of `length` messages."""
    options = DeployAI(api_key=KEY)._options
    dicts, models = conversation(length, models=False), conversation(length, models=True)
    body = {"model": "openai/gpt-4o", "messages": dicts}

    def baseline(count: int) -> None:
        for _ in range(count):
            httpx.Request("POST", URL, headers=HEADERS, json=body)

    def of(messages: list[Any]) -> Any:
        def build(count: int) -> None:
            for _ in range(count):
                build_chat_request(options, CREATE, {"model": "openai/gpt-4o", "messages": messages})

        return build

    base_rate, sdk_rate = best_rates(baseline, of(dicts), n, rounds)
    against_floor = report(f"build, {length} messages", base_rate, sdk_rate, "req/s",
                           higher_is_better=False, target=1.0)  # fmt: skip
    dict_rate, model_rate = best_rates(of(dicts), of(models), n, rounds)
    against_dicts = report(f"build, {length} models sent again vs dicts", dict_rate, model_rate, "req/s",
                           higher_is_better=False, target=1.2)  # fmt: skip
    return against_floor, against_dicts


def main(n: int = 200, rounds: int = 15) -> tuple[float, ...]:
    """Both comparisons at 100 and 1,000 messages (`n` requests of 1,000 messages a round, ten times as many of 100)."""
    return (*ratios(100, n * 10, rounds), *ratios(1000, n, rounds))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
