"""The base of every response model: lenient about what the server adds, typed about what it documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from .._meta import ResponseInfo, ResponseMeta


class DeployAIModel(BaseModel):
    """Base of every response model. Fields the server adds beyond the documented ones are kept.

    Read them from `model_extra`, or as attributes, which type checkers do not know of (but
    `reasoning_content` on messages and deltas); `model_dump()` includes them.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=(), populate_by_name=True)


class APIResult(ResponseInfo, DeployAIModel):
    """A whole response body: it also knows the rate limit, request id and timing that came with it.

    `rate_limit`, `request_id` and `elapsed` are read-only attributes, not fields: they are not part
    of `model_dump()` or the JSON.
    """

    _meta: ResponseMeta | None = PrivateAttr(default=None)

    def _response_meta(self) -> ResponseMeta | None:
        return self._meta

    def _lacking(self) -> str | None:
        """What this valid body lacks to be an answer, named for an error (None: nothing)."""
        return None

    def __getstate__(self) -> dict[Any, Any]:
        """As pydantic pickles a model, with API keys taken out of the headers that came with it."""
        state = super().__getstate__()
        if self._meta is not None:  # a server may echo the request's key in one
            state["__pydantic_private__"] = {**state["__pydantic_private__"], "_meta": self._meta.portable()}
        return state

    def __eq__(self, other: object) -> bool:
        """Equal when the data is: what came with the response (request id, timing) is left out."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.__dict__ == other.__dict__
            and self.__pydantic_extra__ == other.__pydantic_extra__
        )
