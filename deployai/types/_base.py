"""The base of every response model: lenient about what the server adds, typed about what it documents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, PrivateAttr

from .._ratelimit import RateLimit

if TYPE_CHECKING:
    import httpx


class DeployAIModel(BaseModel):
    """Base of every response model. Fields the server adds beyond the documented ones are kept.

    Read them as attributes or from `model_extra`; `model_dump()` includes them.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=(), populate_by_name=True)


class APIResult(DeployAIModel):
    """A whole response body: it also knows the rate limit and request id that came with it.

    `rate_limit` and `request_id` are read-only attributes, not fields: they are not part of
    `model_dump()` or the JSON.
    """

    _headers: httpx.Headers | None = PrivateAttr(default=None)

    @property
    def rate_limit(self) -> RateLimit:
        """The rate-limit window reported with the response this object was read from."""
        return RateLimit() if self._headers is None else RateLimit.from_headers(self._headers)

    @property
    def request_id(self) -> str | None:
        """The `x-request-id` of the response this object was read from, if the server sent one."""
        return None if self._headers is None else self._headers.get("x-request-id")
