"""The statements of `clean_expired`: the store's own expired rows deleted in SQL, a batch per
write transaction; every other candidate read, for the codec to decide.

A row the store stamped (`TRUSTED`) holds a record it encoded: its ``expires_at`` column and
``createdAt`` are exactly what the codec reads, so SQL alone decides it. Any other row may be
unreadable, and an unreadable record is never deleted: those are decoded first.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import Any

from .file import CREATED_AT, TABLE, TRUSTED
from .transactions import fetch_all, transaction

__all__ = ("DELETE_BATCH", "ExpiredRows")

# Rows deleted per write transaction: short locks for other processes.
DELETE_BATCH = 1000
_EXPIRED = "(expires_at IS NOT NULL AND expires_at < :now)"
_UNTRUSTED = f"({TRUSTED}) IS NOT 1"  # NULL (no stamp) is untrusted too

Params = dict[str, object]
# A row of the batches' order, as read: (expires_at, key), or (key,).
Row = tuple[Any, ...]
# Rows deleted by one batch, and its last row (None: the last batch).
Batch = tuple[int, Row | None]


class ExpiredRows:
    """The expired rows of one store's key range (`in_range`: text keys; `starts`: every key
    under the prefix) at `now`, with ``createdAt`` checked too when there is a `max_lifetime`.

    Without one, the partial index on ``expires_at`` makes the cost grow with the expired rows
    only; with one, records stored before it was set may carry a later expiresAt than their
    createdAt allows, so the whole range is read. `batch`: rows deleted per transaction.
    """

    def __init__(
        self, in_range: str, starts: str, max_lifetime: bool, batch: int = DELETE_BATCH
    ) -> None:
        order: tuple[str, ...]
        if max_lifetime:
            expired = f"({_EXPIRED} OR {CREATED_AT} < :created_before)"
            source, order = TABLE, ("key",)
            scope = in_range
            bounded = rest = f"{in_range} AND {TRUSTED} AND {expired}"
            # Only a JSON value has a createdAt to compare (json_extract raises on others).
            untrusted = (
                f"{starts} AND {_UNTRUSTED} AND ({_EXPIRED} OR"
                f" (json_valid(CAST(value AS TEXT)) AND {CREATED_AT} < :created_before))"
            )
        else:
            source, order = f"{TABLE} INDEXED BY {TABLE}_expiry", ("expires_at", "key")
            scope = f"{_EXPIRED} AND {in_range}"
            # Below the batch's last row, expires_at < :now holds: the index range ends there.
            bounded = f"expires_at IS NOT NULL AND {in_range} AND {TRUSTED}"
            rest = f"{scope} AND {TRUSTED}"
            untrusted = f"{scope} AND {_UNTRUSTED}"
        columns = ", ".join(order)
        after = f"({columns}) > ({', '.join(f':after{i}' for i in range(len(order)))})"
        upto = f"({columns}) <= ({', '.join(f':upto{i}' for i in range(len(order)))})"
        self._order = order
        # Each batch ends at the `batch`-th row of the scope after the last batch (keyset):
        # it deletes at most that many, and never scans what earlier batches left behind.
        self._last_of_batch = {
            first: f"SELECT {columns} FROM {source} WHERE {scope}{'' if first else ' AND ' + after}"
            f" ORDER BY {columns} LIMIT 1 OFFSET {batch - 1}"
            for first in (True, False)
        }
        self._delete_upto = {
            first: f"DELETE FROM {source} WHERE {bounded}{'' if first else ' AND ' + after}"
            f" AND {upto}"
            for first in (True, False)
        }
        self._delete_rest = {
            first: f"DELETE FROM {source} WHERE {rest}{'' if first else ' AND ' + after}"
            for first in (True, False)
        }
        self.untrusted = f"SELECT key, value FROM {TABLE} WHERE {untrusted}"
        """The candidates to decode: every untrusted row under the prefix that may be expired."""

    def delete_trusted(
        self, run: Callable[[Callable[[sqlite3.Connection], Batch]], Batch], params: Params
    ) -> int:
        """Delete the expired stamped rows, one `run` (a write transaction) per batch; how many."""
        removed, last = 0, None
        while True:
            count, last = run(functools.partial(self._batch, params=params, after=last))
            removed += count
            if last is None:
                return removed

    def _batch(self, conn: sqlite3.Connection, params: Params, after: Row | None) -> Batch:
        """Delete the stamped expired rows of the batch after row `after` (None: the first);
        how many, and the batch's last row (None: no row is left after it)."""
        first = after is None
        if after is not None:
            params = {**params, **{f"after{i}": v for i, v in enumerate(after)}}
        with transaction(conn):
            rows = fetch_all(conn, self._last_of_batch[first], params)
            if not rows:
                return conn.execute(self._delete_rest[first], params).rowcount, None
            last = tuple(rows[0])
            upto = {f"upto{i}": v for i, v in enumerate(last)}
            return conn.execute(self._delete_upto[first], {**params, **upto}).rowcount, last
