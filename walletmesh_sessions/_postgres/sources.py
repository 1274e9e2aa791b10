"""Where a call gets its connection: a psycopg pool (the store's own or a caller's), or a
single caller's connection, which calls then take turns on; and, per event loop, which of
them a store uses (`CallerProvider`, `UrlProvider`).

The asynchronous sources serve `run_async`, the synchronous ones worker threads
(`run_in_thread`); each gives a call a connection within the call's `Deadline`. From a URL
the store makes its own pools on first use and closes them: an `AsyncConnectionPool` per
asyncio loop, one `ConnectionPool` (in worker threads) for every trio run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import anyio
import anyio.to_thread
import psycopg
import psycopg_pool

from .._core.deadline import Deadline
from .._core.errors import InvalidConfigError
from .._core.loops import PerLoop
from .._core.masking import redact
from .pools import POOL_NAME, OwnAsyncPool, OwnPool
from .target import UrlTarget

__all__ = (
    "IDLE",
    "AsyncConn",
    "AsyncConnectionSource",
    "AsyncPoolSource",
    "AsyncSource",
    "CallerProvider",
    "Provider",
    "SyncConn",
    "SyncSource",
    "UrlProvider",
    "on_asyncio",
    "open_source",
)

# Seconds a connection of the store's own pool may stay kept aside by it between check-ins.
KEEP_SECONDS: Final = 30.0
IDLE: Final = psycopg.pq.TransactionStatus.IDLE

AsyncConn = psycopg.AsyncConnection[Any]
SyncConn = psycopg.Connection[Any]


class AsyncPoolSource:
    """Connections from an `AsyncConnectionPool`.

    With `keep` (the store's own pool), an idle connection is kept aside for the next call
    rather than checked in (a list pop, not the pool's checkout), unless a call waits on the
    pool; every `KEEP_SECONDS` all go back, so that the pool's own upkeep still applies.
    """

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Any], *, keep: bool = False) -> None:
        self.ready = False  # see `open_source`
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
        self.ready = False  # see `open_source`
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
        self.ready = False  # see `open_source`
        self.pool = pool

    @contextlib.contextmanager
    def connection(self, deadline: Deadline) -> Iterator[SyncConn]:
        with self.pool.connection(timeout=max(deadline.remaining(), 0.001)) as conn:
            yield conn


class SyncConnectionSource:
    """One caller's synchronous `Connection`: calls take turns on it, from worker threads."""

    def __init__(self, conn: SyncConn) -> None:
        self.ready = False  # see `open_source`
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


def on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class CallerProvider:
    """A pool or connection the caller made and keeps: used as it is, never closed."""

    url: str | None = None

    def __init__(self, given: object) -> None:
        self._async: AsyncSource | None = None
        self._sync: SyncSource | None = None
        size = 1
        if isinstance(given, psycopg_pool.AsyncConnectionPool):
            self._async = AsyncPoolSource(given)
        elif isinstance(given, psycopg_pool.ConnectionPool):
            self._sync = SyncPoolSource(given)
            size = given.max_size
        elif isinstance(given, psycopg.AsyncConnection):
            self._async = AsyncConnectionSource(given)
        elif isinstance(given, psycopg.Connection):
            self._sync = SyncConnectionSource(given)
        else:
            msg = (
                "connection must be a psycopg_pool.AsyncConnectionPool or ConnectionPool, or a"
                f" psycopg.AsyncConnection or Connection, got {type(given).__name__}"
            )
            raise InvalidConfigError(msg)
        self._kind = type(given).__name__
        self._limiters = _limiters(size)

    def asyncio_source(self) -> AsyncSource | SyncSource:
        source = self._async or self._sync
        assert source is not None
        return source

    def trio_source(self) -> SyncSource:
        if self._sync is None:
            msg = (
                f"a psycopg {self._kind} works on asyncio only; on trio pass a synchronous"
                " ConnectionPool or Connection (used in worker threads), or use"
                " PostgresSessionStore.from_url"
            )
            raise InvalidConfigError(msg)
        return self._sync

    def limiter(self) -> anyio.CapacityLimiter:
        return self._limiters.get()

    async def aclose(self) -> None:
        """Nothing to do: the caller closes its own pool or connection."""

    def describe(self) -> str:
        return f"the caller's {self._kind}"


class UrlProvider:
    """Pools the store makes from a URL on first use and closes."""

    def __init__(self, target: UrlTarget) -> None:
        self.url = target.url
        self._target = target
        self._async = PerLoop(self._new_async_source, close=_close_async_source)
        self._sync: SyncPoolSource | None = None
        self._limiters = _limiters(target.max_connections)

    def asyncio_source(self) -> AsyncSource:
        return self._async.get()

    def _new_async_source(self) -> AsyncPoolSource:
        return AsyncPoolSource(OwnAsyncPool(**self._pool_options()), keep=True)

    def trio_source(self) -> SyncSource:
        if self._sync is None:
            self._sync = SyncPoolSource(OwnPool(**self._pool_options()))
        return self._sync

    def _pool_options(self) -> dict[str, Any]:
        """What the store's own pools are made with: opened on first use (`open_source`)."""
        target = self._target
        return {
            "conninfo": target.conninfo,
            "url": target.url,
            "kwargs": dict(target.kwargs),
            "min_size": 1,
            "max_size": target.max_connections,
            "open": False,
        }

    def limiter(self) -> anyio.CapacityLimiter:
        return self._limiters.get()

    async def aclose(self) -> None:
        sync, self._sync = self._sync, None
        try:
            if sync is not None:
                await anyio.to_thread.run_sync(lambda: sync.pool.close(timeout=1.0))
        finally:
            # An asyncio pool can only be closed on its own loop; elsewhere its loop does it.
            if on_asyncio():
                await self._async.aclose()

    def describe(self) -> str:
        assert self.url is not None
        return redact(self.url)


def _limiters(size: int) -> PerLoop[anyio.CapacityLimiter]:
    """One worker-thread limiter of `size` per trio run (or asyncio loop): limiters belong to
    a loop."""
    return PerLoop(lambda: anyio.CapacityLimiter(size))


async def _close_async_source(source: AsyncPoolSource) -> None:
    await source.check_in()
    await source.pool.close(timeout=1.0)


async def open_source(source: AsyncSource | SyncSource) -> None:
    """Open the store's own pool on first use (a caller's is the caller's to open)."""
    if isinstance(source, (AsyncPoolSource, SyncPoolSource)) and source.pool.name == POOL_NAME:
        if isinstance(source, AsyncPoolSource):
            await source.pool.open(wait=False)
        else:
            source.pool.open(wait=False)
    source.ready = True


Provider = CallerProvider | UrlProvider
