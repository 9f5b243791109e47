"""The rate limiter's decisions, driven by hand with explicit times: no HTTP, threads, clocks or sleeping."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from deployai import RateLimit
from deployai._pacing import Pacing
from deployai._ratelimit import WindowReport, read_window

T = 1_700_000_000.0


def report(remaining: int | None, reset_at: float | None = None, limit: int | None = 20) -> WindowReport:
    return WindowReport(limit, remaining, reset_at, None)


def informed(remaining: int, reset_at: float, limit: int = 20) -> Pacing:
    """A pacing that sent one probe and heard back: `remaining` left until `reset_at`."""
    pacing = Pacing()
    ticket = pacing.admit(T)
    pacing.learn(T, ticket, 200, report(remaining, reset_at, limit), None)
    return pacing


def test_before_any_answer_one_request_goes_and_the_rest_wait_for_its_answer() -> None:
    pacing = Pacing()
    assert pacing.delay(T) == 0
    pacing.admit(T)
    assert pacing.delay(T) == 1.0  # held, but one more probe goes after a second if no answer came
    assert pacing.firm_delay(T) == 0  # a hold that ends with an answer: nobody is refused because of it
    pacing.learn(T + 0.2, pacing.tickets, 200, report(19, T + 60), None)
    assert pacing.delay(T + 0.2) == 0


def test_requests_in_flight_count_against_what_is_left() -> None:
    pacing = informed(remaining=3, reset_at=T + 10)
    for _ in range(3):
        assert pacing.delay(T) == 0
        pacing.admit(T)
    assert pacing.delay(T + 1) == pytest.approx(9.0)  # 3 left, 3 in flight: wait for the reset
    pacing.learn(T + 1, pacing.tickets, 200, report(2, T + 10), None)  # lower counts, fewer in flight
    pacing.learn(T + 1, pacing.tickets, 200, report(1, T + 10), None)
    pacing.learn(T + 1, pacing.tickets, 200, report(0, T + 10), None)
    assert pacing.in_flight == 0
    assert pacing.delay(T + 2) == pytest.approx(8.0)


def test_after_the_reset_the_window_is_full_again_minus_what_is_still_in_flight() -> None:
    pacing = informed(remaining=0, reset_at=T + 10, limit=3)
    pacing.admit(T + 9)  # sent before the reset by someone else's decision, still in flight
    assert pacing.delay(T + 10) == 0
    pacing.admit(T + 10)
    pacing.admit(T + 10)
    assert pacing.in_flight == 3
    assert pacing.delay(T + 10) == math.inf  # spent, and the new window's reset is not known yet
    pacing.learn(T + 10.1, pacing.tickets, 200, report(2, T + 20, limit=3), None)  # an answer from the new window
    assert pacing.delay(T + 10.1) == pytest.approx(9.9)


def test_an_answer_from_a_window_that_is_over_changes_nothing_but_the_count_in_flight() -> None:
    pacing = informed(remaining=5, reset_at=T + 10)
    pacing.admit(T)
    pacing.learn(T + 11, pacing.tickets, 200, report(0, T + 10), None)
    assert (pacing.remaining, pacing.in_flight) == (5, 0)


@pytest.mark.parametrize("limit", [5, None], ids=["limit told", "no limit"])
def test_a_probe_answered_after_its_window_reset_lets_through_no_more_than_a_window(limit: int | None) -> None:
    # Its answer says what was left of a window that is over, and nothing of the one now: every
    # caller held for the probe went at once (14 of 30 calls refused with 429 in a run).
    pacing = Pacing()
    probe = pacing.admit(T)
    pacing.admit(T + 1.0)  # the next probe, a second later, still in flight
    pacing.learn(T + 3.5, probe, 200, report(4, T + 2.0, limit), None)
    let_through = 0
    while pacing.delay(T + 3.5) == 0 and let_through < 100:
        pacing.admit(T + 3.5)
        let_through += 1
    if limit is None:  # the size of a window unknown: probing on, one more a second
        assert (let_through, pacing.delay(T + 3.5)) == (1, 1.0)
    else:  # a new window, full but for the probe still in flight; then held until an answer tells more
        assert (let_through, pacing.delay(T + 3.5)) == (limit - 1, math.inf)


def test_a_report_of_a_later_window_replaces_the_one_known() -> None:
    pacing = informed(remaining=0, reset_at=T + 10)
    pacing.admit(T)
    pacing.learn(T + 1, pacing.tickets, 200, report(15, T + 11), None)  # the server moved on before us
    assert (pacing.remaining, pacing.reset_at) == (15, T + 11)
    assert pacing.delay(T + 1) == 0


def test_reports_for_the_same_window_only_ever_lower_what_is_left() -> None:
    pacing = informed(remaining=5, reset_at=T + 10)
    pacing.learn(T, pacing.tickets, 200, report(7, T + 10), None)  # an older answer arriving late
    assert pacing.remaining == 5


def test_a_request_without_an_answer_counts_as_spent() -> None:
    pacing = informed(remaining=2, reset_at=T + 10)
    pacing.admit(T)
    pacing.lost(pacing.tickets)
    assert (pacing.remaining, pacing.in_flight) == (1, 0)


def test_a_late_answer_from_before_the_limit_shrank_does_not_grow_it_back() -> None:
    pacing = informed(remaining=9, reset_at=T + 10, limit=10)
    early, late = pacing.admit(T), pacing.admit(T)
    pacing.learn(T + 1, late, 200, report(0, T + 10, limit=3), None)  # the key's limit is now 3
    pacing.learn(T + 2, early, 200, report(8, T + 10, limit=10), None)  # sent before: the old limit
    assert pacing.limit == 3
    assert pacing.delay(T + 10) == 0
    assert pacing.remaining == 3  # the next window is filled to the limit now, not to the old one


def test_answers_without_rate_limit_headers_end_the_hold_and_pace_nothing() -> None:
    pacing = Pacing()
    pacing.admit(T)
    pacing.learn(T, pacing.tickets, 200, None, None)
    for _ in range(100):
        assert pacing.delay(T) == 0
        pacing.admit(T)


def test_a_429_that_gives_no_hint_holds_everyone_back_and_halves_the_pace() -> None:
    pacing = Pacing()
    pacing.admit(T)
    pacing.learn(T, pacing.tickets, 200, None, None)
    for i in range(16):  # sends every 0.1 s
        pacing.admit(T + 0.1 * i)
    pacing.learn(T + 1.5, pacing.tickets, 429, None, None)
    assert pacing.delay(T + 1.5) == pytest.approx(0.5)  # the first backoff step, for every caller
    assert pacing.spacing == pytest.approx(0.2)  # twice the interval it was sending at
    pacing.admit(T + 2.0)
    pacing.learn(T + 2.1, pacing.tickets, 429, None, None)  # again: the backoff and the spacing both double
    assert pacing.delay(T + 2.1) == pytest.approx(1.0)
    assert pacing.spacing == pytest.approx(0.4)
    pacing.admit(T + 3.1)
    assert pacing.delay(T + 3.1) == pytest.approx(0.4)  # sends are spaced out


def test_a_quiet_spell_among_the_recent_sends_is_no_pace_a_429_doubles() -> None:
    # A batch started after an idle 20 s: its first unexplained 429 spaced every send 2.7 s apart
    # (twice the average gap, the idle one included), for a pace that had been 0.1 s.
    pacing = Pacing()
    pacing.admit(T)
    pacing.learn(T, pacing.tickets, 200, None, None)
    for i in range(8):
        pacing.admit(T + 0.1 * i)
    for i in range(8):
        pacing.admit(T + 20.0 + 0.1 * i)
    pacing.learn(T + 21.0, pacing.tickets, 429, None, None)
    assert pacing.spacing == pytest.approx(0.2)


def test_429s_that_keep_coming_after_the_waits_they_ask_for_back_off_as_well() -> None:
    # A gateway refusing with "retry in 1 ms" each time: held to alone, the wait sent every caller
    # back at once, again and again (450 requests in 0.8 s from 50 callers with `max_retries=8`).
    pacing = Pacing()
    first = [pacing.admit(T) for _ in range(3)]
    for ticket in first:  # one burst: the wait asked for, and no more
        pacing.learn(T + 0.1, ticket, 429, None, 0.001)
    assert pacing.strikes == 0
    assert pacing.delay(T + 0.1) == pytest.approx(0.001, abs=1e-6)
    again = pacing.admit(T + 0.2)
    pacing.learn(T + 0.3, again, 429, None, 0.001)  # sent after it, refused again: the hint did not work
    assert pacing.strikes == 1
    assert pacing.delay(T + 0.3) == pytest.approx(0.5)  # the first backoff step, on top of the 1 ms
    assert pacing.spacing > 0
    ok = pacing.admit(T + 1.0)
    pacing.learn(T + 1.1, ok, 200, None, None)
    later = pacing.admit(T + 1.2)
    pacing.learn(T + 1.3, later, 429, None, 2.0)  # after a success, a hint is believed again
    assert pacing.strikes == 0
    assert pacing.delay(T + 1.3) == pytest.approx(2.0)


def test_the_pace_recovers_with_successes_until_the_spacing_is_dropped() -> None:
    pacing = Pacing(informed=True, spacing=1.0)
    now = T
    successes = 0
    while pacing.spacing:
        now += pacing.delay(now)
        pacing.admit(now)
        pacing.learn(now, pacing.tickets, 200, None, None)
        successes += 1
    # 1.0 * (15/16)**n drops below 0.01 s after 72 successes.
    assert successes == 72
    assert pacing.delay(now) == 0


def test_a_429_with_retry_after_holds_everyone_for_that_long_without_slowing_the_pace() -> None:
    pacing = informed(remaining=0, reset_at=T + 3)
    pacing.admit(T)
    pacing.learn(T, pacing.tickets, 429, report(0, T + 3), 5.0)
    assert pacing.delay(T) == pytest.approx(5.0)
    assert (pacing.spacing, pacing.strikes) == (0.0, 0)


def test_a_spent_token_budget_holds_everyone_until_it_resets() -> None:
    pacing = Pacing()
    pacing.admit(T)
    pacing.learn(T, pacing.tickets, 200, WindowReport(100, 50, T + 60, T + 7), None)
    assert pacing.delay(T) == pytest.approx(7.0)


def test_requests_per_minute_allows_that_many_in_any_60_seconds() -> None:
    pacing = Pacing(requests_per_minute=3)
    for at in (0.0, 10.0, 20.0):
        assert pacing.delay(T + at) == 0  # no probing hold: the plan's budget is known
        pacing.admit(T + at)
    assert pacing.delay(T + 30) == pytest.approx(30.0)
    assert pacing.firm_delay(T + 30, ahead=1) == pytest.approx(40.0)  # the second in line waits for the next
    assert pacing.firm_delay(T + 30, ahead=2) == pytest.approx(50.0)  # the third, for the last one
    # The fourth waits for the first in line (which goes at T + 60) to be a minute old, and so on.
    assert pacing.firm_delay(T + 30, ahead=3) == pytest.approx(90.0)
    assert pacing.firm_delay(T + 30, ahead=5) == pytest.approx(110.0)
    assert pacing.firm_delay(T + 30, ahead=8) == pytest.approx(170.0)
    assert pacing.delay(T + 60) == 0


def test_a_caller_queued_more_than_a_minute_of_sends_back_is_told_its_whole_wait() -> None:
    # With one request a minute, the second caller in line goes two minutes after the last send: it
    # used to be told one minute, and so was held for up to `max_retry_wait` before being refused.
    pacing = Pacing(requests_per_minute=1)
    assert pacing.firm_delay(T, ahead=2) == pytest.approx(120.0)  # nothing sent yet: the first goes now
    pacing.admit(T)
    assert pacing.firm_delay(T + 1, ahead=0) == pytest.approx(59.0)
    assert pacing.firm_delay(T + 1, ahead=1) == pytest.approx(119.0)


def test_a_request_withdrawn_unsent_no_longer_counts_as_a_send() -> None:
    # A call stopped (Ctrl+C, a close) after its turn came but before it was sent used to count
    # against `requests_per_minute`, and for the spacing, for a whole minute.
    pacing = Pacing(requests_per_minute=2)
    pacing.admit(T)
    unsent = pacing.admit(T + 10)
    assert pacing.delay(T + 20) == pytest.approx(40.0)
    pacing.withdraw(unsent)
    assert (pacing.delay(T + 20), pacing.in_flight, pacing.last_sent) == (0, 1, T)
    answered = pacing.admit(T + 20)
    pacing.learn(T + 21, answered, 200, None, None)
    assert pacing.admitted == {1: T}  # only the one still in flight is remembered


def test_a_queued_caller_behind_more_callers_than_the_window_has_left_waits_for_the_reset() -> None:
    pacing = informed(remaining=2, reset_at=T + 30)
    assert pacing.firm_delay(T, ahead=1) == 0
    assert pacing.firm_delay(T, ahead=2) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-limit": "20", "x-ratelimit-remaining": "3", "x-ratelimit-reset": str(int(T) + 5)},
         WindowReport(20, 3, T + 5, None)),
        ({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "5"}, WindowReport(None, 3, T + 5, None)),
        ({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-tokens": "20ms"}, WindowReport(60, 0, T + 60, T + 0.02, None, 0, T + 0.02)),
        ({"x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "29000",
          "x-ratelimit-reset-tokens": "2s"}, WindowReport(None, None, None, None, 30000, 29000, T + 2)),
        ({"x-ratelimit-api_key-remaining-requests": "4", "x-ratelimit-remaining-requests": "9"},
         WindowReport(None, 4, None, None)),
        ({"x-ratelimit-remaining": "many", "x-ratelimit-reset": "soon"}, WindowReport(None, None, None, None)),
        ({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
          "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:50Z", "anthropic-ratelimit-tokens-limit": "30000",
          "anthropic-ratelimit-tokens-remaining": "0",
          "anthropic-ratelimit-tokens-reset": "2023-11-14T23:13:20.5+01:00",
          "anthropic-ratelimit-output-tokens-remaining": "7"},
         WindowReport(50, 0, T + 30, T + 0.5, 30000, 0, T + 0.5)),
        ({"content-type": "application/json"}, None),
    ],
    ids=[
        "deployai", "deployai-relative-any-case", "openai-tokens-spent", "openai-tokens", "litellm-per-key",
        "malformed", "anthropic-spent", "none",
    ],
)  # fmt: skip
def test_read_window_reads_every_dialect_from_httpx_headers_and_plain_mappings(
    headers: dict[str, str], expected: WindowReport | None
) -> None:
    got = read_window(httpx.Headers(headers), T)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert dataclasses.astuple(got) == pytest.approx(dataclasses.astuple(expected))
    lowered = {name.lower(): value for name, value in headers.items()}
    assert read_window(lowered, T) == got


_NAMES = [f"x-ratelimit-{name}" for name in (
    "limit", "remaining", "reset", "limit-requests", "remaining-requests", "reset-requests", "limit-tokens",
    "remaining-tokens", "reset-tokens", "api_key-limit-requests", "api_key-remaining-requests",
    "api_key-limit-tokens", "api_key-remaining-tokens", "other",
)] + [f"anthropic-ratelimit-{budget}-{part}" for budget in ("requests", "tokens", "output-tokens")
      for part in ("limit", "remaining", "reset")] + ["content-type", "x-request-id"]  # fmt: skip
_VALUES = st.one_of(
    st.integers(0, 10**20).map(str),
    st.sampled_from(["0", "5", "60", "1m0s", "20ms", "4.0", "1e3", "-1", "nan", "1_000", " 7 ", "", "soon", "\xb2"]),
    st.sampled_from(["2023-11-14T22:13:25Z", "2023-11-14T22:13:25.123456789-01:30", "2023-02-30T00:00:00Z"]),
    st.floats(0, 2e9).map(repr),
    st.text(st.characters(max_codepoint=255), max_size=6),
)


@given(st.dictionaries(st.sampled_from(_NAMES), _VALUES, max_size=8))
@example({"x-ratelimit-remaining": "3", "x-ratelimit-reset-requests": "1s"})  # another dialect beside DeployAI's
@example({"x-ratelimit-reset": "99999999999999999999"})  # past the calendar
def test_read_window_reads_what_ratelimit_reads_from_any_mix_of_headers(headers: dict[str, str]) -> None:
    got = read_window(httpx.Headers([(k.encode(), v.encode("latin-1")) for k, v in headers.items()]), T)
    window = RateLimit.from_headers(headers, T)
    spent = window.tokens_remaining == 0 and window.tokens_reset_at is not None
    expected = (
        window.limit,
        window.remaining,
        None if window.reset_at is None else window.reset_at.timestamp(),
        window.tokens_reset_at.timestamp() if spent and window.tokens_reset_at is not None else None,
        window.token_limit,
        window.tokens_remaining,
        None if window.tokens_reset_at is None else window.tokens_reset_at.timestamp(),
    )
    if got is None:  # no rate-limit header: the same as a report of nothing
        assert expected == (None,) * 7
    else:
        # Exactly, but for float rounding: a relative tolerance would let a reset read minutes late pass.
        assert all(
            g == e if g is None or e is None else abs(g - e) <= 1e-5
            for g, e in zip(dataclasses.astuple(got), expected, strict=True)
        )


def test_a_429_saying_spent_without_a_reset_still_to_come_backs_off_like_one_with_no_headers() -> None:
    pacing = informed(remaining=5, reset_at=T + 10)
    ticket = pacing.admit(T + 1)
    pacing.learn(T + 1, ticket, 429, WindowReport(20, 0, None, None), None)  # spent, but until when?
    assert pacing.strikes == 1
    assert pacing.delay(T + 1) == pytest.approx(2.0)  # sends 1 s apart so far: now 2 s apart
    ticket = pacing.admit(T + 3)
    pacing.learn(T + 3, ticket, 429, report(0, T - 5), None)  # a reset already past (a clock ahead)
    assert pacing.strikes == 2


def test_the_429s_of_one_burst_count_as_one_strike() -> None:
    pacing = Pacing()
    pacing.learn(T, pacing.admit(T), 200, None, None)
    tickets = [pacing.admit(T) for _ in range(10)]
    for ticket in tickets:
        pacing.learn(T + 0.1, ticket, 429, None, None)
    assert pacing.strikes == 1
    assert pacing.spacing == pytest.approx(0.1)
    assert pacing.delay(T + 0.1) == pytest.approx(0.5)


def test_answers_of_a_budget_without_resets_are_believed_in_the_order_their_requests_were_sent() -> None:
    pacing = Pacing()
    pacing.learn(T, pacing.admit(T), 200, report(0, None, limit=5), None)  # the LiteLLM per-key budget
    assert pacing.delay(T) == 0  # spent with no reset known and nothing in flight: one may try
    later = pacing.admit(T + 1)
    pacing.learn(T + 1, later, 200, report(4, None, limit=5), None)  # its window started again
    assert pacing.remaining == 4
    pacing.learn(T + 1, later - 1, 200, report(4, None, limit=5), None)  # an earlier request's answer
    assert pacing.remaining == 4


def test_resets_given_as_durations_drift_but_stay_one_window() -> None:
    pacing = Pacing()
    first, second, third = pacing.admit(T), pacing.admit(T), pacing.admit(T)
    pacing.learn(T + 0.01, first, 200, report(2, T + 1.01), None)
    pacing.learn(T + 0.10, third, 200, report(0, T + 1.10), None)  # "1s" from a later arrival
    pacing.learn(T + 0.11, second, 200, report(1, T + 1.11), None)  # a late answer with more left
    assert pacing.remaining == 0
    assert pacing.delay(T + 0.2) == pytest.approx(0.81)


# --- the token budget: estimated tokens in flight count against what is left (rule 6) -----------------


def tokens(left: int, reset_at: float | None = T + 60, limit: int | None = 1000) -> WindowReport:
    """A report of a gateway that limits tokens alone (as OpenAI's and the LiteLLM proxy's headers tell)."""
    return WindowReport(None, None, None, None, limit, left, reset_at)


def told_tokens(left: int, reset_at: float | None = T + 60, limit: int | None = 1000) -> Pacing:
    """A pacing that sent one probe and heard back: `left` tokens left until `reset_at`."""
    pacing = Pacing()
    pacing.learn(T, pacing.admit(T), 200, tokens(left, reset_at, limit), None)
    return pacing


def test_the_estimated_tokens_of_requests_in_flight_count_against_the_tokens_left() -> None:
    pacing = told_tokens(1000)
    first = pacing.admit(T, 400)
    pacing.admit(T, 400)
    assert pacing.tokens_out == 800
    assert pacing.delay(T, 200) == 0
    assert pacing.delay(T, 201) == pytest.approx(60.0)  # 1000 - 800 does not cover it: until the reset
    assert pacing.firm_delay(T, 0, 201) == 0  # not firm: the answers may show those took less
    pacing.learn(T + 1, first, 200, tokens(900), None)  # it took 100 of the 400 counted for it
    assert pacing.tokens_out == 400
    assert pacing.delay(T + 1, 500) == 0
    # One token short: the 100 spent come back evenly until the reset, 59 s away.
    assert pacing.delay(T + 1, 501) == pytest.approx(0.59)


def test_the_token_budget_refills_evenly_until_its_reset_and_is_full_then() -> None:
    pacing = told_tokens(100)  # 900 spent, back by T + 60: 15 a second
    pacing.admit(T, 100)
    assert pacing.delay(T, 50) == pytest.approx(50 / 15)
    assert pacing.firm_delay(T, 0, 150) == pytest.approx(50 / 15)  # short even with nothing in flight: firm
    assert pacing.delay(T + 50 / 15, 50) == 0
    assert pacing.delay(T + 60, 50) == 0
    assert pacing.tokens_left == 1000


def test_a_request_larger_than_the_whole_token_budget_waits_for_a_whole_window_and_goes() -> None:
    pacing = told_tokens(999)
    assert pacing.delay(T, 5000) == pytest.approx(60.0)
    assert pacing.delay(T + 60, 5000) == 0


def test_without_a_token_reset_a_short_budget_waits_for_the_answers_in_flight_and_no_longer() -> None:
    pacing = told_tokens(300, reset_at=None, limit=None)  # the LiteLLM proxy's per-key budget
    ticket = pacing.admit(T, 200)
    assert pacing.delay(T, 150) == math.inf
    assert pacing.firm_delay(T, 0, 150) == 0
    pacing.learn(T + 1, ticket, 200, tokens(250, reset_at=None, limit=None), None)
    assert pacing.delay(T + 1, 150) == 0
    assert pacing.delay(T + 1, 400) == 0  # short, with nothing in flight: the server decides


def test_a_request_not_sent_gives_its_tokens_back_and_one_with_no_answer_counts_them_as_taken() -> None:
    pacing = told_tokens(1000)
    withdrawn, lost = pacing.admit(T, 300), pacing.admit(T, 300)
    pacing.withdraw(withdrawn)
    assert (pacing.tokens_out, pacing.tokens_left) == (300, 1000)
    pacing.lost(lost)
    assert (pacing.tokens_out, pacing.tokens_left) == (0, 700)


def test_token_reports_are_believed_as_request_counts_are() -> None:
    pacing = told_tokens(900)
    late, early = pacing.admit(T, 10), pacing.admit(T, 10)
    pacing.learn(T + 1, early, 200, tokens(700), None)
    pacing.learn(T + 1, late, 200, tokens(800), None)  # came later, counted earlier: not believed
    assert pacing.tokens_left == 700
    newer = pacing.admit(T + 61, 10)
    pacing.learn(T + 61, newer, 200, tokens(990, reset_at=T + 121), None)  # a newer window replaces it
    assert (pacing.tokens_left, pacing.tokens_reset_at) == (990, T + 121)
    stale = pacing.admit(T + 62, 10)
    pacing.learn(T + 62, stale, 200, tokens(0, reset_at=T + 61), None)  # a window over already: ignored
    assert pacing.tokens_left == 990


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.floats(0, 30), st.integers(1, 3000)),
        st.tuples(
            st.just("answer"), st.integers(0, 50), st.sampled_from([200, 429]), st.integers(0, 2000),
            st.one_of(st.none(), st.floats(-5, 120)), st.one_of(st.none(), st.integers(1, 2000)),
        ),
        st.tuples(st.just("lost"), st.integers(0, 50)),
        st.tuples(st.just("withdraw"), st.integers(0, 50)),
    ),
    max_size=60,
)  # fmt: skip


@given(_STEPS)
def test_tokens_in_flight_are_what_the_requests_out_may_take_and_never_exceed_what_is_left(
    steps: list[tuple[Any, ...]],
) -> None:
    pacing = told_tokens(1000)
    now = T
    out: list[int] = []  # tickets sent and not yet settled
    for step in steps:
        if step[0] == "send":
            _, later, cost = step
            now += later
            firm, wait = pacing.firm_delay(now, 0, cost), pacing.delay(now, cost)
            assert 0 <= firm <= wait  # False for NaN too
            assert firm < math.inf
            if wait > 0:
                continue
            limit, left = pacing.token_limit, pacing.tokens_left
            out.append(pacing.admit(now, cost))
            if (
                left is not None
                and pacing.tokens_reset_at is not None
                and (limit is None or pacing.tokens_out <= limit)
            ):
                # Another one goes only within what is left (and has come back since it was told).
                assert pacing._tokens_wait(now, pacing.tokens_out, 0) == 0
        elif out:
            ticket = out.pop(step[1] % len(out))
            if step[0] == "answer":
                _, _, status, left, reset_in, limit = step
                reset_at = None if reset_in is None else now + reset_in
                pacing.learn(now, ticket, status, tokens(left, reset_at, limit), None)
            elif step[0] == "lost":
                pacing.lost(ticket)
            else:
                pacing.withdraw(ticket)
        assert pacing.tokens_out == sum(pacing.costs.values()) >= 0
    for ticket in out:
        pacing.lost(ticket)
    assert (pacing.tokens_out, pacing.costs) == (0, {})
