"""A typed chat completion against bare httpx + json.loads, in-process (client-side cost only).

Run: python -m benchmarks.bench_call. Target: the SDK costs at most 1.3x the baseline per call.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx

from benchmarks._common import COMPLETION, HEADERS, CannedTransport, best_rate
from deployai import DeployAI

URL = "https://api.deployai.dev/v1/chat/completions"
KEY = "sk-bench-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello!"}]


def main(n: int = 5_000) -> float:
    """Print calls per second of both, and return the SDK's cost relative to the baseline."""
    bare = httpx.Client(transport=CannedTransport(COMPLETION, HEADERS))
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "openai/gpt-4o", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 1000}

    def baseline(count: int) -> None:
        for _ in range(count):
            data = json.loads(bare.post(URL, headers=headers, json=body).content)
            assert data["choices"][0]["message"]["content"]

    sdk = DeployAI(api_key=KEY, http_client=httpx.Client(transport=CannedTransport(COMPLETION, HEADERS)))
    create = sdk.chat.completions.create

    def typed(count: int) -> None:
        for _ in range(count):
            completion = create(model="openai/gpt-4o", messages=MESSAGES, temperature=0.7, max_tokens=1000)
            assert completion.choices[0].message.content

    base_rate = best_rate(baseline, n)
    sdk_rate = best_rate(typed, n)
    ratio = base_rate / sdk_rate
    print(f"bare httpx + json.loads: {base_rate:10.0f} calls/s")
    print(f"deployai typed call:     {sdk_rate:10.0f} calls/s")
    print(f"cost ratio (sdk / bare): {ratio:10.2f}x   (target <= 1.30x)")
    return ratio


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
