"""Pacing: what a rate limiter knows of one API key's budget, and when the next request may go. No I/O.

`Pacing` is the decision core that every rate limiter shares. It never reads a clock, sleeps or
locks: the time (unix seconds) is passed in, and the caller holds whatever lock guards it. Its four
operations are:

- `delay(now)`: seconds until one more request may be sent (0: now; `math.inf`: not until an
  answer arrives);
- `admit(now)`: a request is being sent;
- `learn(now, status, report, server_wait)`: its answer arrived, with what it said of the budget;
- `lost(now)`: it got no answer (a connection failure, a timeout, a cancelled call).

The rules, in the order `delay` applies them (the longest wait wins):

1. Requests in flight count against what is left: with `remaining` requests left in the window the
   server last reported and `in_flight` sent but not yet answered, one more may go only while
   `remaining - in_flight > 0`; otherwise it waits for the window's reset. When the reset passes,
   the window is full again (`limit`), minus what is still in flight.
2. Before any answer has told the budget, one request goes out and the rest are held until its
   answer arrives (one more each `PROBE_INTERVAL_SECONDS` meanwhile, so that one slow answer does
   not hold everything).
3. `requests_per_minute`, when the user gave it: at most that many sends in any 60 s.
4. A 429 makes every caller wait what the server asked for (`retry-after`), or, with no hint at all
   (no spent window, no `retry-after`), a backoff that doubles with each such 429 in a row; and such
   a 429 halves the pace (spacing the sends twice as far apart as they were, at least 0.1 s apart),
   which then recovers by a sixteenth with each success.
5. A token budget reported spent (`tokens_remaining` 0) holds everything until it resets.

Reports are told apart by their reset time: one that resets later than the window known now is a
newer window and replaces it; one for the same window can only lower `remaining`; one whose window is
already over is ignored. A request that got no answer is counted as spent: the server may have
counted it.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from ._constants import (
    INITIAL_PACE_SPACING_SECONDS,
    MAX_PACE_SPACING_SECONDS,
    MIN_PACE_SPACING_SECONDS,
    PACE_RECOVERY_FRACTION,
    PROBE_INTERVAL_SECONDS,
)
from ._ratelimit import WindowReport
from ._retry import backoff_delay

__all__ = ["Pacing"]

_MINUTE_SECONDS = 60.0
_RECENT_SENDS = 16  # how many send times the observed pace is measured over


@dataclass(slots=True)
class Pacing:
    """The budget of one API key as a rate limiter sees it, and its decisions (see the module docstring).

    Attributes:
        requests_per_minute: the plan's limit, when the user gave it; None to learn it from headers.
        limit: requests per window, as last reported; None until reported.
        remaining: requests left in the current window (the fewest any answer for it reported);
            None when no answer told it.
        reset_at: the unix time the current window resets; None when unknown.
        tokens_spent_until: the token budget was reported spent until this unix time (0: it was not).
        in_flight: requests sent and not yet answered.
        informed: whether an answer has arrived since the budget was last unknown.
        pause_until: no request goes before this unix time (after a 429).
        spacing: seconds kept between sends after 429s that gave no hint (0: none).
        strikes: such 429s in a row.
        last_sent: the unix time of the last send (0: none yet).
    """

    requests_per_minute: int | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    tokens_spent_until: float = 0.0
    in_flight: int = 0
    informed: bool = False
    pause_until: float = 0.0
    spacing: float = 0.0
    strikes: int = 0
    last_sent: float = 0.0
    sent: collections.deque[float] = field(default_factory=collections.deque, repr=False)
    recent: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_RECENT_SENDS), repr=False
    )

    def delay(self, now: float) -> float:
        """Seconds from `now` until one more request may be sent: 0 for now, `math.inf` until an answer."""
        wait = 0.0
        if self.pause_until > now:
            wait = self.pause_until - now
        if self.spacing and self.last_sent + self.spacing > now:
            wait = max(wait, self.last_sent + self.spacing - now)
        if self.tokens_spent_until > now:
            wait = max(wait, self.tokens_spent_until - now)
        per_minute = self.requests_per_minute
        if per_minute is not None:
            sent = self.sent
            while sent and sent[0] <= now - _MINUTE_SECONDS:
                sent.popleft()
            if len(sent) >= per_minute:
                wait = max(wait, sent[0] + _MINUTE_SECONDS - now)
        if self.reset_at is not None and now >= self.reset_at:
            self._new_window()
        if not self.informed:
            if self.in_flight and per_minute is None:
                wait = max(wait, self.last_sent + PROBE_INTERVAL_SECONDS - now)  # one at a time until told
        elif self.remaining is not None and self.remaining - self.in_flight <= 0:
            if self.reset_at is not None:
                wait = max(wait, self.reset_at - now)
            elif self.in_flight:
                wait = math.inf  # spent, with no reset known: the answers on their way will tell
        return wait

    def delay_behind(self, now: float, ahead: int) -> float:
        """The least a caller with `ahead` callers queued before it will wait (for refusing long waits early)."""
        wait = self.delay(now)
        if self.remaining is not None and self.reset_at is not None and self.remaining - self.in_flight - ahead <= 0:
            wait = max(wait, self.reset_at - now)
        return wait

    def admit(self, now: float) -> None:
        """A request is being sent now."""
        self.in_flight += 1
        self.last_sent = now
        self.recent.append(now)
        if self.requests_per_minute is not None:
            self.sent.append(now)

    def learn(self, now: float, status: int, report: WindowReport | None, server_wait: float | None) -> None:
        """A request's answer arrived at `now` with `status`, the budget it reported, and any `retry-after`."""
        self.in_flight = max(0, self.in_flight - 1)
        if report is None:
            self.informed = True  # a gateway that sends no rate-limit headers: nothing to wait for
        else:
            self._absorb(now, report)
        if status == 429:
            if server_wait is not None:
                self.pause_until = max(self.pause_until, now + server_wait)
            spent = report is not None and (report.remaining == 0 or report.tokens_spent_until is not None)
            if not spent:
                # Limited without being told the budget (a proxy's own limit sends no headers):
                # hold everyone back, and slow down.
                self.strikes += 1
                if server_wait is None:
                    self.pause_until = max(self.pause_until, now + backoff_delay(self.strikes - 1, 0.0))
                slower = max(2.0 * self.spacing, 2.0 * self._observed_interval(), INITIAL_PACE_SPACING_SECONDS)
                self.spacing = min(MAX_PACE_SPACING_SECONDS, slower)
        elif status < 400:
            self.strikes = 0
            if self.spacing:
                self.spacing *= 1.0 - PACE_RECOVERY_FRACTION
                if self.spacing < MIN_PACE_SPACING_SECONDS:
                    self.spacing = 0.0

    def lost(self, now: float) -> None:
        """A request got no answer: it is counted as spent, since the server may have counted it."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.remaining is not None and self.remaining > 0:
            self.remaining -= 1

    def _absorb(self, now: float, report: WindowReport) -> None:
        if report.limit is not None:
            self.limit = report.limit
        if report.tokens_spent_until is not None and report.tokens_spent_until > self.tokens_spent_until:
            self.tokens_spent_until = report.tokens_spent_until
        self.informed = True
        remaining, reset_at = report.remaining, report.reset_at
        if remaining is None or (reset_at is not None and reset_at <= now):
            return  # no count, or the count of a window that is over already
        if reset_at is not None and self.reset_at is not None and reset_at > self.reset_at:
            self.remaining, self.reset_at = remaining, reset_at  # a newer window than the one known
            return
        if self.remaining is None or remaining < self.remaining:
            self.remaining = remaining
        if self.reset_at is None:
            self.reset_at = reset_at

    def _new_window(self) -> None:
        """The window's reset has passed: it is full again, or unknown again when its size never was."""
        self.reset_at = None
        self.remaining = self.limit
        if self.limit is None:
            self.informed = False

    def _observed_interval(self) -> float:
        recent = self.recent
        return (recent[-1] - recent[0]) / (len(recent) - 1) if len(recent) > 1 else 0.0
