"""Checked by mypy (not run): the overloads of `create` give the precise result types."""

from __future__ import annotations

import httpx
import pydantic
from typing_extensions import assert_type

import deployai
from deployai import AsyncDeployAI, AsyncStream, DeployAI, ModelAlias, RawResponse, Stream
from deployai.testing import Emulator
from deployai.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    CompletionCreateParams,
    FunctionCallParam,
    Model,
    ModelList,
    RequestOptions,
    SystemMessage,
    TextContentPart,
    TextContentPartParam,
    ToolCallParam,
)
from deployai.types.chat_params import CompletionCreateParamsNonStreaming, CompletionCreateParamsStreaming


def sync_client(client: DeployAI, flag: bool) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello!"}]
    assert_type(
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}]),
        ChatCompletion,
    )
    assert_type(client.chat.completions.create(model="a/b", messages=messages, stream=False), ChatCompletion)
    assert_type(
        client.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "Hi"}], stream=True),
        Stream[ChatCompletionChunk],
    )
    assert_type(
        client.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "Hi"}], stream=flag),
        ChatCompletion | Stream[ChatCompletionChunk],
    )
    assert_type(client.models.list(), ModelList)
    for model in client.models.list():
        assert_type(model, Model)
    assert_type(client.models.list()[0], Model)
    assert_type(client.models.list()[:3], list[Model])
    assert_type(client.chat.completions.create(model="a/b", messages=[], stop=("END", "STOP")), ChatCompletion)
    assert_type(
        client.chat.completions.with_raw_response.create(model="a/b", messages=[{"role": "user", "content": "Hi"}]),
        RawResponse[ChatCompletion],
    )
    assert_type(client.models.with_raw_response.list().parse(), ModelList)
    assert_type(client.with_options(timeout=5), DeployAI)


async def async_client(client: AsyncDeployAI) -> None:
    assert_type(
        await client.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "Hi"}]),
        ChatCompletion,
    )
    stream = await client.chat.completions.create(
        model="a/b", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert_type(stream, AsyncStream[ChatCompletionChunk])
    async for chunk in stream:
        assert_type(chunk, ChatCompletionChunk)
    assert_type(await client.models.list(), ModelList)
    async for model in client.models.list():
        assert_type(model, Model)


def newer_parameters(client: DeployAI) -> None:
    """`max_completion_tokens`, a `ModelAlias` and `models.retrieve` are typed like the rest."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
    completion = client.chat.completions.create(model=ModelAlias("fast"), messages=messages, max_completion_tokens=64)
    assert_type(completion, ChatCompletion)
    assert_type(client.models.retrieve("openai/gpt-4o"), Model)
    assert_type(client.models.with_raw_response.retrieve("openai/gpt-4o"), RawResponse[Model])


def none_as_not_given(client: DeployAI, flag: bool | None, tools: list[dict[str, object]] | None) -> None:
    """`stream=None` and `tools=None` run as not given (whole answers), and are typed so."""
    hi: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
    assert_type(client.chat.completions.create(model="a/b", messages=hi, stream=None, tools=tools), ChatCompletion)
    either = client.chat.completions.create(model="a/b", messages=hi, stream=flag)
    assert_type(either, ChatCompletion | Stream[ChatCompletionChunk])


def errors_with_or_without_an_answer(error: deployai.APIError) -> None:
    """`code`, `type` and `param` are on every `APIError`, as on the openai SDK's."""
    assert_type(error.code, str | None)
    assert_type(error.type, str | None)
    assert_type(error.param, str | None)


def everything_a_signature_names_is_exported(
    params: CompletionCreateParams, options: RequestOptions, function: FunctionCallParam
) -> None:
    """The TypedDicts of `create`'s keyword arguments and of a tool call's function can be imported."""
    assert_type(params["model"], str)
    assert_type(options.get("total_timeout"), float | deployai.NotGiven | None)
    assert_type(function["arguments"], str)


def mistakes_are_type_errors() -> None:
    """Each line is an error mypy must report (an unused ignore would fail the strict run)."""
    DeployAI(http_client=httpx.AsyncClient())  # type: ignore[arg-type]
    AsyncDeployAI(http_client=httpx.Client())  # type: ignore[arg-type]
    client = DeployAI()
    client.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "Hi"}], temprature=1)  # type: ignore[call-overload]
    client.chat.completions.create(model="a/b", messages=[{"role": "robot", "content": "Hi"}])  # type: ignore[list-item]
    client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])  # type: ignore[call-overload]
    deployai.RateLimitr()  # type: ignore[attr-defined]  # a misspelled name, even beside the lazily loaded ones
    assert_type(deployai.RedisRateLimiter("redis://127.0.0.1:6379/0"), deployai.RedisRateLimiter)


def retry_library_shapes(outcome: BaseException | None) -> None:
    # What tenacity's `retry_state.outcome.exception()` gives: the rule takes it as it is.
    assert_type(deployai.is_retryable(outcome), bool)
    assert_type(deployai.retry_after(outcome), float | None)


def arguments_as_they_come(client: DeployAI, parts: list[TextContentPartParam], calls: list[ToolCallParam]) -> None:
    """Arguments typed by the SDK's own names, or narrower than its unions, keep the precise result types."""
    whole: CompletionCreateParamsNonStreaming = {"model": "a/b", "messages": [{"role": "user", "content": "Hi"}]}
    streamed: CompletionCreateParamsStreaming = {"model": "a/b", "messages": [], "stream": True}
    assert_type(client.chat.completions.create(**whole), ChatCompletion)
    assert_type(client.chat.completions.create(**streamed), Stream[ChatCompletionChunk])
    assert_type(client.chat.completions.with_raw_response.create(**whole), RawResponse[ChatCompletion])
    messages: list[ChatCompletionMessageParam] = [
        SystemMessage(role="developer", content="Be brief."),
        {"role": "user", "content": parts},
        {"role": "user", "content": (TextContentPart(text="a"), {"type": "text", "text": "b"})},
        {"role": "assistant", "tool_calls": calls},
    ]
    completion = client.chat.completions.create(model="a/b", messages=messages, logit_bias={"50256": -100})
    messages.append(completion.choices[0].message)  # the answer's message, sent back as it is
    tool_calls = completion.choices[0].message.tool_calls or []
    messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
    token_ids: dict[int, int] = {50256: -100}
    client.chat.completions.create(model="a/b", messages=messages, logit_bias=token_ids)


async def batches(client: DeployAI, aclient: AsyncDeployAI) -> None:
    requests = [{"model": "a/b", "messages": [{"role": "user", "content": "Hi"}]}]
    assert_type(client.chat.completions.create_many(requests), list[ChatCompletion | deployai.DeployAIError])
    for index, result in client.chat.completions.as_completed(requests, concurrency=4):
        assert_type(index, int)
        assert_type(result, ChatCompletion | deployai.DeployAIError)
    assert_type(await aclient.chat.completions.create_many(requests), list[ChatCompletion | deployai.DeployAIError])
    async for index, result in aclient.chat.completions.as_completed(requests):
        assert_type(index, int)
        assert_type(result, ChatCompletion | deployai.DeployAIError)


def parts_and_choices_the_runtime_takes(client: DeployAI, answer: ChatCompletion, choice: pydantic.BaseModel) -> None:
    """Audio and file parts, a model as `tool_choice`, an answer's `tool_calls` echoed as they are (None or not)."""
    messages: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is said, and what does the PDF say?"},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
                {"type": "file", "file": {"file_id": "file-123"}},
            ],
        }
    ]
    message = answer.choices[0].message
    messages.append({"role": "assistant", "content": message.content, "tool_calls": message.tool_calls})
    assert_type(client.chat.completions.create(model="a/b", messages=messages, tool_choice=choice), ChatCompletion)


def emulator_faults(emulator: Emulator) -> None:
    """The `*_next` faults take what the faults they stand for take."""
    emulator.fail_next(503, {"error": {"message": "busy"}}, times=None)
    emulator.stall_next(1.0, times=None)
    emulator.fail_next(503, body=42)  # type: ignore[arg-type]
