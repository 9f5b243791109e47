"""`ChatCompletionRequest`: the body parameters of `chat.completions.create` as a pydantic model."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidatorFunctionWrapHandler, field_validator
from typing_extensions import Self

from .._exceptions import InvalidParameterError
from .._request import CHAT_PARAMS, as_lists, check_chat_params, encode_json, unknown_params
from .._types import ModelAlias, NotGiven

__all__ = ["ChatCompletionRequest"]


def _checked(data: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters, refused by the very rules `create` applies (`InvalidParameterError`, `TypeError`).

    What `create` takes, this takes: a tuple (or any iterable) of messages, and models anywhere in
    the parameters (messages, content parts, tool calls, a response format), which become the
    dicts `create` would send for them.
    """
    if not data.keys() <= CHAT_PARAMS:
        raise unknown_params("ChatCompletionRequest", data, CHAT_PARAMS)
    params = {key: value for key, value in data.items() if not isinstance(value, NotGiven)}
    as_lists(params)
    check_chat_params(params)
    for key, value in params.items():
        # `logit_bias` is checked whole by `check_chat_params`, and JSON would make its int keys strings.
        if key != "logit_bias" and not _plain(value):
            # What `create` writes for it, read back: models as their dicts, tuples as lists, refused
            # as `create` refuses it (NaN, a lone surrogate, nesting too deep), named by its place.
            try:
                params[key] = json.loads(encode_json({key: value}))[key]
            except InvalidParameterError as exc:
                if exc.param != "body":  # a place inside it, named already (`messages[1].content`)
                    raise
                raise InvalidParameterError(key, type(value).__name__, exc.allowed) from None
    return params


# Values JSON writes as they are. Floats are not among them: NaN and infinities are refused by `create`.
_ATOM_TYPES: Final = frozenset((str, int, bool, type(None)))
_DICT_ONLY: Final = frozenset((dict,))
_STR_ONLY: Final = frozenset((str,))


def _plain(value: Any) -> bool:
    """Whether `create` writes `value` as it is: a string or whole number, or plain text messages.

    Decided by C code alone (a string subclass such as `ModelAlias` is plain: it is kept). Anything
    else takes the slower path, whose result is what `create` would write, or whose error is the one
    `create` raises: so does text UTF-8 cannot carry (a lone surrogate), and a key that is no string.
    """
    kind = type(value)
    if kind in _ATOM_TYPES or isinstance(value, (str, int)):
        return not isinstance(value, str) or _utf8(value)
    if kind is dict:
        values: Iterable[Any] = value.values()
        keys: Iterable[Any] = value.keys()
    elif kind is list and _DICT_ONLY.issuperset(map(type, value)):
        values = list(itertools.chain.from_iterable(map(dict.values, value)))
        keys = itertools.chain.from_iterable(map(dict.keys, value))
    else:
        return False
    return (
        _ATOM_TYPES.issuperset(map(type, values))
        and _STR_ONLY.issuperset(map(type, keys))
        and _utf8("".join(map(str, values)))
    )


def _utf8(text: str) -> bool:
    """Whether UTF-8 can carry `text`, which holds no lone surrogate then."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ChatCompletionRequest(BaseModel):
    """A chat completion request: every body parameter of `chat.completions.create`, as a pydantic model.

    It is checked by the same rules as `create` and raises the same errors (`InvalidParameterError`
    for a bad value, `TypeError` for an unknown name), whether built from keywords, with
    `model_validate`, or read back with `model_validate_json`. `model_dump(exclude_unset=True)` is
    exactly the JSON body `create` sends for it, so a service can queue, log and replay requests
    (one per line of a JSON Lines file), and `create_many` takes these as well as keyword dicts. Call
    options (`timeout`, `total_timeout`, `extra_headers`, `extra_query`, `extra_body`) are not part of
    it: give them to the call. Messages and tools are plain dicts here (models given to it, at any
    depth, become the dicts `create` sends for them). A `ModelAlias` given as `model` stays one, but
    JSON cannot mark it: a line read back with `model_validate_json` holds a plain string, refused
    unless it is a `provider/model` id (wrap it again: `{**json.loads(line), "model": ModelAlias(...)}`).

    ```python
    request = ChatCompletionRequest(model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    line = request.model_dump_json(exclude_unset=True)          # queue or log it
    again = ChatCompletionRequest.model_validate_json(line)     # checked again
    completion: ChatCompletion = client.chat.completions.create(**again.model_dump(exclude_unset=True))
    ```
    """

    # Numbers are `int | float` so that 1 stays 1 and 0.5 stays 0.5: the body is sent as given.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    messages: list[dict[str, Any]]
    stream: bool | None = None
    temperature: int | float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: int | float | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: int | float | None = None
    frequency_penalty: int | float | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    logit_bias: dict[str | int, int | float] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    def __init__(self, **data: Any) -> None:
        super().__init__(**_checked(data))

    @field_validator("model", mode="wrap")
    @classmethod
    def _keep_alias(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # A `ModelAlias` stays one, so that `create_many` and `create(**model_dump())` send it unchecked.
        return value if type(value) is ModelAlias else handler(value)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Check `obj` (a mapping of parameters) as `create` would, then build the model."""
        if isinstance(obj, Mapping):
            obj = _checked(obj)
        elif not isinstance(obj, cls):
            raise InvalidParameterError("request", type(obj).__name__, "a mapping of create() parameters")
        return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        """Read a request back from JSON (a line of a JSON Lines file), checked as `create` would check it."""
        try:
            data = json.loads(json_data)
        except (ValueError, TypeError, RecursionError) as exc:  # TypeError: not str or bytes
            raise InvalidParameterError(
                "json_data", json_data, f"a JSON object of request parameters ({exc})"
            ) from None
        return cls.model_validate(data, *args, **kwargs)
