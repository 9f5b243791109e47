"""Configuring a client: headers, copies with other options, timeouts, model aliases, and extra fields.

Make one client per API key and reuse it. Its `default_headers` go with every request; `with_options`
makes a cheap copy with other settings that shares its connections; `extra_headers` adds headers to one
call. `timeout` bounds each attempt and `total_timeout` the whole call, retries and waits included.
`ModelAlias` sends a model name that is not in `provider/model` form as it is, for a gateway that has
aliases of its own. `extra_body` and `extra_query` send fields the SDK has no parameter for, and
`deployai.NOT_GIVEN` lets a function of your own pass "not given" on. Against the local emulator (no
`DEPLOYAI_API_KEY`), one model is made slow through its control API, so that the timeouts show.

    python examples/configuration.py
"""

from __future__ import annotations

import json
import time

from _connect import base_url_and_key, emulator_fault

import deployai
from deployai import DeployAI

MESSAGES: list[deployai.types.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
SLOW_MODEL = "openai/o3-mini"


def show_headers(client: DeployAI) -> None:
    """Headers from the client, from a `with_options` copy and from one call, as the request carried them."""
    traced = client.with_options(default_headers={"X-Trace-Id": "trace-42"})  # merged with X-Team, not instead
    raw = traced.chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=MESSAGES, extra_headers={"X-Priority": "low"}
    )
    sent = raw.http_response.request.headers
    print(f"sent X-Team: {sent['x-team']}, X-Trace-Id: {sent['x-trace-id']}, X-Priority: {sent['x-priority']}")
    print(f"answer: {raw.parse().choices[0].message.content!r} (status {raw.status_code}, request {raw.request_id})")


def show_timeouts(client: DeployAI) -> None:
    """Half a second per attempt, a second and a half for the whole call: a model that stalls cannot hold it."""
    started = time.monotonic()
    try:
        completion = client.chat.completions.create(model=SLOW_MODEL, messages=MESSAGES, timeout=0.5, total_timeout=1.5)
    except deployai.APITimeoutError as error:
        seconds = time.monotonic() - started
        print(f"{SLOW_MODEL}: {type(error).__name__}, {error.retries + 1} attempts in {seconds:.1f} s")
    else:
        print(f"{SLOW_MODEL}: answered in time, after {completion.retries} retries")


def show_model_alias(client: DeployAI) -> None:
    """A gateway's alias: refused as a plain str before sending, sent as given when wrapped in `ModelAlias`."""
    try:
        client.chat.completions.create(model="fast", messages=MESSAGES)
    except deployai.InvalidParameterError as error:  # what catches a mistyped model id, with no request sent
        print(f"'fast': refused before sending: {error}")
    try:
        completion = client.chat.completions.create(model=deployai.ModelAlias("fast"), messages=MESSAGES)
    except deployai.APIStatusError as error:
        # DeployAI itself (and so its emulator) has no aliases: the server refused it (400 or 404), not the SDK.
        print(f"ModelAlias('fast'): sent; the server answered {error.status_code}: {error.message}")
    else:
        print(f"ModelAlias('fast'): answered by {completion.model}")


def ask(
    client: DeployAI, question: str, *, temperature: float | deployai.NotGiven = deployai.NOT_GIVEN
) -> deployai.RawResponse[deployai.types.ChatCompletion]:
    """Your own wrapper: a caller that leaves `temperature` out gets the server's default, as with `create`."""
    return client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": question}],
        temperature=temperature,  # NOT_GIVEN is not sent; None would be sent as null
        extra_body={"provider": {"order": ["openai", "azure"]}},  # a gateway's field the SDK does not know
        extra_query={"trace": "example"},  # base_url takes no query string: per-call parameters go here
    )


def show_extra_fields(client: DeployAI) -> None:
    """What the wrapper sent, with a temperature and without one, next to the extra body and query fields."""
    for temperature in (0.2, deployai.NOT_GIVEN):
        request = ask(client, "Hi", temperature=temperature).http_response.request
        body = json.loads(request.content)
        print(
            f"temperature {temperature}: sent {body.get('temperature', 'nothing')}, "
            f"provider {body['provider']}, query {request.url.query.decode()}"
        )


def main() -> None:
    """Run each part against the real API when a key is set, else against the local emulator."""
    with base_url_and_key() as (base_url, api_key):
        emulator_fault(base_url, fault="stall", seconds=3, times=None, match={"model": SLOW_MODEL})
        with DeployAI(
            base_url=base_url,
            api_key=api_key,
            default_headers={"X-Team": "search"},  # a gateway may route or bill on it
            timeout=30.0,  # seconds per attempt; the default is 600, with 5 to connect
        ) as client:
            show_headers(client)
            show_timeouts(client)
            show_model_alias(client)
            show_extra_fields(client)


if __name__ == "__main__":
    main()
