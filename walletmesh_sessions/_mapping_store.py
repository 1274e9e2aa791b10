"""Sessions kept as wire-format strings in any `MutableMapping[str, str]` (a dict, a Web Storage).

Every operation is synchronous between awaits, so each is atomic with respect to other tasks
of the same event loop. Scans visit every key of the mapping: a mapping has no index.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from ._codec import (
    decode_readable,
    decode_record,
    encode_record,
    inspect_record,
    record_with_expiry,
)
from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._expiry import Clock, expiry_after_read, expiry_after_write, is_expired, now_ms

__all__ = ("MappingSessions",)


class MappingSessions:
    """The seven operations over a mapping, for `LocalStorageSessionStore`; ids already checked."""

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

    def set(self, session_id: str, data: SessionData) -> None:
        expires_at = expiry_after_write(self._config, now_ms(self._clock))
        self._storage[self._prefix + session_id] = encode_record(data, expires_at)

    def get(self, session_id: str) -> SessionData | None:
        key = self._prefix + session_id
        text = self._storage.get(key)
        if text is None:
            return None
        data, expires_at = decode_record(text, session_id)
        now = now_ms(self._clock)
        if is_expired(expires_at, now):
            del self._storage[key]
            return None
        refreshed = expiry_after_read(self._config, now, expires_at)
        if refreshed != expires_at:
            self._storage[key] = record_with_expiry(text, refreshed, session_id)
        return data

    def get_all(self) -> dict[str, SessionData]:
        now = now_ms(self._clock)
        found: dict[str, SessionData] = {}
        for session_id, text, data, expires_at in self._records():
            if is_expired(expires_at, now):
                continue
            found[session_id] = data
            refreshed = expiry_after_read(self._config, now, expires_at)
            if refreshed != expires_at:
                self._storage[self._prefix + session_id] = record_with_expiry(
                    text, refreshed, session_id
                )
        return found

    def delete(self, session_id: str) -> None:
        self._storage.pop(self._prefix + session_id, None)

    def clear(self) -> None:
        for key in self._own_keys():
            self._storage.pop(key, None)

    def clean_expired(self) -> int:
        now = now_ms(self._clock)
        removed = 0
        for session_id, _text, _data, expires_at in self._records():
            if is_expired(expires_at, now):
                del self._storage[self._prefix + session_id]
                removed += 1
        return removed

    def inspect(self, session_id: str | None) -> list[SessionRecord]:
        keys = self._own_keys() if session_id is None else [self._prefix + session_id]
        cut = len(self._prefix)
        get = self._storage.get
        return [inspect_record(key[cut:], text) for key in keys if (text := get(key)) is not None]

    def close(self) -> None:
        """Nothing to release: the mapping belongs to the caller."""

    def _own_keys(self) -> list[str]:
        prefix = self._prefix
        keys: list[object] = list(self._storage)  # a foreign writer may have used other types
        return [key for key in keys if isinstance(key, str) and key.startswith(prefix)]

    def _records(self) -> list[tuple[str, str, SessionData, int | None]]:
        """Every readable record under the prefix; corrupt ones are logged and left alone."""
        get = self._storage.get
        rows = [(key, text) for key in self._own_keys() if (text := get(key)) is not None]
        return list(decode_readable(rows, self._prefix))
