"""Statements on one connection: rows read whole (no snapshot stays pinned), a busy lock
recognized, and transactions that write nothing for a caller who gave up."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from ..._core.deadline import current_deadline

__all__ = ("Operation", "fetch_all", "guarded", "is_busy", "text_or_bytes", "transaction")

T = TypeVar("T")

Operation = Callable[[sqlite3.Connection], T]
# SQLite's primary result codes for "another connection holds the lock".
_BUSY_CODES = frozenset({5, 6})


def text_or_bytes(raw: bytes) -> str | bytes:
    """TEXT from SQLite: str when UTF-8, else the bytes (an unreadable record, not a crash)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def fetch_all(conn: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    """Every row of `sql`, the statement read to its end (which resets it: no snapshot stays
    pinned), or closed if reading fails."""
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall()
    except BaseException:
        cursor.close()
        raise


def is_busy(exc: sqlite3.DatabaseError) -> bool:
    """True if `exc` says another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc)


def guarded(operation: Operation[T]) -> Operation[T]:
    """`operation` in one `transaction` (its own ones become part of it): a single statement
    that writes then also writes nothing once its caller has given up."""

    def guarded(conn: sqlite3.Connection) -> T:
        with transaction(conn):
            return operation(conn)

    return guarded


class transaction:
    """BEGIN IMMEDIATE ... COMMIT: the write lock up front (no deadlock), nothing written for a
    caller who gave up meanwhile; inside an open transaction it adds nothing."""

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
