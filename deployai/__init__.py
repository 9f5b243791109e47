"""deployai: the typed, fast Python client for the DeployAI API.

```python
from deployai import DeployAI

client = DeployAI()  # reads DEPLOYAI_API_KEY
completion = client.chat.completions.create(
    model="openai/gpt-4o", messages=[{"role": "user", "content": "Hello!"}]
)
print(completion.choices[0].message.content)
```
"""

from typing import TYPE_CHECKING, Any

from ._client import AsyncDeployAI, DeployAI
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DeployAIError,
    InternalServerError,
    InvalidParameterError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    is_retryable,
    retry_after,
)
from ._limiter import RateLimiter
from ._logging import setup_logging as _setup_logging
from ._public import show_as_public as _show_as_public
from ._ratelimit import RateLimit
from ._response import RawResponse
from ._streaming import AsyncStream, Stream
from ._types import NOT_GIVEN, ModelAlias, NotGiven
from ._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncDeployAI",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DeployAI",
    "DeployAIError",
    "InternalServerError",
    "InvalidParameterError",
    "ModelAlias",
    "NotFoundError",
    "NotGiven",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RateLimiter",
    "RawResponse",
    "RedisRateLimiter",
    "ServiceUnavailableError",
    "Stream",
    "UnprocessableEntityError",
    "__version__",
    "is_retryable",
    "retry_after",
    "types",
]

if TYPE_CHECKING:
    from . import types
    from ._redis_limiter import RedisRateLimiter
# Loaded when first used: most programs never make a RedisRateLimiter. The response and request models
# are loaded with `deployai.types`, which a client's first `.chat` or `.models` imports: building
# pydantic models (and pydantic's machinery for them) is most of the import time of the package.
_LAZY = {"RedisRateLimiter": "._redis_limiter", "types": ".types"}


if not TYPE_CHECKING:  # type checkers see the import above, and no catch-all for misspelled names

    def __getattr__(name: str) -> Any:
        """Load a lazily imported public name (`RedisRateLimiter`, `types`) on first use."""
        if name not in _LAZY:
            raise AttributeError(f"module 'deployai' has no attribute {name!r}")
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        obj = module if name == "types" else getattr(module, name)
        globals()[name] = obj
        return obj


def __dir__() -> list[str]:
    """The module's names, the lazily imported ones included."""
    return sorted({*globals(), *_LAZY})


# Tracebacks and reprs show `deployai.RateLimitError`, not the private module it is defined in.
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and _obj.__module__.startswith("deployai._"):
        _show_as_public(_obj)
del _name, _obj

_setup_logging()
