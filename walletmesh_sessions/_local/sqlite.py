"""Sessions in a SQLite file: durable, shared by processes, with an index on the expiry.

The file holds one key/value table, like a browser's localStorage: our records live under
``prefix + session_id`` and any other keys in it are left alone. Each record's expiry is also
computed by SQLite from its JSON (a generated column, so it can never disagree with the
record) and indexed, so that expired sessions are found fast. The backend follows the
`Backend` seam: a lookup, and with durability "process" a per-session write too, runs at once
on the caller's thread over a second connection that never waits (busy timeout 0, no automatic
checkpoint); anything that would wait (a lock held, a commit that syncs to disk) leaves nothing
behind and runs in a worker thread instead, one statement or one short transaction at a time,
so the event loop never waits on the disk and another process never waits on us for long.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, TypeVar

from .._core.codec import decode_readable, encode_record, inspect_record, record_with_expiry
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import DEFAULT_TIMEOUT, Deadline, current_deadline
from .._core.decode_cache import DecodeCache
from .._core.errors import (
    CorruptRecordError,
    InvalidConfigError,
    SessionIdTakenError,
    SessionStoreError,
    StoreClosedError,
    StoreUnavailableError,
)
from .._core.expiry import (
    EXPIRED,
    Clock,
    after_read,
    expiry_after_update,
    expiry_after_write,
    now_ms,
    stamped,
    sweep,
)
from .._core.gil import sharing_the_gil
from .._core.lifecycle import Change, rotated, updated
from .._core.log import logger
from .._core.protocol import DEFERRED, Deferred
from .._core.session_map import SessionMap

__all__ = (
    "DURABILITY",
    "SCHEMA",
    "TABLE",
    "Durability",
    "SqliteBackend",
    "check_durability",
    "open_existing",
    "prefix_upper_bound",
)

T = TypeVar("T")

TABLE = "walletmesh_storage"
# The record's expiresAt as the codec reads it (0 or absent: none), NULL for anything else.
# A BLOB value is read as the text it holds, as the codec reads it.
EXPIRES_AT = (
    "CASE WHEN json_valid(CAST(value AS TEXT))"
    " AND json_type(CAST(value AS TEXT), '$.expiresAt') IN ('integer', 'real')"
    " THEN NULLIF(json_extract(CAST(value AS TEXT), '$.expiresAt'), 0) END"
)
CREATED_AT = "json_extract(CAST(value AS TEXT), '$.data.createdAt')"
_CREATE_TABLE = (
    "CREATE TABLE {name} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    f" expires_at INTEGER GENERATED ALWAYS AS ({EXPIRES_AT}) VIRTUAL) WITHOUT ROWID"
)
SCHEMA = (
    _CREATE_TABLE.format(name=f"IF NOT EXISTS {TABLE}"),
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (expires_at)"
    " WHERE expires_at IS NOT NULL",
)
"""The statements that create the table; rows are inserted as ``(key, value)`` only."""
# Generated columns need SQLite 3.31.
MIN_SQLITE = (3, 31, 0)
# Rows deleted per write transaction by clean_expired: short locks for other processes.
DELETE_BATCH = 1000
# New files are the service user's only: they hold every live session id in clear.
FILE_MODE = 0o600
# Write a record's new text only if it still holds what we read (compare-and-set).
_SLIDE_UNCHANGED = f"UPDATE {TABLE} SET value = :new WHERE key = :key AND value = :old"
_DELETE_UNCHANGED = f"DELETE FROM {TABLE} WHERE key = ? AND value = ?"
# A key written as a BLOB (bytes from another program) is the same key to a reader of text.
# A text parameter equals only a TEXT key; a BLOB key with the same bytes needs the CAST.
_SELECT_TEXT_KEY = f"SELECT value FROM {TABLE} WHERE key = ?"
_SELECT_BLOB_KEY = f"SELECT 1 FROM {TABLE} WHERE key = CAST(? AS BLOB)"
_DELETE_ONE = f"DELETE FROM {TABLE} WHERE key IN (?, CAST(? AS BLOB))"
_UPSERT = (
    f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
# SQLite's primary result codes for "another connection holds the lock".
_BUSY_CODES = frozenset({5, 6})

Durability = Literal["process", "power"]
DURABILITY: Final[dict[str, str]] = {"process": "NORMAL", "power": "FULL"}
"""Each durability level and the ``PRAGMA synchronous`` it sets (the file is always in WAL)."""
# Commits on the calling thread between two checkpoints run by a background thread: the WAL
# stays a few MiB, and no checkpoint (which syncs the database file) runs on the event loop.
CHECKPOINT_EVERY = 500
# Held while a store creates a missing file (see _create_private).
_CREATING = threading.Lock()


def check_durability(durability: object) -> Durability:
    """Return `durability` if it is "process" or "power", else raise `InvalidConfigError`."""
    if durability == "process" and isinstance(durability, str):
        return "process"
    if durability == "power" and isinstance(durability, str):
        return "power"
    msg = f'durability must be "process" or "power", got {durability!r}'
    raise InvalidConfigError(msg)


class _MustWait(Exception):
    """Raised inside an operation on the calling thread: defer it to the worker instead."""


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

    One writing connection per store, used by one worker thread at a time, and one connection
    that never waits, for the caller's thread: lookups always, writes too with durability
    "process" (where a commit does not sync to disk); with "power" it is read-only.
    """

    def __init__(
        self,
        path: str,
        prefix: str,
        config: SessionStoreConfig,
        clock: Clock,
        timeout: float = DEFAULT_TIMEOUT,
        durability: Durability = "process",
    ) -> None:
        self._path = path
        self._durability = check_durability(durability)
        self._writes_now = self._durability == "process"
        self._synchronous = DURABILITY[self._durability]
        self._inline_commits = 0
        self._seen_changes = 0
        self._checkpointing = threading.Lock()
        self._timeout = timeout
        # The writing connection's busy timeout, as last set (None: not set on this one).
        self._busy_ms: int | None = None
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
        # (st_dev, st_ino) of the file the connections have open; None for ":memory:".
        self._identity: tuple[int, int] | None = None
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

    @property
    def path(self) -> str:
        """The file's path, as given."""
        return self._path

    @property
    def durability(self) -> Durability:
        """What an acknowledged write survives: "process" (a crash) or "power" (power loss)."""
        return self._durability

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, wait: bool, operation: Operation[T], *, writes: bool = False) -> T | Deferred:
        """Run `operation` now on the caller's thread (or `DEFERRED`), or, with `wait`, on the
        writer. An operation that `writes` is tried now only where commits need no disk sync.
        """
        if wait:
            return self._run_waiting(_guarded(operation) if writes else operation)
        if writes and not self._writes_now:
            return DEFERRED  # a commit that syncs to disk: never on the event loop
        return self._run_now(operation, writes=writes)

    def _run_waiting(self, operation: Operation[T]) -> T:
        """Run `operation` on the writing connection (opened on first use); errors translated.

        Every wait (for this store's lock, for another connection's lock on the file) takes
        only what is left of the call's deadline; running out raises `StoreUnavailableError`.
        """
        deadline = current_deadline() or Deadline(self._timeout)
        if not deadline.acquire(self._lock):
            raise deadline.exceeded(self._describe(), "other calls on this store")
        try:
            if self._closed:
                msg = f"the session store on {self._path!r} is closed"
                raise StoreClosedError(msg)
            try:
                conn = self._conn
                if conn is None:
                    conn = self._connect(deadline)
                else:
                    self._check_same_file()
                busy_ms = _busy_timeout_ms(deadline.remaining_ms())
                if busy_ms != self._busy_ms:
                    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
                    self._busy_ms = busy_ms
                return operation(conn)
            except SessionStoreError:
                raise
            except sqlite3.DatabaseError as exc:
                if _is_busy(exc):
                    waiting_for = "another connection's lock on the file"
                    raise deadline.exceeded(self._describe(), waiting_for) from exc
                msg = f"{self._describe()}: {exc}"
                raise StoreUnavailableError(msg) from exc
            except OSError as exc:
                msg = f"{self._describe()}: {exc}"
                raise StoreUnavailableError(msg) from exc
        finally:
            self._lock.release()

    def _run_now(self, operation: Operation[T], *, writes: bool = False) -> T | Deferred:
        """Run `operation` on the caller's connection if that needs no waiting at all.

        Anything that would wait (the store not opened yet, another call on that connection,
        a call of this store in a worker thread when this one `writes`, a busy lock), a write
        where the connection is read-only, or a file that is no longer the one opened, rolls
        back whatever it began and answers `DEFERRED`: the worker then runs the same operation.
        """
        if not self._reader_lock.acquire(blocking=False):
            return DEFERRED
        try:
            reader = self._reader
            if reader is None or self._closed or not self._is_same_file():
                return DEFERRED
            if writes and self._lock.locked():
                return DEFERRED  # calls already queued in worker threads go first
            try:
                result = operation(reader)
            except (sqlite3.Error, _MustWait):
                # Busy, a write refused, or an error the waiting path reports properly.
                if reader.in_transaction:
                    reader.rollback()
                return DEFERRED
            if reader.total_changes != self._seen_changes:
                self._seen_changes = reader.total_changes
                self._committed_now()
            return result
        finally:
            self._reader_lock.release()

    def _may_write_now(self, conn: sqlite3.Connection) -> None:
        """Before a write inside an operation: on the caller's thread, defer it if it must wait."""
        if conn is self._reader and (not self._writes_now or self._lock.locked()):
            raise _MustWait

    def _committed_now(self) -> None:
        """Count a commit made on the caller's thread; every so often, checkpoint elsewhere."""
        self._inline_commits += 1
        if self._inline_commits < CHECKPOINT_EVERY or not self._checkpointing.acquire(False):
            return
        self._inline_commits = 0
        try:
            threading.Thread(target=self._checkpoint, name="wm-sessions-checkpoint").start()
        except RuntimeError:
            # No new threads (the interpreter is shutting down). The write has committed:
            # report no error for it; SQLite checkpoints when the connection closes.
            self._checkpointing.release()
        except BaseException:
            self._checkpointing.release()
            raise

    def _checkpoint(self) -> None:
        """Copy the WAL into the database without waiting for anyone (PASSIVE), in a thread.

        On a connection of its own, without the store's lock: writes on the caller's thread go
        on meanwhile (a passive checkpoint takes no write lock).
        """
        try:
            if self._closed or not self._is_same_file():
                return
            with contextlib.closing(open_existing(self._path)) as conn:
                _fetch_all(conn, "PRAGMA wal_checkpoint(PASSIVE)", ())
        except sqlite3.Error:
            pass  # busy or moved: the next checkpoint, or SQLite's own on close, does it
        finally:
            self._checkpointing.release()

    def _describe(self) -> str:
        return f"SQLite session store {self._path!r}"

    def _connect(self, deadline: Deadline) -> sqlite3.Connection:
        """Open the file (creating it owner-only), bring its schema up to date, then a reader."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            msg = f"{self._describe()} needs SQLite 3.31 or newer, found {sqlite3.sqlite_version}"
            raise StoreUnavailableError(msg)
        identity = None if self._path == ":memory:" else _create_private(self._path)
        conn = sqlite3.connect(
            self._path,
            timeout=deadline.remaining(),
            isolation_level=None,
            check_same_thread=False,
        )
        reader = None
        try:
            conn.text_factory = _text
            # WAL: readers never block the writer. NORMAL: a commit survives a crash of the
            # process (it is in the WAL); FULL: it is also synced, surviving power loss.
            _enter_wal(conn, deadline)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            _ensure_schema(conn)
            reader = self._open_reader()
        except BaseException:
            conn.close()
            raise
        self._conn, self._reader, self._identity = conn, reader, identity
        return conn

    def _open_reader(self) -> sqlite3.Connection | None:
        if self._path == ":memory:":
            return None  # a second connection would open another, empty database
        reader = sqlite3.connect(
            self._path, timeout=0, isolation_level=None, check_same_thread=False
        )
        reader.text_factory = _text
        reader.execute(f"PRAGMA synchronous={self._synchronous}")
        # A checkpoint syncs the database file: never on the caller's thread (see _checkpoint).
        reader.execute("PRAGMA wal_autocheckpoint=0")
        if not self._writes_now:
            reader.execute("PRAGMA query_only=1")
        self._seen_changes = reader.total_changes
        return reader

    def _is_same_file(self) -> bool:
        """True if the path still names the file the connections have open."""
        if self._identity is None:
            return True
        try:
            st = os.stat(self._path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def _check_same_file(self) -> None:
        """Raise if the file was deleted or replaced since it was opened (writes would be lost).

        The connections to the old file are dropped first: the next call opens the path anew.
        """
        if self._is_same_file():
            return
        what = "replaced by another file" if os.path.exists(self._path) else "deleted"
        self._drop_connections(moved=True)
        msg = (
            f"{self._describe()} was {what} while open; nothing was written"
            " (the next call opens the path again)"
        )
        raise StoreUnavailableError(msg)

    def _drop_connections(self, *, moved: bool) -> None:
        conn = self._conn
        if moved and conn is not None:
            # SQLite leaves the WAL of a file that moved; empty it through our own handles,
            # or its pages would be replayed into whatever file is opened at this path next.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA busy_timeout = 0")
                _fetch_all(conn, "PRAGMA wal_checkpoint(TRUNCATE)", ())
        with self._reader_lock:
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.close()
            self._conn = self._reader = None
            self._identity = None
            self._busy_ms = None
        self._cache.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_connections(moved=not self._is_same_file())
        # A background checkpoint holds the file open on a connection of its own: wait for it
        # (one that has not started yet sees the store closed and opens nothing).
        with self._checkpointing:
            pass

    def _params(self, **extra: object) -> dict[str, object]:
        return {"lo": self._prefix, "hi": self._upper, "n": len(self._prefix.encode()), **extra}

    def _readable(self, rows: Iterable[tuple[Any, Any]]) -> Iterable[_Readable]:
        """Readable records of scanned rows, as ``(session_id, (key, text), data, expiry)``.

        Scans run in worker threads: decoding shares the GIL with the event loop's thread.
        """
        prefix = self._prefix
        for session_id, text, data, expires_at in decode_readable(
            _str_keys(sharing_the_gil(rows), prefix.encode()), prefix, self._cache.decode
        ):
            yield session_id, (prefix + session_id, text), data, expires_at

    # -- the operations --------------------------------------------------------------------

    def set(self, wait: bool, session_id: str, data: SessionData) -> Deferred | None:
        now = now_ms(self._clock)
        key, value = self._record(session_id, stamped(self._config, data, now), now)
        return self._run(wait, lambda conn: _none(conn.execute(_UPSERT, (key, value))), writes=True)

    def create(self, wait: bool, session_id: str, data: SessionData) -> bool | Deferred:
        def create(conn: sqlite3.Connection) -> bool:
            now = now_ms(self._clock)
            with _transaction(conn):
                if self._live(conn, session_id, now) is not None:
                    return False
                key, value = self._record(session_id, stamped(self._config, data, now), now)
                conn.execute(_UPSERT, (key, value))
                return True

        return self._run(wait, create, writes=True)

    def update(self, wait: bool, session_id: str, change: Change) -> SessionData | Deferred | None:
        def update(conn: sqlite3.Connection) -> SessionData | None:
            now = now_ms(self._clock)
            changed = False
            try:
                # The write lock is held from the read to the write: no concurrent write is lost.
                with _transaction(conn):
                    live = self._live(conn, session_id, now)
                    if live is None:
                        return None
                    _text, current, after = live
                    changed = True
                    new = updated(self._config, now, current, change)
                    expires_at = expiry_after_update(self._config, after, new.created_at)
                    conn.execute(
                        _UPSERT, (self._prefix + session_id, encode_record(new, expires_at))
                    )
                    return new
            except sqlite3.Error as exc:
                if not changed:
                    raise
                # `change` has run (the write or the commit failed): report it here rather
                # than run it again in a worker.
                msg = f"{self._describe()}: {exc}"
                raise StoreUnavailableError(msg) from exc

        return self._run(wait, update, writes=True)

    def rotate(self, wait: bool, session_id: str, new_id: str) -> str | Deferred | None:
        def rotate(conn: sqlite3.Connection) -> str | None:
            now = now_ms(self._clock)
            with _transaction(conn):
                live = self._live(conn, session_id, now)
                if live is None:
                    return None
                if new_id == session_id or self._live(conn, new_id, now) is not None:
                    raise SessionIdTakenError(new_id)
                _text, data, after = live
                moved = encode_record(rotated(data, session_id, new_id), after)
                conn.execute(_UPSERT, (self._prefix + new_id, moved))
                conn.execute(f"DELETE FROM {TABLE} WHERE key = ?", (self._prefix + session_id,))
                return new_id

        return self._run(wait, rotate, writes=True)

    def _record(self, session_id: str, data: SessionData, now: int) -> tuple[str, str]:
        expires_at = expiry_after_write(self._config, now, data.created_at)
        return self._prefix + session_id, encode_record(data, expires_at)

    def _live(
        self, conn: sqlite3.Connection, session_id: str, now: int
    ) -> tuple[str, SessionData, int | None] | None:
        """``(text, data, expiry after a read)`` inside a transaction; an expired one goes."""
        key = self._prefix + session_id
        text = _lookup(conn, key, session_id)
        if text is None:
            return None
        data, stored = self._cache.decode(text, session_id)
        after = after_read(self._config, now, stored, data.created_at)
        if after is EXPIRED:
            conn.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,))
            return None
        return text, data, after

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
                self._may_write_now(conn)
                _delete_unchanged(conn, [(key, text)])
                return None
            if after != stored and after is not None:
                self._may_write_now(conn)
                # If the record changed since we read it, a concurrent set or delete wins.
                new = record_with_expiry(text, after)
                conn.execute(_SLIDE_UNCHANGED, {"key": key, "old": text, "new": new})
            return data

        return self._run(wait, read)

    def get_all(self, wait: bool) -> SessionMap | Deferred:
        if not wait:
            return DEFERRED  # a scan takes long: never on the event loop
        now = now_ms(self._clock)
        # Every row in range is decoded: the record, not the column, decides what is live.
        sql = f"SELECT key, value FROM {TABLE} WHERE {self._starts}"

        def read(conn: sqlite3.Connection) -> SessionMap:
            with contextlib.closing(conn.execute(sql, self._params())) as rows:
                result = sweep(self._config, now, self._readable(rows), collect=True)
            if result.slides:
                with _transaction(conn):
                    conn.executemany(
                        _SLIDE_UNCHANGED,
                        [
                            {"key": key, "old": text, "new": record_with_expiry(text, exp)}
                            for (key, text), exp in result.slides
                        ],
                    )
            return result.found

        return self._run(wait, read)

    def delete(self, wait: bool, session_id: str) -> Deferred | None:
        key = self._prefix + session_id
        return self._run(
            wait, lambda conn: _none(conn.execute(_DELETE_ONE, (key, key))), writes=True
        )

    def clear(self, wait: bool) -> Deferred | None:
        if not wait:
            return DEFERRED
        sql = f"DELETE FROM {TABLE} WHERE {self._starts}"
        self._cache.clear()
        return self._run(wait, lambda conn: _none(conn.execute(sql, self._params())), writes=True)

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
        rows = self._run_waiting(lambda conn: _fetch_all(conn, sql, params))
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
        params = self._params(now=now)
        max_lifetime = self._config.max_lifetime_ms
        if max_lifetime is not None:
            # Records stored before the absolute timeout was set may carry a later expiresAt
            # than their createdAt allows: with one, the whole range is read (no index).
            sql = (
                f"SELECT key, value FROM {TABLE} WHERE {self._starts} AND"
                " ((expires_at IS NOT NULL AND expires_at < :now) OR ("
                f"json_valid(CAST(value AS TEXT)) AND {CREATED_AT} < :created_before))"
            )
            params["created_before"] = now - max_lifetime
        candidates = self._run_waiting(lambda conn: _fetch_all(conn, sql, params))
        expired = sweep(self._config, now, self._readable(candidates), collect=False).removals
        removed = 0
        for start in range(0, len(expired), DELETE_BATCH):
            batch = expired[start : start + DELETE_BATCH]
            removed += self._run_waiting(functools.partial(_delete_unchanged, records=batch))
        return removed

    def page(self, wait: bool, cursor: object, n: int) -> tuple[SessionMap, object] | Deferred:
        """The next `n` rows of the prefix range after the key `cursor`, in key order.

        Keyset pagination on the primary key: each page costs its own rows, whatever the
        size of the table, and holds no read snapshot between pages.
        """
        if not wait:
            return DEFERRED  # it may slide, and a commit waits for the disk
        now = now_ms(self._clock)
        sql, params = self._page_query(cursor, n)

        def read(conn: sqlite3.Connection) -> tuple[SessionMap, object]:
            rows = _fetch_all(conn, sql, params)
            batch = SessionMap(shards=1)
            result = sweep(self._config, now, self._readable(rows), collect=True, into=batch)
            if result.slides:
                with _transaction(conn):
                    conn.executemany(
                        _SLIDE_UNCHANGED,
                        [
                            {"key": key, "old": text, "new": record_with_expiry(text, exp)}
                            for (key, text), exp in result.slides
                        ],
                    )
            # Expired rows stay for clean_expired, as get_all leaves them.
            return result.found, (rows[-1][0] if len(rows) == n else None)

        return self._run(wait, read)

    def inspect_page(
        self, wait: bool, cursor: object, n: int
    ) -> tuple[list[SessionRecord], object] | Deferred:
        """The next `n` rows after the key `cursor`, as `inspect` shows them (keyset, as `page`)."""
        if not wait:
            return DEFERRED  # a scan of the file: never on the event loop, as inspect
        sql, params = self._page_query(cursor, n)
        rows = self._run_waiting(lambda conn: _fetch_all(conn, sql, params))
        cut = len(self._prefix.encode())
        records = [inspect_record(_shown_id(key, cut), text) for key, text in rows]
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


def _text(raw: bytes) -> str | bytes:
    """TEXT from SQLite: str when UTF-8, else the bytes (an unreadable record, not a crash)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _str_keys(rows: Iterable[tuple[Any, Any]], prefix: bytes) -> Iterable[tuple[str, Any]]:
    """The rows whose key is text; one of ours that is not UTF-8 is skipped with a warning."""
    for key, text in rows:
        if isinstance(key, str):
            yield key, text
        elif key.startswith(prefix):
            # It holds no session id anyone can ask for: inspect shows it, clear removes it.
            logger.warning("skipping a record whose key is not UTF-8 text")


def _lookup(conn: sqlite3.Connection, key: str, session_id: str) -> Any:
    """The value stored under `key` (as text, or bytes), or `None`.

    A key stored as a BLOB holds a record no text lookup finds, yet it is under the prefix:
    it is an unreadable record (a text key, when there is one too, wins).
    """
    rows = _fetch_all(conn, _SELECT_TEXT_KEY, (key,))
    if rows:
        return rows[0][0]
    # Only when there is no text key: the lookup of a live session stays one plain statement.
    if _fetch_all(conn, _SELECT_BLOB_KEY, (key,)):
        raise CorruptRecordError(session_id, "its key is stored as a BLOB, not as text")
    return None


def _shown_id(key: str | bytes, cut: int) -> str:
    raw = key if isinstance(key, bytes) else key.encode()
    return raw[cut:].decode("utf-8", errors="replace")


def _none(_result: object) -> None:
    return None


def _fetch_one(conn: sqlite3.Connection, sql: str, params: Any) -> Any:
    # Read to the end: a statement left running pins a read snapshot and, after close(),
    # keeps the file open; fetchall also beats a with-block on this hot path.
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def open_existing(path: str) -> sqlite3.Connection:
    """A connection to the database file at `path`, which must exist: SQLite raises
    rather than create a new file (with the process's default permissions, not 0600)."""
    uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=rw"
    return sqlite3.connect(uri, uri=True, timeout=0)


def _busy_timeout_ms(remaining_ms: int) -> int:
    """A busy timeout within `remaining_ms`: over a second, rounded down to 100 ms, so that
    calls in a row find it already set (each new value compiles a statement)."""
    return remaining_ms if remaining_ms < 1000 else remaining_ms - remaining_ms % 100


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    with contextlib.closing(conn.execute(sql, params)) as cursor:
        return cursor.fetchall()


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc)


def _create_private(path: str) -> tuple[int, int]:
    """Create `path` owner-only if missing (an existing file keeps its mode); its identity.

    An existing file is never opened here: closing a descriptor of a file drops every POSIX
    lock this process holds on it, the shared lock of another store's SQLite connection
    included, and a process whose last connection closes while no lock shows ours deletes the
    WAL under our feet (our later commits go to a file no one else reads: lost updates).
    Under `_CREATING`, no store of this process connects to a file this call has just created
    before the descriptor is closed.
    """
    with _CREATING:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(path)
            return st.st_dev, st.st_ino
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return st.st_dev, st.st_ino


def _enter_wal(conn: sqlite3.Connection, deadline: Deadline) -> None:
    """Put the file in WAL mode, waiting within `deadline` for another connection's lock.

    On a file still in rollback-journal mode whose write lock another connection holds,
    SQLite answers "busy" at once here, without its busy handler: retry until the deadline.
    """
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or deadline.remaining() <= 0:
                raise
        time.sleep(min(pause, deadline.remaining()))
        pause = min(pause * 2, 0.05)


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table, or migrate one with a plain expires_at column, in one transaction.

    Checked inside the write transaction, so two processes opening an old file at once
    migrate it once. Every row is copied as stored, foreign rows included.
    """
    with _transaction(conn):
        hidden = {row[1]: row[6] for row in _fetch_all(conn, f"PRAGMA table_xinfo({TABLE})", ())}
        if hidden.get("expires_at") == 0:  # 0: an ordinary column, written by older releases
            old = f"{TABLE}_before_generated_expiry"
            conn.execute(f"ALTER TABLE {TABLE} RENAME TO {old}")
            conn.execute(f"DROP INDEX IF EXISTS {TABLE}_expiry")
            conn.execute(_CREATE_TABLE.format(name=TABLE))
            conn.execute(f"INSERT INTO {TABLE} (key, value) SELECT key, value FROM {old}")
            conn.execute(f"DROP TABLE {old}")
        for statement in SCHEMA:
            conn.execute(statement)


def _guarded(operation: Operation[T]) -> Operation[T]:
    """`operation` in one `_transaction` (its own ones become part of it): a single statement
    that writes then also writes nothing once its caller has given up."""

    def guarded(conn: sqlite3.Connection) -> T:
        with _transaction(conn):
            return operation(conn)

    return guarded


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, so it never deadlocks, and
    writes nothing for a call whose caller gave up meanwhile.

    Inside a transaction already open, it adds nothing: the outer one commits or rolls back.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._outer = False

    def __enter__(self) -> None:
        self._outer = not self._conn.in_transaction
        if not self._outer:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        deadline = current_deadline()
        if deadline is not None and deadline.cancelled:
            # The caller gave up while this waited for the lock (`Deadline.cancel`): a
            # cancelled call never writes later.
            self._conn.execute("ROLLBACK")
            raise deadline.exceeded("the session store", "the file's write lock")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._outer:
            return
        if exc_type is not None:
            if self._conn.in_transaction:  # an I/O error may have rolled it back already
                self._conn.execute("ROLLBACK")
            return
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            # A failed commit may leave the transaction open, holding the write lock.
            if self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise


def _delete_unchanged(conn: sqlite3.Connection, records: list[tuple[str, str]]) -> int:
    """Delete each (key, value) only if the key still holds exactly that value."""
    with _transaction(conn):
        cursor = conn.executemany(_DELETE_UNCHANGED, records)
        return cursor.rowcount
