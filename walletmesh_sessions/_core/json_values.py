"""JSON values for `SessionData.app_data`: checked, copied and frozen, and thawed back."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

from .errors import InvalidSessionDataError
from .text import is_unicode_text

__all__ = (
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "JSONValue",
    "NotPlain",
    "freeze_object",
    "freeze_parsed",
    "json_eq_key",
    "thaw",
)

JSONValue: TypeAlias = (
    bool | int | float | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)
"""A JSON value; `SessionData.app_data` holds arrays as tuples, objects as read-only mappings."""

# The largest integer JavaScript reads back exactly: anything stored must survive JSON.parse.
MAX_SAFE_INTEGER = 2**53 - 1
# Deep enough for any application state, far below where JSON readers fail or disagree
# (SQLite's JSON functions stop at 1000 levels, Python's parser at its recursion limit).
MAX_DEPTH = 64

_BYTES = (bytes, bytearray, memoryview)
_KINDS = "None, bool, int, float, str, a list or tuple of them, or a mapping with str keys"


def freeze_object(value: object, path: str) -> Mapping[str, JSONValue]:
    """A read-only copy of the JSON object `value`, nested objects and arrays frozen too.

    Raises `InvalidSessionDataError` naming where (``app_data['a'][2]``, after `path`) the
    first value that is not JSON stands (NaN, an unsafe int, nesting past `MAX_DEPTH`, ...).
    """
    if not isinstance(value, Mapping):
        msg = f"{path} must be a mapping of str keys to JSON values, got {value!r}"
        raise InvalidSessionDataError(msg)
    try:
        return _freeze_object(value, 1)
    except _NotJSON as exc:
        where = "".join(f"[{step!r}]" for step in reversed(exc.where))
        msg = f"{path}{where} {exc.problem}"
        raise InvalidSessionDataError(msg) from None


class _NotJSON(Exception):
    """A value that is not JSON; the path to it is collected on the way out (built only then)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where: list[object] = []  # keys and indexes, innermost first


def _freeze_object(value: Mapping[Any, Any], depth: int) -> Mapping[str, JSONValue]:
    frozen: dict[str, JSONValue] = {}
    for key, item in value.items():
        if not is_unicode_text(key):
            raise _NotJSON(f"must have str keys of valid Unicode text, got the key {key!r}")
        try:
            # str.__str__ gives a plain str for a subclass too (an enum member), as JSON does.
            frozen[str.__str__(key)] = _freeze(item, depth)
        except _NotJSON as exc:
            exc.where.append(key)
            raise
    return MappingProxyType(frozen)


def _freeze_array(value: Sequence[Any], depth: int) -> tuple[JSONValue, ...]:
    items: list[JSONValue] = []
    for index, item in enumerate(value):
        try:
            items.append(_freeze(item, depth))
        except _NotJSON as exc:
            exc.where.append(index)
            raise
    return tuple(items)


def _freeze(value: object, depth: int) -> JSONValue:
    """`value` checked, as plain builtins (what ``json.dumps`` writes for a subclass);
    `depth` counts the objects and arrays around it, app_data itself included."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not is_unicode_text(value):
            raise _NotJSON(f"must be a str of valid Unicode text, got {value!r}")
        return str.__str__(value)
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _NotJSON(
                "must be an int within +/-(2**53 - 1), which JavaScript reads exactly "
                f"(store a larger one as a str), got {value!r}"
            )
        return int.__int__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"must be a finite float (NaN and infinity are not JSON), got {value!r}")
        return float.__float__(value)
    if isinstance(value, Mapping):
        return _freeze_object(value, _inner(depth))
    if isinstance(value, Sequence) and not isinstance(value, _BYTES):
        return _freeze_array(value, _inner(depth))
    raise _NotJSON(f"must be a JSON value ({_KINDS}), got {value!r}")


class NotPlain(Exception):
    """A parsed value `freeze_parsed` leaves to `freeze_object`, which decides and explains."""


def freeze_parsed(value: dict[str, Any], strings: list[int]) -> Mapping[str, JSONValue]:
    """`value`, a JSON object fresh from ``json.loads`` of text with no lone surrogate, frozen
    as `freeze_object` freezes it, adding to ``strings[0]`` the strings it holds (keys too).

    Only what that parse can give is handled, so nothing is checked twice: `NotPlain` for
    what `freeze_object` would refuse or a reader change (an int JavaScript cannot hold, a
    float not finite, nesting past `MAX_DEPTH`).
    """
    strings[0] += len(value)
    return MappingProxyType({key: _parsed(item, 1, strings) for key, item in value.items()})


def _parsed(value: Any, depth: int, strings: list[int]) -> JSONValue:
    kind = type(value)
    if kind is str:
        strings[0] += 1
        return value  # type: ignore[no-any-return]
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value  # type: ignore[no-any-return]
        raise NotPlain
    if kind is float:
        if math.isfinite(value):
            return value  # type: ignore[no-any-return]
        raise NotPlain
    if value is None or kind is bool:
        return value  # type: ignore[no-any-return]
    if depth >= MAX_DEPTH:
        raise NotPlain
    if kind is dict:
        strings[0] += len(value)
        return MappingProxyType({k: _parsed(v, depth + 1, strings) for k, v in value.items()})
    if kind is list:
        return tuple([_parsed(item, depth + 1, strings) for item in value])
    raise NotPlain


def _inner(depth: int) -> int:
    """The depth inside an object or array at `depth`, if it may nest that deep."""
    if depth >= MAX_DEPTH:
        raise _NotJSON(f"nests objects and arrays more than {MAX_DEPTH} levels deep")
    return depth + 1


def thaw(value: JSONValue, array: Callable[[list[Any]], Any] = list) -> Any:
    """A frozen JSON value as plain dicts, and arrays made by `array` (lists by default)."""
    if isinstance(value, Mapping):
        return {key: thaw(item, array) for key, item in value.items()}
    if isinstance(value, tuple):
        return array([thaw(item, array) for item in value])
    return value


def json_eq_key(value: JSONValue) -> object:
    """What equality of a frozen value compares: its JSON, so ``True`` and ``1`` differ (as
    ``true`` and ``1`` do) while ``1`` and ``1.0`` do not (JavaScript has one number type)."""
    if isinstance(value, bool):
        return (bool, value)  # no JSON value's key is ever the type itself
    if isinstance(value, Mapping):
        return {key: json_eq_key(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(json_eq_key(item) for item in value)
    return value
