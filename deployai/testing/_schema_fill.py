"""A value that fits a JSON Schema: the arguments of the emulator's own tool calls, and its `json_schema` answers.

Deterministic, and as plain as the schema allows: each property gets its `default`, its `const`,
its first `enum` value, or for a string the word it is given (the last word of the user's message),
or a value of its `format`, or one its `pattern` matches; a number the value nearest 0 that its
bounds and `multipleOf` allow; `false`; `[]` or as many items as `minItems` and `prefixItems` ask
(distinct where `uniqueItems` says so); `{}` with its properties and as many more as
`minProperties` asks. Local `$ref`s are followed, and `anyOf`/`oneOf` take their first branch that
is not null. A schema met again inside itself (a tree) is filled as little as it allows: its null
branch, its required properties alone, its fewest items; so a tree is one level deep, and a schema
whose every level demands another is cut short after `_MAX_NODES` values (that answer then does not fit).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

if sys.version_info >= (3, 11):
    from re import _constants as _sre
    from re import _parser as _sre_parse
else:  # pragma: no cover - 3.10 only
    import sre_constants as _sre
    import sre_parse as _sre_parse

__all__ = ["fill"]

# A string of a known format: the user's word would not be one. pydantic names some formats of its own.
_FORMATS: Final[dict[str, str]] = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com",
    "uri-reference": "https://example.com",
    "iri": "https://example.com",
    "iri-reference": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "ipvanyaddress": "127.0.0.1",
    "ipv4interface": "127.0.0.1/32",
    "ipv6interface": "::1/128",
    "ipvanyinterface": "127.0.0.1/32",
    "ipv4network": "127.0.0.0/8",
    "ipv6network": "::1/128",
    "ipvanynetwork": "127.0.0.0/8",
    "json-pointer": "/a",
    "regex": ".*",
}
_MAX_DEPTH: Final = 64  # nested deeper than this, a value is its type's plainest
_MAX_NODES: Final = 10_000  # values in one answer: a schema demanding endless nesting is cut short
_MAX_ITEMS: Final = 100


def fill(schema: object, text: str) -> Any:
    """A value that fits `schema` (see the module docstring), strings made of `text`."""
    return _Filler(schema).fill(schema, text, frozenset(), False, 0)


class _Filler:
    """One filling of a schema: its root (where `$ref`s point) and how many values it made."""

    __slots__ = ("nodes", "root")

    def __init__(self, root: object) -> None:
        self.root = root
        self.nodes = 0

    def fill(self, schema: object, text: str, active: frozenset[str], least: bool, depth: int) -> Any:
        """A value for `schema`; `active`: the `$ref`s being filled around it; `least`: as little as it allows."""
        self.nodes += 1
        if not isinstance(schema, Mapping):
            return text
        if "default" in schema:
            return schema["default"]
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        if depth > _MAX_DEPTH or self.nodes > _MAX_NODES:
            return _plainest(schema, text)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            # Met again inside itself: filled as little as it allows, or a tree would grow without end.
            return self.fill(_resolved(ref, self.root), text, active | {ref}, least or ref in active, depth + 1)
        for combined in ("anyOf", "oneOf"):
            branches = schema.get(combined)
            if isinstance(branches, list) and branches:
                others = [b for b in branches if not _is_null(b)]
                if (least and len(others) < len(branches)) or not others:
                    return None
                return self.fill(others[0], text, active, least, depth + 1)
        every = schema.get("allOf")
        if isinstance(every, list) and every:
            return self.fill(_merged(every, self.root), text, active, least, depth + 1)
        kind = _kind(schema, least)
        if kind == "object":
            return self._object(schema, text, active, least, depth)
        if kind == "array":
            return self._array(schema, text, active, least, depth)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return _string(schema, text)

    def _object(self, schema: Mapping[str, Any], text: str, active: frozenset[str], least: bool, depth: int) -> Any:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            properties = {}
        required = schema.get("required")
        needed = {name for name in required if isinstance(name, str)} if isinstance(required, list) else set()
        fewest = _count(schema.get("minProperties"))
        value: dict[str, Any] = {}
        for name, sub in properties.items():
            if not least or name in needed or len(value) < fewest:
                value[str(name)] = self.fill(sub, text, active, least, depth + 1)
        more = schema.get("additionalProperties")
        if more is not False:
            extra = more if isinstance(more, Mapping) else {}
            number = 0
            while len(value) < fewest:
                number += 1
                name = f"{text or 'key'}{number}"
                if name not in value:
                    value[name] = self.fill(extra, text, active, least, depth + 1)
        return value

    def _array(self, schema: Mapping[str, Any], text: str, active: frozenset[str], least: bool, depth: int) -> Any:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # the tuple form of drafts before 2020-12
            prefix, items = items, schema.get("additionalItems")
        if not isinstance(prefix, list):
            prefix = []
        count = max(len(prefix), _count(schema.get("minItems")))
        unique = schema.get("uniqueItems") is True
        value = []
        for place in range(count):
            sub = prefix[place] if place < len(prefix) else items
            # Distinct items where they must be: each string made of its own word.
            word = f"{text}{place + 1}" if unique and place else text
            value.append(self.fill(sub, word, active, least, depth + 1))
        if unique:
            _spread_numbers(value)
        return value


def _is_null(branch: object) -> bool:
    return isinstance(branch, Mapping) and branch.get("type") == "null"


def _kind(schema: Mapping[str, Any], least: bool) -> str | None:
    """The type to fill: its `type`, or the one its keywords imply.

    Of several types, the first that is not null; null where as little as it allows is wanted.
    """
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if isinstance(k, str)]
        if least and "null" in named:
            return "null"
        kind = next((k for k in named if k != "null"), "null" if "null" in named else None)
    if isinstance(kind, str):
        return kind
    if isinstance(schema.get("properties"), Mapping) or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _plainest(schema: Mapping[str, Any], text: str) -> Any:
    """Its type's plainest value, with nothing inside: what a value nested too deep gets."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and any(_is_null(b) for b in branches):
        return None
    kind = _kind(schema, True)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind in ("object", "array", "boolean", "null"):
        return {"object": {}, "array": [], "boolean": False, "null": None}[kind]
    return _string(schema, text)


def _merged(schemas: list[Any], root: object) -> dict[str, Any]:
    """The schemas of an `allOf` as one: their keywords, their `properties` and `required` joined."""
    merged: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[Any] = []
    for each in schemas:
        ref = each.get("$ref") if isinstance(each, Mapping) else None
        if isinstance(ref, str):
            each = _resolved(ref, root)
        if not isinstance(each, Mapping):
            continue
        merged.update(each)
        if isinstance(each.get("properties"), Mapping):
            properties.update(each["properties"])
        if isinstance(each.get("required"), list):
            required.extend(each["required"])
    if properties:
        merged["properties"] = properties
        merged["required"] = required
    return merged


def _resolved(ref: str, root: object) -> Any:
    """The part of `root` a local `$ref` (`#/$defs/Unit`) points at; None for any other."""
    if not ref.startswith("#"):
        return None
    target = root
    for step in ref[1:].split("/")[1:]:
        step = step.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or step not in target:
            return None
        target = target[step]
    return target


def _count(number: object) -> int:
    """A `minItems` or `minProperties`: how many to make, at most `_MAX_ITEMS`."""
    return min(number, _MAX_ITEMS) if type(number) is int and number > 0 else 0


def _spread_numbers(values: list[Any]) -> None:
    """Make numbers among `values` that repeat an earlier one distinct (strings are, by their words)."""
    seen: set[Any] = set()
    for place, value in enumerate(values):
        if type(value) in (int, float):
            while value in seen:
                value += 1
            values[place] = value
            seen.add(value)


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    """0, or the value nearest to it that the schema's bounds and `multipleOf` allow."""
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    low_out, high_out = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    step = _bound(schema, "multipleOf")
    if step is not None and step <= 0:
        step = None

    def fits(value: float) -> bool:
        return (
            (low is None or value >= low)
            and (high is None or value <= high)
            and (low_out is None or value > low_out)
            and (high_out is None or value < high_out)
            and (step is None or _multiple(value, step))
            and (not integer or value == int(value))
        )

    floor = max((b for b in (low, low_out) if b is not None), default=None)
    ceiling = min((b for b in (high, high_out) if b is not None), default=None)
    candidates: list[float] = [0]
    for edge, direction in ((floor, 1), (ceiling, -1)):
        if edge is None:
            continue
        if step is not None:
            first = (math.ceil(edge / step) if direction > 0 else math.floor(edge / step)) * step
            candidates += [first, first + direction * step]
        elif integer:
            first = math.ceil(edge) if direction > 0 else math.floor(edge)
            candidates += [first, first + direction]
        else:
            candidates += [edge, edge + direction]
    if floor is not None and ceiling is not None:
        candidates.append((floor + ceiling) / 2)  # between two exclusive bounds, or too near for a whole step
    chosen = next((c for c in candidates if fits(c)), candidates[-1] if len(candidates) > 1 else 0)
    return int(chosen) if integer else chosen


def _multiple(value: float, step: float) -> bool:
    quotient = value / step
    return math.isfinite(quotient) and abs(quotient - round(quotient)) < 1e-9


def _bound(schema: Mapping[str, Any], name: str) -> float | None:
    bound = schema.get(name)
    if type(bound) is not int and type(bound) is not float:  # not a bool, which is an int too
        return None
    return float(bound) if math.isfinite(bound) else None


def _string(schema: Mapping[str, Any], text: str) -> str:
    """`text`, or a value of the schema's `format` or one its `pattern` matches, as long as its bounds say."""
    form = schema.get("format")
    if isinstance(form, str) and form in _FORMATS:
        text = _FORMATS[form]
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    sized = text
    if type(shortest) is int and len(sized) < shortest:
        sized += "x" * (min(shortest, 10_000) - len(sized))
    if type(longest) is int and longest >= 0 and len(sized) > longest:
        sized = sized[:longest]
    pattern = schema.get("pattern")
    if not isinstance(pattern, str):
        return sized
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return sized
    for candidate in (sized, text):
        if compiled.search(candidate):
            return candidate
    made = _matching(pattern)
    return sized if made is None or not compiled.search(made) else made


def _matching(pattern: str) -> str | None:
    """A short string `pattern` matches, made from its parsed form; None for one beyond this simple maker."""
    try:
        parsed: Any = _sre_parse.parse(pattern)
        return _make(list(parsed), {})
    except Exception:  # a construct the maker does not know, or a parser of another Python
        return None


def _make(tokens: list[Any], groups: dict[int, str]) -> str:
    made = []
    for op, argument in tokens:
        if op is _sre.LITERAL:
            made.append(chr(argument))
        elif op is _sre.NOT_LITERAL:
            made.append("b" if chr(argument) == "a" else "a")
        elif op is _sre.ANY:
            made.append("a")
        elif op is _sre.IN:
            made.append(_one_of(argument))
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
            fewest, _, inner = argument
            made.append(_make(list(inner), groups) * min(fewest, 1000))
        elif op is _sre.SUBPATTERN:
            group, inner = argument[0], argument[-1]
            text = _make(list(inner), groups)
            if group is not None:
                groups[group] = text
            made.append(text)
        elif op is _sre.BRANCH:
            made.append(_make(list(argument[1][0]), groups))
        elif op is _sre.GROUPREF:
            made.append(groups.get(argument, ""))
        elif op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
            continue  # anchors and lookarounds add nothing; the result is checked against the pattern
        else:
            raise ValueError(op)
    return "".join(made)


# What a character class is tried with: its first member that is one of these.
_TRIED: Final = "aA0_ -.@/:xX1zZ9"


def _one_of(members: list[Any]) -> str:
    """A character of a class (`[a-z]`, a digit, `[^,]`)."""
    negated = bool(members) and members[0][0] is _sre.NEGATE
    if not negated:
        for op, argument in members:
            if op is _sre.LITERAL:
                return chr(argument)
            if op is _sre.RANGE:
                return chr(argument[0])
            if op is _sre.CATEGORY:
                return _IN_CATEGORY[argument]
        raise ValueError(members)
    for char in _TRIED:
        if not any(_member(char, op, argument) for op, argument in members[1:]):
            return char
    raise ValueError(members)


def _member(char: str, op: Any, argument: Any) -> bool:
    if op is _sre.LITERAL:
        return char == chr(argument)
    if op is _sre.RANGE:
        low, high = argument
        return bool(low <= ord(char) <= high)
    if op is _sre.CATEGORY:
        return re.fullmatch(_CATEGORY_CLASS[argument], char) is not None
    raise ValueError(op)


_IN_CATEGORY: Final = {
    _sre.CATEGORY_DIGIT: "0",
    _sre.CATEGORY_NOT_DIGIT: "a",
    _sre.CATEGORY_WORD: "a",
    _sre.CATEGORY_NOT_WORD: " ",
    _sre.CATEGORY_SPACE: " ",
    _sre.CATEGORY_NOT_SPACE: "a",
}
_CATEGORY_CLASS: Final = {
    _sre.CATEGORY_DIGIT: r"\d",
    _sre.CATEGORY_NOT_DIGIT: r"\D",
    _sre.CATEGORY_WORD: r"\w",
    _sre.CATEGORY_NOT_WORD: r"\W",
    _sre.CATEGORY_SPACE: r"\s",
    _sre.CATEGORY_NOT_SPACE: r"\S",
}
