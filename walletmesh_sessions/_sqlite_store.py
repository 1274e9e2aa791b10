"""Sessions in a SQLite file: durable, shared by processes, with an index on the expiry.

The file holds one key/value table, like a browser's localStorage: our records live under
``prefix + session_id`` and any other keys in it are left alone. Each record's expiry is also
kept in a column so that expired sessions are found through an index. Writes and scans run in
a worker thread, one statement or one short transaction at a time, so the event loop never
waits on a commit and another process never waits on us for long; plain lookups may run on the
caller's thread (`get_without_waiting`).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from ._codec import decode_readable, decode_record, encode_record, inspect_record
from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._errors import StoreClosedError, StoreUnavailableError
from ._expiry import Clock, expiry_after_read, expiry_after_write, is_expired, now_ms

__all__ = ("DEFERRED", "Deferred", "SqliteSessions", "prefix_upper_bound")

T = TypeVar("T")


class Deferred:
    """The answer of `get_without_waiting` when the call must go to a worker thread."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = Deferred()

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
# Slide a record's expiry, changing nothing else, only if it still holds what we decoded.
_SLIDE_UNCHANGED = (
    f"UPDATE {TABLE} SET value = json_set(value, '$.expiresAt', :exp), expires_at = :exp"
    " WHERE key = :key AND value = :old"
)
LIVE = "(expires_at IS NULL OR expires_at >= :now)"


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


class SqliteSessions:
    """The seven operations over a SQLite file, for `LocalStorageSessionStore`.

    Methods are blocking; the store runs them in a worker thread. One connection per store,
    used by one thread at a time.
    """

    def __init__(self, path: str, prefix: str, config: SessionStoreConfig, clock: Clock) -> None:
        self._path = path
        self._prefix = prefix
        self._upper = prefix_upper_bound(prefix)
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # A second, read-only connection that never waits, for lookups on the caller's thread.
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._closed = False
        self._in_range = "key >= :lo AND key < :hi" if self._upper is not None else "key >= :lo"

    @property
    def path(self) -> str:
        """The file's path, as given."""
        return self._path

    # -- plumbing --------------------------------------------------------------------------

    def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation` on the connection (opened on first use), translating errors."""
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

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
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
        reader.execute("PRAGMA query_only=1")
        return reader

    def close(self) -> None:
        with self._lock, self._reader_lock:
            self._closed = True
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.close()
            self._conn = self._reader = None

    def get_without_waiting(self, session_id: str) -> SessionData | Deferred | None:
        """`get` on the calling thread if it can finish at once, else `DEFERRED`.

        Only a plain read qualifies: a live session that needs no refresh, or a missing one.
        Anything that must write (remove an expired session, slide an expiry) or wait (the
        store not opened yet, a busy lock, another call using the reader) is deferred to a
        worker thread. A primary-key lookup in WAL mode never waits for writers.
        """
        if not self._reader_lock.acquire(blocking=False):
            return DEFERRED
        try:
            if self._reader is None or self._closed:
                return DEFERRED
            try:
                row = self._reader.execute(
                    f"SELECT value FROM {TABLE} WHERE key = ?", (self._prefix + session_id,)
                ).fetchone()
            except sqlite3.DatabaseError:
                # Busy (a worker thread may wait, this thread may not), or an error the
                # threaded path reports properly.
                return DEFERRED
        finally:
            self._reader_lock.release()
        if row is None:
            return None
        data, expires_at = decode_record(row[0], session_id)
        now = now_ms(self._clock)
        if is_expired(expires_at, now) or expiry_after_read(self._config, now, expires_at) != (
            expires_at
        ):
            return DEFERRED
        return data

    def _params(self, **extra: object) -> dict[str, object]:
        return {"lo": self._prefix, "hi": self._upper, **extra}

    # -- the operations --------------------------------------------------------------------

    def set(self, session_id: str, data: SessionData) -> None:
        expires_at = expiry_after_write(self._config, now_ms(self._clock))
        value = encode_record(data, expires_at)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {TABLE} (key, value, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value, expires_at = excluded.expires_at",
                (self._prefix + session_id, value, expires_at),
            )

        self.run(write)

    def get(self, session_id: str) -> SessionData | None:
        key = self._prefix + session_id
        now = now_ms(self._clock)

        def read(conn: sqlite3.Connection) -> SessionData | None:
            row = conn.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            text: str = row[0]
            data, expires_at = decode_record(text, session_id)
            if is_expired(expires_at, now):
                _delete_unchanged(conn, [(key, text)])
                return None
            slid_to = expiry_after_read(self._config, now, expires_at)
            if slid_to != expires_at:
                # If the record changed since we read it, a concurrent set or delete wins.
                conn.execute(_SLIDE_UNCHANGED, {"key": key, "old": text, "exp": slid_to})
            return data

        return self.run(read)

    def get_all(self) -> dict[str, SessionData]:
        now = now_ms(self._clock)
        slid_to = expiry_after_read(self._config, now, None)
        refresh = self._config.refresh_on_access and slid_to is not None
        sql = f"SELECT key, value FROM {TABLE} WHERE {self._in_range} AND {LIVE}"

        def read(conn: sqlite3.Connection) -> dict[str, SessionData]:
            found: dict[str, SessionData] = {}
            slides: list[dict[str, object]] = []
            for session_id, text, data, expires_at in decode_readable(
                conn.execute(sql, self._params(now=now)), self._prefix
            ):
                if is_expired(expires_at, now):
                    continue
                found[session_id] = data
                if refresh:
                    slides.append({"key": self._prefix + session_id, "old": text, "exp": slid_to})
            if slides:
                with _transaction(conn):
                    conn.executemany(_SLIDE_UNCHANGED, slides)
            return found

        return self.run(read)

    def delete(self, session_id: str) -> None:
        key = self._prefix + session_id
        self.run(lambda conn: conn.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,)))

    def clear(self) -> None:
        sql = f"DELETE FROM {TABLE} WHERE {self._in_range}"
        self.run(lambda conn: conn.execute(sql, self._params()))

    def inspect(self, session_id: str | None) -> list[SessionRecord]:
        if session_id is None:
            sql, params = f"SELECT key, value FROM {TABLE} WHERE {self._in_range}", self._params()
        else:
            sql, params = (
                f"SELECT key, value FROM {TABLE} WHERE key = :key",
                {"key": self._prefix + session_id},
            )
        rows = self.run(lambda conn: conn.execute(sql, params).fetchall())
        cut = len(self._prefix)
        return [inspect_record(key[cut:], text) for key, text in rows]

    def clean_expired(self) -> int:
        now = now_ms(self._clock)
        # The partial index on expires_at makes this cost grow with the expired rows only.
        sql = (
            f"SELECT key, value FROM {TABLE} INDEXED BY {TABLE}_expiry"
            f" WHERE expires_at IS NOT NULL AND expires_at < :now AND {self._in_range}"
        )
        candidates = self.run(lambda conn: conn.execute(sql, self._params(now=now)).fetchall())
        expired = [
            (self._prefix + session_id, text)
            for session_id, text, _data, expires_at in decode_readable(candidates, self._prefix)
            if is_expired(expires_at, now)
        ]
        removed = 0
        for start in range(0, len(expired), DELETE_BATCH):
            batch = expired[start : start + DELETE_BATCH]
            removed += self.run(functools.partial(_delete_unchanged, records=batch))
        return removed


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
        cursor = conn.executemany(f"DELETE FROM {TABLE} WHERE key = ? AND value = ?", records)
        return cursor.rowcount
