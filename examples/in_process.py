"""The emulator in-process: a DeployAI API inside your script or test, with no server, port or network.

`Emulator().client()` is a `DeployAI` that talks to the emulator through an httpx transport, and
`Emulator().async_client()` an `AsyncDeployAI`; `Emulator().transport()` is that transport, for HTTP
code of your own. Script replies and faults on the emulator, then read back what it received. On a
`VirtualClock`, rate-limit windows and the client's waits for them take no real time. (For clients
that need a URL, such as `openai`, see examples/openai_sdk.py; for pytest fixtures,
examples/testing_your_app.py.)

    python examples/in_process.py
"""

from __future__ import annotations

import asyncio

import httpx

import deployai
from deployai.testing import Emulator, VirtualClock


def summarize(client: deployai.DeployAI, text: str) -> str:
    """The code under test: what your app does with a client (here, ask for a one-line summary)."""
    completion = client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": f"Summarize in one line: {text}"}]
    )
    return completion.choices[0].message.content or ""


def with_the_sdk(emulator: Emulator) -> None:
    """Run your code on `emulator.client()`: a scripted answer, an outage it retries, and what was sent."""
    emulator.reply("A fox jumps.")
    # retry-after 0: the client retries at once, so the outage costs no time.
    emulator.fail_next(503, headers={"retry-after": "0"}, times=2)
    with emulator.client() as client:
        print(f"summary: {summarize(client, 'The quick brown fox jumps over the lazy dog.')!r}")
        print(f"without a script: {summarize(client, 'Hello')!r}")
    print(f"statuses: {emulator.statuses}")
    sent = emulator.requests[-1]
    # Recorded keys are redacted; sent_key checks one without ever showing it.
    print(f"last request: {sent.method} {sent.path}, model {sent.model}, key sent: {sent.sent_key('sk-emulator-test')}")
    emulator.assert_scripts_used()  # in a test: fail if a scripted reply or fault was never reached


def with_your_own_http(emulator: Emulator) -> None:
    """Any HTTP code on `emulator.transport()`: nothing is sent over a network, whatever the URL says."""
    with httpx.Client(transport=emulator.transport(), base_url="http://127.0.0.1") as http:
        response = http.get("/v1/models/openai/gpt-4o", headers={"Authorization": "Bearer sk-emulator-example"})
        model = response.json()
        print(f"GET {response.request.url.path}: {response.status_code}, {model['context_window']} tokens of context")


async def with_the_async_sdk(emulator: Emulator) -> None:
    """The same on `emulator.async_client()`: here a scripted answer, streamed."""
    emulator.reply("Streamed, in process.")
    async with emulator.async_client() as client:
        stream = await client.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "Stream something"}], stream=True
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    print(f"async stream: {text!r}")


def on_a_virtual_clock() -> None:
    """A minute's rate-limit window, met and waited out, in no real time: the client sleeps on the clock."""
    clock = VirtualClock()
    emulator = Emulator(rate_limit=2, window_seconds=60, clock=clock)
    with emulator.client() as client:
        for _ in range(3):  # the third call gets a 429 with retry-after 60, waits, and is answered
            client.models.list()
    print(f"rate limited: statuses {emulator.statuses}, {clock.waited:g} s waited on the virtual clock")


def main() -> None:
    """One emulator, reached through the SDK and through plain httpx; then one on a virtual clock."""
    emulator = Emulator(rate_limit=None)  # no window to run into in a test
    with_the_sdk(emulator)
    with_your_own_http(emulator)
    asyncio.run(with_the_async_sdk(emulator))
    on_a_virtual_clock()


if __name__ == "__main__":
    main()
