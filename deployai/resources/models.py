"""`client.models`: the models you can use."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from typing_extensions import Unpack

from .._response import RawResponse
from ..types.models import ModelList
from ..types.request_options import RequestOptions

if TYPE_CHECKING:
    from .._client import AsyncDeployAI, DeployAI

__all__ = ["AsyncModels", "Models"]


class Models:
    """The models endpoint for `DeployAI`."""

    def __init__(self, client: DeployAI) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """List the models available to your key; iterate over the result or read `.data`."""
        result: ModelList = self._client._models(dict(options), raw=False)
        return result

    @cached_property
    def with_raw_response(self) -> ModelsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return ModelsWithRawResponse(self._client)


class ModelsWithRawResponse:
    """`client.models.with_raw_response`: `list` returns a `RawResponse`."""

    def __init__(self, client: DeployAI) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> RawResponse[ModelList]:
        """List the models and return the raw response; `.parse()` gives the `ModelList`."""
        result: RawResponse[ModelList] = self._client._models(dict(options), raw=True)
        return result


class AsyncModels:
    """The models endpoint for `AsyncDeployAI`."""

    def __init__(self, client: AsyncDeployAI) -> None:
        self._client = client

    async def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """List the models available to your key; iterate over the result or read `.data`."""
        result: ModelList = await self._client._models(dict(options), raw=False)
        return result

    @cached_property
    def with_raw_response(self) -> AsyncModelsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return AsyncModelsWithRawResponse(self._client)


class AsyncModelsWithRawResponse:
    """`client.models.with_raw_response` for `AsyncDeployAI`."""

    def __init__(self, client: AsyncDeployAI) -> None:
        self._client = client

    async def list(self, **options: Unpack[RequestOptions]) -> RawResponse[ModelList]:
        """List the models and return the raw response; `.parse()` gives the `ModelList`."""
        result: RawResponse[ModelList] = await self._client._models(dict(options), raw=True)
        return result
