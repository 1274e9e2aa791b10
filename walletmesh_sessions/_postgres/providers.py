"""Where a `PostgresSessionStore` gets its connections, for the event loop in use.

A caller's pool or connection is used as it is and never closed (`CallerProvider`); from a
URL the store makes its own pools on first use and closes them (`UrlProvider`): an
`AsyncConnectionPool` per asyncio loop, one `ConnectionPool` (in worker threads) for every
trio run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.to_thread
import psycopg
import psycopg_pool

from .._core.errors import InvalidConfigError
from .._core.loops import PerLoop
from .._core.masking import redact
from .pools import POOL_NAME, OwnAsyncPool, OwnPool
from .sources import (
    AsyncConnectionSource,
    AsyncPoolSource,
    AsyncSource,
    SyncConnectionSource,
    SyncPoolSource,
    SyncSource,
)
from .target import UrlTarget

__all__ = ("CallerProvider", "Provider", "UrlProvider", "on_asyncio", "open_source")


def on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Provider:
    """Where a store gets its connections, for the event loop in use."""

    url: str | None = None

    def asyncio_source(self) -> AsyncSource | SyncSource:
        raise NotImplementedError

    def trio_source(self) -> SyncSource:
        raise NotImplementedError

    def limiter(self) -> anyio.CapacityLimiter:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class CallerProvider(Provider):
    """A pool or connection the caller made and keeps: used as it is, never closed."""

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


class UrlProvider(Provider):
    """Pools the store makes from a URL on first use and closes: an `AsyncConnectionPool` per
    asyncio loop, one `ConnectionPool` (in worker threads) for every trio run."""

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
