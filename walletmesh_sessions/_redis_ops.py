"""What each `RedisSessionStore` method does, as generators of Redis steps (no I/O here).

Every operation is written once, as a generator that yields the commands it needs and receives
their replies; `_redis_io` drives it either on `redis.asyncio` or on the synchronous client in a
worker thread. Deciding validity happens here, in Python, with the store's clock; Redis only
ever sees compare-and-set or compare-and-delete of the exact bytes that were read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

import attrs

from ._codec import (
    decode_readable,
    decode_record,
    encode_record,
    inspect_record,
    record_with_expiry,
)
from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._errors import CorruptRecordError
from ._expiry import Clock, after_read, expiry_after_write, is_expired, now_ms
from ._log import logger, short_id

__all__ = (
    "CHECKPOINT",
    "COMPARE_AND_DELETE",
    "COMPARE_AND_REFRESH",
    "WRONG_TYPE",
    "Batch",
    "Command",
    "Keyspace",
    "Op",
    "RunScript",
    "Script",
    "Step",
    "clean_expired",
    "clear",
    "delete",
    "get_all",
    "glob_escape",
    "inspect",
    "read",
    "write",
)

T = TypeVar("T")

# SCAN COUNT hint, and so the size of each MGET and of each pipeline of scripts.
SCAN_BATCH = 500


class Script(NamedTuple):
    """A Lua script, run by EVALSHA and loaded again when Redis answers NOSCRIPT."""

    source: str
    sha: str


def _script(source: str) -> Script:
    return Script(source, hashlib.sha1(source.encode()).hexdigest())


# Both scripts compare the exact stored bytes and touch one key, so they are atomic and
# cluster-safe; pcall makes a key of another type simply "not equal" instead of an error.
COMPARE_AND_REFRESH = _script(
    """\
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
)
"""KEYS[1] holds exactly ARGV[1]? then write ARGV[2] with a TTL of ARGV[3] ms. 1 if written."""

COMPARE_AND_DELETE = _script(
    """\
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
"""KEYS[1] holds exactly ARGV[1]? then delete it. 1 if deleted."""

Key = str | bytes


class Command(NamedTuple):
    """One Redis command, sent as is."""

    args: tuple[Any, ...]


class RunScript(NamedTuple):
    """A script run on one key."""

    script: Script
    key: Key
    args: tuple[Any, ...]


class Batch(NamedTuple):
    """Commands and scripts sent in one pipeline (not a transaction): one round trip."""

    steps: tuple[Command | RunScript, ...]


class _Checkpoint:
    def __repr__(self) -> str:
        return "CHECKPOINT"


class _WrongType:
    def __repr__(self) -> str:
        return "WRONG_TYPE"


CHECKPOINT = _Checkpoint()
"""Yielded between batches of a long scan: a place where a driver may return to its loop."""

WRONG_TYPE = _WrongType()
"""What a driver sends back for a command that met a key holding a non-string value."""

Step = Command | RunScript | Batch | _Checkpoint
Op = Generator[Step, Any, T]


def glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches only itself: every special character escaped."""
    return "".join("\\" + c if c in "\\*?[]^-" else c for c in text)


@attrs.frozen
class Keyspace:
    """Where one store's sessions live and how long Redis keeps them."""

    prefix: str
    config: SessionStoreConfig
    clock: Clock
    prefix_bytes: bytes = attrs.field(init=False)
    pattern: bytes = attrs.field(init=False)
    ttl_ms: int | None = attrs.field(init=False)
    refreshes: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        lifetime = self.config.lifetime_ms
        # Redis keeps a key a little longer than the library's lifetime, so the clock alone
        # decides validity while abandoned sessions still vanish without any cleaning.
        ttl = None if lifetime is None else lifetime + max(1000, lifetime // 10)
        object.__setattr__(self, "prefix_bytes", self.prefix.encode())
        object.__setattr__(self, "pattern", (glob_escape(self.prefix) + "*").encode())
        object.__setattr__(self, "ttl_ms", ttl)
        object.__setattr__(
            self, "refreshes", self.config.refresh_on_access and lifetime is not None
        )

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        return self.prefix + session_id


def _as_bytes(value: Key) -> bytes:
    # A caller's client may decode replies to str; our own clients never do.
    return value if isinstance(value, bytes) else value.encode()


def _text(raw: Key, session_id: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(session_id, f"not UTF-8 text: {exc}") from exc


def _decode(raw: Key, session_id: str) -> tuple[str, SessionData, int | None]:
    text = _text(raw, session_id)
    data, expires_at = decode_record(text, session_id)
    return text, data, expires_at


def _refresh(
    space: Keyspace, key: Key, raw: Key, text: str, session_id: str, now: int
) -> RunScript:
    expires_at = after_read(space.config, now, None)
    assert isinstance(expires_at, int)
    new_text = record_with_expiry(text, expires_at)
    return RunScript(COMPARE_AND_REFRESH, key, (raw, new_text, space.ttl_ms))


def write(space: Keyspace, session_id: str, data: SessionData) -> Op[None]:
    """SET the record; with a lifetime it gets a PX TTL, without one any old TTL goes."""
    text = encode_record(data, expiry_after_write(space.config, now_ms(space.clock)))
    if space.ttl_ms is None:
        yield Command(("SET", space.key(session_id), text))
    else:
        yield Command(("SET", space.key(session_id), text, "PX", space.ttl_ms))


def read(space: Keyspace, session_id: str) -> Op[SessionData | None]:
    """GET, then decide with the clock: return, remove if expired, or slide the expiry.

    One round trip, or two when the session must be removed or refreshed.
    """
    key = space.key(session_id)
    raw = yield Command(("GET", key))
    if raw is None:
        return None
    if raw is WRONG_TYPE:
        raise CorruptRecordError(session_id, "the Redis key does not hold a string")
    text, data, expires_at = _decode(raw, session_id)
    if expires_at is None and not space.refreshes:
        return data
    now = now_ms(space.clock)
    if is_expired(expires_at, now):
        yield RunScript(COMPARE_AND_DELETE, key, (raw,))
        return None
    if space.refreshes:
        # If the script finds other bytes, a concurrent set, delete or refresh won: the data
        # read is still the right answer for this call, which happened before that write.
        yield _refresh(space, key, raw, text, session_id, now)
    return data


def delete(space: Keyspace, session_id: str) -> Op[None]:
    """DEL the session's key."""
    yield Command(("DEL", space.key(session_id)))


def _warn_corrupt(session_id: str, reason: str) -> None:
    # The same words as `decode_readable`, for the rows it never gets to see.
    logger.warning("skipping corrupt session record %s: %s", short_id(session_id), reason)


def _readable_key(space: Keyspace, key: bytes) -> str | None:
    """The key as str if it is the prefix and a (UTF-8, non-empty) session id, else `None`."""
    try:
        text_key = key.decode()
    except UnicodeDecodeError:
        return None
    return text_key if len(text_key) > len(space.prefix) else None


def _readable_row(space: Keyspace, key: bytes, raw: Key) -> tuple[str, str] | None:
    """``(key, text)`` as str for `decode_readable`, or `None` (logged) if not UTF-8 text."""
    text_key = _readable_key(space, key)
    if text_key is None:
        rest = key[len(space.prefix_bytes) :].decode(errors="replace")
        _warn_corrupt(rest, "the key is not the prefix and a UTF-8 session id")
        return None
    session_id = text_key[len(space.prefix) :]
    try:
        return text_key, _text(raw, session_id)
    except CorruptRecordError as exc:
        _warn_corrupt(session_id, exc.reason)
        return None


def _sweep(space: Keyspace, collect: bool) -> Op[tuple[dict[str, SessionData], int]]:
    """The scan behind `get_all` (collect=True) and `clean_expired` (collect=False)."""
    found: dict[str, SessionData] = {}
    removed = 0
    cursor = 0
    while True:
        cursor, keys = yield Command(("SCAN", cursor, "MATCH", space.pattern, "COUNT", SCAN_BATCH))
        # SCAN's glob is escaped already; this check guards the one rule that matters.
        mine = [k for k in map(_as_bytes, keys) if k.startswith(space.prefix_bytes)]
        if mine:
            removed += yield from _sweep_batch(space, mine, found if collect else None)
        if cursor == 0:
            return found, removed
        yield CHECKPOINT


def _sweep_batch(
    space: Keyspace, keys: list[bytes], found: dict[str, SessionData] | None
) -> Op[int]:
    """One batch of a sweep: MGET, then one pipeline of scripts; returns how many it removed.

    Expired sessions are compare-and-deleted; live ones go into `found` (when given) and are
    compare-and-refreshed when the store refreshes on access.
    """
    values = yield Command(("MGET", *keys))
    rows: list[tuple[str, str]] = []
    vanished: list[bytes] = []
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            vanished.append(key)
        elif (row := _readable_row(space, key, raw)) is not None:
            rows.append(row)
    if vanished:
        # MGET answers nil both for a key deleted meanwhile and for a non-string one.
        kinds = yield Batch(tuple(Command(("TYPE", k)) for k in vanished))
        for key, kind in zip(vanished, kinds, strict=True):
            if _as_bytes(kind) not in (b"none", b"string"):
                rest = key[len(space.prefix_bytes) :].decode(errors="replace")
                _warn_corrupt(rest, f"the Redis key holds a {_as_bytes(kind).decode()}")
    now = now_ms(space.clock)
    removals: list[RunScript] = []
    refreshes: list[RunScript] = []
    # Text decoded strictly from UTF-8 encodes back to the very bytes read, so the scripts
    # compare against exactly what Redis holds.
    for session_id, text, data, expires_at in decode_readable(rows, space.prefix):
        key_text = space.key(session_id)
        if is_expired(expires_at, now):
            removals.append(RunScript(COMPARE_AND_DELETE, key_text, (text,)))
        elif found is not None:
            found[session_id] = data
            if space.refreshes:
                refreshes.append(_refresh(space, key_text, text, text, session_id, now))
    if not removals and not refreshes:
        return 0
    replies = yield Batch((*removals, *refreshes))
    return sum(int(reply) for reply in replies[: len(removals)])


def get_all(space: Keyspace) -> Op[dict[str, SessionData]]:
    """Every live session under the prefix; expired ones met are removed, corrupt ones kept."""
    found, _ = yield from _sweep(space, collect=True)
    return found


def clean_expired(space: Keyspace) -> Op[int]:
    """Remove expired sessions by compare-and-delete; the number this call removed."""
    _, removed = yield from _sweep(space, collect=False)
    return removed


def clear(space: Keyspace) -> Op[None]:
    """DEL every key under the prefix, batch by batch (corrupt records included)."""
    cursor = 0
    while True:
        cursor, keys = yield Command(("SCAN", cursor, "MATCH", space.pattern, "COUNT", SCAN_BATCH))
        mine = [k for k in map(_as_bytes, keys) if k.startswith(space.prefix_bytes)]
        if mine:
            yield Command(("DEL", *mine))
        if cursor == 0:
            return
        yield CHECKPOINT


def _inspect_one(session_id: str, raw: Any, kind: Key | None = None) -> SessionRecord:
    if raw is WRONG_TYPE or kind is not None:
        shown = "another type" if kind is None else _as_bytes(kind).decode()
        return SessionRecord(session_id, None, None, f"the Redis key holds {shown}, not a string")
    try:
        return inspect_record(session_id, _text(raw, session_id))
    except CorruptRecordError as exc:
        return SessionRecord(session_id, None, None, exc.reason)


def inspect(space: Keyspace, session_id: str | None) -> Op[list[SessionRecord]]:
    """Every record under the prefix (or the one named) as it is: nothing refreshed or removed."""
    if session_id is not None:
        raw = yield Command(("GET", space.key(session_id)))
        return [] if raw is None else [_inspect_one(session_id, raw)]
    records: list[SessionRecord] = []
    cursor = 0
    cut = len(space.prefix_bytes)
    while True:
        cursor, keys = yield Command(("SCAN", cursor, "MATCH", space.pattern, "COUNT", SCAN_BATCH))
        mine = [k for k in map(_as_bytes, keys) if k.startswith(space.prefix_bytes)]
        if mine:
            values = yield Command(("MGET", *mine))
            vanished = [k for k, v in zip(mine, values, strict=True) if v is None]
            kinds: list[Any] = []
            if vanished:
                # MGET answers nil both for a key deleted meanwhile and for a non-string one.
                kinds = yield Batch(tuple(Command(("TYPE", k)) for k in vanished))
            others = dict(zip(vanished, kinds, strict=True))
            for key, raw in zip(mine, values, strict=True):
                sid = key[cut:].decode(errors="replace")
                if raw is None and _as_bytes(others[key]) in (b"none", b"string"):
                    continue
                if _readable_key(space, key) is None:
                    records.append(SessionRecord(sid, None, None, "the key holds no session id"))
                else:
                    records.append(_inspect_one(sid, raw, others.get(key)))
        if cursor == 0:
            return records
        yield CHECKPOINT
