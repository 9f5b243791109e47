"""Types of the models endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, overload

from ._base import APIResult

__all__ = ["Model", "ModelList"]


class Model(APIResult):
    """A model you can name in `model=`, in `provider/model` form (from `models.list()` or `models.retrieve(id)`)."""

    id: str
    object: Literal["model"] | str = "model"
    created: int | None = None
    owned_by: str | None = None
    provider: str | None = None
    context_window: int | None = None


class ModelList(APIResult):
    """The models available to your key: iterate over it, or read `.data`."""

    object: Literal["list"] | str = "list"
    data: list[Model]

    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        """Iterate over the models (rather than over the fields, as pydantic models do)."""
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> Model: ...
    @overload
    def __getitem__(self, index: slice) -> list[Model]: ...
    def __getitem__(self, index: int | slice) -> Model | list[Model]:
        """A model by position, or a list of them for a slice (`models[:3]`)."""
        return self.data[index]
