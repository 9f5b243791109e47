"""Your own retry loop with stamina or tenacity, deciding exactly as the SDK does.

A job queue or a batch that retries at its own level turns the client's retries off
(`max_retries=0`) and asks `deployai.is_retryable(exc)` and `deployai.retry_after(exc)`, the SDK's
own rule: retry connection failures, timeouts, 408, 409, 429 and 5xx, and wait what the server asked
for. Needs `pip install stamina tenacity`. Against the local emulator (no `DEPLOYAI_API_KEY`), it
first scripts two 503s for each loop through the emulator's control API, so that the retries show.

    python examples/retry_loops.py
"""

from __future__ import annotations

import httpx
import stamina
import tenacity
from _connect import base_url_and_key

import deployai
from deployai import DeployAI

MESSAGES: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": "Hello again!"}]


def backoff(error: Exception) -> bool | float:
    """The `on=` hook of stamina: the server's wait when it gave one, else stamina's own backoff."""
    if not deployai.is_retryable(error):
        return False
    wait = deployai.retry_after(error)
    return wait if wait is not None else True


def ask_with_stamina(client: DeployAI, attempts: list[int]) -> str:
    """One completion, retried by stamina on what the SDK would retry."""

    @stamina.retry(on=backoff, attempts=5)
    def ask() -> str:
        attempts.append(1)
        completion = client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
        return completion.choices[0].message.content or ""

    return ask()


def server_wait(state: tenacity.RetryCallState) -> float:
    """The `wait=` of tenacity: the server's wait when it gave one, else half a second."""
    error = state.outcome.exception() if state.outcome is not None else None
    wait = deployai.retry_after(error) if error is not None else None
    return wait if wait is not None else 0.5


def ask_with_tenacity(client: DeployAI, attempts: list[int]) -> str:
    """One completion, retried by tenacity on what the SDK would retry, waiting what the server asked."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(deployai.is_retryable),
        wait=server_wait,
        stop=tenacity.stop_after_attempt(5),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            attempts.append(1)
            completion = client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
    return completion.choices[0].message.content or ""


def main() -> None:
    """Run both loops, against the real API or against the emulator with two failures scripted for each."""
    stamina.instrumentation.set_on_retry_hooks([])  # stamina logs each retry; this example counts them
    with (
        base_url_and_key() as (base_url, api_key),
        DeployAI(base_url=base_url, api_key=api_key, max_retries=0) as client,
    ):
        for name, ask in (("stamina", ask_with_stamina), ("tenacity", ask_with_tenacity)):
            if base_url is not None:  # the local emulator (no key): make it fail twice first
                fault = {"fault": "fail", "status": 503, "headers": {"retry-after": "0.05"}, "times": 2}
                httpx.post(base_url.removesuffix("/v1") + "/_emulator/faults", json=fault).raise_for_status()
            attempts: list[int] = []
            answer = ask(client, attempts)
            print(f"{name}: {answer!r} after {len(attempts)} attempts")


if __name__ == "__main__":
    main()
