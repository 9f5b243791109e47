"""Which endpoint a request is for, and whose key it carries: 401, 404 and 405 in the API's error form."""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ._wire import Draft, error_draft

__all__ = ["ROUTE_NAMES", "Route", "RouteName", "authenticate", "find_route"]

RouteName: TypeAlias = Literal["chat", "models", "model"]
"""An endpoint: `chat` (POST /v1/chat/completions), `models` (GET /v1/models), `model` (GET /v1/models/{id})."""

ROUTE_NAMES: Final[tuple[RouteName, ...]] = ("chat", "models", "model")

_PATHS: Final[dict[str, tuple[str, RouteName]]] = {
    "/v1/models": ("GET", "models"),
    "/v1/chat/completions": ("POST", "chat"),
}
_MODEL_PREFIX: Final = "/v1/models/"


@dataclass(frozen=True, slots=True)
class Route:
    """The endpoint a request is for; `model_id` for `GET /v1/models/{id}`."""

    name: RouteName
    model_id: str | None = None


def authenticate(authorization: str | None, api_keys: Collection[str] | None) -> tuple[str | None, str]:
    """The key of a valid `Authorization` header, or None and why not (never repeating the key)."""
    if not authorization:
        return None, "Missing API key: send it in the header 'Authorization: Bearer sk-...'."
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None, "Malformed Authorization header: expected 'Bearer sk-...'."
    if not key.startswith("sk-"):
        return None, "Invalid API key: DeployAI API keys start with 'sk-'."
    if api_keys is not None and key not in api_keys:
        return None, "Incorrect API key provided."
    return key, ""


def find_route(method: str, path: str, headers: list[tuple[str, str]]) -> Route | Draft:
    """The route of `method path`, or the 404 / 405 to answer."""
    known = _PATHS.get(path.rstrip("/"))
    model_id = None
    if known is None and path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
        # The official openai SDK sends `openai%2Fgpt-4o` where this SDK sends `openai/gpt-4o`.
        known, model_id = ("GET", "model"), urllib.parse.unquote(path[len(_MODEL_PREFIX) :])
    if known is None:
        return error_draft(404, f"Unknown endpoint: {method} {path}.", headers, code="unknown_url")
    allowed, name = known
    if method != allowed:
        message = f"Method {method} is not allowed on {path}; use {allowed}."
        draft = error_draft(405, message, headers)
        draft.headers.append(("allow", allowed))
        return draft
    return Route(name, model_id)
