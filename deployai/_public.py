"""Showing a public class as `deployai.X` rather than the private module it is defined in."""

from __future__ import annotations

import inspect
import sys

__all__ = ["show_as_public"]


def show_as_public(cls: type) -> None:
    """Make `cls` read as `deployai.<name>` in tracebacks, reprs and pickles, its annotations still resolvable.

    `typing.get_type_hints` and pydantic (a `RateLimit` in a model, a FastAPI response) look up a
    class's string annotations in the namespace of `cls.__module__`, which does not hold their names
    once it is `deployai`. So they are evaluated first, where the class was defined (an annotation
    naming something imported only for type checkers stays a string).
    """
    own = inspect.get_annotations(cls)  # its own, as written
    if own:
        namespace = vars(sys.modules[cls.__module__])  # eval only reads it: it has its __builtins__
        resolved = {}
        for key, value in own.items():
            try:
                resolved[key] = eval(value, namespace) if isinstance(value, str) else value  # noqa: S307 - our source
            except NameError:
                resolved[key] = value
        cls.__annotations__ = resolved
        for field in getattr(cls, "__dataclass_fields__", {}).values():  # what pydantic reads of a dataclass
            field.type = resolved.get(field.name, field.type)
    cls.__module__ = "deployai"
