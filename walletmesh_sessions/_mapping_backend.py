"""Sessions kept as wire-format strings in any `MutableMapping[str, str]` (a dict, a Web Storage).

Every operation runs on the caller's thread and never awaits, so each is atomic with respect to
other tasks of the same event loop. Scans visit every key of the mapping: a mapping has no index.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from ._codec import decode_readable, encode_record, inspect_record, record_with_expiry
from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._decode_cache import DecodeCache
from ._expiry import EXPIRED, Clock, Sweep, after_read, expiry_after_write, now_ms, sweep

__all__ = ("MappingBackend",)


class MappingBackend:
    """The seven operations over a mapping, for `LocalStorageSessionStore`; ids already checked.

    A `Backend` that never defers: every call finishes at once, whatever `wait` says.

    A foreign writer may have put anything in the mapping: a value that is not a str is an
    unreadable record like any other, and a key that is not a str is not ours.
    """

    def __init__(
        self,
        storage: MutableMapping[str, str],
        prefix: str,
        config: SessionStoreConfig,
        clock: Clock,
    ) -> None:
        self._storage = storage
        self._prefix = prefix
        self._config = config
        self._clock = clock
        self._cache = DecodeCache()

    def set(self, wait: bool, session_id: str, data: SessionData) -> None:
        expires_at = expiry_after_write(self._config, now_ms(self._clock))
        self._storage[self._prefix + session_id] = encode_record(data, expires_at)

    def get(self, wait: bool, session_id: str) -> SessionData | None:
        key = self._prefix + session_id
        text = self._storage.get(key)
        if text is None:
            return None
        data, stored = self._cache.decode(text, session_id)
        after = after_read(self._config, now_ms(self._clock), stored)
        if after is EXPIRED:
            del self._storage[key]
        elif after != stored and after is not None:
            self._storage[key] = record_with_expiry(text, after)
        return None if after is EXPIRED else data

    def get_all(self, wait: bool) -> dict[str, SessionData]:
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
        cut = len(self._prefix)
        get = self._storage.get
        return [inspect_record(key[cut:], text) for key in keys if (text := get(key)) is not None]

    def close(self) -> None:
        """Forget cached records; the mapping itself belongs to the caller."""
        self._cache.clear()

    def _own_keys(self) -> list[str]:
        prefix = self._prefix
        keys: list[object] = list(self._storage)  # a foreign writer may have used other types
        return [key for key in keys if isinstance(key, str) and key.startswith(prefix)]

    def _sweep(self, *, collect: bool) -> Sweep[tuple[str, str]]:
        """One pass over every readable record, with its removals and slides carried out."""
        storage = self._storage
        get = storage.get
        rows = [(key, text) for key in self._own_keys() if (text := get(key)) is not None]
        records = (
            (session_id, (self._prefix + session_id, text), data, expires_at)
            for session_id, text, data, expires_at in decode_readable(
                rows, self._prefix, self._cache.decode
            )
        )
        result = sweep(self._config, now_ms(self._clock), records, collect=collect)
        for key, _text in result.removals:
            del storage[key]
        for (key, text), expires_at in result.slides:
            storage[key] = record_with_expiry(text, expires_at)
        return result
