"""The pools a `PostgresSessionStore` makes from a URL: psycopg's, reconnecting sooner.

psycopg_pool retries a failed connection attempt after 1 s, then 2, 4, 8... (up to its
``reconnect_timeout``): once the server is back, calls may find no connection for as long
as the current wait, however short their own timeout. The store's own pools try again
after 0.1 s, doubling to at most `MAX_DELAY`, so a call made once the server answers gets a
connection within that. A failed attempt on a local network costs one refused connect.
A pool the caller passes keeps its own policy.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg_pool
from psycopg_pool.base import AttemptWithBackoff

__all__ = ("MAX_DELAY", "OwnAsyncPool", "OwnPool")

MAX_DELAY: Final = 0.5


class _Backoff(AttemptWithBackoff):
    """psycopg_pool's backoff, starting at 0.1 s and never waiting more than `MAX_DELAY`."""

    INITIAL_DELAY = 0.1

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, MAX_DELAY)


class OwnAsyncPool(psycopg_pool.AsyncConnectionPool[Any]):
    """An `AsyncConnectionPool` that reconnects with `_Backoff`."""

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        await super()._add_connection(attempt or _Backoff(timeout=self.reconnect_timeout), growing)


class OwnPool(psycopg_pool.ConnectionPool[Any]):
    """A `ConnectionPool` that reconnects with `_Backoff`."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _Backoff(timeout=self.reconnect_timeout), growing)
