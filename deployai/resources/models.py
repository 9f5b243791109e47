"""`client.models`: the models you can use, all at once or one by id."""

from __future__ import annotations

from functools import cached_property
from typing import Final

from typing_extensions import Unpack

from .._endpoint import AsyncCaller, Endpoint, SyncCaller
from .._request import build_get_request
from .._response import RawResponse
from ..types.models import Model, ModelList
from ..types.request_options import RequestOptions

__all__ = ["AsyncModels", "Models"]

LIST: Final = Endpoint(name="list", method="GET", path="/models", result=ModelList, build=build_get_request)
"""`GET /models`: every model your key may use."""

RETRIEVE: Final = Endpoint(
    name="retrieve",
    method="GET",
    path="/models/{model}",
    result=Model,
    build=build_get_request,
    path_params=("model",),
)
"""`GET /models/{model}`: one model by id (`NotFoundError` for an unknown id)."""


class Models:
    """The models endpoints for `DeployAI`."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """List the models available to your key; iterate over the result or read `.data`."""
        result: ModelList = self._client._call(LIST, dict(options), raw=False)
        return result

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model by id, such as `"openai/gpt-4o"`; raises `NotFoundError` for an id the API does not know."""
        result: Model = self._client._call(RETRIEVE, {**options, "model": model}, raw=False)
        return result

    @cached_property
    def with_raw_response(self) -> ModelsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return ModelsWithRawResponse(self._client)


class ModelsWithRawResponse:
    """`client.models.with_raw_response`: each method returns a `RawResponse`."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> RawResponse[ModelList]:
        """List the models and return the raw response; `.parse()` gives the `ModelList`."""
        result: RawResponse[ModelList] = self._client._call(LIST, dict(options), raw=True)
        return result

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> RawResponse[Model]:
        """Retrieve one model and return the raw response; `.parse()` gives the `Model`."""
        result: RawResponse[Model] = self._client._call(RETRIEVE, {**options, "model": model}, raw=True)
        return result


class AsyncModels:
    """The models endpoints for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    async def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """List the models available to your key; iterate over the result or read `.data`."""
        result: ModelList = await self._client._call(LIST, dict(options), raw=False)
        return result

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model by id, such as `"openai/gpt-4o"`; raises `NotFoundError` for an id the API does not know."""
        result: Model = await self._client._call(RETRIEVE, {**options, "model": model}, raw=False)
        return result

    @cached_property
    def with_raw_response(self) -> AsyncModelsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return AsyncModelsWithRawResponse(self._client)


class AsyncModelsWithRawResponse:
    """`client.models.with_raw_response` for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    async def list(self, **options: Unpack[RequestOptions]) -> RawResponse[ModelList]:
        """List the models and return the raw response; `.parse()` gives the `ModelList`."""
        result: RawResponse[ModelList] = await self._client._call(LIST, dict(options), raw=True)
        return result

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> RawResponse[Model]:
        """Retrieve one model and return the raw response; `.parse()` gives the `Model`."""
        result: RawResponse[Model] = await self._client._call(RETRIEVE, {**options, "model": model}, raw=True)
        return result
