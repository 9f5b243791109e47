"""Quickstart: stream a chat completion, and see the tokens it used and the rate limit left.

With `DEPLOYAI_API_KEY` set, it asks the real DeployAI API. Without it, it starts the local DeployAI
emulator on 127.0.0.1 (`pip install "deployai[emulator]"`) and streams from that over HTTP, so it
runs anywhere, offline, with no key.

    python examples/quickstart.py
"""

from __future__ import annotations

from _connect import example_client

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
    # A small delay between the emulator's tokens, so that its answer visibly streams.
    with example_client(token_latency=0.02) as client:
        stream_answer(client)


if __name__ == "__main__":
    main()
