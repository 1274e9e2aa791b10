"""What each `RedisSessionStore` method does, as generators of meaning-level steps (no I/O).

Every operation is written once, as a generator that yields `steps` such as `Read`, `Scan` or
`CompareAndSet` and receives their replies. `exchanges` carries the steps out on one Redis
server, `cluster_steps` on a cluster, without parsing anything. Every decision about expiry
comes from `_core.expiry` (`after_read`, `sweep`); this module only carries it out.
"""

from __future__ import annotations

from typing import TypeVar

from .._core import lifecycle
from .._core.codec import encode_record
from .._core.codec import record_with_expiry as _with_expiry
from .._core.data import SessionData
from .._core.errors import CorruptRecordError, SessionIdTakenError
from .._core.expiry import (
    EXPIRED,
    after_read,
    expiry_after_write,
    now_ms,
    stamped,
)
from .spec import EXACT, StoreSpec
from .steps import (
    CHECKPOINT,
    WRONG_TYPE,
    CompareAndDelete,
    CompareAndSet,
    Delete,
    Key,
    Move,
    NonString,
    Op,
    Read,
    ReadAndSlide,
    ReadMany,
    Slide,
    Verdict,
    Write,
    WrongType,
)

__all__ = (
    "CREATE_ATTEMPTS",
    "create",
    "delete",
    "read",
    "record_text",
    "rotate",
    "update",
    "write",
)

T = TypeVar("T")


def record_text(raw: Key, session_id: str) -> str:
    """The record's text as read: `CorruptRecordError` if it is not UTF-8."""
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
        if -EXACT < now < EXACT:
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
        data, _stored = spec.decode(record_text(raw, session_id), session_id)
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
    text = record_text(raw, session_id)
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


def _held(session_id: str, raw: Key | WrongType | NonString) -> Key:
    """The string a key held, or `CorruptRecordError` as `get` raises for any other type."""
    if raw is WRONG_TYPE or isinstance(raw, NonString):
        raise CorruptRecordError(session_id, "the Redis key does not hold a string")
    return raw


def _decoded(spec: StoreSpec, session_id: str, raw: Key) -> tuple[SessionData, int | None]:
    """The data and stored expiry of a value read, or `CorruptRecordError` as `get` raises."""
    return spec.decode(record_text(raw, session_id), session_id)


def _stored(
    spec: StoreSpec, session_id: str, raw: Key | WrongType | NonString | None
) -> lifecycle.Stored | None:
    """What `raw` holds, as the lifecycle decisions take it: `None` for no key."""
    return None if raw is None else _decoded(spec, session_id, _held(session_id, raw))


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
        decision = lifecycle.decide_create(spec.config, now, _stored(spec, session_id, raw), data)
        if decision is lifecycle.TAKEN:
            return False
        text = encode_record(decision.data, decision.expires_at)
        if (yield CompareAndSet(key, raw, text, spec.ttl(now, decision.expires_at))):
            return True
        yield CHECKPOINT  # a lost race: where a runner may check the call's deadline
    return False


def update(spec: StoreSpec, session_id: str, change: lifecycle.Change) -> Op[SessionData | None]:
    """Replace a live session's data with ``change(current)``: the new data, or None.

    Compare-and-set over the exact bytes read, so no concurrent write is lost or undone; when
    it loses, read again and call `change` again. There is no bound on the number of tries
    here: the caller's deadline is the bound. An expired session is removed as `read` does.
    """
    key = spec.key(session_id)
    while True:
        raw = yield Read(key)
        stored = _stored(spec, session_id, raw)
        now = now_ms(spec.clock)
        decision = lifecycle.decide_update(spec.config, now, stored, change)
        if decision is EXPIRED:
            yield CompareAndDelete(key, raw)
            return None
        if not isinstance(decision, lifecycle.Write):  # ABSENT
            return None
        text = encode_record(decision.data, decision.expires_at)
        if (yield CompareAndSet(key, raw, text, spec.ttl(now, decision.expires_at))):
            return decision.data
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
        stored = _stored(spec, session_id, raw)
        now = now_ms(spec.clock)
        decision = lifecycle.decide_rotate(spec.config, now, session_id, new_id, stored, None)
        if isinstance(decision, lifecycle.Move) and raw_new is not None:
            # What is at the new id is read only when it matters, as a move would go over it.
            stored_new = _stored(spec, new_id, raw_new)
            decision = lifecycle.decide_rotate(
                spec.config, now, session_id, new_id, stored, stored_new
            )
        if decision is EXPIRED:
            yield CompareAndDelete(key, raw)
            return None
        if not isinstance(decision, lifecycle.Move):  # TAKEN (a record was read: never ABSENT)
            raise SessionIdTakenError(new_id)
        text = encode_record(decision.data, decision.expires_at)
        if (yield Move(key, raw, new_key, raw_new, text, spec.ttl(now, decision.expires_at))):
            return new_id
        yield CHECKPOINT  # a lost race: where a runner may check the call's deadline


def delete(spec: StoreSpec, session_id: str) -> Op[None]:
    """Delete the session's key."""
    yield Delete((spec.key(session_id),))
