"""The API's error vocabulary, defined once: for each HTTP status, the `type` and `code` of its error body.

The SDK reads it to map an error event in the middle of a stream (which carries a `type` or `code`
but no status) to a status and so to an exception class; the emulator writes it into the error
bodies it sends. Keeping one table keeps the two in step.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ERROR_KINDS", "ERROR_NAME_STATUS", "error_kind"]

ERROR_KINDS: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("timeout_error", "request_timeout"),
    409: ("conflict_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("overloaded_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
"""Status -> (`type`, `code`) of the API's error body for it; the first status listed owns a shared `type`."""

# Codes that name a more precise cause than the status's own code, and names other gateways use.
_MORE_CODES: Final[dict[str, int]] = {
    "invalid_parameter": 400,
    "invalid_json": 400,
    "bad_request": 400,
    "model_not_found": 404,
    "unknown_url": 404,
    "rate_limited": 429,
    "api_error": 500,
}


def _name_status() -> dict[str, int]:
    names: dict[str, int] = {}
    for status, (kind, code) in ERROR_KINDS.items():
        names.setdefault(kind, status)
        names.setdefault(code, status)
    return {**names, **_MORE_CODES}


ERROR_NAME_STATUS: Final[dict[str, int]] = _name_status()
"""Every error `type` or `code` name -> the status it stands for (for error events, which carry no status)."""


def error_kind(status: int) -> tuple[str, str | None]:
    """The `type` and `code` of the API's error body for `status` (a generic pair for a status not listed)."""
    known = ERROR_KINDS.get(status)
    if known is not None:
        return known
    return ("server_error" if status >= 500 else "invalid_request_error"), None
