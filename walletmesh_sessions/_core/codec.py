"""The one cattrs converter and the TypeScript wire format; every JSON-keeping store uses it.

A record is what `@walletmesh/router`'s `LocalStorageSessionStore` writes under
``prefix + session_id``: ``{"data":{"id":...,"origin":...,"permissions":{...}},"expiresAt":ms}``
(absent, ``null`` or ``0``: no expiry); ``createdAt`` and ``appData`` inside ``data`` only when
set. Unknown fields are ignored on read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar, TypeVarTuple, Unpack, overload

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from .data import SessionData, SessionRecord, assemble_session
from .errors import CorruptRecordError, InvalidSessionDataError
from .json_values import MAX_DEPTH, MAX_SAFE_INTEGER, NotPlain, freeze_parsed, thaw
from .log import logger, short_id
from .text import is_unicode_text

__all__ = (
    "converter",
    "decode_readable",
    "decode_record",
    "encode_record",
    "inspect_record",
    "record_times",
    "record_with_expiry",
    "same_but_expiry",
    "session_from_json",
    "session_to_json",
)


AnyText = TypeVar("AnyText", str, bytes)
Decoded = TypeVarTuple("Decoded")


@attrs.frozen
class _Record:
    data: SessionData
    expires_at: int | None = None


def _structure_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        msg = f"expected a string, got {value!r}"
        raise TypeError(msg)
    return value


def _structure_ms(value: Any, _type: Any) -> int | None:
    # JSON numbers may arrive as floats; 0 and null both mean "no expiry" on the TypeScript side.
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"expected integer milliseconds, got {value!r}"
        raise TypeError(msg)
    if isinstance(value, float):
        # The TypeScript store writes a fraction when given a fractional lifetime, and
        # compares `now > expiresAt`: for whole-ms `now` that is the same as with the floor.
        # Only 0 means "none" there: a fraction between 0 and 1 is an expiry long past (1).
        return math.floor(value) or (1 if value > 0 else 0)
    return int(value)


def _make_converter() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int | None, _structure_ms)
    conv.register_unstructure_hook(
        SessionData,
        make_dict_unstructure_fn(
            SessionData,
            conv,
            permissions=override(unstruct_hook=lambda p: {k: list(v) for k, v in p.items()}),
            created_at=override(rename="createdAt", omit_if_default=True),
            app_data=override(rename="appData", omit_if_default=True, unstruct_hook=thaw),
        ),
    )
    conv.register_structure_hook(
        SessionData,
        make_dict_structure_fn(
            SessionData,
            conv,
            permissions=override(struct_hook=_structure_permissions),
            created_at=override(rename="createdAt"),
            app_data=override(rename="appData", struct_hook=_structure_app_data),
        ),
    )
    conv.register_unstructure_hook(
        _Record,
        make_dict_unstructure_fn(
            _Record, conv, expires_at=override(rename="expiresAt", omit_if_default=True)
        ),
    )
    conv.register_structure_hook(
        _Record,
        make_dict_structure_fn(_Record, conv, expires_at=override(rename="expiresAt")),
    )
    return conv


def _structure_permissions(value: Any, _type: Any) -> dict[str, list[str]]:
    # Only the JSON shape is checked here (an object of arrays); SessionData checks the text.
    if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
        msg = f"permissions must be an object of arrays, got {value!r}"
        raise TypeError(msg)
    return value


def _structure_app_data(value: Any, _type: Any) -> dict[str, Any]:
    # Only the JSON shape is checked here (an object); SessionData checks and freezes the rest.
    if not isinstance(value, dict):
        msg = f"appData must be an object, got {value!r}"
        raise TypeError(msg)
    result: dict[str, Any] = _as_javascript_reads(value, 1)
    return result


def _as_javascript_reads(value: Any, depth: int) -> Any:
    """`value` with each integer JavaScript cannot hold exactly (``1e20`` written as twenty
    digits) as the double it reads, down to `MAX_DEPTH` (SessionData refuses anything deeper)."""
    if type(value) is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)
    if depth > MAX_DEPTH:
        return value
    if type(value) is dict:
        return {key: _as_javascript_reads(item, depth + 1) for key, item in value.items()}
    if type(value) is list:
        return [_as_javascript_reads(item, depth + 1) for item in value]
    return value


converter: cattrs.Converter = _make_converter()
"""The library's own converter (never cattrs' global one), configured for the wire format."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def session_to_json(data: SessionData) -> dict[str, Any]:
    """`data` as the TypeScript package's JSON object (``createdAt`` only when set)."""
    result: dict[str, Any] = converter.unstructure(data, SessionData)
    return result


def session_from_json(obj: Any) -> SessionData:
    """Read a TypeScript session object; unknown fields are ignored, missing permissions empty.

    Raises `InvalidSessionDataError` (with the reason) if `obj` is not one.
    """
    try:
        result: SessionData = converter.structure(obj, SessionData)
    except InvalidSessionDataError:
        raise
    except Exception as exc:
        msg = f"not a session object: {_describe(exc)}"
        raise InvalidSessionDataError(msg) from exc
    return result


def encode_record(data: SessionData, expires_at: int | None) -> str:
    """The record text stored under ``prefix + session_id``, as the TypeScript store writes it."""
    return _dumps(converter.unstructure(_Record(data, expires_at or None), _Record))


def _refuse_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON: JavaScript's JSON.parse refuses them too.
    msg = f"{name} is not a JSON value"
    raise ValueError(msg)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Readers disagree on a repeated key (JSON.parse keeps the last, SQLite the first).
    obj = dict(pairs)
    if len(obj) != len(pairs):
        msg = "a JSON object repeats a key"
        raise ValueError(msg)
    return obj


_decoder = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
_parse_value = _decoder.raw_decode
_WHITESPACE = " \t\n\r"


def _parse_object(text: str) -> dict[str, Any]:
    stripped = text.strip(_WHITESPACE)
    obj, end = _parse_value(stripped)
    if end != len(stripped):
        msg = "extra data after the JSON value"
        raise ValueError(msg)
    if not isinstance(obj, dict):
        msg = f"expected a JSON object, got {type(obj).__name__}"
        raise TypeError(msg)
    return obj


def decode_record(text: object, session_id: str) -> tuple[SessionData, int | None]:
    """Parse a stored record into its data and expiry (`None`: never expires).

    Raises `CorruptRecordError` naming `session_id` if the value is not a valid record: not
    UTF-8 text, not a JSON object (NaN and Infinity are not JSON), or fields of the wrong shape.
    """
    try:
        text = _as_str(text)
    except Exception as exc:
        raise CorruptRecordError(session_id, _describe(exc)) from exc
    return _decode_plain(text) or _decode_full(text, session_id)


def _decode_full(text: str, session_id: str) -> tuple[SessionData, int | None]:
    """Every record through cattrs and every rule: what decides, and explains a refusal."""
    try:
        record = converter.structure(_parse_object(text), _Record)
    except Exception as exc:
        raise CorruptRecordError(session_id, _describe(exc)) from exc
    return record.data, record.expires_at or None


_parse_plain = json.JSONDecoder(parse_constant=_refuse_constant).raw_decode
_ABSENT: Any = object()
_EMPTY: dict[str, Any] = {}
_FROZEN_EMPTY: Mapping[str, Any] = MappingProxyType({})  # no one holds the dict behind it
_NOT_KEPT: dict[str, tuple[str, ...]] = {}  # the permissions `_plain_parts` only checks


_Parts = tuple[str, str, dict[str, tuple[str, ...]], int | None, Mapping[str, Any], int | None]
"""What `_plain_parts` finds: id, origin, permissions, createdAt, appData, expiresAt."""


def _decode_plain(text: str) -> tuple[SessionData, int | None] | None:
    """The record as `_decode_full` reads it, when it is the plain shape the TypeScript store
    writes; `None` for anything else (the full path then decides), never a different answer."""
    parts = _plain_parts(text, True)
    if parts is None:
        return None
    session_id, origin, permissions, created_at, app_data, expires_at = parts
    return assemble_session(
        session_id, origin, _shared(permissions), created_at, app_data
    ), expires_at


def _plain_parts(text: str, keep: bool) -> _Parts | None:
    """``(id, origin, permissions, createdAt, appData, expiresAt)`` of a plain record, checked
    as `_decode_full` checks it, or `None` (the full path then decides); the one place the
    plain path's rules live. Without `keep`, only checked: permissions and appData not built.

    Repeated keys are ruled out without a hook: with no backslash, every ``"`` in the text
    delimits a string, and a repeated key's first member is missing from the parse. So when
    the text has twice as many quotes as the parse holds strings (keys included), no key
    repeats. With no escape (``\\ud800``) and no lone surrogate in the text, every string
    parsed is valid Unicode text.
    """
    if "\\" in text or not (text.isascii() or is_unicode_text(text)):
        return None
    try:
        record, end = _parse_plain(text)
    except Exception:  # too deep, too long a number, not JSON: the full path explains
        return None
    if end != len(text) or type(record) is not dict:  # white space around it, or more
        return None
    # Each member is looked up once; counting those present rules out unknown ones.
    data = record.get("data")
    expires_at = record.get("expiresAt", _ABSENT)
    if type(data) is not dict:
        return None
    known = 1
    if expires_at is _ABSENT:
        expires_at = None
    elif expires_at is None or type(expires_at) is int:
        known = 2
    else:
        return None  # a fraction is floored, a bool refused: the full path's rules
    if len(record) != known:
        return None
    session_id = data.get("id")
    origin = data.get("origin")
    created_at = data.get("createdAt", _ABSENT)
    permissions = data.get("permissions", _ABSENT)
    app_data = data.get("appData", _ABSENT)
    if type(session_id) is not str or type(origin) is not str:
        return None
    known = 5
    if created_at is _ABSENT:
        created_at = None
        known -= 1
    elif created_at is not None and (
        type(created_at) is not int or not -MAX_SAFE_INTEGER <= created_at <= MAX_SAFE_INTEGER
    ):
        return None
    if permissions is _ABSENT:
        permissions = _EMPTY
        known -= 1
    if app_data is _ABSENT:
        app_data = _EMPTY
        known -= 1
    if len(data) != known or type(permissions) is not dict or type(app_data) is not dict:
        return None
    strings = len(record) + known + 2
    frozen: dict[str, tuple[str, ...]] = {} if keep else _NOT_KEPT
    for chain, methods in permissions.items():
        if type(methods) is not list:
            return None
        for name in methods:
            if type(name) is not str:
                return None
        if keep:
            frozen[chain] = tuple(methods)
        strings += 1 + len(methods)
    frozen_app_data = _FROZEN_EMPTY
    if app_data:
        counted = [strings]
        try:
            frozen_app_data = freeze_parsed(app_data, counted)
        except (NotPlain, RecursionError):
            return None
        strings = counted[0]
    if text.count('"') != 2 * strings:
        return None  # a key repeats
    return session_id, origin, frozen, created_at, frozen_app_data, expires_at or None


def record_times(text: object, session_id: str) -> tuple[int | None, int | None]:
    """A stored record's ``(expires_at, created_at)``, with no `SessionData` built: what a walk
    needs to decide a record it keeps as text. Raises `CorruptRecordError` exactly when
    `decode_record` does, and answers its expiry and the data's ``created_at``."""
    if type(text) is not str:  # the usual case checked inline: a walk calls this per record
        try:
            text = _as_str(text)
        except Exception as exc:
            raise CorruptRecordError(session_id, _describe(exc)) from exc
    parts = _plain_parts(text, False)
    if parts is not None:
        return parts[5], parts[3]
    data, expires_at = _decode_full(text, session_id)
    return expires_at, data.created_at


# Permission sets seen lately, each as one read-only mapping: a store's sessions share a few
# sets, and a million sessions then hold a few mappings, not a million for the GC to walk.
_SHARED: dict[tuple[tuple[str, tuple[str, ...]], ...], Mapping[str, tuple[str, ...]]] = {}
_MAX_SHARED = 1024


def _shared(permissions: dict[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    """`permissions` read-only: the very mapping an earlier record with the same grants, in
    the same order, got (it is immutable, so sharing it is invisible)."""
    grants = tuple(permissions.items())
    frozen = _SHARED.get(grants)
    if frozen is None:
        if len(_SHARED) >= _MAX_SHARED:
            _SHARED.clear()  # a hard bound; unlike sets are rare, so refilling is cheap
        frozen = _SHARED[grants] = MappingProxyType(permissions)
    return frozen


def record_with_expiry(text: str, expires_at: int) -> str:
    """`text`, a record `decode_record` accepted, with only the value of its top-level
    ``expiresAt`` replaced (added if absent): every other byte stays exactly as stored."""
    value = str(int(expires_at))
    span = _expires_at_span(text)
    if span is not None:
        start, end = span
        return text[:start] + value + text[end:]
    close = text.rindex("}")
    body = text[:close].rstrip(_WHITESPACE)
    separator = "" if body.endswith("{") else ","
    return f'{body}{separator}"expiresAt":{value}{text[len(body) :]}'


def same_but_expiry(text: object, other: object) -> bool:
    """True if two stored record texts are one record whose ``expiresAt`` alone may differ:
    what a sliding read leaves, which changes nothing else. Anything unreadable: False."""
    try:
        first, second = (_parse_object(_as_str(t)) for t in (text, other))
    except (TypeError, ValueError, UnicodeDecodeError):
        return False
    first.pop("expiresAt", None)
    second.pop("expiresAt", None)
    return first == second


def _as_str(text: object) -> str:
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8")
    if not isinstance(text, str):
        msg = f"expected text, got {type(text).__name__}"
        raise TypeError(msg)
    return text


def _expires_at_span(text: str) -> tuple[int, int] | None:
    """Where the value of the top-level ``expiresAt`` member is (keys never repeat in a record
    `decode_record` accepts)."""
    pos = len(text) - len(text.lstrip(_WHITESPACE)) + 1  # just after the opening brace
    found: tuple[int, int] | None = None
    while True:
        pos = _skip_space(text, pos)
        if text[pos] == "}":
            return found
        key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip_space(text, pos) + 1  # the colon
        start = _skip_space(text, pos)
        _value, end = _parse_value(text, start)
        if key == "expiresAt":
            found = (start, end)
        pos = _skip_space(text, end)
        if text[pos] == ",":
            pos += 1


def _skip_space(text: str, pos: int) -> int:
    while text[pos] in _WHITESPACE:
        pos += 1
    return pos


Decode = Callable[[Any, str], tuple[SessionData, int | None]]
"""`decode_record`, or a store's cached equivalent."""


@overload
def decode_readable(
    rows: Iterable[tuple[str, AnyText]], prefix: str
) -> Iterator[tuple[str, AnyText, SessionData, int | None]]: ...
@overload
def decode_readable(
    rows: Iterable[tuple[str, AnyText]],
    prefix: str,
    decode: Callable[[Any, str], tuple[Unpack[Decoded]]],
) -> Iterator[tuple[str, AnyText, Unpack[Decoded]]]: ...
def decode_readable(
    rows: Iterable[tuple[str, Any]],
    prefix: str,
    decode: Callable[[Any, str], tuple[Any, ...]] = decode_record,
) -> Iterator[tuple[Any, ...]]:
    """Decode stored ``(key, text)`` rows into ``(session_id, text, data, expires_at)``, lazily
    (with `record_times` as `decode`: ``(session_id, text, expires_at, created_at)``).

    A row that is not a valid record is logged and left out: one must not hide the others.
    """
    cut = len(prefix)
    for key, text in rows:
        session_id = key[cut:]
        if not session_id:
            logger.warning("skipping a record stored under the bare prefix: it has no session id")
            continue
        try:
            decoded = decode(text, session_id)
        except CorruptRecordError as exc:
            logger.warning(
                "skipping corrupt session record %s: %s", short_id(session_id), exc.reason
            )
            continue
        yield (session_id, text, *decoded)


def inspect_record(session_id: str, text: object) -> SessionRecord:
    """A stored record as an operator sees it: readable or not, expired or not."""
    try:
        data, expires_at = decode_record(text, session_id)
    except CorruptRecordError as exc:
        return SessionRecord(session_id, None, None, exc.reason)
    return SessionRecord(session_id, data, expires_at)


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return f"{type(exc).__name__}: {exc}"
