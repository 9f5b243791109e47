"""Stream with `AsyncDeployAI`, as in a notebook cell: `async with` / `async for`, then the whole answer.

In Jupyter, drop `asyncio.run` and `await main()` directly (top-level await).

    python examples/async_stream.py
"""

from __future__ import annotations

import asyncio

from _connect import example_async_client

from deployai import AsyncDeployAI


async def ask(client: AsyncDeployAI, question: str) -> None:
    """Print the answer as it arrives, then what the whole stream added up to."""
    stream = await client.chat.completions.create(
        model="anthropic/claude-3.5-sonnet",
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for text in stream.text_stream:
            print(text, end="", flush=True)
        completion = await stream.get_final_completion()
    print()
    assert completion.usage is not None
    print(
        f"[{completion.choices[0].finish_reason}; {completion.usage.total_tokens} tokens; request {stream.request_id}]"
    )


async def main() -> None:
    """Ask one question over the async client."""
    with example_async_client(token_latency=0.01) as client:
        async with client:
            await ask(client, "Stream this, please.")


if __name__ == "__main__":
    asyncio.run(main())
