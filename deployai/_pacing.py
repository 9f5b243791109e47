"""Pacing: what a rate limiter knows of one API key's budget, and when the next request may go. No I/O.

`Pacing` is the decision core that every rate limiter shares. It never reads a clock, sleeps or
locks: the time is passed in (any steady clock in seconds; resets are converted to it by the caller),
and the caller holds whatever lock guards it. Its operations are:

- `delay(now)`: seconds until one more request may be sent (0: now; `math.inf`: not until an
  answer arrives); `firm_delay(now, ahead)` is the part of it that is certain, which is what a
  caller may be refused on;
- `admit(now)`: a request is being sent; returns its ticket (a sequence number);
- `learn(now, ticket, status, report, server_wait)`: its answer arrived, with what it said of the budget;
- `lost(ticket)`: it got no answer (a connection failure, a timeout, an interrupted send);
- `withdraw(ticket)`: it was not sent after all.

The rules, in the order `delay` applies them (the longest wait wins):

1. Requests in flight count against what is left: with `remaining` requests left in the window the
   server last reported and `in_flight` sent but not yet answered, one more may go only while
   `remaining - in_flight > 0`; otherwise it waits for the window's reset. When the reset passes,
   the window is full again (`limit`), minus what is still in flight.
2. Before any answer has told the budget, one request goes out and the rest are held until its
   answer arrives (one more each `PROBE_INTERVAL_SECONDS` meanwhile, so that one slow answer does
   not hold everything). That hold is not firm: nobody is refused because of it.
3. `requests_per_minute`, when the user gave it: at most that many sends in any 60 s.
4. A 429 makes every caller wait what the server asked for (`retry-after`). One with no usable hint
   (no `retry-after`, or one of 0 s, and no spent window with a reset still to come) is a limit the
   gateway did not explain: every caller waits a backoff that doubles with each such 429, and the
   pace is halved (sends spaced twice as far apart as they were, at least 0.1 s), recovering by a
   sixteenth with each success. The many 429s of one burst count once: only a request sent after
   the last such 429 can make it count again. A 429 that asks for a wait, for a request sent after
   another such 429 with no success since, counts as one with no usable hint too (on top of its
   wait): the waits the gateway asks for do not end its refusals.
5. A token budget reported spent (`tokens_remaining` 0) holds everything until it resets.
6. A token budget counts the requests in flight too, by what each may take of it (its `cost`, an
   estimate the caller makes: see `RateLimiter`): with `tokens_left` reported left and `tokens_out`
   estimated in flight, a request may go only while `tokens_left - tokens_out` covers its cost (a
   cost above the whole budget counts as the whole budget). The budget refills as time passes, as
   OpenAI's does: its reset is when it is full again, and with its size (`token_limit`) known, the
   tokens come back evenly until then, so a request short of a few tokens waits for those. Without
   the size, it waits for the reset; with no reset known, for the answers in flight. Only the part
   that does not depend on those answers (the refill of its own cost) is firm. When the reset
   passes, the budget is full again, or unknown again when its size never was.

Which report to believe: a report whose window is over already is ignored; when nothing is known of
the window now, it still says the window's size, and the window now counts as a new one (as after a
reset: rule 1; without the size, the probing of rule 2 goes on). Reports whose resets lie
within `WINDOW_RESET_TOLERANCE_SECONDS` of the known one are of the same window and can only lower
`remaining` (answers arrive out of order; the lowest count is the latest); one that resets later
than that starts a newer window and replaces it. Reports without a reset (the LiteLLM proxy's
per-key budget) replace what is known when their request was sent after the one that told it, and
otherwise can only lower it. A request that got no answer is counted as spent: the server may have
counted it. The token budget's reports are believed by the same rules, with no tolerance: its reset
is when it is full again, so a report with a later reset tells of more spent.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
from dataclasses import dataclass, field

from ._constants import (
    INITIAL_PACE_SPACING_SECONDS,
    MAX_PACE_SPACING_SECONDS,
    MIN_PACE_SPACING_SECONDS,
    PACE_RECOVERY_FRACTION,
    PROBE_INTERVAL_SECONDS,
    WINDOW_RESET_TOLERANCE_SECONDS,
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
        remaining: requests left in the current window; None when no answer told it.
        reset_at: when the current window resets (on the caller's clock); None when unknown.
        told_by: the ticket of the request whose answer last set `remaining`.
        tokens_spent_until: the token budget was reported spent until then (0: it was not).
        in_flight: requests sent and not yet answered.
        informed: whether an answer has arrived since the budget was last unknown.
        pause_until: no request goes before then (after a 429).
        spacing: seconds kept between sends after unexplained 429s (0: none).
        strikes: unexplained 429s in a row, counting each burst once.
        struck_after: the last ticket sent before the latest strike: 429s of requests sent no later
            than it belong to the same burst.
        last_sent: when the last request was sent (0: none yet).
        tickets: the last ticket given out.
        admitted: when each request in flight was let through, by ticket (for `withdraw`).
        token_limit: tokens per token window, as last reported; None until reported.
        tokens_left: tokens left in the current token window; None when no answer told it.
        tokens_reset_at: when the token window resets (on the caller's clock); None when unknown.
        tokens_told_by: the ticket of the request whose answer last set `tokens_left`.
        tokens_told_at: when that answer arrived (the refill counts from then).
        tokens_out: the estimated tokens of the requests in flight (the sum of their `costs`).
        costs: the estimated tokens of each request in flight that was given one, by ticket.
    """

    requests_per_minute: int | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    told_by: int = 0
    tokens_spent_until: float = 0.0
    in_flight: int = 0
    informed: bool = False
    pause_until: float = 0.0
    spacing: float = 0.0
    strikes: int = 0
    struck_after: int = 0
    hinted_after: int = 0  # the last ticket out when a 429 last asked for a wait; 0 once one succeeded since
    eased_by: int = 0  # the ticket whose success last eased the strikes or the spacing
    eased_from: tuple[int, float] = (0, 0.0)  # what they were before it
    last_sent: float = 0.0
    tickets: int = 0
    sent: collections.deque[float] = field(default_factory=collections.deque, repr=False)
    admitted: dict[int, float] = field(default_factory=dict, repr=False)
    recent: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_RECENT_SENDS), repr=False
    )
    token_limit: int | None = None
    tokens_left: int | None = None
    tokens_reset_at: float | None = None
    tokens_told_by: int = 0
    tokens_told_at: float = 0.0
    tokens_out: int = 0
    costs: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def knows_tokens(self) -> bool:
        """Whether answers have reported a token budget (before, no cost is counted against one)."""
        return self.tokens_left is not None or self.token_limit is not None

    def delay(self, now: float, cost: int = 1) -> float:
        """Seconds from `now` until one more request may be sent: 0 for now, `math.inf` until an answer.

        `cost`: the tokens the request may take (see rule 6); it matters only once a token budget is known.
        """
        wait = self.firm_delay(now, 0, cost)
        if self.tokens_out and self.tokens_left is not None:
            wait = max(wait, self._tokens_wait(now, cost, self.tokens_out))
        if self.in_flight:
            if not self.informed:
                if self.requests_per_minute is None:  # one at a time until an answer tells the budget
                    wait = max(wait, self.last_sent + PROBE_INTERVAL_SECONDS - now)
            elif self.remaining is not None and self.reset_at is None and self.remaining - self.in_flight <= 0:
                return math.inf  # spent, with no reset known: the answers on their way will tell
        return wait

    def firm_delay(self, now: float, ahead: int = 0, cost: int = 1) -> float:
        """The least a caller with `ahead` callers queued before it will surely wait; never `math.inf`.

        It leaves out the holds whose end depends on answers still to come (the probe, a spent window
        with no reset known, tokens held by requests in flight), so that no caller is refused
        because of them. `cost`: as for `delay`.
        """
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
            # It goes once the send `per_minute` places before it is a minute old. That send may be
            # one of the callers queued ahead of it, which goes a minute after its own such send.
            minutes = 0
            excess = len(sent) + ahead - per_minute
            while excess >= len(sent) and ahead >= per_minute:
                ahead -= per_minute
                minutes += 1
                excess = len(sent) + ahead - per_minute
            if excess >= 0 and sent:
                wait = max(wait, sent[min(excess, len(sent) - 1)] + _MINUTE_SECONDS * (minutes + 1) - now)
            elif minutes:
                wait = max(wait, _MINUTE_SECONDS * minutes)
        reset_at = self.reset_at
        if reset_at is not None:
            if now >= reset_at:
                self._new_window()
            elif self.remaining is not None and self.remaining - self.in_flight - ahead <= 0:
                wait = max(wait, reset_at - now)
        if self.tokens_left is not None:
            wait = max(wait, self._tokens_wait(now, cost, 0))
        return wait

    def _tokens_wait(self, now: float, cost: int, out: int) -> float:
        """How long a request of `cost` tokens waits for the token budget with `out` tokens counted in flight.

        Only called while `tokens_left` is known; `math.inf`: until the answers in flight tell more.
        """
        reset_at = self.tokens_reset_at
        if reset_at is not None and now >= reset_at:
            self.tokens_reset_at = reset_at = None
            self.tokens_left = self.token_limit
        left = self.tokens_left
        if left is None:
            return 0.0
        limit = self.token_limit
        if limit is not None and cost > limit:
            cost = limit  # it can never fit: it waits for a whole budget, no longer
        need = cost + out
        if left >= need:
            return 0.0
        if reset_at is None:
            return math.inf if out else 0.0  # short with nothing in flight: let the server decide
        span = reset_at - self.tokens_told_at
        if limit is None or limit <= left or span <= 0.0 or need > limit:
            return reset_at - now  # no refill to count on (or not enough even when full): the reset
        rate = (limit - left) / span  # tokens back per second, full again at the reset
        short = need - left - rate * (now - self.tokens_told_at)
        # Tokens are whole: less than one short is none (and a wait of a rounding error would never end).
        return 0.0 if short < 1.0 else min(short / rate, reset_at - now)

    def admit(self, now: float, cost: int = 0) -> int:
        """A request that may take `cost` tokens is being sent now; its ticket, to hand back with its answer."""
        self.in_flight += 1
        self.last_sent = now
        self.recent.append(now)
        if self.requests_per_minute is not None:
            self.sent.append(now)
        self.tickets += 1
        self.admitted[self.tickets] = now
        if cost:
            if self.token_limit is not None and cost > self.token_limit:
                cost = self.token_limit  # as `_tokens_wait` counts it: the whole budget
            self.costs[self.tickets] = cost
            self.tokens_out += cost
        return self.tickets

    def withdraw(self, ticket: int) -> None:
        """A request admitted with `ticket` was not sent after all (its call was stopped meanwhile).

        It no longer counts as a send: neither against `requests_per_minute` nor for the spacing.
        """
        self.in_flight = max(0, self.in_flight - 1)
        self._answered(ticket)
        at = self.admitted.pop(ticket, None)
        if at is None:
            return
        for sends in (self.sent, self.recent):
            with contextlib.suppress(ValueError):  # a minute old already, or past the recent ones kept
                sends.remove(at)
        if at == self.last_sent:
            self.last_sent = max(self.recent, default=0.0)

    def lost(self, ticket: int) -> None:
        """A request got no answer: it is counted as spent, since the server may have counted it."""
        self.admitted.pop(ticket, None)
        self.in_flight = max(0, self.in_flight - 1)
        if self.remaining is not None and self.remaining > 0:
            self.remaining -= 1
        cost = self._answered(ticket)
        if self.tokens_left is not None:
            self.tokens_left = max(0, self.tokens_left - cost)  # its refill still counts from when it was told

    def learn(
        self, now: float, ticket: int, status: int, report: WindowReport | None, server_wait: float | None
    ) -> None:
        """The answer to the request with `ticket` arrived at `now`: its status, budget and any `retry-after`.

        `report`'s times must be on the same clock as `now`.
        """
        self.admitted.pop(ticket, None)
        self.in_flight = max(0, self.in_flight - 1)
        self._answered(ticket)
        if report is None:
            self.informed = True  # a gateway that sends no rate-limit headers: nothing to wait for
        else:
            self._absorb(now, ticket, report)
        if status == 429:
            self.refused(now, ticket, server_wait)
        elif status < 400:
            self.hinted_after = 0
            if self.strikes or self.spacing:
                self.eased_by, self.eased_from = ticket, (self.strikes, self.spacing)
            self.strikes = 0
            if self.spacing:
                self.spacing *= 1.0 - PACE_RECOVERY_FRACTION
                if self.spacing < MIN_PACE_SPACING_SECONDS:
                    self.spacing = 0.0

    def refused(self, now: float, ticket: int, server_wait: float | None) -> None:
        """The request with `ticket` was refused as too many at `now` (a 429, or one a stream reported later).

        With the server's wait, everyone waits that long; without one, the pace slows unless a
        window known to be spent explains it.
        """
        if ticket == self.eased_by:  # a stream that eased them at its headers: undone, as no success
            strikes, spacing = self.eased_from
            self.strikes, self.spacing, self.eased_by = max(self.strikes, strikes), max(self.spacing, spacing), 0
        if server_wait is not None:
            if self.hinted_after and ticket > self.hinted_after:
                # Sent after the last such 429, and no request has succeeded since: the waits asked for
                # do not end the refusals (a gateway that keeps saying "retry in 1 ms"): back off as well.
                self._strike(now, ticket)
            self.hinted_after = self.tickets
            self.pause_until = max(self.pause_until, now + server_wait)
        elif not self._spent(now):
            self._strike(now, ticket)

    def _answered(self, ticket: int) -> int:
        """The request with `ticket` is no longer in flight: its estimated tokens no longer count as out."""
        cost = self.costs.pop(ticket, 0)
        self.tokens_out -= cost
        return cost

    def _spent(self, now: float) -> bool:
        """Whether a window known to reset later is spent (then its reset says how long to wait)."""
        if self.tokens_spent_until > now:
            return True
        return self.remaining == 0 and self.reset_at is not None and self.reset_at > now

    def _strike(self, now: float, ticket: int) -> None:
        """A 429 with no usable hint (a proxy's own limit sends no headers): hold everyone back, slow down."""
        if ticket <= self.struck_after:
            return  # sent before the last strike: the same burst
        self.strikes += 1
        self.struck_after = self.tickets
        self.pause_until = max(self.pause_until, now + backoff_delay(self.strikes - 1, 0.0))
        slower = max(2.0 * self.spacing, 2.0 * self._observed_interval(), INITIAL_PACE_SPACING_SECONDS)
        self.spacing = min(MAX_PACE_SPACING_SECONDS, slower)

    def _absorb(self, now: float, ticket: int, report: WindowReport) -> None:
        if report.limit is not None and (self.limit is None or ticket >= self.told_by):
            # Not from an answer older than the one that told the count: a key's limit that shrank
            # would grow back with a late answer, and the next window be filled to it.
            self.limit = report.limit
        if report.token_limit is not None:
            self.token_limit = report.token_limit
        if report.tokens_spent_until is not None and report.tokens_spent_until > self.tokens_spent_until:
            self.tokens_spent_until = report.tokens_spent_until
        self.informed = True
        if report.tokens_remaining is not None:
            known = (self.tokens_left, self.tokens_reset_at, self.tokens_told_by)
            # No tolerance: a bucket's reset is when it is full again, and one reported later means more was spent.
            believed = _believed(now, ticket, known, report.tokens_remaining, report.tokens_reset_at, 0.0)
            if believed != known:
                self.tokens_left, self.tokens_reset_at, self.tokens_told_by = believed
                self.tokens_told_at = now
        if report.remaining is not None:
            if self.remaining is None and report.reset_at is not None and report.reset_at <= now:
                # The count of a window over already (a probe's answer slower than what was left of its
                # window), and none known of the window now: it is a new one, as after a known reset.
                self._new_window()
                return
            self.remaining, self.reset_at, self.told_by = _believed(
                now, ticket, (self.remaining, self.reset_at, self.told_by), report.remaining, report.reset_at
            )

    def _new_window(self) -> None:
        """The window's reset has passed: it is full again, or unknown again when its size never was."""
        self.reset_at = None
        self.remaining = self.limit
        if self.limit is None:
            self.informed = False

    def _observed_interval(self) -> float:
        """The median time between the recent sends: the pace they went at.

        Not their average: a quiet spell among them (a batch after an idle minute) would count as
        pace, and one 429 then spaced every send that far apart.
        """
        if len(self.recent) < 2:
            return 0.0
        gaps = sorted(later - earlier for earlier, later in itertools.pairwise(sorted(self.recent)))
        return gaps[(len(gaps) - 1) // 2]


def _believed(
    now: float,
    ticket: int,
    known: tuple[int | None, float | None, int],
    remaining: int,
    reset_at: float | None,
    tolerance: float = WINDOW_RESET_TOLERANCE_SECONDS,
) -> tuple[int | None, float | None, int]:
    """What is known of a budget, `(remaining, reset_at, told_by)`, once `ticket`'s answer reported `remaining`.

    `reset_at`: when that answer said the budget resets. See the module docstring: which report to believe.
    """
    current, known_reset, told_by = known
    if reset_at is not None and reset_at <= now:
        return known  # the count of a window that is over already
    if current is None:
        return remaining, reset_at, ticket
    if reset_at is not None and known_reset is not None:
        replace = reset_at > known_reset + tolerance  # a newer window than the one known
    else:
        replace = reset_at is None and ticket > told_by  # a later answer of a budget without resets
    if replace:
        return remaining, reset_at, ticket
    if remaining < current:
        current, told_by = remaining, max(told_by, ticket)
    return current, reset_at if known_reset is None else known_reset, told_by
