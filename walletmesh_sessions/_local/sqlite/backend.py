"""The seven operations of the `Backend` seam over a SQLite file, and the keys that are ours.

One key/value table, like a browser's localStorage: our records live under
``prefix + session_id``, other keys are left alone. Every write of what was read is
compare-and-set on the text read.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterable
from typing import Any

from ..._core.codec import decode_readable, encode_record, inspect_record, record_with_expiry
from ..._core.data import SessionData, SessionRecord, SessionStoreConfig
from ..._core.deadline import DEFAULT_TIMEOUT
from ..._core.decode_cache import DecodeCache
from ..._core.errors import (
    CorruptRecordError,
    SessionIdTakenError,
    StoreUnavailableError,
)
from ..._core.expiry import EXPIRED, Clock, after_read, now_ms, sweep
from ..._core.lifecycle import (
    ABSENT,
    TAKEN,
    Change,
    Move,
    Stored,
    Write,
    decide_create,
    decide_rotate,
    decide_set,
    decide_update,
)
from ..._core.log import logger
from ..._core.protocol import DEFERRED, Deferred
from ..._core.session_map import SessionMap
from .connections import Connections
from .expired import (
    DELETE_BATCH,
    candidates,
    checkpoint,
    delete_stamped,
)
from .file import TABLE, TRUSTED, Durability, stamp
from .transactions import fetch_all, transaction

__all__ = ("SqliteBackend", "prefix_upper_bound")

# Write a record's new text only if it still holds what we read (compare-and-set). Only the
# expiry changes: a record the store stamped stays trusted (a new stamp), any other stays not.
_SLIDE_UNCHANGED = (
    f"UPDATE {TABLE} SET value = :new, written = CASE WHEN {TRUSTED} THEN {stamp('key')} END"
    " WHERE key = :key AND value = :old"
)
_DELETE_UNCHANGED = f"DELETE FROM {TABLE} WHERE key = ? AND value = ?"
# A key written as a BLOB (bytes from another program) is the same key to a reader of text.
# A text parameter equals only a TEXT key; a BLOB key with the same bytes needs the CAST.
_SELECT_TEXT_KEY = f"SELECT value FROM {TABLE} WHERE key = ?"
_SELECT_BLOB_KEY = f"SELECT 1 FROM {TABLE} WHERE key = CAST(? AS BLOB)"
_DELETE_ONE = f"DELETE FROM {TABLE} WHERE key IN (?, CAST(? AS BLOB))"
_DELETE_TEXT_KEY = f"DELETE FROM {TABLE} WHERE key = ?"
# A record the store encoded: stamped as the store's own.
_UPSERT = (
    f"INSERT INTO {TABLE} (key, value, written) VALUES (?1, ?2, {stamp('?1')})"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, written = excluded.written"
)

# A readable record of a scan: (session_id, (key, text read), data, expires_at).
_Readable = tuple[str, tuple[str, str], SessionData, int | None]


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string starting with `prefix` (None: no bound), so
    our keys are exactly ``prefix <= key < bound`` (SQLite orders TEXT as code points)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not text: skip them
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


class SqliteBackend:
    """The seven operations over a SQLite file; `connections` decides which thread runs each."""

    def __init__(
        self,
        path: str,
        prefix: str,
        config: SessionStoreConfig,
        clock: Clock,
        timeout: float = DEFAULT_TIMEOUT,
        durability: Durability = "process",
    ) -> None:
        self._cache = DecodeCache()
        self.connections = Connections(path, self._cache.clear, timeout, durability)
        self._prefix = prefix
        self._upper = prefix_upper_bound(prefix)
        self._config = config
        self._clock = clock
        self._in_range = "key >= :lo AND key < :hi" if self._upper is not None else "key >= :lo"
        # A key that is not UTF-8 can sort inside the range without starting with the prefix;
        # a key stored as a BLOB sorts after all text, in a range of its own.
        blobs = (
            "key >= CAST(:lo AS BLOB) AND key < CAST(:hi AS BLOB)"
            if self._upper is not None
            else "key >= CAST(:lo AS BLOB)"
        )
        self._starts = (
            f"(({self._in_range} AND substr(CAST(key AS BLOB), 1, :n) = CAST(:lo AS BLOB))"
            f" OR ({blobs} AND substr(key, 1, :n) = CAST(:lo AS BLOB)))"
        )
        self._candidates = candidates(
            self._in_range, self._starts, max_lifetime=config.max_lifetime_ms is not None
        )

    def close(self) -> None:
        """Close the connections to the file."""
        self.connections.close()

    def _params(self, **extra: object) -> dict[str, object]:
        return {"lo": self._prefix, "hi": self._upper, "n": len(self._prefix.encode()), **extra}

    def _readable(self, rows: Iterable[tuple[Any, Any]]) -> Iterable[_Readable]:
        """Readable records of scanned rows, as ``(session_id, (key, text), data, expiry)``."""
        prefix = self._prefix
        for session_id, text, data, expires_at in decode_readable(
            _str_keys(rows, prefix.encode()), prefix, self._cache.decode
        ):
            yield session_id, (prefix + session_id, text), data, expires_at

    def set(self, wait: bool, session_id: str, data: SessionData) -> Deferred | None:
        key, value = self._record(session_id, decide_set(self._config, now_ms(self._clock), data))
        return self.connections.run(
            wait, lambda conn: _none(conn.execute(_UPSERT, (key, value))), writes=True
        )

    def create(self, wait: bool, session_id: str, data: SessionData) -> bool | Deferred:
        def create(conn: sqlite3.Connection) -> bool:
            now = now_ms(self._clock)
            with transaction(conn):
                stored = self._stored(conn, session_id)
                decision = decide_create(self._config, now, stored, data)
                if decision is TAKEN:
                    return False
                conn.execute(_UPSERT, self._record(session_id, decision))
                return True

        return self.connections.run(wait, create, writes=True)

    def update(self, wait: bool, session_id: str, change: Change) -> SessionData | Deferred | None:
        def update(conn: sqlite3.Connection) -> SessionData | None:
            now = now_ms(self._clock)
            changed = False

            def running(current: SessionData) -> SessionData:
                nonlocal changed
                changed = True
                return change(current)

            try:
                # The write lock is held from the read to the write: no concurrent write is lost.
                with transaction(conn):
                    stored = self._stored(conn, session_id)
                    decision = decide_update(self._config, now, stored, running)
                    if isinstance(decision, Write):
                        conn.execute(_UPSERT, self._record(session_id, decision))
                        return decision.data
                    if decision is EXPIRED:
                        conn.execute(_DELETE_TEXT_KEY, (self._prefix + session_id,))
                    return None
            except sqlite3.Error as exc:
                if not changed:
                    raise
                # `change` has run (the write or the commit failed): report it here rather
                # than run it again in a worker.
                msg = f"{self.connections.describe()}: {exc}"
                raise StoreUnavailableError(msg) from exc

        return self.connections.run(wait, update, writes=True)

    def rotate(self, wait: bool, session_id: str, new_id: str) -> str | Deferred | None:
        def rotate(conn: sqlite3.Connection) -> str | None:
            now = now_ms(self._clock)
            config = self._config
            with transaction(conn):
                stored = self._stored(conn, session_id)
                decision = decide_rotate(config, now, session_id, new_id, stored, None)
                if isinstance(decision, Move):  # the new id is read only if the session can move
                    stored_new = self._stored(conn, new_id)
                    decision = decide_rotate(config, now, session_id, new_id, stored, stored_new)
                if decision is TAKEN:
                    raise SessionIdTakenError(new_id)
                if isinstance(decision, Move):
                    conn.execute(_UPSERT, self._record(new_id, decision))
                if decision is not ABSENT:  # moved, or expired
                    conn.execute(_DELETE_TEXT_KEY, (self._prefix + session_id,))
                return new_id if isinstance(decision, Move) else None

        return self.connections.run(wait, rotate, writes=True)

    def _record(self, session_id: str, record: Write | Move) -> tuple[str, str]:
        return self._prefix + session_id, encode_record(record.data, record.expires_at)

    def _stored(self, conn: sqlite3.Connection, session_id: str) -> Stored | None:
        """The record under `session_id` as decoded, or `None`; an unreadable one raises."""
        text = _lookup(conn, self._prefix + session_id, session_id)
        return None if text is None else self._cache.decode(text, session_id)

    def get(self, wait: bool, session_id: str) -> SessionData | Deferred | None:
        key = self._prefix + session_id
        decode = self._cache.decode

        def read(conn: sqlite3.Connection) -> SessionData | None:
            # The cursor is closed before any write: an open read would pin an old snapshot.
            text = _lookup(conn, key, session_id)
            if text is None:
                return None
            data, stored = decode(text, session_id)
            after = after_read(self._config, now_ms(self._clock), stored, data.created_at)
            if after is EXPIRED:
                self.connections.may_write_now(conn)
                _delete_unchanged(conn, [(key, text)])
                return None
            if after != stored and after is not None:
                self.connections.may_write_now(conn)
                # If the record changed since we read it, a concurrent set or delete wins.
                # Another program may have stored it as a BLOB: readable, so UTF-8.
                new = record_with_expiry(
                    text if isinstance(text, str) else bytes(text).decode("utf-8"), after
                )
                conn.execute(_SLIDE_UNCHANGED, {"key": key, "old": text, "new": new})
            return data

        return self.connections.run(wait, read)

    def get_all(self, wait: bool) -> SessionMap | Deferred:
        if not wait:
            return DEFERRED  # a scan takes long: never on the event loop
        now = now_ms(self._clock)
        # Every row in range is decoded: the record, not the column, decides what is live.
        sql = f"SELECT key, value FROM {TABLE} WHERE {self._starts}"

        def read(conn: sqlite3.Connection) -> SessionMap:
            with contextlib.closing(conn.execute(sql, self._params())) as rows:
                result = sweep(self._config, now, self._readable(rows), collect=True)
            _slide_unchanged(conn, result.slides)
            return result.found

        return self.connections.run(wait, read)

    def delete(self, wait: bool, session_id: str) -> Deferred | None:
        key = self._prefix + session_id
        return self.connections.run(
            wait, lambda conn: _none(conn.execute(_DELETE_ONE, (key, key))), writes=True
        )

    def clear(self, wait: bool) -> Deferred | None:
        if not wait:
            return DEFERRED
        sql = f"DELETE FROM {TABLE} WHERE {self._starts}"
        self._cache.clear()
        return self.connections.run(
            wait, lambda conn: _none(conn.execute(sql, self._params())), writes=True
        )

    def inspect(self, wait: bool, session_id: str | None) -> list[SessionRecord] | Deferred:
        if not wait:
            return DEFERRED
        if session_id is None:
            sql, params = f"SELECT key, value FROM {TABLE} WHERE {self._starts}", self._params()
        else:
            sql, params = (
                f"SELECT key, value FROM {TABLE} WHERE key = :key",
                {"key": self._prefix + session_id},
            )
        return self._inspected(sql, params)[0]

    def _inspected(self, sql: str, params: object) -> tuple[list[SessionRecord], list[Any]]:
        """The records `sql` selects as `inspect` shows them, and the rows read."""
        rows = self.connections.run_waiting(lambda conn: fetch_all(conn, sql, params))
        cut = len(self._prefix.encode())
        return [inspect_record(_shown_id(key, cut), text) for key, text in rows], rows

    def clean_expired(self, wait: bool) -> int | Deferred:
        if not wait:
            return DEFERRED
        now = now_ms(self._clock)
        params = self._params(now=now)
        max_lifetime = self._config.max_lifetime_ms
        if max_lifetime is not None:
            params["created_before"] = now - max_lifetime
        return self._clean_expired(now, params)

    def _clean_expired(self, now: int, params: dict[str, object]) -> int:
        run, sql = self.connections.run_waiting, self._candidates
        rows = run(lambda conn: fetch_all(conn, sql, params))
        # The store's own records: SQL decided. The others: decoded, and only readable expired
        # ones removed. Each in key order (see delete_stamped), a batch per transaction.
        stamped = sorted((key, written) for key, value, written in rows if value is None)
        foreign = self._readable((key, value) for key, value, _ in rows if value is not None)
        unchanged = sorted(sweep(self._config, now, foreign, collect=False).removals)
        removed = 0
        for start in range(0, len(stamped), DELETE_BATCH):
            batch = stamped[start : start + DELETE_BATCH]
            removed += run(functools.partial(delete_stamped, rows=batch))
        if len(stamped) > DELETE_BATCH:
            run(checkpoint)
        for start in range(0, len(unchanged), DELETE_BATCH):
            records = unchanged[start : start + DELETE_BATCH]
            removed += run(functools.partial(_delete_unchanged, records=records))
        return removed

    def page(self, wait: bool, cursor: object, n: int) -> tuple[SessionMap, object] | Deferred:
        """The next `n` rows of the prefix range after the key `cursor`, in key order (keyset
        pagination: a page costs its own rows, and no snapshot is held between pages)."""
        if not wait:
            return DEFERRED  # it may slide, and a commit waits for the disk
        now = now_ms(self._clock)
        sql, params = self._page_query(cursor, n)

        def read(conn: sqlite3.Connection) -> tuple[SessionMap, object]:
            rows = fetch_all(conn, sql, params)
            batch = SessionMap(shards=1)
            result = sweep(self._config, now, self._readable(rows), collect=True, into=batch)
            _slide_unchanged(conn, result.slides)
            # Expired rows stay for clean_expired, as get_all leaves them.
            return result.found, (rows[-1][0] if len(rows) == n else None)

        return self.connections.run(wait, read)

    def inspect_page(
        self, wait: bool, cursor: object, n: int
    ) -> tuple[list[SessionRecord], object] | Deferred:
        """The next `n` rows after the key `cursor`, as `inspect` shows them (keyset, as `page`)."""
        if not wait:
            return DEFERRED  # a scan of the file: never on the event loop, as inspect
        records, rows = self._inspected(*self._page_query(cursor, n))
        return records, (rows[-1][0] if len(rows) == n else None)

    def _page_query(self, cursor: object, n: int) -> tuple[str, dict[str, object]]:
        """The statement of one keyset page: `n` rows of the prefix range after key `cursor`.

        The cursor is the last key read as stored (text, or a BLOB, which sorts after text).
        """
        sql = (
            f"SELECT key, value FROM {TABLE} WHERE {self._starts} AND key > :after"
            " ORDER BY key LIMIT :limit"
        )
        return sql, self._params(after="" if cursor is None else cursor, limit=n)


def _str_keys(rows: Iterable[tuple[Any, Any]], prefix: bytes) -> Iterable[tuple[str, Any]]:
    """The rows whose key is text; one of ours that is not UTF-8 is skipped with a warning."""
    for key, text in rows:
        if isinstance(key, str):
            yield key, text
        elif key.startswith(prefix):
            # It holds no session id anyone can ask for: inspect shows it, clear removes it.
            logger.warning("skipping a record whose key is not UTF-8 text")


def _lookup(conn: sqlite3.Connection, key: str, session_id: str) -> Any:
    """The value stored under `key` (as text, or bytes), or `None`; a BLOB key (and no text
    one) holds an unreadable record."""
    rows = fetch_all(conn, _SELECT_TEXT_KEY, (key,))
    if rows:
        return rows[0][0]
    # Only when there is no text key: the lookup of a live session stays one plain statement.
    if fetch_all(conn, _SELECT_BLOB_KEY, (key,)):
        raise CorruptRecordError(session_id, "its key is stored as a BLOB, not as text")
    return None


def _shown_id(key: str | bytes, cut: int) -> str:
    raw = key if isinstance(key, bytes) else key.encode()
    return raw[cut:].decode("utf-8", errors="replace")


def _none(_result: object) -> None:
    return None


def _slide_unchanged(conn: sqlite3.Connection, slides: list[tuple[tuple[str, str], int]]) -> None:
    """Give each (key, text read) its new expiry, only where the key still holds that text."""
    if slides:
        with transaction(conn):
            conn.executemany(
                _SLIDE_UNCHANGED,
                [
                    {"key": key, "old": text, "new": record_with_expiry(text, expires_at)}
                    for (key, text), expires_at in slides
                ],
            )


def _delete_unchanged(conn: sqlite3.Connection, records: list[tuple[str, str]]) -> int:
    """Delete each (key, value) only if the key still holds exactly that value."""
    with transaction(conn):
        cursor = conn.executemany(_DELETE_UNCHANGED, records)
        return cursor.rowcount
