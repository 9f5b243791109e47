"""Quickstart: stream a chat completion, and see the tokens it used and the rate limit left.

With `DEPLOYAI_API_KEY` set, it asks the real DeployAI API. Without it, it starts the local DeployAI
emulator on 127.0.0.1 (`pip install "deployai[emulator]"`) and streams from that over HTTP, so it
runs anywhere, offline, with no key.

    python examples/quickstart.py
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from deployai import DeployAI

MODEL = "openai/gpt-4o"
QUESTION = "Hello! What can you do?"


def stream_answer(client: DeployAI) -> None:
    """Print the answer as it arrives, then its token usage and the rate limit left."""
    usage = None
    with client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
            if chunk.usage is not None:
                usage = chunk.usage
        limit = stream.rate_limit
    print()
    tokens = f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens" if usage else "no usage"
    print(f"[{tokens}; rate limit: {limit.remaining}/{limit.limit} requests left this window]")


def main() -> None:
    """Stream from the real API when a key is set, else from the local emulator."""
    with ExitStack() as stack:
        if os.environ.get("DEPLOYAI_API_KEY"):
            client = DeployAI()
        else:
            from deployai.testing import Emulator, EmulatorServer

            # A small delay between tokens, so that the emulator's answer streams visibly.
            server = stack.enter_context(EmulatorServer(Emulator(token_latency=0.02)))
            print(f"DEPLOYAI_API_KEY is not set: using the local DeployAI emulator at {server.base_url}")
            client = DeployAI(api_key="sk-emulator-quickstart", base_url=server.base_url)
        with client:
            stream_answer(client)


if __name__ == "__main__":
    main()
