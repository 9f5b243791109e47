"""The retry policy as pure decisions (no clock, no sleeping), and as both clients carry it out."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import pickle
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import deployai
from deployai._plan import attempt_error
from deployai._retry import RetryDecision, backoff_delay, server_requested_wait
from deployai._retry import decide as decide_from
from deployai.testing import Emulator, VirtualClock
from tests.conftest import ClientFactory, completion_json, user
from tests.raw_server import RawSSEServer
from tests.sse import Pieces
from tests.test_responses import _left_for_the_collector

NOW = 1_700_000_000.0
REQUEST = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions")


def decide(
    status: int | None,
    headers: dict[str, str] | None = None,
    retry_number: int = 0,
    *,
    max_retries: int = 2,
    max_retry_wait: float = 60.0,
    random_fraction: float = 0.0,
) -> RetryDecision:
    """What the call plan decides after an attempt failed with `status` (None: a refused connection)."""
    outcome = (
        httpx.ConnectError("refused", request=REQUEST)
        if status is None
        else httpx.Response(status, headers=headers, request=REQUEST)
    )
    error = attempt_error(outcome, REQUEST, NOW, NOW)
    return decide_from(
        retryable=deployai.is_retryable(error),
        server_wait=deployai.retry_after(error),
        retry_number=retry_number,
        max_retries=max_retries,
        max_retry_wait=max_retry_wait,
        random_fraction=random_fraction,
    )


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529, None])
def test_retryable_failures_are_retried(status: int | None) -> None:
    assert decide(status).retry


@pytest.mark.parametrize(
    ("status", "said", "retried"), [(503, "false", False), (400, "true", True), (503, "maybe", True)]
)
def test_the_servers_x_should_retry_decides_when_it_says(status: int, said: str, retried: bool) -> None:
    assert decide(status, {"x-should-retry": said}).retry is retried


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501, 505])
def test_other_statuses_are_never_retried(status: int) -> None:
    assert not decide(status).retry


def test_retries_stop_at_max_retries() -> None:
    assert decide(500, retry_number=1).retry
    assert not decide(500, retry_number=2).retry
    assert not decide(500, max_retries=0).retry


def test_backoff_doubles_from_half_a_second_to_an_eight_second_cap() -> None:
    assert [backoff_delay(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_call_retried_through_a_long_outage_gets_its_answer() -> None:
    # `max_retries` has no upper bound: a service may retry for hours (8 s apart, here on a virtual
    # clock), past the 1,024th retry, where the doubling of the backoff overflows a float.
    emulator = Emulator(clock=VirtualClock())
    emulator.fail(status=503, times=1_100)
    with emulator.client(max_retries=10**9) as client:
        completion = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert completion.retries == 1_100
    assert backoff_delay(10**6, 0.0) == 8.0


def test_jitter_takes_up_to_a_quarter_off() -> None:
    assert backoff_delay(2, 1.0) == pytest.approx(1.5)
    assert decide(500, random_fraction=0.5).wait_seconds == pytest.approx(0.5 * 0.875)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": email.utils.formatdate(NOW + 7, usegmt=True)}, 7.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x", "retry-after": "4"}, 4.0),
        ({}, None),
    ],
    ids=["ms", "ms-wins", "seconds", "fractional", "http-date", "garbage", "bad-ms-falls-back", "none"],
)
def test_server_requested_wait(headers: dict[str, str], expected: float | None) -> None:
    assert server_requested_wait(503, headers, NOW) == expected


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("retry-after", "3"), ("retry-after", "3")], 3.0),
        ([("retry-after-ms", "1500"), ("retry-after-ms", "1500")], 1.5),
        # A proxy's own `Date` first, the server's (30 s ahead) last: the server's clock is the last one.
        (
            [
                ("date", email.utils.formatdate(NOW, usegmt=True)),
                ("date", email.utils.formatdate(NOW + 30, usegmt=True)),
                ("retry-after", email.utils.formatdate(NOW + 32, usegmt=True)),
            ],
            2.0,
        ),
    ],
    ids=["retry-after", "retry-after-ms", "date"],
)
def test_a_header_a_proxy_repeats_is_read_as_its_last_value(pairs: list[tuple[str, str]], expected: float) -> None:
    # httpx joins repeats with ", ": no number, and the first of two dates.
    headers = httpx.Headers(pairs)
    assert server_requested_wait(429, headers, NOW, NOW) == pytest.approx(expected, abs=0.01)
    repeated = httpx.Headers([("x-ratelimit-remaining", "4"), ("x-ratelimit-remaining", "4")])
    assert deployai.RateLimit.from_headers(repeated, NOW).remaining == 4
    # And so in the headers a pickled error carries (a worker's, sent back to its parent).
    error = deployai.RateLimitError(
        "slow down",
        response=httpx.Response(429, headers=repeated, request=httpx.Request("POST", "https://x/v1")),
        body=None,
    )
    assert pickle.loads(pickle.dumps(error)).rate_limit.remaining == 4
    # Other headers a pickle carries keep every value (two challenges), joined as httpx joins them.
    challenged = httpx.Headers([("www-authenticate", 'Bearer realm="api"'), ("www-authenticate", "Basic")])
    refused = deployai.AuthenticationError(
        "no", response=httpx.Response(401, headers=challenged, request=httpx.Request("POST", "https://x/v1")), body=None
    )
    assert pickle.loads(pickle.dumps(refused)).response.headers["www-authenticate"] == 'Bearer realm="api", Basic'


def test_exhausted_429_waits_until_the_window_resets() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 12)}
    decision = decide(429, headers)
    assert decision.retry
    assert decision.wait_seconds == 12.0
    assert decision.server_wait == 12.0


def test_reset_is_used_only_for_an_exhausted_429() -> None:
    headers = {"x-ratelimit-remaining": "5", "x-ratelimit-reset": str(int(NOW) + 12)}
    assert decide(429, headers).wait_seconds == 0.5
    assert decide(503, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 12)}).wait_seconds == 0.5


def test_a_wait_longer_than_max_retry_wait_is_not_slept() -> None:
    decision = decide(429, {"retry-after": "120"})
    assert not decision.retry
    assert decision.server_wait == 120.0


def test_a_wait_of_more_than_a_day_is_not_slept_even_when_any_wait_is_allowed() -> None:
    # With max_retry_wait=math.inf, a glitched or hostile `retry-after` of years was slept as given.
    assert decide(429, {"retry-after": "86400"}, max_retry_wait=math.inf).wait_seconds == 86_400.0
    decision = decide(429, {"retry-after": str(30 * 86_400)}, max_retry_wait=math.inf)
    assert not decision.retry
    assert decision.server_wait == 30 * 86_400.0  # kept on the error, for a service to reschedule by


@pytest.mark.parametrize("value", ["99999999999", "1e300", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_wait_of_more_than_a_year_counts_as_a_year(value: str) -> None:
    # The error's `retry_after` was 1e300, which a retry library's sleep (the stamina and tenacity
    # recipes of docs/errors.md) cannot take; it is never retried sooner than a shorter wait would be.
    year = 366 * 86_400.0
    assert server_requested_wait(429, {"retry-after": value}, NOW) == year
    assert server_requested_wait(429, {"retry-after-ms": "1e300"}, NOW) == year
    decision = decide(429, {"retry-after": value}, max_retry_wait=math.inf)
    assert not decision.retry
    assert decision.server_wait == year


def test_a_wait_in_the_past_is_zero() -> None:
    assert decide(503, {"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}).wait_seconds == 0.0


# The same policy, carried out by both clients.


def test_retries_5xx_then_succeeds_with_backoff(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_response(status_code=500, json={"error": {"message": "boom"}})
    httpx_mock.add_response(status_code=502, text="bad gateway")
    httpx_mock.add_response(json=completion_json())
    completion = make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert completion.id == "chatcmpl-abc123"
    assert len(httpx_mock.get_requests()) == 3
    assert len(sleeps) == 2
    assert 0.375 <= sleeps[0] <= 0.5
    assert 0.75 <= sleeps[1] <= 1.0


def test_gives_up_after_max_retries_with_the_last_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    for _ in range(3):
        httpx_mock.add_response(status_code=503, json={"error": {"message": "provider down"}})
    with pytest.raises(deployai.ServiceUnavailableError, match="provider down"):
        make_client(max_retries=2).chat.completions.create(model="openai/gpt-4o", messages=user())
    assert len(httpx_mock.get_requests()) == 3
    assert len(sleeps) == 2


def test_4xx_is_not_retried(make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    httpx_mock.add_response(status_code=400, json={"error": {"message": "bad"}})
    with pytest.raises(deployai.BadRequestError):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []


def test_429_honours_retry_after(make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    httpx_mock.add_response(status_code=429, json={"error": {"message": "slow"}}, headers={"retry-after": "2"})
    httpx_mock.add_response(json=completion_json())
    make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert len(sleeps) == 1
    assert 2.0 <= sleeps[0] <= 2.5  # never shorter than asked, spread by up to a quarter


def test_a_long_server_wait_raises_at_once_with_retry_after(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_response(status_code=429, json={"error": {"message": "slow"}}, headers={"retry-after-ms": "90000"})
    with pytest.raises(deployai.RateLimitError) as info:
        make_client(max_retry_wait=30).chat.completions.create(model="openai/gpt-4o", messages=user())
    assert info.value.retry_after == 90.0
    assert sleeps == []
    assert len(httpx_mock.get_requests()) == 1


def test_connection_errors_and_timeouts_are_retried(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    httpx_mock.add_response(json={"object": "list", "data": []})
    assert len(make_client().models.list()) == 0
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "failure",
    [httpx.RemoteProtocolError("peer closed connection"), httpx.ReadError("reset"), httpx.ReadTimeout("stalled")],
)
def test_a_whole_answer_whose_body_broke_after_its_200_is_not_sent_again(
    failure: Exception, make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    # The server had answered, so it had taken the request: each retry was carried out (and charged)
    # again, three times for one call, and a proxy's body limit cut every one of them alike.
    half = json.dumps(completion_json()).encode()[:40]
    httpx_mock.add_callback(
        lambda request: httpx.Response(
            200, headers={"content-type": "application/json"}, stream=Pieces([half], fail_with=failure)
        ),
        is_reusable=True,
    )
    with pytest.raises(deployai.APIConnectionError, match="had answered 200") as info:
        make_client(max_retries=2).chat.completions.create(model="openai/gpt-4o", messages=user())
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []
    assert not deployai.is_retryable(info.value)  # nor by the caller's own retry loop
    assert isinstance(info.value, deployai.APITimeoutError) == isinstance(failure, httpx.TimeoutException)


def test_a_200_that_is_no_event_stream_cut_in_its_body_is_not_sent_again_either(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    # A JSON answer to a stream request is read whole, as a whole answer is: cut, it was sent again.
    half = json.dumps(completion_json()).encode()[:40]
    httpx_mock.add_callback(
        lambda request: httpx.Response(
            200, headers={"content-type": "application/json"}, stream=Pieces([half], fail_with=httpx.ReadError("reset"))
        ),
        is_reusable=True,
    )
    with pytest.raises(deployai.APIConnectionError, match="had answered 200"):
        make_client(max_retries=2).chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True)
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []


def test_a_whole_answer_cut_over_a_real_socket_after_its_200_is_sent_once() -> None:
    with RawSSEServer([b'{"id": "chatcmpl-1", "choices": ['], after="close") as server:
        client = deployai.DeployAI(api_key="sk-test", base_url=server.base_url, max_retries=2)
        with client, pytest.raises(deployai.APIConnectionError, match="had answered 200"):
            client.chat.completions.create(model="openai/gpt-4o", messages=user())
        assert server.requests == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_deadline_met_in_the_body_of_a_200_says_the_server_had_answered(kind: str) -> None:
    # The async deadline cancelled the body's read and raised a ReadTimeout of its own, which
    # `is_retryable` counted retryable: a caller's own retry loop sent the call again.
    # The body trickles in: each read is quick, and only the call's deadline ends it.
    with RawSSEServer([b'{"id": "chatcmpl-1", ', *[b" "] * 100], pace=0.05) as server:
        options: dict[str, Any] = {"api_key": "sk-test", "base_url": server.base_url, "max_retries": 2}
        create: dict[str, Any] = {"model": "openai/gpt-4o", "messages": user(), "total_timeout": 0.3}
        with pytest.raises(deployai.APITimeoutError, match="had answered 200") as info:
            if kind == "sync":
                with deployai.DeployAI(**options) as client:
                    client.chat.completions.create(**create)
            else:

                async def main() -> None:
                    async with deployai.AsyncDeployAI(**options) as client:
                        await client.chat.completions.create(**create)

                asyncio.run(main())
        assert not deployai.is_retryable(info.value)
        assert server.requests == 1
        del info
        if kind == "async":  # the error left no cycle behind (its frames held it and the answer)

            async def again() -> None:
                async with deployai.AsyncDeployAI(**options) as client:
                    with contextlib.suppress(deployai.APITimeoutError):
                        await client.chat.completions.create(**create)

            with _left_for_the_collector() as left:
                asyncio.run(again())
            assert left == []


def test_a_listing_whose_body_broke_off_is_fetched_again(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    # A GET only reads: sent again, it changes nothing, so its cut body is retried as before.
    httpx_mock.add_callback(
        lambda request: httpx.Response(200, stream=Pieces([b'{"object": "list", '], fail_with=httpx.ReadError("reset")))
    )
    httpx_mock.add_response(json={"object": "list", "data": []})
    assert len(make_client().models.list()) == 0
    assert len(sleeps) == 1


def test_max_retries_zero_sends_once(make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    with pytest.raises(deployai.APIConnectionError):
        make_client(max_retries=0).models.list()
    assert len(httpx_mock.get_requests()) == 1


def test_with_options_max_retries_applies_to_the_copy(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    for _ in range(5):
        httpx_mock.add_response(status_code=500)
    httpx_mock.add_response(json={"object": "list", "data": []})
    make_client(max_retries=0).with_options(max_retries=5).models.list()
    assert len(sleeps) == 5


def test_each_retry_is_logged_at_info(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    httpx_mock.add_response(status_code=429, headers={"retry-after": "1", "x-request-id": "req_429"})
    httpx_mock.add_response(json={"object": "list", "data": []})
    with caplog.at_level(logging.INFO, logger="deployai"):
        make_client().models.list()
    (record,) = [r for r in caplog.records if r.name == "deployai"]
    assert record.levelno == logging.INFO
    assert record.getMessage().endswith("after status 429 (request id req_429)")  # the id support asks for
    assert f"in {sleeps[0]:.2f} s" in record.getMessage()  # the wait actually slept
    assert "retry 1 of 2" in record.getMessage()


@pytest.mark.parametrize("value", ["nan", "-3", "inf", "1e999"])
def test_malformed_retry_after_falls_back_to_backoff(value: str) -> None:
    assert server_requested_wait(503, {"retry-after": value}, NOW) is None
    assert server_requested_wait(503, {"retry-after-ms": value}, NOW) is None
    decision = decide(503, {"retry-after": value})
    assert decision.retry
    assert decision.wait_seconds == 0.5


def test_a_server_wait_equal_to_max_retry_wait_is_still_slept() -> None:
    decision = decide(429, {"retry-after": "60"}, max_retry_wait=60.0)
    assert decision.retry
    assert decision.wait_seconds == 60.0
