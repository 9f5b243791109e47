"""Types of the chat completions endpoint: request messages, responses and stream chunks."""

from __future__ import annotations

import copy as _copy
import warnings
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.warnings import PydanticDeprecatedSince20
from typing_extensions import NotRequired, Required, Self, TypedDict, deprecated

from ._base import APIResult, DeployAIModel

__all__ = [
    "AssistantMessage",
    "AssistantMessageParam",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageParam",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionTokensDetails",
    "ContentPartParam",
    "FileContentPartParam",
    "FileParam",
    "FinishReason",
    "FunctionCall",
    "FunctionCallParam",
    "ImageContentPart",
    "ImageContentPartParam",
    "ImageURL",
    "ImageURLParam",
    "InputAudioContentPartParam",
    "InputAudioParam",
    "MessageToolCall",
    "PromptTokensDetails",
    "SystemMessage",
    "SystemMessageParam",
    "TextContentPart",
    "TextContentPartParam",
    "ToolCallParam",
    "ToolMessage",
    "ToolMessageParam",
    "TopLogprob",
    "Usage",
    "UserMessage",
    "UserMessageParam",
]

FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"] | str
"""Why generation stopped. An open set: values a provider adds later are accepted as plain strings."""


# Request messages: TypedDicts for plain dicts (so that editors and mypy check the keys), and
# pydantic models for those who prefer objects. Both are accepted in `messages`.


class TextContentPartParam(TypedDict):
    """A text part of a message's content, as a dict."""

    type: Literal["text"]
    text: str


class ImageURLParam(TypedDict):
    """Where an image part's picture is: an https URL or a `data:` URL."""

    url: str
    detail: NotRequired[Literal["auto", "low", "high"]]


class ImageContentPartParam(TypedDict):
    """An image part of a user message's content, as a dict."""

    type: Literal["image_url"]
    image_url: ImageURLParam


class InputAudioParam(TypedDict):
    """An audio part's sound: base64-encoded data and its format."""

    data: str
    format: Literal["wav", "mp3"] | str


class InputAudioContentPartParam(TypedDict):
    """An audio part of a user message's content, as a dict (for models that take audio)."""

    type: Literal["input_audio"]
    input_audio: InputAudioParam


class FileParam(TypedDict, total=False):
    """A file part's file: its data as a `data:` URL (with a `filename`), or the id of an uploaded file."""

    file_data: str
    file_id: str
    filename: str


class FileContentPartParam(TypedDict):
    """A file part (a PDF, for one) of a user message's content, as a dict (for models that take files)."""

    type: Literal["file"]
    file: FileParam


ContentPartParam: TypeAlias = (
    TextContentPartParam | ImageContentPartParam | InputAudioContentPartParam | FileContentPartParam
)


class FunctionCallParam(TypedDict):
    """The function a tool call invokes, with its arguments as a JSON string."""

    name: str
    arguments: str


class ToolCallParam(TypedDict):
    """A tool call made by the assistant, as a dict (sent back in the conversation)."""

    id: str
    type: Literal["function"]
    function: FunctionCallParam


class SystemMessageParam(TypedDict, total=False):
    """A system (or developer) message, as a dict."""

    role: Required[Literal["system", "developer"]]
    content: Required[str | Sequence[TextContentPartParam | TextContentPart]]
    name: str


class UserMessageParam(TypedDict, total=False):
    """A user message, as a dict: text, or a list of text, image, audio and file parts."""

    role: Required[Literal["user"]]
    content: Required[str | Sequence[ContentPartParam | TextContentPart | ImageContentPart]]
    name: str


class AssistantMessageParam(TypedDict, total=False):
    """An earlier assistant message, as a dict: text, tool calls, or both (or an audio answer's id)."""

    role: Required[Literal["assistant"]]
    content: str | Sequence[TextContentPartParam | TextContentPart] | None
    tool_calls: Sequence[ToolCallParam | MessageToolCall] | None
    name: str
    audio: Mapping[str, object] | None  # `{"id": ...}` of an earlier audio answer
    function_call: Mapping[str, object] | None  # the legacy form of one tool call


class ToolMessageParam(TypedDict):
    """The result of a tool call, as a dict."""

    role: Literal["tool"]
    content: str | Sequence[TextContentPartParam | TextContentPart]
    tool_call_id: str


_COPY_IS_DEPRECATED: str = (  # pydantic's words
    "The `copy` method is deprecated; use `model_copy` instead. "
    "See the docstring of `BaseModel.copy` for details about how to handle `include` and `exclude`."
)


class _Message(BaseModel):
    # The message's JSON once sent twice (see `deployai._request.encode_chat_body`): a slot, so that
    # it is no field, no private attribute, and left out of equality, copies and pickles.
    __slots__ = ("_deployai_json",)
    model_config = ConfigDict(extra="allow", frozen=True)

    @deprecated(_COPY_IS_DEPRECATED, category=None)
    def copy(
        self,
        *,
        include: Set[int] | Set[str] | Mapping[int, Any] | Mapping[str, Any] | None = None,
        exclude: Set[int] | Set[str] | Mapping[int, Any] | Mapping[str, Any] | None = None,
        update: dict[str, Any] | None = None,
        deep: bool = False,
    ) -> Self:
        """Pydantic's deprecated `copy`, except that keys of `update` that are no field become extra fields.

        As `model_copy` makes them, so the copy is sent with them, as it dumps. Pydantic's own
        `copy` puts them among the fields, where the attribute holds them but every dump leaves
        them out; the SDK writes a long conversation of message models from their fields without
        looking for such keys. The warning names the caller's line; given `include` or `exclude`,
        pydantic's own `copy` does the copying, and its warning follows, naming this method's line.
        """
        warnings.warn(_COPY_IS_DEPRECATED, PydanticDeprecatedSince20, stacklevel=2)
        if include is None and exclude is None:
            copied = self.model_copy(deep=deep)
        else:  # pydantic's own, whose second warning names this line (shown only where all warnings are)
            copied = super().copy(include=include, exclude=exclude, deep=deep)
        if not update:
            return copied
        copied = copied.model_copy(update=_copy.deepcopy(update) if deep else update)
        if exclude:  # as pydantic's: an excluded key is no field set, even if `update` sets it
            copied.__pydantic_fields_set__.difference_update(exclude)
        return copied


class TextContentPart(_Message):
    """A text part of a message's content."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Message):
    """Where an image part's picture is: an https URL or a `data:` URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageContentPart(_Message):
    """An image part of a user message's content."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class FunctionCall(DeployAIModel):
    """The function a tool call invokes; `arguments` is a JSON string written by the model."""

    name: str
    arguments: str


class MessageToolCall(DeployAIModel):
    """A tool call the assistant asked for."""

    id: str
    type: Literal["function"] | str = "function"
    function: FunctionCall


class SystemMessage(_Message):
    """A system (or developer) message: instructions for the assistant."""

    role: Literal["system", "developer"] = "system"
    content: str | Annotated[list[TextContentPart], Field(min_length=1)]
    name: str | None = None


class UserMessage(_Message):
    """A user message: text, or a list of text and image parts."""

    role: Literal["user"] = "user"
    content: str | Annotated[list[TextContentPart | ImageContentPart], Field(min_length=1)]
    name: str | None = None


class AssistantMessage(_Message):
    """An earlier assistant message in the conversation: text, tool calls, or both."""

    role: Literal["assistant"] = "assistant"
    content: str | Annotated[list[TextContentPart], Field(min_length=1)] | None = None
    tool_calls: list[MessageToolCall] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Self:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs content, tool_calls, or both")
        return self


class ToolMessage(_Message):
    """The result of a tool call, sent back to the model."""

    role: Literal["tool"] = "tool"
    content: str | Annotated[list[TextContentPart], Field(min_length=1)]
    tool_call_id: str


# Responses


class PromptTokensDetails(DeployAIModel):
    """What the prompt's tokens were, where the provider reports it (OpenAI does)."""

    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(DeployAIModel):
    """What the completion's tokens were, where the provider reports it (reasoning models' thinking)."""

    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(DeployAIModel):
    """Token counts of a completion (read from an answer without `total_tokens`, it is counted from the others)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # The details only when a provider reported them: `print(usage)` stays the three counts.
        details = ("prompt_tokens_details", "completion_tokens_details")
        return ((name, value) for name, value in super().__repr_args__() if value is not None or name not in details)


def _reasoning_of(model: BaseModel) -> str | None:
    """A message's or a delta's `reasoning_content`, among the fields the server added."""
    extra = model.__pydantic_extra__
    value = extra.get("reasoning_content") if extra else None
    return value if isinstance(value, str) else None


class ChatCompletionMessage(DeployAIModel):
    """The message the model generated."""

    role: Literal["assistant"] | str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[MessageToolCall] | None = None

    @property
    def reasoning_content(self) -> str | None:
        """The model's reasoning before its answer, where the provider sends it (deepseek-r1, Mistral's thinking).

        None where it sent none. It stays among the fields the server added (`model_extra`).
        """
        return _reasoning_of(self)


ChatCompletionMessageParam: TypeAlias = (
    SystemMessageParam
    | UserMessageParam
    | AssistantMessageParam
    | ToolMessageParam
    | SystemMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | ChatCompletionMessage
)
"""One message of `messages`: a dict, a message model, or a message an answer gave (`ChatCompletionMessage`)."""


class TopLogprob(DeployAIModel):
    """One of the likeliest tokens at a position, with its log probability (`top_logprobs=` asks for them)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    """The token's UTF-8 bytes: a character split over several tokens is whole only in their bytes."""


class ChatCompletionTokenLogprob(TopLogprob):
    """A token of the answer, its log probability, and the likeliest tokens at its position."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)
    """Empty unless you asked for `top_logprobs=` (some providers then send null: it is read as empty)."""

    @field_validator("top_logprobs", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class ChoiceLogprobs(DeployAIModel):
    """The log probabilities of a choice's tokens (`logprobs=True`): of its content, or of its refusal."""

    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class Choice(DeployAIModel):
    """One generated alternative (there is one unless you asked for `n`)."""

    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(APIResult):
    """A chat completion: what `client.chat.completions.create(...)` returns."""

    id: str
    object: Literal["chat.completion"] | str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    def _lacking(self) -> str | None:
        # An answer without a choice has no text to give: `choices[0]` would be an IndexError.
        return None if self.choices else "chat completion (it has no choices)"


class ChoiceDeltaFunctionCall(DeployAIModel):
    """A piece of a streamed tool call's function: the name arrives first, then the arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(DeployAIModel):
    """A piece of a streamed tool call; pieces with the same `index` belong to one call.

    Some servers leave `index` out (it is then 0 here); `get_final_completion()` then takes a piece
    with a new `id` as the start of the next call.
    """

    index: int = 0
    id: str | None = None
    type: Literal["function"] | str | None = None
    function: ChoiceDeltaFunctionCall | None = None


class ChoiceDelta(DeployAIModel):
    """What one chunk adds to a choice's message."""

    role: Literal["assistant"] | str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None

    @property
    def reasoning_content(self) -> str | None:
        """The chunk's piece of the model's reasoning, where the provider sends it (deepseek-r1, Mistral's thinking).

        None where it sent none. It stays among the fields the server added (`model_extra`).
        """
        return _reasoning_of(self)


class ChunkChoice(DeployAIModel):
    """One choice's part of a stream chunk."""

    index: int
    delta: ChoiceDelta = Field(default_factory=ChoiceDelta)  # some servers leave an empty one out
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None
    """The log probabilities of this chunk's tokens; `get_final_completion()` puts the chunks' together."""


class ChatCompletionChunk(DeployAIModel):
    """One chunk of a streamed chat completion.

    The last chunk of a stream asked for with `stream_options={"include_usage": True}` has empty
    `choices` and carries `usage`.
    """

    id: str
    object: Literal["chat.completion.chunk"] | str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
