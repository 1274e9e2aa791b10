"""The pools a `PostgresSessionStore` makes from a URL: psycopg's, reconnecting sooner and
saying at once why they cannot connect, through psycopg_pool's public API only (see
"Reconnecting" and "Refused connections" in the PostgreSQL docs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import psycopg
import psycopg_pool

from .._core.log import logger
from .._core.masking import redact, redact_message

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ("POOL_NAME", "RECONNECT_SECONDS", "ConnectAttempts", "OwnAsyncPool", "OwnPool")

# Seconds a pool of the store's own keeps trying a connection that failed, in the background.
RECONNECT_SECONDS: Final = 0.5
# Seconds a caller waits in a pool's queue at a time: then, if the pool's latest connection
# attempt failed meanwhile (the server went away), it connects once itself and learns why.
WAIT_STEP: Final = 0.25
# The name of the pools the store makes (and so opens, closes and keeps quiet).
POOL_NAME: Final = "walletmesh-sessions"
# psycopg_pool's warnings for a failed attempt and for one given up, left out for our pools.
_QUIET_WARNINGS: Final = (
    f"error connecting in {POOL_NAME!r}",
    f"reconnection attempt in pool {POOL_NAME!r}",
)


class ConnectAttempts:
    """How a pool's latest connection attempt went, logged once per change of outcome."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()  # the synchronous pool connects in its worker threads
        self.connected = False  # the latest attempt succeeded
        self.error: psycopg.Error | None = None  # the latest attempt's error, if it failed

    @contextlib.contextmanager
    def noted(self) -> Iterator[None]:
        """Note how the connection attempt inside the block went."""
        try:
            yield
        except psycopg.Error as exc:
            self.failed(exc)
            raise
        self.succeeded()

    def succeeded(self) -> None:
        with self._lock:
            again, self.connected, self.error = self.error is not None, True, None
        if again:
            logger.info("PostgreSQL at %s: connected, after failed attempts", redact(self._url))

    def failed(self, exc: psycopg.Error) -> None:
        with self._lock:
            lost, self.connected, self.error = self.connected, False, exc
        if lost:  # a pool that worked: an outage begins (callers are told each time)
            reason = redact_message(" ".join(str(exc).split()), self._url)
            logger.warning("PostgreSQL at %s: cannot connect: %s", redact(self._url), reason)

    def explain(self, exc: psycopg_pool.PoolTimeout) -> psycopg_pool.PoolTimeout:
        """`exc`, saying why the pool has no connection when its latest attempt failed."""
        if self.error is None:
            return exc
        msg = f"{exc}; the latest connection attempt failed: {self.error}"
        return psycopg_pool.PoolTimeout(msg)

    def must_probe(self, stats: Mapping[str, int]) -> bool:
        """True if no connection is ready and the latest attempt failed (or none succeeded)."""
        return not self.connected and not stats.get("pool_available")


def _async_connection(attempts: ConnectAttempts) -> type[psycopg.AsyncConnection[Any]]:
    class Connection(psycopg.AsyncConnection[Any]):
        """An `AsyncConnection` whose every connect tells `attempts` how it went."""

        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            with attempts.noted():
                return await super().connect(conninfo, **kwargs)

    return Connection


def _sync_connection(attempts: ConnectAttempts) -> type[psycopg.Connection[Any]]:
    class Connection(psycopg.Connection[Any]):
        """A `Connection` whose every connect tells `attempts` how it went."""

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            with attempts.noted():
                return super().connect(conninfo, **kwargs)

    return Connection


class _QuietAttempts(logging.Filter):
    """Drops psycopg_pool's warnings for each failed attempt of the store's own pools."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING and record.getMessage().startswith(_QUIET_WARNINGS)
        )


_QUIET = _QuietAttempts()


def _own_options(connection_class: type[Any]) -> dict[str, Any]:
    """The options every pool of the store's own is made with."""
    logging.getLogger("psycopg.pool").addFilter(_QUIET)  # once: the filter is one object
    return {
        "connection_class": connection_class,
        "name": POOL_NAME,
        "reconnect_timeout": RECONNECT_SECONDS,
    }


def _probe_kwargs(conninfo: str, kwargs: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """`kwargs` for a caller's own attempt: within its `timeout`, unless the settings say."""
    if timeout is None or "connect_timeout" in kwargs or "connect_timeout" in conninfo:
        return kwargs
    return {**kwargs, "connect_timeout": max(2, math.ceil(timeout))}


def _step(left: float | None) -> float:
    """How long to wait in the pool's queue before looking again how its attempts went."""
    return WAIT_STEP if left is None else min(left, WAIT_STEP)


def _remaining(timeout: float | None, start: float) -> float | None:
    return None if timeout is None else max(timeout - (time.monotonic() - start), 0.001)


def _last_step(left: float | None) -> bool:
    """True if the wait in the queue that just ran out was the caller's last."""
    return left is not None and left <= WAIT_STEP


class OwnAsyncPool(psycopg_pool.AsyncConnectionPool[Any]):
    """An `AsyncConnectionPool` that reconnects sooner and says why it cannot; `url` (the
    store's, as given) masks secrets in what is logged."""

    def __init__(self, conninfo: str, *, url: str, kwargs: dict[str, Any], **options: Any) -> None:
        self.attempts = ConnectAttempts(url)
        self._connect_with = (conninfo, kwargs)
        self._probing = asyncio.Lock()
        own = _own_options(_async_connection(self.attempts))
        super().__init__(conninfo, kwargs=kwargs, **own, **options)

    async def getconn(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (psycopg's)
        """A connection; at once libpq's error when the pool cannot connect (see the module)."""
        start = time.monotonic()
        while True:
            if self.attempts.must_probe(self.get_stats()):
                await self._probe(timeout, start)
            left = _remaining(timeout, start)
            try:
                return await super().getconn(_step(left))
            except psycopg_pool.PoolTimeout as exc:
                if _last_step(left):
                    raise self.attempts.explain(exc) from exc

    async def _probe(self, within: float | None, start: float) -> None:
        """Connect once, one caller at a time (the others then see how it went)."""
        left = _remaining(within, start)
        with anyio.move_on_after(math.inf if left is None else left):
            async with self._probing:
                if not self.attempts.connected:
                    conninfo, kwargs = self._connect_with
                    kwargs = _probe_kwargs(conninfo, kwargs, _remaining(within, start))
                    await (await self.connection_class.connect(conninfo, **kwargs)).close()


class OwnPool(psycopg_pool.ConnectionPool[Any]):
    """A `ConnectionPool` that reconnects sooner and says why it cannot."""

    def __init__(self, conninfo: str, *, url: str, kwargs: dict[str, Any], **options: Any) -> None:
        self.attempts = ConnectAttempts(url)
        self._connect_with = (conninfo, kwargs)
        self._probing = threading.Lock()
        own = _own_options(_sync_connection(self.attempts))
        super().__init__(conninfo, kwargs=kwargs, **own, **options)

    def getconn(self, timeout: float | None = None) -> Any:
        """A connection; at once libpq's error when the pool cannot connect (see the module)."""
        start = time.monotonic()
        while True:
            if self.attempts.must_probe(self.get_stats()):
                self._probe(timeout, start)
            left = _remaining(timeout, start)
            try:
                return super().getconn(_step(left))
            except psycopg_pool.PoolTimeout as exc:
                if _last_step(left):
                    raise self.attempts.explain(exc) from exc

    def _probe(self, timeout: float | None, start: float) -> None:
        """Connect once, one caller at a time (the others then see how it went)."""
        left = _remaining(timeout, start)
        if not self._probing.acquire(timeout=-1 if left is None else left):
            return  # out of time: the pool's own wait below says so
        try:
            if not self.attempts.connected:
                conninfo, kwargs = self._connect_with
                kwargs = _probe_kwargs(conninfo, kwargs, _remaining(timeout, start))
                self.connection_class.connect(conninfo, **kwargs).close()
        finally:
            self._probing.release()
