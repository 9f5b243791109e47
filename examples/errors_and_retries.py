"""What a service sees: refused input, the rate-limit window, raw responses, and typed errors.

Against the local emulator (no `DEPLOYAI_API_KEY`), faults scripted through its control API show
what the SDK does when the API misbehaves: a server asking to wait longer than the client may, and
streams that break after part of the answer arrived. Against the real API those calls just answer.

    python examples/errors_and_retries.py
"""

from __future__ import annotations

import time

from _connect import base_url_and_key, emulator_fault

import deployai
from deployai import DeployAI

MESSAGES: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
STORY: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me a story"}]


def error_code(error: deployai.APIStatusError) -> object:
    """The API's `error.code` from the parsed body; None when the body is text or HTML (from a proxy, say)."""
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


def show_typed_errors(client: DeployAI) -> None:
    """A refused parameter, a raw response with its rate-limit window, and an error status with its body."""
    try:
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, temperature=3)
    except deployai.InvalidParameterError as error:  # refused before anything was sent
        print(f"refused: {error}")
        # The same as data: a form or an API of your own can point at the field to fix.
        print(f"  param={error.param!r} value={error.value!r} allowed={error.allowed!r}")

    raw = client.with_options(max_retries=5, timeout=30.0).chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=MESSAGES, max_tokens=5
    )
    completion = raw.parse()
    print(f"status {raw.status_code}, request {raw.request_id}, {raw.rate_limit.remaining} requests left")
    print(f"answer: {completion.choices[0].message.content!r} ({completion.choices[0].finish_reason})")

    try:
        client.chat.completions.create(model="openai/gpt-5-imaginary", messages=MESSAGES)
    except deployai.NotFoundError as error:
        print(f"not found: {error.message} (status {error.status_code}, code {error_code(error)})")
    except deployai.RateLimitError as error:
        print(f"rate limited: retry after {error.retry_after} s, window resets at {error.rate_limit.reset_at}")
    except deployai.APIConnectionError as error:
        print(f"connection failed: {error}")


def show_long_retry_after(client: DeployAI) -> None:
    """A server asking for a longer wait than `max_retry_wait`: raised at once, so the caller can requeue."""
    started = time.monotonic()
    try:
        client.with_options(max_retry_wait=10.0).chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
    except deployai.ServiceUnavailableError as error:
        # No worker blocked for two minutes: put the job back on the queue for `retry_after` seconds.
        seconds = time.monotonic() - started
        print(f"503, retry after {error.retry_after:.0f} s: raised after {seconds:.1f} s, {error.retries} retries")
    else:
        print("answered: the server asked for no wait")


def show_broken_streams(client: DeployAI) -> None:
    """A stream cut mid-answer, and an error event mid-answer: both raise after the text that did arrive."""
    for broken_by in ("a dropped connection", "an error event"):
        received: list[str] = []
        try:
            with client.chat.completions.create(model="openai/gpt-4o", messages=STORY, stream=True) as stream:
                for text in stream.text_stream:
                    received.append(text)
        except deployai.APIConnectionError as error:  # never a quietly shortened answer
            print(f"{broken_by}: {type(error).__name__} after {''.join(received)!r}: {error}")
        except deployai.APIStatusError as error:  # the error the event carried, typed by its code
            print(f"{broken_by}: {type(error).__name__} after {''.join(received)!r}: {error.message}")
        else:
            print(f"{broken_by}: none happened; the whole answer: {''.join(received)!r}")


def main() -> None:
    """Show each failure mode a caller handles, and the details each error carries."""
    with base_url_and_key() as (base_url, api_key), DeployAI(base_url=base_url, api_key=api_key) as client:
        show_typed_errors(client)
        emulator_fault(base_url, fault="fail", status=503, headers={"retry-after": "120"})
        show_long_retry_after(client)
        # Three events each: the role, then "You" and " said"; then the break.
        emulator_fault(base_url, fault="cut_stream_after", n_chunks=3)
        emulator_fault(base_url, fault="error_event_after", n_chunks=3)
        show_broken_streams(client)


if __name__ == "__main__":
    main()
