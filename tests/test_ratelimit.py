"""`RateLimit` reads the documented headers leniently, and every kind of result exposes it."""

from __future__ import annotations

import ast
import datetime
import email.utils
import subprocess
import sys

import pytest

from deployai import RateLimit
from deployai._ratelimit import clock_offset

DATE_T = email.utils.formatdate(1_800_000_000, usegmt=True)  # the server stamped its answer in this second


def test_reads_the_three_headers() -> None:
    limit = RateLimit.from_headers(
        {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1708000060"}
    )
    assert limit.limit == 60
    assert limit.remaining == 0
    assert limit.reset_at == datetime.datetime(2024, 2, 15, 12, 27, 40, tzinfo=datetime.timezone.utc)
    assert limit.reset_at.tzinfo is datetime.timezone.utc
    assert limit.seconds_until_reset(1708000000.0) == 60.0
    assert limit.seconds_until_reset(1708000100.0) == 0.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "tomorrow"},
        {"x-ratelimit-limit": "", "x-ratelimit-remaining": "nan", "x-ratelimit-reset": "inf"},
        {"x-ratelimit-reset": "99999999999999999999"},
    ],
    ids=["absent", "words", "empty-nan-inf", "overflow"],
)
def test_malformed_headers_give_none_never_an_exception(headers: dict[str, str]) -> None:
    limit = RateLimit.from_headers(headers)
    assert (limit.limit, limit.remaining, limit.reset_at) == (None, None, None)
    assert limit.seconds_until_reset(0.0) is None


def test_fractional_counts_read_as_whole_numbers_and_fractional_resets_stay_exact() -> None:
    limit = RateLimit.from_headers({"x-ratelimit-remaining": "4.0", "x-ratelimit-reset": "1708000060.7"})
    assert limit.remaining == 4
    # The fraction is kept: rounding the reset down would make a 429's wait end too soon.
    # Rounding the reset down would make a 429's wait end before the window does.
    assert limit.reset_at == datetime.datetime(2024, 2, 15, 12, 27, 40, 700000, tzinfo=datetime.timezone.utc)


def test_is_a_small_frozen_readable_value() -> None:
    limit = RateLimit(limit=60, remaining=59)
    assert repr(limit) == (
        "RateLimit(limit=60, remaining=59, reset_at=None, "
        "token_limit=None, tokens_remaining=None, tokens_reset_at=None)"
    )
    with pytest.raises(AttributeError):
        limit.remaining = 3  # type: ignore[misc]
    assert limit == RateLimit(limit=60, remaining=59)


NOW = 1_750_000_000.0


def at(seconds_from_now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(NOW + seconds_from_now, tz=datetime.timezone.utc)


def test_openai_headers_fill_requests_and_tokens_with_duration_resets() -> None:
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    limit = RateLimit.from_headers(headers, now=NOW)
    assert (limit.limit, limit.remaining, limit.reset_at) == (500, 499, at(0.12))
    assert (limit.token_limit, limit.tokens_remaining, limit.tokens_reset_at) == (30000, 29000, at(360))
    assert limit.seconds_until_reset(NOW) == pytest.approx(0.12)
    assert limit.seconds_until_tokens_reset(NOW) == pytest.approx(360)


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("1.5m", 90.0),
        ("250us", 0.00025),
    ],
)
def test_duration_resets(duration: str, seconds: float) -> None:
    reset_at = RateLimit.from_headers(
        {"x-ratelimit-reset-requests": duration, "x-ratelimit-remaining-requests": "1"}, NOW
    ).reset_at
    assert reset_at is not None
    assert reset_at.timestamp() == pytest.approx(NOW + seconds)


@pytest.mark.parametrize("bad", ["1x", "m", "1h 2m", "", "s1", "1h2", "-1s", "1e3s", "nan s", "9" * 400 + "h"])
def test_malformed_durations_are_none(bad: str) -> None:
    limit = RateLimit.from_headers({"x-ratelimit-reset-requests": bad, "x-ratelimit-remaining-requests": "1"}, NOW)
    assert limit.reset_at is None
    assert limit.remaining == 1


def test_litellm_per_key_budgets_show_the_most_restrictive() -> None:
    headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "90",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-api_key-limit-requests": "10",
        "x-ratelimit-api_key-remaining-requests": "2",
        "x-ratelimit-api_key-limit-tokens": "5000",
        "x-ratelimit-api_key-remaining-tokens": "4000",
        "x-ratelimit-limit-tokens": "90000",
        "x-ratelimit-remaining-tokens": "80000",
    }
    limit = RateLimit.from_headers(headers, now=NOW)
    assert (limit.limit, limit.remaining, limit.reset_at) == (10, 2, None)
    assert (limit.token_limit, limit.tokens_remaining) == (5000, 4000)


def test_anthropic_headers_fill_requests_and_tokens_with_rfc3339_resets() -> None:
    # Anthropic's own API, or its OpenAI-compatible endpoint: nothing was read, so nothing was paced.
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2025-06-15T15:07:10Z",
        "anthropic-ratelimit-tokens-limit": "30000",
        "anthropic-ratelimit-tokens-remaining": "8000",
        "anthropic-ratelimit-tokens-reset": "2025-06-15T17:07:40.25+02:00",
        "anthropic-ratelimit-input-tokens-remaining": "29000",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
    }
    assert datetime.datetime(2025, 6, 15, 15, 6, 40, tzinfo=datetime.timezone.utc).timestamp() == NOW
    limit = RateLimit.from_headers(headers, now=NOW)
    assert (limit.limit, limit.remaining, limit.reset_at) == (50, 49, at(30))
    assert (limit.token_limit, limit.tokens_remaining, limit.tokens_reset_at) == (30000, 8000, at(60.25))


@pytest.mark.parametrize(
    "reset",
    ["2025-06-15T15:07:10", "2025-06-31T15:07:10Z", "2025-06-15T25:07:10Z", "2025-06-15 15:07:10 UTC", "15:07:10Z"],
)
def test_malformed_rfc3339_resets_are_none(reset: str) -> None:
    headers = {"anthropic-ratelimit-requests-remaining": "3", "anthropic-ratelimit-requests-reset": reset}
    limit = RateLimit.from_headers(headers, now=NOW)
    assert (limit.remaining, limit.reset_at) == (3, None)


def test_a_plain_small_reset_counts_from_now_and_a_large_one_is_a_unix_time() -> None:
    assert RateLimit.from_headers({"x-ratelimit-reset": "60"}, NOW).reset_at == at(60)
    assert RateLimit.from_headers({"x-ratelimit-reset": str(int(NOW) + 5)}, NOW).reset_at == at(5)


def test_now_defaults_to_the_current_time() -> None:
    limit = RateLimit.from_headers({"x-ratelimit-reset-requests": "1h", "x-ratelimit-remaining-requests": "0"})
    wait = limit.seconds_until_reset()
    assert wait is not None
    assert 3500 < wait <= 3600


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"},
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s", "x-ratelimit-remaining-requests": "9"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 2)},
        {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "2025-06-15T15:06:42Z"},
    ],
    ids=["openai-requests", "openai-tokens", "deployai", "anthropic-requests"],
)
def test_a_429_with_a_spent_window_waits_until_it_resets(headers: dict[str, str]) -> None:
    from deployai._retry import server_requested_wait

    assert server_requested_wait(429, headers, NOW) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("sent", "received", "offset"),
    [
        (0.2, 0.3, 0.0),  # clocks agree
        (-30.0, 0.4, 0.0),  # a long call: the bounds are loose, and hold 0
        (1.5, 1.6, 0.0),  # a `Date` reused a second longer than it was true
        (-0.4, 0.9, 0.0),  # ours a little behind, within the `Date`'s second
        (60.2, 60.3, 60.3),  # ours ahead by a minute: read late by the way back, never early
        (-59.8, -59.7, -59.7),  # ours behind by a minute
        (2.5, 3.1, 3.1),  # ahead by more than a `Date`'s slack
    ],
)
def test_clock_offset_moves_nothing_unless_the_date_proves_the_clocks_differ(
    sent: float, received: float, offset: float
) -> None:
    t = 1_800_000_000.0
    assert clock_offset(DATE_T, t + sent, t + received) == pytest.approx(offset)
    assert clock_offset(DATE_T.encode(), t + sent, t + received) == pytest.approx(offset)


@pytest.mark.parametrize(
    "date", [None, "", "yesterday", "Fri, 31 Dec 10000 23:59:59 GMT", "Fri, 04 Dec 2026 25:00:00 GMT"]
)
def test_clock_offset_is_0_without_a_readable_date(date: str | None) -> None:
    assert clock_offset(date, 1_800_000_100.0, 1_800_000_100.1) == 0.0


def test_clock_offset_reads_a_date_as_text_and_as_bytes_under_python_bb() -> None:
    # A limiter reads `Date` as bytes, a retry as text; one compared with the other raised
    # `BytesWarning` under `python -bb`, out of a call through a limiter after a retry.
    script = (
        "from deployai._ratelimit import clock_offset\n"
        f"date = {DATE_T!r}\n"
        "t = 1_800_000_000.0\n"
        "print([clock_offset(d, t + 60.2, t + 60.3) for d in (date, date.encode(), date, date.encode())])\n"
    )
    done = subprocess.run([sys.executable, "-bb", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [round(offset, 1) for offset in ast.literal_eval(done.stdout)] == [60.3] * 4
