"""Sessions in a SQLite file: durable, shared by processes, with an index on the expiry.

The file holds one key/value table, like a browser's localStorage: our records live under
``prefix + session_id`` and any other keys in it are left alone. Each record's expiry is also
kept in a column so that expired sessions are found through an index. The backend follows the
`Backend` seam: a plain lookup runs at once on the caller's thread over a read-only connection
that never waits; everything else, and any lookup that would have to write or wait, runs in a
worker thread, one statement or one short transaction at a time, so the event loop never waits
on a commit and another process never waits on us for long.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._codec import decode_readable, encode_record, inspect_record, record_with_expiry
from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._decode_cache import DecodeCache
from ._errors import StoreClosedError, StoreUnavailableError
from ._expiry import EXPIRED, Clock, after_read, expiry_after_write, now_ms, sweep
from ._protocol import DEFERRED, Deferred

__all__ = ("SCHEMA", "TABLE", "SqliteBackend", "prefix_upper_bound")

T = TypeVar("T")

TABLE = "walletmesh_storage"
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at INTEGER"
    ") WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (expires_at)"
    " WHERE expires_at IS NOT NULL",
)
# How long a statement waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30.0
# Rows deleted per write transaction by clean_expired: short locks for other processes.
DELETE_BATCH = 1000
# Write a record's new text only if it still holds what we read (compare-and-set).
_SLIDE_UNCHANGED = (
    f"UPDATE {TABLE} SET value = :new, expires_at = :exp WHERE key = :key AND value = :old"
)
_DELETE_UNCHANGED = f"DELETE FROM {TABLE} WHERE key = ? AND value = ?"
LIVE = "(expires_at IS NULL OR expires_at >= :now)"

Operation = Callable[[sqlite3.Connection], T]
# A readable record of a scan: (session_id, (key, text read), data, expires_at).
_Readable = tuple[str, tuple[str, str], SessionData, int | None]


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string starting with `prefix` (None: no bound).

    SQLite compares TEXT as UTF-8 bytes, which orders like code points, so keys starting with
    `prefix` are exactly ``prefix <= key < bound``: no LIKE or GLOB wildcards involved.
    """
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
    """The seven operations over a SQLite file, for `LocalStorageSessionStore`.

    One writing connection per store, used by one worker thread at a time, and one read-only
    connection that never waits, for lookups on the caller's thread.
    """

    def __init__(self, path: str, prefix: str, config: SessionStoreConfig, clock: Clock) -> None:
        self._path = path
        self._prefix = prefix
        self._upper = prefix_upper_bound(prefix)
        self._config = config
        self._clock = clock
        self._cache = DecodeCache()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._closed = False
        self._in_range = "key >= :lo AND key < :hi" if self._upper is not None else "key >= :lo"

    @property
    def path(self) -> str:
        """The file's path, as given."""
        return self._path

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, wait: bool, operation: Operation[T]) -> T | Deferred:
        """Run `operation` now on the reader (or `DEFERRED`), or, with `wait`, on the writer."""
        if wait:
            return self._run_waiting(operation)
        return self._run_now(operation)

    def _run_waiting(self, operation: Operation[T]) -> T:
        """Run `operation` on the writing connection (opened on first use); errors translated."""
        with self._lock:
            if self._closed:
                msg = f"the session store on {self._path!r} is closed"
                raise StoreClosedError(msg)
            try:
                if self._conn is None:
                    self._conn = self._open()
                    self._reader = self._open_reader()
                return operation(self._conn)
            except sqlite3.DatabaseError as exc:
                msg = f"SQLite session store {self._path!r}: {exc}"
                raise StoreUnavailableError(msg) from exc

    def _run_now(self, operation: Operation[T]) -> T | Deferred:
        """Run `operation` on the read-only connection if that needs no waiting at all.

        Anything that would wait (the store not opened yet, another call on the reader, a busy
        lock) or write (the reader is query-only) leaves nothing behind and answers `DEFERRED`.
        """
        if not self._reader_lock.acquire(blocking=False):
            return DEFERRED
        try:
            reader = self._reader
            if reader is None or self._closed:
                return DEFERRED
            try:
                return operation(reader)
            except sqlite3.Error:
                # Busy, a write, or an error the waiting path reports properly.
                if reader.in_transaction:
                    reader.rollback()
                return DEFERRED
        finally:
            self._reader_lock.release()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.text_factory = _text
            # WAL: readers never block the writer; FULL: a commit is on disk when acknowledged.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with _transaction(conn):
                for statement in SCHEMA:
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_reader(self) -> sqlite3.Connection | None:
        if self._path == ":memory:":
            return None  # a second connection would open another, empty database
        reader = sqlite3.connect(
            self._path, timeout=0, isolation_level=None, check_same_thread=False
        )
        reader.text_factory = _text
        reader.execute("PRAGMA query_only=1")
        return reader

    def close(self) -> None:
        with self._lock, self._reader_lock:
            self._closed = True
            self._cache.clear()
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.close()
            self._conn = self._reader = None

    def _params(self, **extra: object) -> dict[str, object]:
        return {"lo": self._prefix, "hi": self._upper, **extra}

    def _readable(self, rows: Iterable[tuple[Any, Any]]) -> Iterable[_Readable]:
        """Readable records of scanned rows, as ``(session_id, (key, text), data, expiry)``."""
        prefix = self._prefix
        for session_id, text, data, expires_at in decode_readable(
            _str_keys(rows), prefix, self._cache.decode
        ):
            yield session_id, (prefix + session_id, text), data, expires_at

    # -- the operations --------------------------------------------------------------------

    def set(self, wait: bool, session_id: str, data: SessionData) -> Deferred | None:
        if not wait:
            return DEFERRED  # a commit waits for the disk: never on the event loop
        expires_at = expiry_after_write(self._config, now_ms(self._clock))
        value = encode_record(data, expires_at)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {TABLE} (key, value, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value, expires_at = excluded.expires_at",
                (self._prefix + session_id, value, expires_at),
            )

        return self._run(wait, write)

    def get(self, wait: bool, session_id: str) -> SessionData | Deferred | None:
        key = self._prefix + session_id
        decode = self._cache.decode

        def read(conn: sqlite3.Connection) -> SessionData | None:
            row = conn.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            text = row[0]
            data, stored = decode(text, session_id)
            after = after_read(self._config, now_ms(self._clock), stored)
            if after is EXPIRED:
                _delete_unchanged(conn, [(key, text)])
                return None
            if after != stored and after is not None:
                # If the record changed since we read it, a concurrent set or delete wins.
                new = record_with_expiry(text, after)
                conn.execute(_SLIDE_UNCHANGED, {"key": key, "old": text, "new": new, "exp": after})
            return data

        return self._run(wait, read)

    def get_all(self, wait: bool) -> dict[str, SessionData] | Deferred:
        if not wait:
            return DEFERRED  # a scan takes long: never on the event loop
        now = now_ms(self._clock)
        sql = f"SELECT key, value FROM {TABLE} WHERE {self._in_range} AND {LIVE}"

        def read(conn: sqlite3.Connection) -> dict[str, SessionData]:
            rows = conn.execute(sql, self._params(now=now))
            result = sweep(self._config, now, self._readable(rows), collect=True)
            if result.slides:
                with _transaction(conn):
                    conn.executemany(
                        _SLIDE_UNCHANGED,
                        [
                            {
                                "key": key,
                                "old": text,
                                "new": record_with_expiry(text, exp),
                                "exp": exp,
                            }
                            for (key, text), exp in result.slides
                        ],
                    )
            return result.found

        return self._run(wait, read)

    def delete(self, wait: bool, session_id: str) -> Deferred | None:
        if not wait:
            return DEFERRED
        key = self._prefix + session_id
        return self._run(
            wait, lambda conn: _none(conn.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,)))
        )

    def clear(self, wait: bool) -> Deferred | None:
        if not wait:
            return DEFERRED
        sql = f"DELETE FROM {TABLE} WHERE {self._in_range}"
        self._cache.clear()
        return self._run(wait, lambda conn: _none(conn.execute(sql, self._params())))

    def inspect(self, wait: bool, session_id: str | None) -> list[SessionRecord] | Deferred:
        if not wait:
            return DEFERRED
        if session_id is None:
            sql, params = f"SELECT key, value FROM {TABLE} WHERE {self._in_range}", self._params()
        else:
            sql, params = (
                f"SELECT key, value FROM {TABLE} WHERE key = :key",
                {"key": self._prefix + session_id},
            )
        rows = self._run_waiting(lambda conn: conn.execute(sql, params).fetchall())
        cut = len(self._prefix.encode())
        return [inspect_record(_shown_id(key, cut), text) for key, text in rows]

    def clean_expired(self, wait: bool) -> int | Deferred:
        if not wait:
            return DEFERRED
        now = now_ms(self._clock)
        # The partial index on expires_at makes this cost grow with the expired rows only.
        sql = (
            f"SELECT key, value FROM {TABLE} INDEXED BY {TABLE}_expiry"
            f" WHERE expires_at IS NOT NULL AND expires_at < :now AND {self._in_range}"
        )
        candidates = self._run_waiting(
            lambda conn: conn.execute(sql, self._params(now=now)).fetchall()
        )
        expired = sweep(self._config, now, self._readable(candidates), collect=False).removals
        removed = 0
        for start in range(0, len(expired), DELETE_BATCH):
            batch = expired[start : start + DELETE_BATCH]
            removed += self._run_waiting(functools.partial(_delete_unchanged, records=batch))
        return removed


def _text(raw: bytes) -> str | bytes:
    """TEXT from SQLite: str when UTF-8, else the bytes (an unreadable record, not a crash)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _str_keys(rows: Iterable[tuple[Any, Any]]) -> Iterable[tuple[str, Any]]:
    # A key that is not UTF-8 holds no session id anyone can ask for: only clear removes it.
    return ((key, text) for key, text in rows if isinstance(key, str))


def _shown_id(key: str | bytes, cut: int) -> str:
    raw = key if isinstance(key, bytes) else key.encode()
    return raw[cut:].decode("utf-8", errors="replace")


def _none(_result: object) -> None:
    return None


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, so it never deadlocks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _delete_unchanged(conn: sqlite3.Connection, records: list[tuple[str, str]]) -> int:
    """Delete each (key, value) only if the key still holds exactly that value."""
    with _transaction(conn):
        cursor = conn.executemany(_DELETE_UNCHANGED, records)
        return cursor.rowcount
