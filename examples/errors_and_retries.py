"""What a service sees: refused input, the rate-limit window, raw responses, and typed errors.

python examples/errors_and_retries.py
"""

from __future__ import annotations

from _connect import example_client

import deployai

MESSAGES: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


def main() -> None:
    """Show each failure mode a caller handles, and the details each error carries."""
    with example_client() as client:
        try:
            client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, temperature=3)
        except deployai.InvalidParameterError as error:  # refused before anything was sent
            print(f"refused: {error}")

        raw = client.with_options(max_retries=5, timeout=30.0).chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=MESSAGES, max_tokens=5
        )
        completion = raw.parse()
        print(f"status {raw.status_code}, request {raw.request_id}, {raw.rate_limit.remaining} requests left")
        print(f"answer: {completion.choices[0].message.content!r} ({completion.choices[0].finish_reason})")

        try:
            client.chat.completions.create(model="openai/gpt-5-imaginary", messages=MESSAGES)
        except deployai.NotFoundError as error:
            print(f"not found: {error.message} (status {error.status_code})")
        except deployai.RateLimitError as error:
            print(f"rate limited: retry after {error.retry_after} s, window resets at {error.rate_limit.reset_at}")
        except deployai.APIConnectionError as error:
            print(f"connection failed: {error}")


if __name__ == "__main__":
    main()
