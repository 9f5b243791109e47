"""Every default of the SDK in one place, with units in the names."""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://api.deployai.dev/v1"
API_KEY_ENV: Final = "DEPLOYAI_API_KEY"
BASE_URL_ENV: Final = "DEPLOYAI_BASE_URL"
LOG_ENV: Final = "DEPLOYAI_LOG"

# A short connect timeout finds a dead host fast; the read timeout is generous because a long
# completion from a slow provider can take minutes before its last byte arrives.
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 5.0
DEFAULT_TIMEOUT_SECONDS: Final = 600.0

DEFAULT_MAX_RETRIES: Final = 2
INITIAL_RETRY_DELAY_SECONDS: Final = 0.5
MAX_RETRY_DELAY_SECONDS: Final = 8.0
# Jitter takes up to this fraction off each backoff delay so that many clients that failed together
# do not retry together.
RETRY_JITTER_FRACTION: Final = 0.25
# A server-requested wait is spread over [wait, wait + min(wait * fraction, cap)]: never shorter than
# asked, but the callers one 429 told "2 s" do not all retry at the same instant.
SERVER_WAIT_SPREAD_FRACTION: Final = 0.25
MAX_SERVER_WAIT_SPREAD_SECONDS: Final = 1.0
# A server-requested wait above this is not slept: the error is raised with `.retry_after`.
DEFAULT_MAX_RETRY_WAIT_SECONDS: Final = 60.0
# A wait or a reset a server reports further ahead than this is not believed: one glitched or hostile
# header (`retry-after: 99999999999`) would otherwise hold a call, or every call, for years. A day
# is longer than any rate-limit window a gateway reports.
LONGEST_BELIEVED_WAIT_SECONDS: Final = 86_400.0
# A wait the server asks for further ahead than this (`retry-after: 1e300`, a date in the year 9999)
# counts as this long: the error's `retry_after` is never a number that a retry library's sleep
# cannot take. Past a day a wait is kept on the error, for a service to reschedule by, but neither
# slept nor learnt, and the call is not retried.
LONGEST_REPORTED_WAIT_SECONDS: Final = 366 * 86_400.0

DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_KEEPALIVE_CONNECTIONS: Final = 100  # for a proxy's pool (the SDK's own pools: see `_pools`)
# The SDK's own clients spread their connections over pools of this many: httpcore's work per request
# grows with the square of a pool's connections (see `_pools`).
POOL_CONNECTIONS: Final = 8
# An idle connection is closed after this long; so is a pool with nothing in flight. Shorter than
# the 5 s after which common servers (uvicorn, Node) close an idle connection: at httpx's default of
# 5 s, a call could be sent on a connection the server was closing just then, and fail unanswered
# (a retry sends it again, but not with `max_retries=0`).
KEEPALIVE_EXPIRY_SECONDS: Final = 4.0

# After `data: [DONE]`, a stream reads the end of the body for at most this long, so that its
# connection can be reused; a server that sends nothing more costs this wait, once per stream.
STREAM_END_WAIT_SECONDS: Final = 0.05
# A stream read for the first time after its call's deadline (`total_timeout`) still gets what has
# arrived meanwhile: its first read waits this long at least, however late it starts.
FIRST_READ_GRACE_SECONDS: Final = 0.01
# The async shell's own timer for a call's deadline fires this long after it, so that httpx's
# timeouts, capped at the deadline, go first and name the phase that ran out (connect, pool, ...).
DEADLINE_GRACE_SECONDS: Final = 0.01

# Error messages quote at most this much of a response body; an HTML error page is not a message.
MAX_BODY_IN_MESSAGE_CHARS: Final = 500
# To build that message, at most this much of a body's text is looked at. The body comes from
# the server (or a proxy in between) and can be megabytes of hostile HTML; capping what is scanned
# keeps the cost of an error small and fixed, so an error page can never stall the event loop.
# A page's title or first paragraphs are always well inside the first 64 KiB.
MAX_BODY_EXAMINED_CHARS: Final = 64 * 1024
# An error answer's body is read this far (decoded), then its connection is closed: the whole JSON of
# any real error fits, and a huge page or a compressed bomb costs no more than this.
MAX_ERROR_BODY_BYTES: Final = 1024 * 1024
# A whole answer (not a stream) larger than this once decoded is refused as it is read: a body a few
# hundred KiB on the wire can inflate to gigabytes. Far past any completion's (`n` choices with their
# logprobs included).
MAX_ANSWER_BYTES: Final = 256 * 1024 * 1024
# One event of a stream larger than this (no blank line yet to end it) breaks the stream, for the
# same reason; a chunk's JSON is a few hundred bytes.
MAX_EVENT_BYTES: Final = 32 * 1024 * 1024

# 520 to 524 are a CDN's (Cloudflare's) word for an origin that failed, dropped or timed out; 529 is
# "overloaded" (Anthropic's, passed on by gateways that route to it).
RETRYABLE_STATUS_CODES: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})

# Rate limiter. Until an answer tells the budget, one request goes out, then one more each interval.
PROBE_INTERVAL_SECONDS: Final = 1.0
# After a 429 that gave no hint (no spent window, no retry-after), sends are spaced twice as far apart
# as they were being sent (at least the initial spacing, when that pace is unknown), doubling with each
# such 429 up to the maximum; the spacing shrinks by this fraction with each success until it falls
# below the minimum and is dropped.
INITIAL_PACE_SPACING_SECONDS: Final = 0.1
MIN_PACE_SPACING_SECONDS: Final = 0.01
MAX_PACE_SPACING_SECONDS: Final = 10.0
PACE_RECOVERY_FRACTION: Final = 1 / 16
# Two reports whose window resets lie closer than this describe the same window (resets given as
# durations drift by the time between answers); one later than that is a newer window.
WINDOW_RESET_TOLERANCE_SECONDS: Final = 0.5
# A response's `Date` names the whole second the server stamped it in, and servers often reuse one
# stamp for up to a second more: the server's clock read up to this much past its `Date`.
DATE_HEADER_SLACK_SECONDS: Final = 2.0

# Redis rate limiter. A Redis call that takes longer than the timeout counts as Redis being down:
# the limiter paces in this process alone, and tries Redis again after the retry interval.
REDIS_TIMEOUT_SECONDS: Final = 0.5
REDIS_RETRY_SECONDS: Final = 2.0
# A caller held only until answers arrive (the first probe, a spent window with no reset) reads the
# shared state again this often: the answers may come to other processes, which cannot wake it.
REDIS_POLL_SECONDS: Final = 0.05
# A process's count of requests in flight stops counting when it has not been renewed for this long
# (the process died with requests in flight); a live process renews it a third as often.
REDIS_LEASE_SECONDS: Final = 10.0
# The shared state expires after this long untouched: everything in it is learned again in a call.
REDIS_STATE_TTL_SECONDS: Final = 600.0

# The request's extension (never sent) that holds the most tokens its answer may take: `max_tokens`
# (or `max_completion_tokens`) for each of `n` choices, when given; a rate limiter counts it against
# a token budget.
COMPLETION_CAP: Final = "deployai.completion_cap"
