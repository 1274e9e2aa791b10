"""Sessions kept as wire-format strings in any `MutableMapping[str, str]` (a dict, a Web Storage).

Every operation runs on the caller's thread and never awaits, so each is atomic with respect to
other tasks of the same event loop. Scans visit every key of the mapping: a mapping has no index.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import attrs

from .._core import lifecycle
from .._core.codec import decode_readable, encode_record, inspect_record, record_with_expiry
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.decode_cache import DecodeCache
from .._core.errors import CorruptRecordError, SessionIdTakenError
from .._core.expiry import EXPIRED, Clock, Sweep, after_read, now_ms, sweep
from .._core.session_map import SessionMap

__all__ = ("MappingBackend",)


@attrs.define
class MappingBackend:
    """The seven operations over a mapping: a `Backend` that never defers, whatever `wait` says.

    A value that is not a str (a foreign writer's) is an unreadable record; a key that is not
    a str is not ours.
    """

    _storage: MutableMapping[str, str]
    _prefix: str
    _config: SessionStoreConfig
    _clock: Clock
    _cache: DecodeCache = attrs.field(factory=DecodeCache, init=False)

    def set(self, wait: bool, session_id: str, data: SessionData) -> None:
        self._write(session_id, lifecycle.decide_set(self._config, now_ms(self._clock), data))

    def get(self, wait: bool, session_id: str) -> SessionData | None:
        key = self._prefix + session_id
        text = self._storage.get(key)
        if text is None:
            return None
        data, stored = self._decode(text, session_id)
        after = after_read(self._config, now_ms(self._clock), stored, data.created_at)
        if after is EXPIRED:
            del self._storage[key]
            return None
        if after != stored and after is not None:
            self._storage[key] = record_with_expiry(text, after)
        return data

    def create(self, wait: bool, session_id: str, data: SessionData) -> bool:
        stored = self._stored(session_id)
        decision = lifecycle.decide_create(self._config, now_ms(self._clock), stored, data)
        if decision is lifecycle.TAKEN:
            return False
        self._write(session_id, decision)
        return True

    def update(self, wait: bool, session_id: str, change: lifecycle.Change) -> SessionData | None:
        stored = self._stored(session_id)
        decision = lifecycle.decide_update(self._config, now_ms(self._clock), stored, change)
        if isinstance(decision, lifecycle.Write):
            self._write(session_id, decision)
            return decision.data
        if decision is EXPIRED:
            del self._storage[self._prefix + session_id]
        return None

    def rotate(self, wait: bool, session_id: str, new_id: str) -> str | None:
        now, stored = now_ms(self._clock), self._stored(session_id)
        decision = lifecycle.decide_rotate(self._config, now, session_id, new_id, stored, None)
        if isinstance(decision, lifecycle.Move):  # read the new id only if the session can move
            new = self._stored(new_id)
            decision = lifecycle.decide_rotate(self._config, now, session_id, new_id, stored, new)
        if decision is lifecycle.TAKEN:
            raise SessionIdTakenError(new_id)
        if isinstance(decision, lifecycle.Move):
            self._write(new_id, decision)
        if decision is not lifecycle.ABSENT:  # moved, or expired
            del self._storage[self._prefix + session_id]
        return new_id if isinstance(decision, lifecycle.Move) else None

    def _stored(self, session_id: str) -> lifecycle.Stored | None:
        """The record under `session_id` as decoded, or `None`; an unreadable one raises."""
        text = self._storage.get(self._prefix + session_id)
        return None if text is None else self._decode(text, session_id)

    def _decode(self, text: object, session_id: str) -> tuple[SessionData, int | None]:
        # A mapping of str: a value of another type was put there by someone else.
        if not isinstance(text, str):
            reason = f"the stored value is a {type(text).__name__}, not a str"
            raise CorruptRecordError(session_id, reason)
        return self._cache.decode(text, session_id)

    def _write(self, session_id: str, record: lifecycle.Write | lifecycle.Move) -> None:
        self._storage[self._prefix + session_id] = encode_record(record.data, record.expires_at)

    def get_all(self, wait: bool) -> SessionMap:
        return self._sweep(collect=True).found

    def delete(self, wait: bool, session_id: str) -> None:
        self._storage.pop(self._prefix + session_id, None)

    def clear(self, wait: bool) -> None:
        for key in self._own_keys():
            self._storage.pop(key, None)
        self._cache.clear()

    def clean_expired(self, wait: bool) -> int:
        return len(self._sweep(collect=False).removals)

    def inspect(self, wait: bool, session_id: str | None) -> list[SessionRecord]:
        keys = self._own_keys() if session_id is None else [self._prefix + session_id]
        return self._inspected(keys)

    def _inspected(self, keys: list[str]) -> list[SessionRecord]:
        """The records under `keys` still present, as `inspect` shows them."""
        cut = len(self._prefix)
        get = self._storage.get
        return [inspect_record(key[cut:], text) for key in keys if (text := get(key)) is not None]

    def inspect_page(
        self, wait: bool, cursor: object, n: int
    ) -> tuple[list[SessionRecord], object]:
        """`n` records from the list of our keys taken when the iteration began, as `page`."""
        keys, start = cursor if isinstance(cursor, tuple) else (self._own_keys(), 0)
        end = start + n
        return self._inspected(keys[start:end]), ((keys, end) if end < len(keys) else None)

    def close(self) -> None:
        """Forget cached records; the mapping itself belongs to the caller."""
        self._cache.clear()

    def _own_keys(self) -> list[str]:
        prefix = self._prefix
        keys: list[object] = list(self._storage)  # a foreign writer may have used other types
        return [key for key in keys if isinstance(key, str) and key.startswith(prefix)]

    def _sweep(
        self, keys: list[str] | None = None, *, collect: bool, into: SessionMap | None = None
    ) -> Sweep[tuple[str, str]]:
        """One pass over the readable records under `keys` (default: all of ours) still present,
        with its removals and slides carried out (collected `into`, if given)."""
        keys = self._own_keys() if keys is None else keys
        storage = self._storage
        get = storage.get
        rows = [(key, text) for key in keys if (text := get(key)) is not None]
        records = (
            (session_id, (self._prefix + session_id, text), data, expires_at)
            for session_id, text, data, expires_at in decode_readable(
                rows, self._prefix, self._decode
            )
        )
        result = sweep(self._config, now_ms(self._clock), records, collect=collect, into=into)
        for key, _text in result.removals:
            del storage[key]
        for (key, text), expires_at in result.slides:
            storage[key] = record_with_expiry(text, expires_at)
        return result

    def page(self, wait: bool, cursor: object, n: int) -> tuple[SessionMap, object]:
        """A batch of `n` keys from the list of our keys taken when the iteration began (a
        mapping has no order to resume from: the cursor holds that list and a position)."""
        keys, start = cursor if isinstance(cursor, tuple) else (self._own_keys(), 0)
        batch = keys[start : start + n]
        found = self._sweep(batch, collect=True, into=SessionMap(shards=1)).found
        end = start + n
        return found, ((keys, end) if end < len(keys) else None)
