"""What each `RedisSessionStore` method does, as generators of steps (no I/O), and the
`StoreSpec` they run under.

Each operation yields `steps` and receives their replies; `exchanges` and `cluster_steps` carry
them out. Every decision about expiry comes from `_core.expiry`; this module carries it out.
"""

from __future__ import annotations

import attrs

from .._core import lifecycle
from .._core.codec import Decode, decode_record, encode_record
from .._core.codec import record_with_expiry as _with_expiry
from .._core.data import SessionData, SessionStoreConfig
from .._core.errors import CorruptRecordError, SessionIdTakenError
from .._core.expiry import (
    EXPIRED,
    Clock,
    after_read,
    expiry_after_write,
    now_ms,
    slides_on_read,
    stamped,
)
from . import steps

__all__ = (
    "CREATE_ATTEMPTS",
    "EXACT",
    "StoreSpec",
    "create",
    "delete",
    "glob_escape",
    "read",
    "record_text",
    "rotate",
    "update",
    "write",
)


# Times (ms) below this add up exactly in a double, as a driver's script computes them.
EXACT = 10**15


def glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches only itself: every special character escaped."""
    return "".join("\\" + c if c in "\\*?[]^-" else c for c in text)


@attrs.frozen
class StoreSpec:
    """What makes one store: its prefix, its expiry rules, its clock and how it decodes
    (`decode_record` or a cache of it); nothing about reaching Redis, so it runs on any driver."""

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
        bounded = all(v is None or v < EXACT for v in (lifetime, self.config.max_lifetime_ms))
        object.__setattr__(self, "slides", slides_on_read(self.config) and bounded)

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        return self.prefix + session_id

    def ttl(self, now: int, expires_at: int | None) -> int | None:
        """The Redis TTL (ms) of a record written at `now` that expires at `expires_at`: None,
        or span + max(1 s, 10 %), the span being the lifetime or the time left if longer."""
        if expires_at is None:
            return None
        lifetime = self.config.lifetime_ms
        left = max(0, expires_at - now)
        span = left if lifetime is None else max(left, lifetime)
        # A far expiry a record may carry (written elsewhere) would overflow Redis's TTL:
        # 10**15 ms (31,700 years) is as good as forever, and Redis takes it.
        return min(span + max(1000, span // 10), EXACT)


def record_text(raw: steps.Key, session_id: str) -> str:
    """The record's text as read: `CorruptRecordError` if it is not UTF-8."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(session_id, f"not UTF-8 text: {exc}") from exc


def write(spec: StoreSpec, session_id: str, data: SessionData) -> steps.Op[None]:
    """Store the record; with an expiry it gets a TTL, without one any old TTL goes.

    With an absolute timeout, data without a `created_at` is stamped with now, and the
    expiry written is capped at ``created_at + max_lifetime``.
    """
    now = now_ms(spec.clock)
    data = stamped(spec.config, data, now)
    expires_at = expiry_after_write(spec.config, now, data.created_at)
    yield steps.Write(
        spec.key(session_id), encode_record(data, expires_at), spec.ttl(now, expires_at)
    )


def read(spec: StoreSpec, session_id: str) -> steps.Op[SessionData | None]:
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
            found = yield steps.ReadAndSlide(
                key, now, lifetime, config.max_lifetime_ms, ttl, spec.waits_for_replicas
            )
            return (yield from _decide(spec, session_id, key, found, now))
    raw = yield steps.Read(key)
    return (yield from _decide(spec, session_id, key, raw, now_ms(spec.clock)))


def _decide(
    spec: StoreSpec,
    session_id: str,
    key: steps.Key,
    found: steps.Slide | steps.Key | steps.WrongType | None,
    now: int,
) -> steps.Op[SessionData | None]:
    """`read`'s decision on what it found at `now` (a value, or a `ReadAndSlide`'s reply whose
    undecided records only are decided here), carried out by compare-and-set."""
    if isinstance(found, steps.Slide) and found.verdict is not steps.Verdict.UNDECIDED:
        try:
            data, _ = spec.decode(record_text(found.raw, session_id), session_id)
        except CorruptRecordError:
            if found.new is not None:
                # The script reads only the expiry fields: a record that is unreadable
                # elsewhere gets its exact bytes and TTL back, so nothing unreadable changes.
                yield steps.CompareAndSet(key, found.new, found.raw, found.old_ttl_ms)
            raise
        if found.verdict is steps.Verdict.EXPIRED:
            yield steps.CompareAndDelete(key, found.raw)
            return None
        return data
    found = found.raw if isinstance(found, steps.Slide) else found
    if found is None:
        return None
    raw = _held(session_id, found)
    text = record_text(raw, session_id)
    data, stored = spec.decode(text, session_id)
    after = after_read(spec.config, now, stored, data.created_at)
    if after is EXPIRED:
        yield steps.CompareAndDelete(key, raw)
        return None
    if after is not None and after != stored:
        # If other bytes are found, a concurrent set, delete or refresh won: the data read is
        # still the right answer for this call, which happened before that write.
        yield steps.CompareAndSet(key, raw, _with_expiry(text, after), spec.ttl(now, after))
    return data


# Races one `create` may lose before it answers False: the id is evidently contended.
CREATE_ATTEMPTS = 10


def _held(session_id: str, raw: steps.Key | steps.WrongType | steps.NonString) -> steps.Key:
    """The string a key held, or `CorruptRecordError` as `get` raises for any other type."""
    if raw is steps.WRONG_TYPE or isinstance(raw, steps.NonString):
        raise CorruptRecordError(session_id, "the Redis key does not hold a string")
    return raw


def _stored(
    spec: StoreSpec, session_id: str, raw: steps.Key | steps.WrongType | steps.NonString | None
) -> lifecycle.Stored | None:
    """What `raw` holds, as the lifecycle decisions take it: `None` for no key."""
    if raw is None:
        return None
    return spec.decode(record_text(_held(session_id, raw), session_id), session_id)


def create(spec: StoreSpec, session_id: str, data: SessionData) -> steps.Op[bool]:
    """Store the record only if no live session holds the id; True if stored. A lost compare
    (another client wrote meanwhile) reads and decides again, at most `CREATE_ATTEMPTS` times."""
    key = spec.key(session_id)
    for _ in range(CREATE_ATTEMPTS):
        raw = yield steps.Read(key)
        now = now_ms(spec.clock)
        decision = lifecycle.decide_create(spec.config, now, _stored(spec, session_id, raw), data)
        if decision is lifecycle.TAKEN:
            return False
        text = encode_record(decision.data, decision.expires_at)
        if (yield steps.CompareAndSet(key, raw, text, spec.ttl(now, decision.expires_at))):
            return True
        yield steps.CHECKPOINT  # a lost race: where a runner may check the call's deadline
    return False


def update(
    spec: StoreSpec, session_id: str, change: lifecycle.Change
) -> steps.Op[SessionData | None]:
    """Replace a live session's data with ``change(current)``: the new data, or None. A lost
    compare reads and calls `change` again, as often as the caller's deadline allows."""
    key = spec.key(session_id)
    while True:
        raw = yield steps.Read(key)
        stored = _stored(spec, session_id, raw)
        now = now_ms(spec.clock)
        decision = lifecycle.decide_update(spec.config, now, stored, change)
        if decision is EXPIRED:
            yield steps.CompareAndDelete(key, raw)
            return None
        if not isinstance(decision, lifecycle.Write):  # ABSENT
            return None
        text = encode_record(decision.data, decision.expires_at)
        if (yield steps.CompareAndSet(key, raw, text, spec.ttl(now, decision.expires_at))):
            return decision.data
        yield steps.CHECKPOINT  # a lost race: where a runner may check the call's deadline


def rotate(spec: StoreSpec, session_id: str, new_id: str) -> steps.Op[str | None]:
    """Move a live session to `new_id` with one `Move`; `new_id`, or None if none.

    Raises `SessionIdTakenError` (having changed nothing) if `new_id` is the session's own id
    or holds a live session; a lost compare reads and decides again, within the deadline.
    """
    key, new_key = spec.key(session_id), spec.key(new_id)
    while True:
        raw, raw_new = yield steps.ReadMany((key, new_key))
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
            yield steps.CompareAndDelete(key, raw)
            return None
        if not isinstance(decision, lifecycle.Move):  # TAKEN (a record was read: never ABSENT)
            raise SessionIdTakenError(new_id)
        text = encode_record(decision.data, decision.expires_at)
        if (yield steps.Move(key, raw, new_key, raw_new, text, spec.ttl(now, decision.expires_at))):
            return new_id
        yield steps.CHECKPOINT  # a lost race: where a runner may check the call's deadline


def delete(spec: StoreSpec, session_id: str) -> steps.Op[None]:
    """Delete the session's key."""
    yield steps.Delete((spec.key(session_id),))
