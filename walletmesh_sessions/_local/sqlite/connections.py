"""A store's two connections to its SQLite file, and the locks that decide which runs what.

The writer serves one worker thread at a time, within each call's deadline; the reader never
waits, on the caller's thread: lookups, and writes too with durability "process" (no disk
sync). Anything that would wait there is rolled back and answered `DEFERRED`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Final, TypeVar

from ..._core.deadline import DEFAULT_TIMEOUT, Deadline, current_deadline
from ..._core.errors import SessionStoreError, StoreClosedError, StoreUnavailableError
from ..._core.protocol import DEFERRED, Deferred
from .file import (
    DURABILITY,
    MIN_SQLITE,
    Durability,
    Identity,
    check_durability,
    create_private,
    ensure_schema,
    enter_wal,
    identity_of,
    open_existing,
)
from .transactions import Operation, fetch_all, guarded, is_busy, text_or_bytes

__all__ = ("CHECKPOINT_EVERY", "Connections", "MustWait")

T = TypeVar("T")

# Commits on the calling thread between two checkpoints run by a background thread: the WAL
# stays a few MiB, and no checkpoint (which syncs the database file) runs on the event loop.
CHECKPOINT_EVERY = 500


class MustWait(Exception):
    """Raised inside an operation on the calling thread: defer it to the worker instead."""


def _busy_timeout_ms(remaining_ms: int) -> int:
    """A busy timeout within `remaining_ms`: over a second, rounded down to 100 ms, so that
    calls in a row find it already set (each new value compiles a statement)."""
    return remaining_ms if remaining_ms < 1000 else remaining_ms - remaining_ms % 100


class Connections:
    """The connections of one store to the file at `path`, opened on first use.

    `forget` is called whenever they are dropped (the file moved, or closed): whatever was
    cached from the file is stale from then on.
    """

    def __init__(
        self,
        path: str,
        forget: Callable[[], None],
        timeout: float = DEFAULT_TIMEOUT,
        durability: Durability = "process",
    ) -> None:
        self.path: Final = path
        self.durability: Final = check_durability(durability)
        self._forget = forget
        self._writes_now = self.durability == "process"
        self._synchronous = DURABILITY[self.durability]
        self._inline_commits = 0
        self._seen_changes = 0
        self._checkpointing = threading.Lock()
        self._timeout = timeout
        # The writing connection's busy timeout, as last set (None: not set on this one).
        self._busy_ms: int | None = None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._closed = False
        # The identity of the file the connections have open; None for ":memory:".
        self._identity: Identity | None = None

    def describe(self) -> str:
        """The store, as messages name it."""
        return f"SQLite session store {self.path!r}"

    def run(self, wait: bool, operation: Operation[T], *, writes: bool = False) -> T | Deferred:
        """Run `operation` now on the caller's thread (or `DEFERRED`), or, with `wait`, on the
        writer. An operation that `writes` is tried now only where commits need no disk sync.
        """
        if wait:
            return self.run_waiting(guarded(operation) if writes else operation)
        if writes and not self._writes_now:
            return DEFERRED  # a commit that syncs to disk: never on the event loop
        return self._run_now(operation, writes=writes)

    def run_waiting(self, operation: Operation[T]) -> T:
        """Run `operation` on the writing connection (opened on first use), within the call's
        deadline (`StoreUnavailableError` when it runs out); errors translated."""
        deadline = current_deadline() or Deadline(self._timeout)
        if not deadline.acquire(self._lock):
            raise deadline.exceeded(self.describe(), "other calls on this store")
        try:
            if self._closed:
                msg = f"the session store on {self.path!r} is closed"
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
                if is_busy(exc):
                    waiting_for = "another connection's lock on the file"
                    raise deadline.exceeded(self.describe(), waiting_for) from exc
                msg = f"{self.describe()}: {exc}"
                raise StoreUnavailableError(msg) from exc
            except OSError as exc:
                msg = f"{self.describe()}: {exc}"
                raise StoreUnavailableError(msg) from exc
        finally:
            self._lock.release()

    def _run_now(self, operation: Operation[T], *, writes: bool = False) -> T | Deferred:
        """Run `operation` on the caller's connection if that needs no waiting at all; else
        (not opened yet, busy, calls queued in workers, read-only, the file moved) roll back
        whatever it began and answer `DEFERRED`, for the worker to run it."""
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
            except (sqlite3.Error, MustWait):
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

    def may_write_now(self, conn: sqlite3.Connection) -> None:
        """Before a write inside an operation: on the caller's thread, defer it if it must wait."""
        if conn is self._reader and (not self._writes_now or self._lock.locked()):
            raise MustWait

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
        """Copy the WAL into the database (PASSIVE: no write lock), in a thread, on a
        connection of its own, without the store's lock."""
        try:
            if self._closed or not self._is_same_file():
                return
            with contextlib.closing(open_existing(self.path)) as conn:
                fetch_all(conn, "PRAGMA wal_checkpoint(PASSIVE)", ())
        except sqlite3.Error:
            pass  # busy or moved: the next checkpoint, or SQLite's own on close, does it
        finally:
            self._checkpointing.release()

    def _connect(self, deadline: Deadline) -> sqlite3.Connection:
        """Open the file (creating it owner-only), bring its schema up to date, then a reader."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            msg = f"{self.describe()} needs SQLite 3.31 or newer, found {sqlite3.sqlite_version}"
            raise StoreUnavailableError(msg)
        identity = None if self.path == ":memory:" else create_private(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=deadline.remaining(),
            isolation_level=None,
            check_same_thread=False,
        )
        reader = None
        try:
            conn.text_factory = text_or_bytes
            # WAL: readers never block the writer. NORMAL: a commit survives a crash of the
            # process (it is in the WAL); FULL: it is also synced, surviving power loss.
            enter_wal(conn, deadline)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            ensure_schema(conn)
            reader = self._open_reader()
        except BaseException:
            conn.close()
            raise
        self._conn, self._reader, self._identity = conn, reader, identity
        return conn

    def _open_reader(self) -> sqlite3.Connection | None:
        if self.path == ":memory:":
            return None  # a second connection would open another, empty database
        reader = sqlite3.connect(
            self.path, timeout=0, isolation_level=None, check_same_thread=False
        )
        # No text_factory: SQLite's own str conversion, without a Python call per value. A value
        # that is not UTF-8 raises here, and the call goes to the writer, which reads it as bytes.
        reader.execute(f"PRAGMA synchronous={self._synchronous}")
        # A checkpoint syncs the database file: never on the caller's thread (see _checkpoint).
        reader.execute("PRAGMA wal_autocheckpoint=0")
        if not self._writes_now:
            reader.execute("PRAGMA query_only=1")
        self._seen_changes = reader.total_changes
        return reader

    def _is_same_file(self) -> bool:
        """True if the path still names the file the connections have open."""
        return self._identity is None or identity_of(self.path) == self._identity

    def _check_same_file(self) -> None:
        """Raise if the file was deleted or replaced since it was opened (writes would be lost),
        dropping the connections to it: the next call opens the path anew."""
        if self._is_same_file():
            return
        what = "replaced by another file" if os.path.exists(self.path) else "deleted"
        self._drop_connections(moved=True)
        msg = (
            f"{self.describe()} was {what} while open; nothing was written"
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
                fetch_all(conn, "PRAGMA wal_checkpoint(TRUNCATE)", ())
        with self._reader_lock:
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.close()
            self._conn = self._reader = None
            self._identity = None
            self._busy_ms = None
        self._forget()

    def close(self) -> None:
        """Close both connections; later calls raise `StoreClosedError`."""
        with self._lock:
            self._closed = True
            self._drop_connections(moved=not self._is_same_file())
        # A background checkpoint holds the file open on a connection of its own: wait for it
        # (one that has not started yet sees the store closed and opens nothing).
        with self._checkpointing:
            pass
