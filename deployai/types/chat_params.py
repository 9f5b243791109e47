"""The keyword arguments of `chat.completions.create`, written once for both clients and both result kinds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel
from typing_extensions import Required

from .._types import NotGiven
from .chat import ChatCompletionMessageParam
from .request_options import RequestOptions

__all__ = ["CompletionCreateParams", "CompletionCreateParamsNonStreaming", "CompletionCreateParamsStreaming"]


class _CommonParams(RequestOptions, total=False):
    """Parameters of a chat completion (see `Completions.create` for what each one does)."""

    model: Required[str]
    messages: Required[Iterable[ChatCompletionMessageParam]]
    temperature: float | NotGiven | None
    max_tokens: int | NotGiven | None
    max_completion_tokens: int | NotGiven | None
    top_p: float | NotGiven | None
    stop: str | Sequence[str] | NotGiven | None
    n: int | NotGiven | None
    seed: int | NotGiven | None
    presence_penalty: float | NotGiven | None
    frequency_penalty: float | NotGiven | None
    user: str | NotGiven | None
    response_format: Mapping[str, object] | BaseModel | NotGiven | None
    tools: Iterable[Mapping[str, object] | BaseModel] | NotGiven | None
    tool_choice: Literal["none", "auto", "required"] | Mapping[str, object] | BaseModel | NotGiven | None
    stream_options: Mapping[str, object] | NotGiven | None
    logprobs: bool | NotGiven | None
    top_logprobs: int | NotGiven | None
    parallel_tool_calls: bool | NotGiven | None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | str | NotGiven | None
    logit_bias: Mapping[str, float] | Mapping[int, float] | Mapping[str | int, float] | NotGiven | None
    metadata: Mapping[str, str] | NotGiven | None
    store: bool | NotGiven | None
    service_tier: Literal["auto", "default", "flex", "priority"] | str | NotGiven | None
    extra_body: Mapping[str, object] | NotGiven | None


class CompletionCreateParamsNonStreaming(_CommonParams, total=False):
    """Arguments of a chat completion returned whole (the default)."""

    stream: Literal[False] | NotGiven | None


class CompletionCreateParamsStreaming(_CommonParams, total=False):
    """Arguments of a chat completion streamed chunk by chunk."""

    stream: Required[Literal[True]]


class CompletionCreateParams(_CommonParams, total=False):
    """Arguments of a chat completion whose `stream` is only known at run time."""

    stream: bool | NotGiven | None
