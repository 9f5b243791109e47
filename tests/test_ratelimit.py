"""`RateLimit` reads the documented headers leniently, and every kind of result exposes it."""

from __future__ import annotations

import datetime

import pytest

from deployai import RateLimit


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


def test_fractional_values_are_read_as_whole_numbers() -> None:
    limit = RateLimit.from_headers({"x-ratelimit-remaining": "4.0", "x-ratelimit-reset": "1708000060.7"})
    assert limit.remaining == 4
    assert limit.reset_at == datetime.datetime(2024, 2, 15, 12, 27, 40, tzinfo=datetime.timezone.utc)


def test_is_a_small_frozen_readable_value() -> None:
    limit = RateLimit(limit=60, remaining=59)
    assert repr(limit) == "RateLimit(limit=60, remaining=59, reset_at=None)"
    with pytest.raises(AttributeError):
        limit.remaining = 3  # type: ignore[misc]
    assert limit == RateLimit(limit=60, remaining=59)
