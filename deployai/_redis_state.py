"""The state a `RedisRateLimiter` keeps in Redis: its layout, the script that replaces it, and reading it back.

The value under the key is `<version> <json>`. The version is a random token, new with every write;
the JSON is a list: `Pacing`'s shared fields in the order of `SHARED`, then the sends of the last minute
as at most 60 [time, count] pairs (times rounded up to the finest step that keeps them that few: see
`_buckets`), the recent send times, and each process's count of requests in flight, with the
tokens they may take, as `{owner: [count, renewed_at, tokens]}`. Times are on Redis's clock. No I/O here.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import deque
from typing import Any, Final

from ._pacing import Pacing

__all__ = ["COMPARE_AND_SET", "PER_PROCESS", "dump", "load", "parse"]

# KEYS[1]: the state, "<version> <json>". ARGV: the version the new state was computed from ("" for
# none), the new state ("" only reads), its time to live in ms. Answers {written, the current state
# when not written, TIME}. Versions are random tokens, never reused: a process whose state is stale
# cannot write, even after the key expired or Redis restarted and the state was made again. A value
# of another type under the key (a list, a hash: something else's) counts as none, and is replaced.
COMPARE_AND_SET: Final = """
local current = false
if redis.call('TYPE', KEYS[1])['ok'] == 'string' then
  current = redis.call('GET', KEYS[1])
end
local now = redis.call('TIME')
local version = current and string.match(current, '^%S*') or ''
if ARGV[2] ~= '' and version == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1, '', now[1], now[2]}
end
return {0, current or '', now[1], now[2]}
"""

_VERSION: Final = re.compile(rb"\S*")  # as Lua's %S*

# `Pacing`'s fields that each process keeps for itself, from one read of the shared state to the next:
# records of its own answers that the state has no room for (the success whose easing a stream's
# later 429 undoes; the last 429 that asked for a wait).
PER_PROCESS: Final = ("eased_by", "eased_from", "hinted_after")

# `Pacing`'s fields that every process shares, in the order they are stored.
SHARED: Final = (
    "limit",
    "remaining",
    "reset_at",
    "told_by",
    "tokens_spent_until",
    "informed",
    "pause_until",
    "spacing",
    "strikes",
    "struck_after",
    "last_sent",
    "tickets",
    "token_limit",
    "tokens_left",
    "tokens_reset_at",
    "tokens_told_by",
    "tokens_told_at",
)


def parse(current: bytes) -> tuple[bytes, list[Any] | None]:
    """The version and state of a value read from Redis; a state that cannot be read is None (and is replaced)."""
    # The version is what the script takes it to be: everything up to the first white space.
    found = _VERSION.match(current)
    token = found.group() if found is not None else b""
    try:
        state = json.loads(current[len(token) :])
    except (ValueError, RecursionError):  # nested past Python's limit: as unreadable as any other
        state = None
    return token, state if _readable(state) else None


def load(
    state: list[Any] | None,
    requests_per_minute: int | None,
    owner: str,
    own: tuple[int, int],
    lease_start: float,
) -> tuple[Pacing, dict[str, list[Any]]]:
    """`Pacing` at `state`, counting `own` (this process's requests in flight, and their tokens) and the others'.

    Only the counts renewed since `lease_start` count. Also returns those other processes' entries,
    to be written back with the next state.
    """
    pacing = Pacing(requests_per_minute=requests_per_minute)
    others: dict[str, list[Any]] = {}
    if state is not None:
        for name, value in zip(SHARED, state, strict=False):
            setattr(pacing, name, value)
        count = len(SHARED)
        for at, times in state[count]:
            pacing.sent.extend(itertools.repeat(at, times))
        pacing.recent.extend(state[count + 1])
        others = {name: entry for name, entry in state[count + 2].items() if entry[1] >= lease_start}
        others.pop(owner, None)
    pacing.in_flight = own[0] + sum(entry[0] for entry in others.values())
    pacing.tokens_out = own[1] + sum(entry[2] for entry in others.values())
    return pacing, others


def dump(pacing: Pacing, others: dict[str, list[Any]]) -> tuple[list[Any], bytes]:
    """The state of `pacing` with every process's count in flight, and its JSON."""
    state = [*(getattr(pacing, name) for name in SHARED), _buckets(pacing.sent), list(pacing.recent), others]
    return state, json.dumps(state, separators=(",", ":")).encode()


_NUMBER: Final = (int, float)
# What each shared field may hold: anything else (a foreign or corrupt value) makes the state unreadable.
_FIELD_TYPES: Final[tuple[tuple[type, ...], ...]] = (
    (int, type(None)),  # limit
    (int, type(None)),  # remaining
    (int, float, type(None)),  # reset_at
    (int,),  # told_by
    _NUMBER,  # tokens_spent_until
    (bool,),  # informed
    _NUMBER,  # pause_until
    _NUMBER,  # spacing
    (int,),  # strikes
    (int,),  # struck_after
    _NUMBER,  # last_sent
    (int,),  # tickets
    (int, type(None)),  # token_limit
    (int, type(None)),  # tokens_left
    (int, float, type(None)),  # tokens_reset_at
    (int,),  # tokens_told_by
    _NUMBER,  # tokens_told_at
)


def _readable(state: object) -> bool:
    """Whether `state` has the shape this version writes, every value of the right type."""
    if not isinstance(state, list) or len(state) != len(SHARED) + 3:
        return False
    count = len(SHARED)
    sent, recent, flights = state[count], state[count + 1], state[count + 2]
    return (
        all(isinstance(value, types) for value, types in zip(state, _FIELD_TYPES, strict=False))
        # Counts and tickets are never negative (a ticket of 0 would read as "not admitted").
        and all(value is None or value >= 0 for value in state[:count])
        and isinstance(sent, list)
        and all(_pair(entry, _NUMBER, int) for entry in sent)
        and isinstance(recent, list)
        and all(isinstance(at, _NUMBER) for at in recent)
        and isinstance(flights, dict)
        and all(_flight(entry) for entry in flights.values())
    )


def _flight(entry: object) -> bool:
    """Whether `entry` is a process's `[count, renewed_at, tokens]`."""
    if not isinstance(entry, list) or len(entry) != 3:
        return False
    tokens = entry[2]
    return _pair(entry[:2], int, _NUMBER) and isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0


def _pair(entry: object, first: type | tuple[type, ...], second: type | tuple[type, ...]) -> bool:
    if not isinstance(entry, list) or len(entry) != 2:
        return False
    head, tail = entry
    if not isinstance(head, first) or isinstance(head, bool) or not isinstance(tail, second):
        return False
    return isinstance(tail, (int, float)) and tail >= 0


# Send times are kept to the finest step at which the minute's sends still make at most `_MOST_PAIRS`
# pairs: to the millisecond for a burst, to the second for sends spread over the whole minute.
_MOST_PAIRS: Final = 60
_STEPS_PER_SECOND: Final = (1000, 100, 10, 1)


def _buckets(sent: deque[float]) -> list[list[Any]]:
    """The send times of the last minute (for `requests_per_minute`) as [time, count] pairs.

    Each time is rounded up to its step (see `_MOST_PAIRS`): a send counts a little longer than it
    happened (waits err long, never short), and as little longer as the state's size allows, so that
    a caller whose wait is about as long as it may wait is not refused over the rounding.
    """
    span = sent[-1] - sent[0] if sent else 0.0
    per_second = next(
        (steps for steps in _STEPS_PER_SECOND if len(sent) <= _MOST_PAIRS or span * steps < _MOST_PAIRS - 1), 1
    )
    pairs: list[list[Any]] = []
    for at in sent:
        moment = math.ceil(at * per_second) / per_second
        if pairs and pairs[-1][0] == moment:
            pairs[-1][1] += 1
        else:
            pairs.append([moment, 1])
    return pairs
