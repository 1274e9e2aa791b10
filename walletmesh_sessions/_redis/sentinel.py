"""Redis Sentinel: the clients of a ``redis+sentinel://`` store, which follow the primary.

Everything but the making of a client is `UrlClients`'s. The primary's pools ask the
sentinels for the primary whenever they open a connection (redis-py's), and again at most
once a `PRIMARY_RECHECK` while they use open ones: after a failover that leaves the old
primary running, redis-py's own pool would keep sending writes there, acknowledged and then
discarded when Sentinel turns it into a replica. The question runs in the background (a task,
or a thread), waited for at most `RECHECK_WAIT`, so sentinels that do not answer hold up no
call longer; a connection to any address but the primary last named is closed and opened
again before any command is sent on it, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .clients import UrlClients
from .url_checks import parse_url

__all__ = ("PRIMARY_RECHECK", "SentinelClients")

# redis-py leaves these untyped.
_AsyncSentinel: Callable[..., Any] = redis.asyncio.sentinel.Sentinel
_SyncSentinel: Callable[..., Any] = redis.sentinel.Sentinel

PRIMARY_RECHECK = 1.0  # seconds between two questions about the primary, while in use
RECHECK_WAIT = 0.25  # seconds the call that asks waits for the answer before it goes on


class SentinelClients(UrlClients):
    """`UrlClients` whose clients reach the primary through the sentinels."""

    def _primary(
        self, sentinel_class: Callable[..., Any], retry: type[Any], client: type, pool: type
    ) -> Any:
        """The primary's client, with the sentinels' clients it asks (closed with it)."""
        target = self._target
        sentinel = sentinel_class(
            target.sentinels,
            sentinel_kwargs={**target.sentinel_options, "retry": retry(NoBackoff(), 0)},
        )
        url_options = parse_url(target.url)
        for placeholder in ("host", "port"):
            url_options.pop(placeholder, None)
        # As with ConnectionPool.from_url, the URL's options win over the keyword ones.
        options = {"retry": retry(self._backoff(), self._retries), **self._options, **url_options}
        options.pop("timeout", None)  # the runners bound the waiting for a connection
        made = sentinel.master_for(
            target.service, redis_class=client, connection_pool_class=pool, **options
        )
        made.sentinel_clients = list(sentinel.sentinels)
        return made

    def _asyncio_client(self) -> redis.asyncio.Redis:
        client: _AsyncPrimary = self._primary(
            _AsyncSentinel, AsyncRetry, _AsyncPrimary, _AsyncPrimaryPool
        )
        return client

    def _sync_client(self) -> redis.Redis:
        client: _SyncPrimary = self._primary(_SyncSentinel, Retry, _SyncPrimary, _SyncPrimaryPool)
        return client


_RECHECK_ERRORS = (redis.RedisError, OSError)
# Each asks the sentinels and, if the primary moved, records it and closes idle connections.
_ask_async: Callable[[Any], Awaitable[Any]] = (
    redis.asyncio.sentinel.SentinelConnectionPool.get_master_address
)
_ask_sync: Callable[[Any], Any] = redis.sentinel.SentinelConnectionPool.get_master_address


def _recheck_due(pool: Any) -> bool:
    """True (and the next one scheduled) if `pool` should ask the sentinels again now."""
    now = time.monotonic()
    if now < pool.recheck_at or pool.asking or pool.master_address is None:
        return False  # not yet, under way, or never connected (connecting asks anyway)
    pool.recheck_at = now + PRIMARY_RECHECK
    pool.asking = True
    return True


class _AsyncPrimaryPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """The primary's pool on asyncio: it hands out connections to the primary last named only."""

    recheck_at = -math.inf
    asking = False
    _questions: set[asyncio.Task[None]] | None = None

    async def ensure_connection(self, connection: Any) -> None:
        if _recheck_due(self):
            task = asyncio.get_running_loop().create_task(self._ask())
            if self._questions is None:
                self._questions = set()
            self._questions.add(task)  # kept until done: a task nobody holds may vanish
            task.add_done_callback(self._questions.discard)
            await asyncio.wait({task}, timeout=RECHECK_WAIT)  # the answer, if it comes soon
        await super().ensure_connection(connection)
        if (connection.host, connection.port) != self.master_address:
            await connection.disconnect()
            await super().ensure_connection(connection)

    async def _ask(self) -> None:
        try:
            with suppress(*_RECHECK_ERRORS):
                await _ask_async(self)
        finally:
            self.asking = False


class _SyncPrimaryPool(redis.sentinel.SentinelConnectionPool):
    """The primary's pool in worker threads: `_AsyncPrimaryPool`'s rules, with a thread."""

    recheck_at = -math.inf
    asking = False

    def ensure_connection(self, connection: Any) -> None:
        if _recheck_due(self):
            question = threading.Thread(target=self._ask, daemon=True, name="sentinel-recheck")
            question.start()
            question.join(RECHECK_WAIT)  # the answer, if it comes soon
        super().ensure_connection(connection)
        if (connection.host, connection.port) != self.master_address:
            connection.disconnect()
            super().ensure_connection(connection)

    def _ask(self) -> None:
        try:
            with suppress(*_RECHECK_ERRORS):
                _ask_sync(self)
        finally:
            self.asking = False


# The sentinels' clients are closed from a list of their own: redis-py's `Sentinel` reorders
# its list as concurrent calls find the primary, and that race can drop one from it.
class _AsyncPrimary(redis.asyncio.Redis):
    """The primary's client, which closes its connections to the sentinels too."""

    sentinel_clients: list[redis.asyncio.Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            for sentinel in self.sentinel_clients:
                await sentinel.aclose()


class _SyncPrimary(redis.Redis):
    """`_AsyncPrimary` in worker threads."""

    sentinel_clients: list[redis.Redis]

    def close(self) -> None:
        try:
            super().close()
        finally:
            for sentinel in self.sentinel_clients:
                sentinel.close()
