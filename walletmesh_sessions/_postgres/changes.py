"""The lifecycle operations of `PostgresSessionStore`: `create`, `update` and `rotate`.

Each is one transaction with its rows locked, or a compare-and-set statement, and is not
idempotent: retried after a lost connection, it recognises its own earlier effect through
the `Attempts` its plan shares (see `Plan.recognising`), or raises `Unsure`.
"""

from __future__ import annotations

from .._core import expiry
from .._core.codec import encode_record
from .._core.data import SessionData
from .._core.errors import SessionIdTakenError
from .._core.lifecycle import (
    TAKEN,
    Change,
    Move,
    Write,
    decide_create,
    decide_rotate,
    decide_update,
)
from .steps import BEGIN, Attempts, Op, Spec, Statement, Unsure, row_key

__all__ = ("create", "rotate", "update")


def create(spec: Spec, session_id: str, data: SessionData, attempts: Attempts) -> Op[bool]:
    """Insert if absent (one statement); else, in a transaction, take over an expired one.
    The record is encoded once per call, so that a retry knows its own earlier insert."""
    key = row_key(session_id)
    if attempts.intent is None:
        now = expiry.now_ms(spec.clock)
        write = decide_create(spec.config, now, None, data)
        assert isinstance(write, Write)  # nothing stored: never taken
        attempts.intent = (now, encode_record(write.data, write.expires_at))
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
    if decide_create(spec.config, now, spec.decode(rows[0][0], session_id), data) is TAKEN:
        if attempts.unsure:
            raise Unsure  # taken before the earlier attempt, or written over after it
        return False
    yield Statement(spec.sql.upsert, (key, value))
    return True


def update(
    spec: Spec, session_id: str, change: Change, attempts: Attempts
) -> Op[SessionData | None]:
    """One transaction, the row locked from the read to the write. Retried after a lost
    commit, it finds what it wrote (done) or what it read (it writes what it had computed)."""
    key = row_key(session_id)
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
    now = expiry.now_ms(spec.clock)
    decision = decide_update(spec.config, now, spec.decode(text, session_id), change)
    if not isinstance(decision, Write):  # EXPIRED (a record was read: never ABSENT)
        attempts.intent = (text, None, None)
        yield Statement(spec.sql.delete, (key,))
        return None
    written = encode_record(decision.data, decision.expires_at)
    attempts.intent = (text, written, decision.data)
    yield Statement(spec.sql.replace_unchanged, (written, key, text))
    return decision.data


def rotate(spec: Spec, session_id: str, new_id: str, attempts: Attempts) -> Op[str | None]:
    """One transaction, both rows locked in id order (so rotates never deadlock). Retried
    after a lost commit, it finds both rows as it wrote them (done) or as it read them."""
    key, new_key = row_key(session_id), row_key(new_id)
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
    now = expiry.now_ms(spec.clock)
    stored = spec.decode(text, session_id)
    decision = decide_rotate(spec.config, now, session_id, new_id, stored, None)
    other = found.get(new_key)
    if isinstance(decision, Move) and other is not None:
        # What is at the new id is read only when it matters, as a move would go over it.
        stored_new = spec.decode(other, new_id)
        decision = decide_rotate(spec.config, now, session_id, new_id, stored, stored_new)
    if decision is expiry.EXPIRED:
        attempts.intent = ((text, other), (None, other), None)
        yield Statement(spec.sql.delete, (key,))
        return None
    if not isinstance(decision, Move):  # TAKEN (a record was read: never ABSENT)
        raise SessionIdTakenError(new_id)
    moved = encode_record(decision.data, decision.expires_at)
    attempts.intent = ((text, other), (None, moved), new_id)
    if other is None:
        if not (yield Statement(spec.sql.insert_if_absent, (new_key, moved))):
            raise SessionIdTakenError(new_id)  # created since the read: it is live
    else:
        yield Statement(spec.sql.replace_unchanged, (moved, new_key, other))
    yield Statement(spec.sql.delete, (key,))
    return new_id
