"""The statements of `clean_expired`: which rows may be expired, and the delete of the store's
own ones, which SQL alone decides.

A row the store stamped (`TRUSTED`) holds a record it encoded: its ``expires_at`` column and
``createdAt`` are exactly what the codec reads, so it is deleted without a decode. Any other
row may be unreadable, and an unreadable record is never deleted: those are decoded first.
"""

from __future__ import annotations

import sqlite3

from .file import CREATED_AT, TABLE, TRUSTED
from .transactions import fetch_all, transaction

__all__ = (
    "AUTOCHECKPOINT_PAGES",
    "DELETE_BATCH",
    "candidates",
    "checkpoint",
    "delete_stamped",
)

# Rows deleted per write transaction: short locks for other processes.
DELETE_BATCH = 1000
_EXPIRED = "(expires_at IS NOT NULL AND expires_at < :now)"
_DELETE_STAMPED = f"DELETE FROM {TABLE} WHERE key = ? AND written = ?"
# SQLite's default: a commit that leaves the WAL this many pages long checkpoints it.
AUTOCHECKPOINT_PAGES = 1000


def candidates(in_range: str, starts: str, max_lifetime: bool) -> str:
    """The statement that reads every row that may be expired at ``:now``: ``(key, NULL,
    stamp)`` if the store stamped it (SQL has decided), else ``(key, value, stamp)``, to decode.

    `in_range` matches text keys from ``:lo`` to ``:hi``, `starts` every key under the prefix.
    Without a `max_lifetime`, the partial index on ``expires_at`` makes the cost grow with the
    expired rows only; with one (``createdAt`` before ``:created_before``), records stored
    before it was set may carry a later expiresAt than their createdAt allows, so the whole
    range is read.
    """
    if max_lifetime:
        # Only a JSON value has a createdAt to compare (json_extract raises on others).
        scope = (
            f"{starts} AND ({_EXPIRED} OR"
            f" (json_valid(CAST(value AS TEXT)) AND {CREATED_AT} < :created_before))"
        )
        source = TABLE
    else:
        scope = f"{_EXPIRED} AND {in_range}"
        source = f"{TABLE} INDEXED BY {TABLE}_expiry"
    return (
        f"SELECT key, CASE WHEN {TRUSTED} THEN NULL ELSE value END, written"
        f" FROM {source} WHERE {scope}"
    )


def delete_stamped(conn: sqlite3.Connection, rows: list[tuple[str, str]]) -> int:
    """Delete, in one write transaction, each ``(key, stamp)`` whose row still carries that
    stamp; how many.

    Every write of a value changes the stamp (the store's to a fresh one, anyone else's to
    NULL): an unchanged stamp is an unchanged row, found expired when read. Keys in order
    touch the table's pages in order, each about once.
    """
    # No checkpoint at this commit: it would copy (and sync) pages the next batches rewrite.
    # clean_expired checkpoints once at the end.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    try:
        with transaction(conn):
            return conn.executemany(_DELETE_STAMPED, rows).rowcount
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database as far as readers allow, without the write lock."""
    fetch_all(conn, "PRAGMA wal_checkpoint(PASSIVE)", ())
