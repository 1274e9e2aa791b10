"""What each `RedisSessionStore` method does, as generators of meaning-level steps (no I/O).

Every operation is written once, as a generator that yields steps such as `Read`, `Scan` or
`CompareAndSet` and receives their replies. A step says what it means, never which command
carries it out: `_redis_io` translates steps into commands for one Redis server (EVALSHA,
pipelines, MGET), and a cluster driver may route each step by hash slot, split a `ReadMany`
or a `Delete` by slot, and scan each primary, without parsing anything. Every decision about
expiry comes from `_expiry` (`after_read`, `sweep`); this module only carries it out.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from typing import Any, Final, NamedTuple, TypeVar

import attrs

from .._core.codec import Decode, decode_readable, decode_record, encode_record, inspect_record
from .._core.codec import record_with_expiry as _with_expiry
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.errors import CorruptRecordError, SessionIdTakenError
from .._core.expiry import (
    EXPIRED,
    Clock,
    after_read,
    expiry_after_update,
    expiry_after_write,
    now_ms,
    slides_on_read,
    stamped,
    sweep,
)
from .._core.lifecycle import Change, rotated, updated
from .._core.log import logger, short_id
from .._core.session_map import SessionMap

__all__ = (
    "CHECKPOINT",
    "CREATE_ATTEMPTS",
    "MORE",
    "WRONG_TYPE",
    "Batch",
    "Checkpoint",
    "CompareAndDelete",
    "CompareAndSet",
    "Delete",
    "KeyStep",
    "More",
    "Move",
    "NonString",
    "Op",
    "Read",
    "ReadAndSlide",
    "ReadMany",
    "Scan",
    "ScanPage",
    "Slide",
    "Step",
    "StoreSpec",
    "Verdict",
    "Write",
    "WrongType",
    "clean_expired",
    "clear",
    "create",
    "delete",
    "get_all",
    "glob_escape",
    "inspect",
    "read",
    "rotate",
    "until_checkpoint",
    "update",
    "write",
)

T = TypeVar("T")

# How many keys a scan page should hold: the size of each ReadMany and of each Batch.
SCAN_BATCH = 500

Key = str | bytes


class Checkpoint(enum.Enum):
    """The type of `CHECKPOINT`."""

    CHECKPOINT = "checkpoint"

    def __repr__(self) -> str:
        return "CHECKPOINT"


class More(enum.Enum):
    """The type of `MORE`."""

    MORE = "more"

    def __repr__(self) -> str:
        return "MORE"


class WrongType(enum.Enum):
    """The type of `WRONG_TYPE`."""

    WRONG_TYPE = "wrong type"

    def __repr__(self) -> str:
        return "WRONG_TYPE"


CHECKPOINT: Final = Checkpoint.CHECKPOINT
"""Yielded between pages of a long scan: a place where a driver may return to its loop."""

MORE: Final = More.MORE
"""What `until_checkpoint` returns when the operation stopped at a checkpoint, not its end."""

WRONG_TYPE: Final = WrongType.WRONG_TYPE
"""The reply to `Read` of a key that holds a value that is not a string (a hash, a list...)."""


class NonString(NamedTuple):
    """In a `ReadMany` reply: the key holds a value of Redis type `kind`, not a string."""

    kind: str


class Scan(NamedTuple):
    """Scan for keys matching `pattern` (a glob that names exactly one prefix).

    `cursor` is `None` to start, else the one a previous `ScanPage` gave: opaque to the
    operation, so a cluster driver may keep a node in it. The reply is a `ScanPage`.
    """

    pattern: bytes
    cursor: object = None


class ScanPage(NamedTuple):
    """One page of a scan: some keys (maybe none, maybe repeated), and where to go on."""

    keys: list[Key]
    cursor: object  # None: the scan is complete


class Read(NamedTuple):
    """Read one key: its value, `None` if missing, or `WRONG_TYPE`."""

    key: Key


class ReadAndSlide(NamedTuple):
    """Read one key and, atomically with the read, do what `after_read` decides for a store
    that slides on read (a lifetime of `lifetime_ms`, refresh on access, an absolute timeout
    of `max_lifetime_ms` or none) at `now`: a live session whose expiry moves gets the same
    record with only its top-level ``expiresAt`` changed, and a TTL of `ttl_ms`.

    Nothing is removed: an expired session is reported, for the operation to remove once it
    has checked that the record is readable. A record whose expiry fields the driver cannot
    read safely is reported `UNDECIDED`, unchanged. The reply is `None` if the key is missing,
    `WRONG_TYPE`, or a `Slide`.
    """

    key: Key
    now: int
    lifetime_ms: int
    max_lifetime_ms: int | None
    ttl_ms: int
    look_first: bool = False
    """Ask first, writing nothing, whether the expiry would move, and slide only if so: a
    store whose writes wait for replicas then holds up no read that writes nothing."""


class Verdict(enum.Enum):
    """What a `ReadAndSlide` decided."""

    KEPT = "kept"  # live; its expiry stays
    SLID = "slid"  # live; its expiry moved (written)
    EXPIRED = "expired"  # expired; left in place
    UNDECIDED = "undecided"  # not judged (a shape the driver does not rewrite); left in place


class Slide(NamedTuple):
    """The reply to `ReadAndSlide`: the bytes read and the verdict; for `SLID`, the bytes
    written and the key's TTL before (`None`: it had none), so the write can be undone."""

    verdict: Verdict
    raw: Key
    new: Key | None = None
    old_ttl_ms: int | None = None


class ReadMany(NamedTuple):
    """Read these keys: values aligned with `keys`, each also `None` or a `NonString`."""

    keys: tuple[Key, ...]


class Write(NamedTuple):
    """Store `text` under `key`, expiring after `ttl_ms` (or never: any old TTL goes)."""

    key: Key
    text: str
    ttl_ms: int | None


class CompareAndSet(NamedTuple):
    """If `key` holds exactly `old` (`None`: if it is absent), store `new` with a TTL of
    `ttl_ms`. Reply: written?"""

    key: Key
    old: Key | None
    new: Key
    ttl_ms: int | None


class CompareAndDelete(NamedTuple):
    """If `key` holds exactly `old`, delete it. Reply: deleted?"""

    key: Key
    old: Key


class Delete(NamedTuple):
    """Delete these keys, whatever they hold. Reply: how many existed."""

    keys: tuple[Key, ...]


class Move(NamedTuple):
    """Atomically: if `old_key` holds exactly `old` and `new_key` holds exactly `new_old`
    (`None`: is absent), delete `old_key` and store `text` under `new_key` with a TTL of
    `ttl_ms`; else change nothing. Reply: moved?

    The one step on two keys. On Redis Cluster both keys must hash to one slot for it to be
    one script; a cluster driver whose keys do not may instead run it as two one-key steps,
    in the order that is never unsafe: store under `new_key` only if it still holds
    `new_old`, then compare-and-delete `old_key` (undoing the first if that fails). Between
    the two, both ids may answer for a moment; never neither.
    """

    old_key: Key
    old: Key
    new_key: Key
    new_old: Key | None
    text: str
    ttl_ms: int | None


KeyStep = Read | Write | CompareAndSet | CompareAndDelete
"""A step on one key: what a `Batch` holds."""


class Batch(NamedTuple):
    """Independent one-key steps sent together (no transaction); replies aligned with steps."""

    steps: tuple[KeyStep, ...]


Step = Scan | ReadMany | Delete | Batch | Move | ReadAndSlide | KeyStep | Checkpoint
Op = Generator[Step, Any, T]


def glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches only itself: every special character escaped."""
    return "".join("\\" + c if c in "\\*?[]^-" else c for c in text)


@attrs.frozen
class StoreSpec:
    """What makes one store: its prefix, its expiry rules, its clock and how it decodes.

    A spec, not a connection: it names where the sessions live and by which rules, and holds
    nothing about how to reach Redis, so the same spec runs on any driver. `decode` is
    `decode_record` or the store's own cache of it (same answers, same errors).
    """

    prefix: str
    config: SessionStoreConfig
    clock: Clock
    decode: Decode = decode_record
    waits_for_replicas: bool = False
    prefix_bytes: bytes = attrs.field(init=False)
    pattern: bytes = attrs.field(init=False)
    ttl_ms: int | None = attrs.field(init=False)
    slides: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        lifetime = self.config.lifetime_ms
        # Redis keeps a key a little longer than the library's lifetime, so the clock alone
        # decides validity while abandoned sessions still vanish without any cleaning.
        ttl = None if lifetime is None else lifetime + max(1000, lifetime // 10)
        object.__setattr__(self, "prefix_bytes", self.prefix.encode())
        object.__setattr__(self, "pattern", (glob_escape(self.prefix) + "*").encode())
        object.__setattr__(self, "ttl_ms", ttl)
        # A read slides in one `ReadAndSlide` only while the driver's arithmetic (on doubles,
        # in Lua) is exact: every sum of times stays far below 2**53.
        bounded = all(v is None or v < _EXACT for v in (lifetime, self.config.max_lifetime_ms))
        object.__setattr__(self, "slides", slides_on_read(self.config) and bounded)

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        return self.prefix + session_id

    def ttl(self, now: int, expires_at: int | None) -> int | None:
        """The Redis TTL (ms) of a record written at `now` that expires at `expires_at`.

        None for a record without an expiry. Otherwise a span relative to `now`, never an
        absolute time, a little longer than the expiry written: span + max(1 s, 10 %), where
        the span is the lifetime, or the time left when that is longer or there is no lifetime
        (an expiry set by the absolute timeout alone, or one carried over by `rotate`).
        """
        if expires_at is None:
            return None
        lifetime = self.config.lifetime_ms
        left = max(0, expires_at - now)
        span = left if lifetime is None else max(left, lifetime)
        # A far expiry a record may carry (written elsewhere) would overflow Redis's TTL:
        # 10**15 ms (31,700 years) is as good as forever, and Redis takes it.
        return min(span + max(1000, span // 10), _EXACT)


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


def write(spec: StoreSpec, session_id: str, data: SessionData) -> Op[None]:
    """Store the record; with an expiry it gets a TTL, without one any old TTL goes.

    With an absolute timeout, data without a `created_at` is stamped with now, and the
    expiry written is capped at ``created_at + max_lifetime``.
    """
    now = now_ms(spec.clock)
    data = stamped(spec.config, data, now)
    expires_at = expiry_after_write(spec.config, now, data.created_at)
    yield Write(spec.key(session_id), encode_record(data, expires_at), spec.ttl(now, expires_at))


# Times (ms) below this add up exactly in a double, as a driver's script computes them.
_EXACT = 10**15


def read(spec: StoreSpec, session_id: str) -> Op[SessionData | None]:
    """Read, then do what `after_read` decides: return, remove if expired, or slide.

    On a store that slides on read, the read and the slide are one atomic `ReadAndSlide`
    (one round trip); a record it leaves undecided is decided here, as on any other store.
    Removal, and a slide made here, compare the exact bytes read, so a concurrent write or
    delete wins.
    """
    key = spec.key(session_id)
    config = spec.config
    lifetime, ttl = config.lifetime_ms, spec.ttl_ms
    if spec.slides and lifetime is not None and ttl is not None:
        now = now_ms(spec.clock)
        if -_EXACT < now < _EXACT:
            found = yield ReadAndSlide(
                key, now, lifetime, config.max_lifetime_ms, ttl, spec.waits_for_replicas
            )
            return (yield from _slid(spec, session_id, key, found, now))
    raw = yield Read(key)
    return (yield from _decide(spec, session_id, key, raw, now_ms(spec.clock)))


def _slid(
    spec: StoreSpec, session_id: str, key: Key, found: Slide | WrongType | None, now: int
) -> Op[SessionData | None]:
    """Carry a `ReadAndSlide` through: the answer, a removal, or the decision left to us."""
    if found is None or found is WRONG_TYPE:
        return (yield from _decide(spec, session_id, key, found, now))
    if found.verdict is Verdict.UNDECIDED:
        return (yield from _decide(spec, session_id, key, found.raw, now))
    raw = found.raw
    try:
        data, _stored = spec.decode(_text(raw, session_id), session_id)
    except CorruptRecordError:
        if found.new is not None:
            # The script reads only the expiry fields: a record that is unreadable elsewhere
            # gets its exact bytes and TTL back, so nothing unreadable changes or expires.
            yield CompareAndSet(key, found.new, raw, found.old_ttl_ms)
        raise
    if found.verdict is Verdict.EXPIRED:
        yield CompareAndDelete(key, raw)
        return None
    return data


def _decide(
    spec: StoreSpec, session_id: str, key: Key, raw: Key | WrongType | None, now: int
) -> Op[SessionData | None]:
    """`read`'s decision on the value `raw` read at `now`, carried out by compare-and-set."""
    if raw is None:
        return None
    if raw is WRONG_TYPE:
        raise CorruptRecordError(session_id, "the Redis key does not hold a string")
    text = _text(raw, session_id)
    data, stored = spec.decode(text, session_id)
    after = after_read(spec.config, now, stored, data.created_at)
    if after is EXPIRED:
        yield CompareAndDelete(key, raw)
        return None
    if after is not None and after != stored:
        # If other bytes are found, a concurrent set, delete or refresh won: the data read is
        # still the right answer for this call, which happened before that write.
        yield CompareAndSet(key, raw, _with_expiry(text, after), spec.ttl(now, after))
    return data


# A failed compare-and-set-if-absent means another client wrote the key meanwhile; after
# this many such races in one call the id is evidently contended, and this creator lost.
CREATE_ATTEMPTS = 10


def _decoded(
    spec: StoreSpec, session_id: str, raw: Key | WrongType | NonString
) -> tuple[SessionData, int | None]:
    """The data and stored expiry of a value read, or `CorruptRecordError` as `get` raises."""
    if raw is WRONG_TYPE or isinstance(raw, NonString):
        raise CorruptRecordError(session_id, "the Redis key does not hold a string")
    return spec.decode(_text(raw, session_id), session_id)


def _live(
    spec: StoreSpec, session_id: str, raw: Key | WrongType | NonString | None, now: int
) -> tuple[SessionData, int | None] | None:
    """``(data, expiry after a read at now)`` if `raw` is a live session, else `None`."""
    if raw is None:
        return None
    data, stored = _decoded(spec, session_id, raw)
    after = after_read(spec.config, now, stored, data.created_at)
    return None if after is EXPIRED else (data, after)


def create(spec: StoreSpec, session_id: str, data: SessionData) -> Op[bool]:
    """Store the record only if no live session holds the id; True if stored.

    The write compares what was read (nothing, or the exact bytes of an expired record), so
    of concurrent creators exactly one wins. A lost compare means another client wrote the
    key meanwhile: read again and decide again, at most `CREATE_ATTEMPTS` times, then
    answer False (someone else's write won every race).
    """
    key = spec.key(session_id)
    for _ in range(CREATE_ATTEMPTS):
        raw = yield Read(key)
        now = now_ms(spec.clock)
        if _live(spec, session_id, raw, now) is not None:
            return False
        new = stamped(spec.config, data, now)
        expires_at = expiry_after_write(spec.config, now, new.created_at)
        text = encode_record(new, expires_at)
        if (yield CompareAndSet(key, raw, text, spec.ttl(now, expires_at))):
            return True
        yield CHECKPOINT  # a lost race: where a runner may check the call's deadline
    return False


def update(spec: StoreSpec, session_id: str, change: Change) -> Op[SessionData | None]:
    """Replace a live session's data with ``change(current)``: the new data, or None.

    Compare-and-set over the exact bytes read, so no concurrent write is lost or undone; when
    it loses, read again and call `change` again. There is no bound on the number of tries
    here: the caller's deadline is the bound. An expired session is removed as `read` does.
    """
    key = spec.key(session_id)
    while True:
        raw = yield Read(key)
        if raw is None:
            return None
        current, stored = _decoded(spec, session_id, raw)
        now = now_ms(spec.clock)
        after = after_read(spec.config, now, stored, current.created_at)
        if after is EXPIRED:
            yield CompareAndDelete(key, raw)
            return None
        new = updated(spec.config, now, current, change)
        expires_at = expiry_after_update(spec.config, after, new.created_at)
        text = encode_record(new, expires_at)
        if (yield CompareAndSet(key, raw, text, spec.ttl(now, expires_at))):
            return new
        yield CHECKPOINT  # a lost race: where a runner may check the call's deadline


def rotate(spec: StoreSpec, session_id: str, new_id: str) -> Op[str | None]:
    """Move a live session to `new_id` with one `Move`; `new_id`, or None if none.

    Raises `SessionIdTakenError` (having changed nothing) if `new_id` is the session's own id
    or holds a live session; an expired one there is replaced. The `Move` compares both keys
    with what was read, so of concurrent rotates of one id exactly one wins and a concurrent
    write to either key is never lost; when it loses, read again and decide again, bounded
    by the caller's deadline.
    """
    key, new_key = spec.key(session_id), spec.key(new_id)
    while True:
        raw, raw_new = yield ReadMany((key, new_key))
        if raw is None:
            return None
        data, stored = _decoded(spec, session_id, raw)
        now = now_ms(spec.clock)
        after = after_read(spec.config, now, stored, data.created_at)
        if after is EXPIRED:
            yield CompareAndDelete(key, raw)
            return None
        if new_id == session_id or _live(spec, new_id, raw_new, now) is not None:
            raise SessionIdTakenError(new_id)
        text = encode_record(rotated(data, session_id, new_id), after)
        if (yield Move(key, raw, new_key, raw_new, text, spec.ttl(now, after))):
            return new_id
        yield CHECKPOINT  # a lost race: where a runner may check the call's deadline


def delete(spec: StoreSpec, session_id: str) -> Op[None]:
    """Delete the session's key."""
    yield Delete((spec.key(session_id),))


def _warn_corrupt(session_id: str, reason: str) -> None:
    # The same words as `decode_readable`, for the rows it never gets to see.
    logger.warning("skipping corrupt session record %s: %s", short_id(session_id), reason)


def _readable_key(spec: StoreSpec, key: bytes) -> str | None:
    """The key as str if it is the prefix and a (UTF-8, non-empty) session id, else `None`."""
    try:
        text_key = key.decode()
    except UnicodeDecodeError:
        return None
    return text_key if len(text_key) > len(spec.prefix) else None


def _readable_row(spec: StoreSpec, key: bytes, raw: Key) -> tuple[str, str] | None:
    """``(key, text)`` as str for `decode_readable`, or `None` (logged) if not UTF-8 text."""
    text_key = _readable_key(spec, key)
    if text_key is None:
        rest = key[len(spec.prefix_bytes) :].decode(errors="replace")
        _warn_corrupt(rest, "the key is not the prefix and a UTF-8 session id")
        return None
    session_id = text_key[len(spec.prefix) :]
    try:
        return text_key, _text(raw, session_id)
    except CorruptRecordError as exc:
        _warn_corrupt(session_id, exc.reason)
        return None


def _mine(spec: StoreSpec, keys: list[Key]) -> list[bytes]:
    # The scan's glob is escaped already; this check guards the one rule that matters.
    prefix = spec.prefix_bytes
    return [k for k in map(_as_bytes, keys) if k.startswith(prefix)]


def _sweep(spec: StoreSpec, collect: bool) -> Op[tuple[SessionMap, int]]:
    """The scan behind `get_all` (collect=True) and `clean_expired` (collect=False)."""
    found = SessionMap()
    removed = 0
    cursor: object = None
    while True:
        page: ScanPage = yield Scan(spec.pattern, cursor)
        mine = _mine(spec, page.keys)
        if mine:
            removed += yield from _sweep_batch(spec, mine, found, collect)
        if page.cursor is None:
            return found, removed
        cursor = page.cursor
        yield CHECKPOINT


def _sweep_batch(spec: StoreSpec, keys: list[bytes], found: SessionMap, collect: bool) -> Op[int]:
    """One page of a sweep: read, let `sweep` decide, carry it out; returns removals confirmed."""
    values = yield ReadMany(tuple(keys))
    rows: list[tuple[str, str]] = []
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            continue  # deleted since the scan
        if isinstance(raw, NonString):
            rest = key[len(spec.prefix_bytes) :].decode(errors="replace")
            _warn_corrupt(rest, f"the Redis key holds a {raw.kind}")
        elif (row := _readable_row(spec, key, raw)) is not None:
            rows.append(row)
    prefix = spec.prefix
    # Text decoded strictly from UTF-8 encodes back to the very bytes read, so the
    # compare-and-set steps compare against exactly what Redis holds.
    records = (
        (session_id, (prefix + session_id, text), data, expires_at)
        for session_id, text, data, expires_at in decode_readable(rows, prefix, spec.decode)
    )
    now = now_ms(spec.clock)
    decided = sweep(spec.config, now, records, collect=collect, into=found)
    steps: list[KeyStep] = [CompareAndDelete(key, text) for key, text in decided.removals]
    steps.extend(
        CompareAndSet(key, text, _with_expiry(text, expires_at), spec.ttl(now, expires_at))
        for (key, text), expires_at in decided.slides
    )
    if not steps:
        return 0
    replies = yield Batch(tuple(steps))
    # Only removals Redis confirmed count: another client may have removed or rewritten some.
    return sum(1 for deleted in replies[: len(decided.removals)] if deleted)


def get_all(spec: StoreSpec) -> Op[SessionMap]:
    """Every live session under the prefix; expired ones met are removed, corrupt ones kept."""
    found, _ = yield from _sweep(spec, collect=True)
    return found


def clean_expired(spec: StoreSpec) -> Op[int]:
    """Remove expired sessions by compare-and-delete; the number this call removed."""
    _, removed = yield from _sweep(spec, collect=False)
    return removed


def clear(spec: StoreSpec) -> Op[None]:
    """Delete every key under the prefix, page by page (corrupt records included)."""
    cursor: object = None
    while True:
        page: ScanPage = yield Scan(spec.pattern, cursor)
        mine = _mine(spec, page.keys)
        if mine:
            yield Delete(tuple(mine))
        if page.cursor is None:
            return
        cursor = page.cursor
        yield CHECKPOINT


def _inspect_one(session_id: str, raw: Key | WrongType | NonString) -> SessionRecord:
    if raw is WRONG_TYPE or isinstance(raw, NonString):
        shown = "another type" if raw is WRONG_TYPE else raw.kind
        return SessionRecord(session_id, None, None, f"the Redis key holds {shown}, not a string")
    try:
        return inspect_record(session_id, _text(raw, session_id))
    except CorruptRecordError as exc:
        return SessionRecord(session_id, None, None, exc.reason)


def inspect(spec: StoreSpec, session_id: str | None) -> Op[list[SessionRecord]]:
    """Every record under the prefix (or the one named) as it is: nothing refreshed or removed."""
    if session_id is not None:
        raw = yield Read(spec.key(session_id))
        return [] if raw is None else [_inspect_one(session_id, raw)]
    records: list[SessionRecord] = []
    cursor: object = None
    while True:
        page: ScanPage = yield Scan(spec.pattern, cursor)
        records.extend((yield from _inspect_scanned(spec, page.keys)))
        if page.cursor is None:
            return records
        cursor = page.cursor
        yield CHECKPOINT


def _inspect_scanned(spec: StoreSpec, keys: list[Key]) -> Op[list[SessionRecord]]:
    """The records under the store's keys of one scan page, read as `inspect` shows them."""
    mine = _mine(spec, keys)
    if not mine:
        return []
    values = yield ReadMany(tuple(mine))
    cut = len(spec.prefix_bytes)
    records: list[SessionRecord] = []
    for key, raw in zip(mine, values, strict=True):
        if raw is None:
            continue  # deleted since the scan
        sid = key[cut:].decode(errors="replace")
        if _readable_key(spec, key) is None:
            records.append(SessionRecord(sid, None, None, "the key holds no session id"))
        else:
            records.append(_inspect_one(sid, raw))
    return records


def inspect_page(
    spec: StoreSpec, cursor: object, n: int
) -> Op[tuple[list[SessionRecord], object, bool]]:
    """One batch of `iter_records`: scan pages from `cursor` until `n` records are read.

    Read as `inspect` reads (nothing refreshed or removed). Returns the records, the cursor to
    go on from, and whether the scan is complete, as `iterate_page` does.
    """
    records: list[SessionRecord] = []
    while True:
        page: ScanPage = yield Scan(spec.pattern, cursor)
        records.extend((yield from _inspect_scanned(spec, page.keys)))
        if page.cursor is None:
            return records, None, True
        cursor = page.cursor
        if len(records) >= n:
            return records, cursor, False
        yield CHECKPOINT


def iterate_page(spec: StoreSpec, cursor: object, n: int) -> Op[tuple[SessionMap, object, bool]]:
    """One batch of `iter_sessions`: scan pages from `cursor` until `n` sessions are found.

    Each scan page is swept as `get_all` sweeps it (expired ones removed, slides
    compare-and-set). Returns the sessions found, the cursor to go on from, and whether the
    scan is complete; memory stays within a batch and one scan page.
    """
    found = SessionMap()
    while True:
        page: ScanPage = yield Scan(spec.pattern, cursor)
        mine = _mine(spec, page.keys)
        if mine:
            yield from _sweep_batch(spec, mine, found, True)
        if page.cursor is None:
            return found, None, True
        cursor = page.cursor
        if len(found) >= n:
            return found, cursor, False
        yield CHECKPOINT


def until_checkpoint(op: Op[T]) -> Op[T | More]:
    """`op` up to its next `CHECKPOINT` (then `MORE`: run another to go on), or its result.

    A bulk operation runs as a series of these, each a call of its own for a runner: each page
    of a scan is then bounded by the call's timeout, while the whole takes as long as the
    store is big. Closing this (a failed or abandoned call) closes `op` too.
    """
    reply: Any = None
    try:
        while True:
            try:
                step = op.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if step is CHECKPOINT:
                return MORE
            reply = yield step
    except GeneratorExit:
        op.close()
        raise
