"""Where one call gets its connection: a psycopg pool (the store's own or a caller's), or a
single caller's connection, which calls then take turns on.

The asynchronous sources serve `run_async`; the synchronous ones serve worker threads
(`run_in_thread`). Each gives a call a connection within the call's `Deadline`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import anyio
import psycopg
import psycopg_pool

from .._core.deadline import Deadline

__all__ = (
    "IDLE",
    "AsyncConn",
    "AsyncConnectionSource",
    "AsyncPoolSource",
    "AsyncSource",
    "SyncConn",
    "SyncConnectionSource",
    "SyncPoolSource",
    "SyncSource",
)

# Seconds a connection of the store's own pool may stay kept aside by it between check-ins.
KEEP_SECONDS: Final = 30.0
IDLE: Final = psycopg.pq.TransactionStatus.IDLE

AsyncConn = psycopg.AsyncConnection[Any]
SyncConn = psycopg.Connection[Any]


class AsyncPoolSource:
    """Connections from an `AsyncConnectionPool`.

    With `keep` (the store's own pool, which nothing else uses), a connection a call is done
    with is kept aside for the next call rather than checked in: taking it back costs a list
    pop, not the pool's checkout (its locks and bookkeeping). A broken connection, one left
    in a transaction, or any while a call waits on the pool goes back to the pool; and every
    `KEEP_SECONDS` all kept ones do, so that the pool's own upkeep (maximum lifetime, idle
    shrinking) still applies. The pool's `max_size` still bounds the connections open.
    """

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Any], *, keep: bool = False) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.pool = pool
        self._keep = keep
        self._kept: list[AsyncConn] = []
        self._waiting = 0
        self._check_in_at = time.monotonic() + KEEP_SECONDS

    async def acquire(self, deadline: Deadline) -> AsyncConn:
        kept = self._kept
        while kept:
            conn = kept.pop()
            if not conn.closed:
                return conn
            await self.pool.putconn(conn)  # the pool replaces it
        self._waiting += 1
        try:
            got: AsyncConn = await self.pool.getconn(timeout=max(deadline.remaining(), 0.001))
        finally:
            self._waiting -= 1
        return got

    async def release(self, conn: AsyncConn) -> None:
        if (
            self._keep
            and not self._waiting
            and conn.pgconn.transaction_status == IDLE
            and not conn.closed
        ):
            if time.monotonic() < self._check_in_at:
                self._kept.append(conn)
                return
            self._check_in_at = time.monotonic() + KEEP_SECONDS
            await self.check_in()
        await self.pool.putconn(conn)  # the pool drops a broken one

    async def check_in(self) -> None:
        """Give every kept connection back to the pool (before it closes, for one)."""
        kept, self._kept = self._kept, []
        for conn in kept:
            await self.pool.putconn(conn)


class AsyncConnectionSource:
    """One caller's `AsyncConnection`: calls take turns on it."""

    def __init__(self, conn: AsyncConn) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.conn = conn
        self._lock: anyio.Lock | None = None

    async def acquire(self, deadline: Deadline) -> AsyncConn:
        if self._lock is None:
            self._lock = anyio.Lock()
        with anyio.move_on_after(deadline.remaining()):
            await self._lock.acquire()
            if self.conn.closed:  # there is no other to try: say so, at once
                self._lock.release()
                raise _closed()
            return self.conn
        raise deadline.exceeded("PostgreSQL session store", "its turn on the connection")

    async def release(self, conn: AsyncConn) -> None:
        assert self._lock is not None
        self._lock.release()


class SyncPoolSource:
    """Connections from a `ConnectionPool`, used from worker threads."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.pool = pool

    @contextlib.contextmanager
    def connection(self, deadline: Deadline) -> Iterator[SyncConn]:
        with self.pool.connection(timeout=max(deadline.remaining(), 0.001)) as conn:
            yield conn


class SyncConnectionSource:
    """One caller's synchronous `Connection`: calls take turns on it, from worker threads."""

    def __init__(self, conn: SyncConn) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.conn = conn
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, deadline: Deadline) -> Iterator[SyncConn]:
        if not deadline.acquire(self._lock):
            raise deadline.exceeded("PostgreSQL session store", "its turn on the connection")
        try:
            if self.conn.closed:  # there is no other to try: say so, at once
                raise _closed()
            yield self.conn
        finally:
            self._lock.release()


def _closed() -> psycopg.OperationalError:
    return psycopg.OperationalError("the connection the store was given is closed")


AsyncSource = AsyncPoolSource | AsyncConnectionSource
SyncSource = SyncPoolSource | SyncConnectionSource
