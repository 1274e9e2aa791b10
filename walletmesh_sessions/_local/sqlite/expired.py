"""The statements of `clean_expired`: which rows may be expired, and the delete of the store's
own ones, which SQL alone decides.

A row the store stamped (`TRUSTED`) holds a record it encoded: its ``expires_at`` column and
``createdAt`` are exactly what the codec reads, so it is deleted without a decode. Any other
row may be unreadable, and an unreadable record is never deleted: those are decoded first.
"""

from __future__ import annotations

import sqlite3

from .file import CREATED_AT, TABLE, TRUSTED
from .transactions import transaction

__all__ = ("DELETE_BATCH", "ExpiredRows")

# Rows deleted per write transaction: short locks for other processes.
DELETE_BATCH = 1000
_EXPIRED = "(expires_at IS NOT NULL AND expires_at < :now)"


class ExpiredRows:
    """The expired rows under the prefix at ``:now`` (`in_range`: text keys from ``:lo`` to
    ``:hi``; `starts`: every key under the prefix), ``createdAt`` compared with
    ``:created_before`` too with a `max_lifetime`.

    Without one, the partial index on ``expires_at`` makes the cost grow with the expired rows
    only; with one, records stored before it was set may carry a later expiresAt than their
    createdAt allows, so the whole range is read.
    """

    def __init__(self, in_range: str, starts: str, max_lifetime: bool) -> None:
        if max_lifetime:
            expired = f"({_EXPIRED} OR {CREATED_AT} < :created_before)"
            # Only a JSON value has a createdAt to compare (json_extract raises on others).
            scope = (
                f"{starts} AND ({_EXPIRED} OR"
                f" (json_valid(CAST(value AS TEXT)) AND {CREATED_AT} < :created_before))"
            )
            source = TABLE
        else:
            expired, scope = _EXPIRED, f"{_EXPIRED} AND {in_range}"
            source = f"{TABLE} INDEXED BY {TABLE}_expiry"
        self.candidates = (
            f"SELECT key, CASE WHEN {TRUSTED} THEN NULL ELSE value END FROM {source} WHERE {scope}"
        )
        """Every row that may be expired: ``(key, NULL)`` if the store stamped it (SQL decides),
        else ``(key, value)``, to decode."""
        # The row is checked again as it is when deleted: a write since it was read wins.
        self._delete = f"DELETE FROM {TABLE} WHERE key = :key AND {TRUSTED} AND {expired}"

    def delete_stamped(
        self, conn: sqlite3.Connection, keys: list[str], params: dict[str, object]
    ) -> int:
        """Delete, in one write transaction, each of `keys` still stamped and expired; how many.

        Keys in order touch the table's pages in order, each about once.
        """
        with transaction(conn):
            rows = [{**params, "key": key} for key in keys]
            return conn.executemany(self._delete, rows).rowcount
