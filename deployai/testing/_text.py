"""The emulator's model catalog, its tokenizer and its replies: deterministic, so tests can assert on them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MODELS", "EmulatedModel", "count_tokens", "message_text", "reply_to", "split_tokens"]


@dataclass(frozen=True, slots=True)
class EmulatedModel:
    """A model the emulator serves, as `GET /v1/models` lists it.

    Attributes:
        id: the model id in `provider/model` form.
        provider: the provider's display name, for example `OpenAI`.
        context_window: the context size in tokens.
        created: a fixed unix timestamp, so that listings are reproducible.
    """

    id: str
    provider: str
    context_window: int
    created: int

    @property
    def owned_by(self) -> str:
        """The provider slug: the part of the id before the slash."""
        return self.id.partition("/")[0]

    def to_json(self) -> dict[str, Any]:
        """The model as the API lists it."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "provider": self.provider,
            "context_window": self.context_window,
        }


# The seven models of the API reference, with the context sizes it documents ("128k" is 128,000).
MODELS: Final[tuple[EmulatedModel, ...]] = (
    EmulatedModel("openai/gpt-4o", "OpenAI", 128_000, 1_715_367_049),
    EmulatedModel("openai/o3-mini", "OpenAI", 128_000, 1_737_146_383),
    EmulatedModel("anthropic/claude-3.5-sonnet", "Anthropic", 200_000, 1_718_841_600),
    EmulatedModel("google/gemini-2.0-flash", "Google", 1_000_000, 1_733_875_200),
    EmulatedModel("mistralai/mistral-large", "Mistral AI", 128_000, 1_708_905_600),
    EmulatedModel("meta/llama-3.1-405b", "Meta", 128_000, 1_721_692_800),
    EmulatedModel("deepseek/deepseek-r1", "DeepSeek", 64_000, 1_737_331_200),
)

# One token is a run of word characters or a single other non-space character: crude, but simple to
# reason about in a test, and the same rule counts prompts, replies and stream chunks.
_TOKEN: Final = re.compile(r"\w+|[^\w\s]")
# A stream piece is one token with the whitespace before it, so the pieces join back into the text.
_PIECE: Final = re.compile(r"\s*(?:\w+|[^\w\s])")


def count_tokens(text: str) -> int:
    """The number of tokens in `text` (runs of word characters, and single punctuation marks)."""
    return len(_TOKEN.findall(text))


def split_tokens(text: str) -> list[str]:
    """Split `text` into one piece per token; the pieces joined give back the text (trailing space included)."""
    pieces: list[str] = _PIECE.findall(text)
    if pieces:
        tail = text[sum(map(len, pieces)) :]
        if tail:
            pieces[-1] += tail
    return pieces


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message's content: the string, or its text parts joined by spaces (images count nothing)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def reply_to(messages: Sequence[Mapping[str, Any]]) -> str:
    """The emulator's answer: it repeats the last user message, so a test knows the reply from its prompt."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = message_text(message).strip()
            return f"You said: {text}" if text else "You said nothing."
    return "You said nothing."
