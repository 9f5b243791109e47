"""Per-call options accepted by every method."""

from __future__ import annotations

from collections.abc import Mapping

from typing_extensions import TypedDict

from .._types import NotGiven, Timeout

__all__ = ["RequestOptions"]


class RequestOptions(TypedDict, total=False):
    """Options for one call: more headers or query parameters, and timeouts instead of the client's."""

    extra_headers: Mapping[str, str] | NotGiven | None
    extra_query: Mapping[str, str] | NotGiven | None
    timeout: Timeout | NotGiven
    total_timeout: float | NotGiven | None
