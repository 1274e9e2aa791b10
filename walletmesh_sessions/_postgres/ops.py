"""The operations of `PostgresSessionStore`, written once for asyncio and for worker threads.

Each operation is a generator that yields the statements it wants run (a `Statement`, or
`BEGIN` to run the rest in one transaction) and receives their results: the rows of a query,
or the number of rows a write touched. A bulk operation also yields `CHECKPOINT` between
steps of its decoding, where the driver lets other tasks run. `_postgres_io` drives them on a
connection. Every decision is `_expiry`'s and `_lifecycle`'s; every record text is `_codec`'s.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar

import attrs

from .._core.codec import Decode, decode_readable, encode_record, inspect_record, record_with_expiry
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.errors import CorruptRecordError, InvalidConfigError, SessionIdTakenError
from .._core.expiry import (
    EXPIRED,
    Clock,
    Sweep,
    after_read,
    expiry_after_update,
    expiry_after_write,
    now_ms,
    stamped,
    sweep,
)
from .._core.lifecycle import Change, rotated, updated
from .._core.log import logger
from .._core.session_map import SessionMap
from .sql import EXPECTED_COLUMNS, SLIDE_PATTERN, Statements

__all__ = (
    "BEGIN",
    "CHECKPOINT",
    "DELETE_BATCH",
    "Attempts",
    "Begin",
    "Op",
    "Plan",
    "Spec",
    "Statement",
    "Unsure",
    "clean_expired",
    "clear",
    "create",
    "delete",
    "ensure_schema",
    "get_all",
    "inspect",
    "page",
    "read",
    "read_and_slide",
    "rotate",
    "update",
    "write",
)

T = TypeVar("T")

# Rows removed per DELETE by clean_expired, and slid per UPDATE: short statements, and
# parameters that take a few milliseconds to send (their arrays are built on the event loop).
DELETE_BATCH: Final = 500
# Rows decoded between two checks of the time, and the time after which a bulk operation lets
# other tasks run: each step of its decoding holds the event loop about a millisecond.
DECODE_STEP: Final = 32
STEP_SECONDS: Final = 0.001


class Statement(NamedTuple):
    """One statement and its parameters; `fetch`: answer its rows, else its row count."""

    query: bytes
    params: Sequence[Any] | Mapping[str, Any] | None = None
    fetch: bool = False


class Begin(enum.Enum):
    """The type of `BEGIN` and `CHECKPOINT`: what an operation yields to run the rest in one
    transaction, or to let other tasks run before it goes on."""

    BEGIN = "begin"
    CHECKPOINT = "checkpoint"


BEGIN: Final = Begin.BEGIN
CHECKPOINT: Final = Begin.CHECKPOINT

Op = Generator["Statement | Begin", Any, T]


class Unsure(Exception):
    """Raised by an operation retried after a lost connection when it cannot tell whether its
    earlier attempt took effect (the row changed meanwhile)."""


@attrs.define
class Attempts:
    """What the attempts of one non-idempotent call share.

    `intent`: what the operation is about to write, recorded before it may commit, so that
    a retry can recognise its own earlier effect. `unsure`: set by the driver when an
    earlier attempt lost its connection after sending what may have committed.
    """

    intent: Any = None
    unsure: bool = False


@attrs.frozen
class Plan:
    """How to run an operation: `make` gives a fresh generator for each attempt.

    `retry`: running it again after a lost connection is safe whatever the earlier attempt
    did (it is idempotent). Otherwise it is run again only if the earlier attempt cannot have
    committed anything, or, with `attempts`, by an operation that recognises its own earlier
    effect (`Attempts.unsure`).
    """

    name: str
    make: Callable[[], Op[Any]]
    retry: bool = True
    attempts: Attempts | None = None


@attrs.frozen
class Spec:
    """What the operations need: the table's statements, the config, the clock, a decoder."""

    sql: Statements
    config: SessionStoreConfig
    clock: Clock
    decode: Decode


def _key(session_id: str) -> bytes:
    return session_id.encode("utf-8")


def _readable(
    rows: Iterable[Sequence[Any]], decode: Decode
) -> Iterable[tuple[str, tuple[bytes, str], SessionData, int | None]]:
    """Readable records of ``(id, value)`` rows, as ``(session_id, (id, text), data, expiry)``."""
    for session_id, text, data, expires_at in decode_readable(_text_ids(rows), "", decode):
        yield session_id, (_key(session_id), text), data, expires_at


def _text_ids(rows: Iterable[Sequence[Any]]) -> Iterable[tuple[str, Any]]:
    for raw, text in rows:
        try:
            yield bytes(raw).decode("utf-8"), text
        except UnicodeDecodeError:
            # Written by another program: no session id anyone can ask for.
            logger.warning("skipping a record whose id is not UTF-8 text")


def _decided(
    spec: Spec, now: int, rows: list[Sequence[Any]], *, collect: bool, into: SessionMap
) -> Generator[Begin, Any, Sweep[tuple[bytes, str]]]:
    """`sweep` over `rows`, decoded a few at a time, with a `CHECKPOINT` whenever a step has
    taken `STEP_SECONDS`: a big table never holds the event loop for long.

    `rows` is consumed from its end, a step at a time, so that its hundred thousand rows are
    never all released in one step (that alone would take tens of milliseconds).
    """
    total: Sweep[tuple[bytes, str]] = Sweep(found=into)
    started = time.perf_counter()
    while rows:
        if time.perf_counter() - started > STEP_SECONDS:
            yield CHECKPOINT
            started = time.perf_counter()
        part = rows[-DECODE_STEP:]
        del rows[-DECODE_STEP:]
        found = sweep(spec.config, now, _readable(part, spec.decode), collect=collect, into=into)
        total.removals += found.removals
        total.slides += found.slides
    return total


def ensure_schema(spec: Spec, where: str | None = None) -> Op[None]:
    """Create the table and its index if missing, or check that the table has our shape.

    Under a transaction-scoped advisory lock, so two processes starting at once create it
    once. With `where` (the store, as shown to users), a missing table is not created but
    refused, naming it there: tools that only look must not make an empty table of a typo.
    """
    statements = spec.sql
    qualified = ".".join(f'"{part}"' for part in statements.table_name.split("."))
    if where is None:
        yield BEGIN
        yield Statement(
            b"SELECT pg_advisory_xact_lock(hashtext(%s))", (statements.schema_lock_key,), True
        )
    rows = yield Statement(statements.columns, (qualified,), True)
    if not rows and where is not None:
        msg = f"no session table {statements.table_name!r} in {where}"
        raise InvalidConfigError(msg)
    if not rows:
        yield Statement(statements.create_table)
        yield Statement(statements.create_index)
        return
    found = {name: (kind, bool(generated)) for name, kind, generated in rows}
    if found != EXPECTED_COLUMNS:
        shown = ", ".join(f"{n} {k}{' generated' if g else ''}" for n, (k, g) in found.items())
        msg = (
            f"the table {statements.table_name!r} exists but is not a session table (it has"
            f" {shown}; expected id bytea, value text, expires_at bigint generated): choose"
            " another table with the 'table' option"
        )
        raise InvalidConfigError(msg)


def write(spec: Spec, session_id: str, data: SessionData) -> Op[None]:
    now = now_ms(spec.clock)
    data = stamped(spec.config, data, now)
    value = encode_record(data, expiry_after_write(spec.config, now, data.created_at))
    yield Statement(spec.sql.upsert, (_key(session_id), value))


def read(spec: Spec, session_id: str) -> Op[SessionData | None]:
    """The session, or `None`; an expired one is removed, a live one slid (compare-and-set)."""
    key = _key(session_id)
    rows = yield Statement(spec.sql.get, (key,), True)
    if not rows:
        return None
    text = rows[0][0]
    data, stored = spec.decode(text, session_id)
    after = after_read(spec.config, now_ms(spec.clock), stored, data.created_at)
    if after is EXPIRED:
        yield Statement(spec.sql.delete_unchanged, (key, text))
        return None
    if after is not None and after != stored:
        # If the record changed since it was read, a concurrent set or delete wins.
        new = record_with_expiry(text, after)
        yield Statement(spec.sql.replace_unchanged, (new, key, text))
    return data


def read_and_slide(spec: Spec, session_id: str) -> Op[SessionData | None]:
    """`read` in one statement for a store that slides on read (no absolute timeout): the
    server rewrites the expiresAt digits of a live record as the store asked. The record is
    then decided as `read` decides it, and whatever the server wrote that differs from that
    decision (a record of another layout, an unreadable one) is set right, compare-and-set."""
    key = _key(session_id)
    now = now_ms(spec.clock)
    new = after_read(spec.config, now, None)  # what a live record's expiry becomes
    assert isinstance(new, int)
    params = {
        "id": key,
        "pattern": SLIDE_PATTERN,
        "replacement": f"\\1{new}\\2",
        "now": now,
        "new": new,
    }
    rows = yield Statement(spec.sql.read_and_slide, params, True)
    if not rows:
        return None
    text, slid = rows[0]
    current = text if slid is None else slid
    try:
        data, stored = spec.decode(text, session_id)
    except CorruptRecordError:
        if slid is not None:
            yield Statement(spec.sql.replace_unchanged, (text, key, slid))
        raise
    after = after_read(spec.config, now, stored, data.created_at)
    if after is EXPIRED:
        yield Statement(spec.sql.delete_unchanged, (key, current))
        return None
    expected = text if after is None or after == stored else record_with_expiry(text, after)
    if current != expected:
        yield Statement(spec.sql.replace_unchanged, (expected, key, current))
    return data


def create(spec: Spec, session_id: str, data: SessionData, attempts: Attempts) -> Op[bool]:
    """Insert if absent (one statement); else, in a transaction, take over an expired one.

    The record is encoded once per call: a retry after a lost connection that finds exactly
    that record under the id knows it as its own earlier insert; another live one raises
    `Unsure`.
    """
    key = _key(session_id)
    if attempts.intent is None:
        now = now_ms(spec.clock)
        data = stamped(spec.config, data, now)
        value = encode_record(data, expiry_after_write(spec.config, now, data.created_at))
        attempts.intent = (now, value)
    now, value = attempts.intent
    if (yield Statement(spec.sql.insert_if_absent, (key, value))):
        return True
    yield BEGIN
    while True:
        rows = yield Statement(spec.sql.get_for_update, (key,), True)
        if rows:
            break
        # Deleted since: try again to insert (a concurrent creator may win that).
        if (yield Statement(spec.sql.insert_if_absent, (key, value))):
            return True
    if attempts.unsure and rows[0][0] == value:
        return True  # stored by this call's earlier attempt, whose answer was lost
    current, stored = spec.decode(rows[0][0], session_id)
    if after_read(spec.config, now, stored, current.created_at) is not EXPIRED:
        if attempts.unsure:
            raise Unsure  # taken before the earlier attempt, or written over after it
        return False
    yield Statement(spec.sql.upsert, (key, value))
    return True


def update(
    spec: Spec, session_id: str, change: Change, attempts: Attempts
) -> Op[SessionData | None]:
    """One transaction: the row is locked from the read to the write.

    Retried after a lost commit, it finds either what it wrote (done: its answer is given
    again) or the record it read (not done: it writes what it had computed, `change` is not
    called again); anything else raises `Unsure`.
    """
    key = _key(session_id)
    yield BEGIN
    rows = yield Statement(spec.sql.get_for_update, (key,), True)
    text = rows[0][0] if rows else None
    if attempts.unsure and attempts.intent is not None:
        read, written, result = attempts.intent
        answer: SessionData | None = result
        if text == written:
            return answer
        if text != read:
            raise Unsure
        if written is None:
            yield Statement(spec.sql.delete, (key,))
        else:
            yield Statement(spec.sql.replace_unchanged, (written, key, read))
        return answer
    if text is None:
        return None
    current, stored = spec.decode(text, session_id)
    now = now_ms(spec.clock)
    after = after_read(spec.config, now, stored, current.created_at)
    if after is EXPIRED:
        attempts.intent = (text, None, None)
        yield Statement(spec.sql.delete, (key,))
        return None
    new = updated(spec.config, now, current, change)
    expires_at = expiry_after_update(spec.config, after, new.created_at)
    written = encode_record(new, expires_at)
    attempts.intent = (text, written, new)
    yield Statement(spec.sql.replace_unchanged, (written, key, text))
    return new


def rotate(spec: Spec, session_id: str, new_id: str, attempts: Attempts) -> Op[str | None]:
    """One transaction: both rows locked (in id order, so rotates never deadlock).

    Retried after a lost commit, it finds both rows as it wrote them (done), or as it read
    them (not done: it runs again); anything else raises `Unsure`.
    """
    key, new_key = _key(session_id), _key(new_id)
    yield BEGIN
    rows = yield Statement(spec.sql.get_two_for_update, ([key, new_key],), True)
    found = {bytes(row_id): text for row_id, text in rows}
    text = found.get(key)
    if attempts.unsure and attempts.intent is not None:
        before, after_rows, result = attempts.intent
        if (text, found.get(new_key)) == after_rows:
            done: str | None = result
            return done
        if (text, found.get(new_key)) != before:
            raise Unsure
    if text is None:
        return None
    now = now_ms(spec.clock)
    data, stored = spec.decode(text, session_id)
    after = after_read(spec.config, now, stored, data.created_at)
    if after is EXPIRED:
        attempts.intent = ((text, found.get(new_key)), (None, found.get(new_key)), None)
        yield Statement(spec.sql.delete, (key,))
        return None
    if new_id == session_id:
        raise SessionIdTakenError(new_id)
    other = found.get(new_key)
    if other is not None:
        other_data, other_stored = spec.decode(other, new_id)
        if after_read(spec.config, now, other_stored, other_data.created_at) is not EXPIRED:
            raise SessionIdTakenError(new_id)
    moved = encode_record(rotated(data, session_id, new_id), after)
    attempts.intent = ((text, other), (None, moved), new_id)
    if other is None:
        if not (yield Statement(spec.sql.insert_if_absent, (new_key, moved))):
            raise SessionIdTakenError(new_id)  # created since the read: it is live
    else:
        yield Statement(spec.sql.replace_unchanged, (moved, new_key, other))
    yield Statement(spec.sql.delete, (key,))
    return new_id


def _slide(spec: Spec, slides: list[tuple[tuple[bytes, str], int]]) -> Op[None]:
    """Write the slides, compare-and-set, `DELETE_BATCH` rows per statement."""
    for start in range(0, len(slides), DELETE_BATCH):
        batch = slides[start : start + DELETE_BATCH]
        ids = [key for (key, _text), _after in batch]
        olds = [text for (_key, text), _after in batch]
        news = [record_with_expiry(text, after) for (_key, text), after in batch]
        yield Statement(spec.sql.slide_many_unchanged, (ids, olds, news))


def get_all(spec: Spec) -> Op[SessionMap]:
    """Every row decided from its record; slides in batches; expired ones are left to
    `clean_expired`, as the SQLite store leaves them."""
    rows = yield Statement(spec.sql.all, None, True)
    now = now_ms(spec.clock)
    result = yield from _decided(spec, now, rows, collect=True, into=SessionMap())
    yield from _slide(spec, result.slides)
    return result.found


def page(spec: Spec, cursor: bytes | None, n: int) -> Op[tuple[SessionMap, bytes | None]]:
    """The next `n` rows after the id `cursor`, in id order (keyset pagination)."""
    rows = yield Statement(spec.sql.page, (cursor or b"", n), True)
    after = bytes(rows[-1][0]) if len(rows) == n else None
    batch = SessionMap(shards=1)
    now = now_ms(spec.clock)
    result = yield from _decided(spec, now, rows, collect=True, into=batch)
    yield from _slide(spec, result.slides)
    return result.found, after


def delete(spec: Spec, session_id: str) -> Op[None]:
    yield Statement(spec.sql.delete, (_key(session_id),))


def clear(spec: Spec) -> Op[None]:
    yield Statement(spec.sql.clear)


def clean_expired(spec: Spec) -> Op[int]:
    """Candidates through the index on expires_at, each decided from its record, then removed
    only if unchanged, a batch per statement. Unreadable records stay."""
    now = now_ms(spec.clock)
    max_lifetime = spec.config.max_lifetime_ms
    if max_lifetime is None:
        candidates = Statement(spec.sql.expired_candidates, (now,), True)
    else:
        # Records stored before the absolute timeout was set may carry a later expiresAt.
        candidates = Statement(spec.sql.expired_candidates_created, (now, now - max_lifetime), True)
    rows = yield candidates
    swept = yield from _decided(spec, now, rows, collect=False, into=SessionMap(shards=1))
    removals = swept.removals
    removed = 0
    for start in range(0, len(removals), DELETE_BATCH):
        batch = removals[start : start + DELETE_BATCH]
        ids = [key for key, _text in batch]
        texts = [text for _key, text in batch]
        removed += yield Statement(spec.sql.delete_many_unchanged, (ids, texts))
    return removed


def inspect(spec: Spec, session_id: str | None) -> Op[list[SessionRecord]]:
    if session_id is None:
        rows = yield Statement(spec.sql.inspect_all, None, True)
    else:
        rows = yield Statement(spec.sql.inspect_one, (_key(session_id),), True)
    return (yield from _inspected(rows))


def inspect_page(
    spec: Spec, cursor: bytes | None, n: int
) -> Op[tuple[list[SessionRecord], bytes | None]]:
    """The next `n` rows after the id `cursor` as `inspect` shows them (keyset, as `page`)."""
    rows = yield Statement(spec.sql.page, (cursor or b"", n), True)
    after = bytes(rows[-1][0]) if len(rows) == n else None
    return (yield from _inspected(rows)), after


def _inspected(rows: list[Any]) -> Op[list[SessionRecord]]:
    """Rows of ``(id, value)`` as records, unreadable ones included, in short steps."""
    records = []
    started = time.perf_counter()
    for raw, text in rows:
        if time.perf_counter() - started > STEP_SECONDS:
            yield CHECKPOINT
            started = time.perf_counter()
        records.append(inspect_record(bytes(raw).decode("utf-8", errors="replace"), text))
    return records
