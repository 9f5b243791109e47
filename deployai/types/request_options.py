"""Per-call options accepted by every method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from typing_extensions import TypedDict

from .._types import NotGiven, Timeout

__all__ = ["RequestOptions"]

QueryValue: TypeAlias = str | int | float | bool | None
"""One value of a query parameter in `extra_query`, sent as text (`true` for True, an empty value for None); a list
of them sends the name once for each."""


class RequestOptions(TypedDict, total=False):
    """Options for one call: more headers or query parameters, and timeouts instead of the client's."""

    extra_headers: Mapping[str, str] | NotGiven | None
    extra_query: Mapping[str, QueryValue | Sequence[QueryValue]] | NotGiven | None
    timeout: Timeout | NotGiven
    total_timeout: float | NotGiven | None
