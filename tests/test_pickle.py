"""Clients and RateLimit pickle, to travel to process pools and Dask workers: a copy opens its own pool and works."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import deployai
from deployai.testing import Emulator, EmulatorServer
from tests.conftest import API_KEY, user


def test_a_client_travels_with_its_options_and_opens_its_own_pool() -> None:
    with EmulatorServer(Emulator()) as server:
        limiter = deployai.RateLimiter(requests_per_minute=600)
        client = deployai.DeployAI(
            api_key=API_KEY,
            base_url=server.base_url,
            timeout=12.0,
            max_retries=5,
            total_timeout=30.0,
            default_headers={"x-team": "search"},
            rate_limiter=limiter,
        )
        copy = pickle.loads(pickle.dumps(client))
        assert copy._options == client._options  # key, URL, timeouts, retries, headers
        assert copy._http is not client._http
        assert isinstance(copy.rate_limiter, deployai.RateLimiter)
        assert copy.rate_limiter.requests_per_minute == 600
        client.close()  # the original's pool is closed: the copy's is its own
        answer = copy.chat.completions.create(model="openai/gpt-4o", messages=user("hi"))
        assert answer.choices[0].message.content == "You said: hi"
        assert server.emulator.requests[-1].headers["x-team"] == "search"
        copy.close()


def test_an_async_client_and_a_with_options_copy_travel_and_work_on_a_new_loop() -> None:
    with EmulatorServer(Emulator()) as server:
        client = deployai.AsyncDeployAI(api_key=API_KEY, base_url=server.base_url)
        copy = pickle.loads(pickle.dumps(client.with_options(max_retries=0)))
        assert type(copy) is deployai.AsyncDeployAI
        assert copy.max_retries == 0

        async def ask() -> str | None:
            async with copy:
                answer = await copy.chat.completions.create(model="openai/gpt-4o", messages=user("hello"))
            return answer.choices[0].message.content

        assert asyncio.run(ask()) == "You said: hello"


@pytest.mark.parametrize("client_type", [deployai.DeployAI, deployai.AsyncDeployAI])
def test_a_client_on_a_borrowed_http_client_refuses_to_pickle(client_type: type) -> None:
    borrowed = httpx.Client() if client_type is deployai.DeployAI else httpx.AsyncClient()
    client = client_type(api_key=API_KEY, http_client=borrowed)
    with pytest.raises(TypeError, match="own http_client does not pickle") as info:
        pickle.dumps(client)
    assert API_KEY not in str(info.value)
    if isinstance(borrowed, httpx.Client):
        borrowed.close()
    else:
        asyncio.run(borrowed.aclose())


def test_rate_limit_pickles() -> None:
    rate_limit = deployai.RateLimit(
        limit=60, remaining=0, reset_at=datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc), tokens_remaining=10
    )
    assert pickle.loads(pickle.dumps(rate_limit)) == rate_limit


@pytest.mark.parametrize("client_type", [deployai.DeployAI, deployai.AsyncDeployAI])
def test_an_emulator_client_refuses_to_pickle_and_says_what_to_use(client_type: type) -> None:
    # It used to travel as a client of its own for https://emulator.invalid, which then looked that name up.
    emulator = Emulator()
    client = emulator.client() if client_type is deployai.DeployAI else emulator.async_client()
    with pytest.raises(TypeError, match=r"in-process Emulator does not pickle.*EmulatorServer"):
        pickle.dumps(client)


def _dumpers() -> list[object]:
    import cloudpickle  # type: ignore[import-untyped]  # Dask's fallback for what pickle refuses

    return [pickle.dumps, cloudpickle.dumps]


@pytest.mark.parametrize("dumps", _dumpers(), ids=["pickle", "cloudpickle"])
def test_a_raw_response_refuses_to_pickle_and_never_carries_the_key(dumps: object) -> None:
    # cloudpickle took the parser's closure and the live response, whose request holds the key.
    assert callable(dumps)
    with EmulatorServer(Emulator()) as server, deployai.DeployAI(api_key=API_KEY, base_url=server.base_url) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user("hi"))
        with pytest.raises(TypeError, match=r"RawResponse does not pickle.*parse\(\)"):
            dumps(raw)
        answer = pickle.loads(pickle.dumps(raw.parse()))  # what the error says to send instead
        assert answer.choices[0].message.content == "You said: hi"
        assert API_KEY.encode() not in pickle.dumps(raw.parse())


@pytest.mark.parametrize("dumps", _dumpers(), ids=["pickle", "cloudpickle"])
def test_a_stream_refuses_to_pickle_with_what_to_send_instead_and_reads_on(dumps: object) -> None:
    assert callable(dumps)

    async def read_async(client: deployai.AsyncDeployAI) -> str | None:
        async with await client.chat.completions.create(
            model="openai/gpt-4o", messages=user("hey"), stream=True
        ) as stream:
            with pytest.raises(TypeError, match=r"AsyncStream does not pickle.*get_final_completion\(\)"):
                dumps(stream)
            return (await stream.get_final_completion()).choices[0].message.content

    with EmulatorServer(Emulator()) as server:
        client = deployai.DeployAI(api_key=API_KEY, base_url=server.base_url)
        with client, client.chat.completions.create(model="openai/gpt-4o", messages=user("hi"), stream=True) as stream:
            with pytest.raises(TypeError, match=r"A Stream does not pickle.*get_final_completion\(\)"):
                dumps(stream)
            assert stream.get_final_completion().choices[0].message.content == "You said: hi"
        assert asyncio.run(read_async(deployai.AsyncDeployAI(api_key=API_KEY, base_url=server.base_url))) == (
            "You said: hey"
        )


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_an_error_copied_in_this_process_keeps_its_request_and_response(copier: Callable[[Any], Any]) -> None:
    # Copies went through the pickling path: no request, and a stand-in response without the body.
    emulator = Emulator()
    emulator.fail_next(400, body="<html><title>Blocked</title><body>details here</body></html>")
    with emulator.client(max_retries=0) as client, pytest.raises(deployai.BadRequestError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=user("hi"))
    error = info.value
    copied = copier(error)
    assert type(copied) is type(error)
    assert (str(copied), copied.retries, copied.request_id) == (str(error), error.retries, error.request_id)
    assert copied.request is error.request
    assert copied.response is error.response
    assert "details here" in copied.response.text


def test_a_raw_response_and_a_stream_still_copy_in_this_process() -> None:
    # `copy` falls back to what pickling uses: refusing to pickle, they refused `copy.copy` too.
    with EmulatorServer(Emulator()) as server, deployai.DeployAI(api_key=API_KEY, base_url=server.base_url) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=user("hi"))
        for copied in (copy.copy(raw), copy.deepcopy(raw)):
            assert copied.parse().choices[0].message.content == "You said: hi"
        with client.chat.completions.create(model="openai/gpt-4o", messages=user("hi"), stream=True) as stream:
            assert copy.copy(stream).get_final_completion().choices[0].message.content == "You said: hi"
