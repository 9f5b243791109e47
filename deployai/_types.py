"""Small shared types: the "not given" sentinel and type aliases used across the package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, TypeAlias

import httpx
from typing_extensions import final

from ._exceptions import APIError


@final
class NotGiven:
    """The type of `NOT_GIVEN`: a parameter that was not given at all.

    It differs from `None`, which some parameters accept as a value to send. An omitted parameter,
    or one given as `NOT_GIVEN`, is never sent: the server (or the client option) decides. Pass it
    when forwarding optional arguments from your own function without a pile of `if`s.
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
"""The sentinel for a parameter that was not given (see `NotGiven`)."""


Timeout: TypeAlias = float | httpx.Timeout | None
"""Seconds for each phase of an attempt (connect, write, pool, each read; `total_timeout` bounds a whole
call), an `httpx.Timeout` to set the phases one by one, or `None` for no limit."""


@final
class ModelAlias(str):
    """A model id sent exactly as given, without the `provider/model` check.

    `create(model=...)` refuses ids that are not in `provider/model` form before anything is sent,
    which catches typos. Gateways that accept aliases of their own (`"fast"`, `"default"`) get one
    through by wrapping it: `create(model=deployai.ModelAlias("fast"), ...)`. It is a `str`.
    """

    __slots__ = ()


OnRetry: TypeAlias = Callable[[int, float, APIError], None]
"""`on_retry(retry, wait_seconds, error)`: called before each retry's wait, for metrics and logs.

`retry` counts from 1, `wait_seconds` is the wait about to be slept, `error` is the typed error of the
attempt that failed. An exception it raises ends the call.
"""
