"""Redis Sentinel for `RedisSessionStore.from_url`: the ``redis+sentinel://`` URL and its clients.

The URL names the sentinels and the service; the store asks them for the primary whenever it
opens a connection (redis-py's `SentinelConnectionPool`), and again at most once a second while
it uses open ones, so it follows the primary through a failover even when the old primary lives
on. Everything else (one asyncio client per event loop, a synchronous client in worker
threads on trio, bounded calls) is `_UrlClients`'s, unchanged: only the making of a client
differs.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._core.errors import InvalidConfigError
from .._core.masking import misread_userinfo, redact, redact_error, redact_message
from .._core.validation import taken_once
from .store import (
    CONNECTION_URL_PARAMETERS,
    STORE_URL_PARAMETERS,
    _check_client_options,
    _check_limits,
    _parse_url,
    _split_query,
    _UrlClients,
)

__all__ = ("DEFAULT_SENTINEL_PORT", "SCHEME", "SENTINEL_URL_PARAMETERS", "sentinel_clients")

# redis-py leaves these untyped.
_AsyncSentinel: Callable[..., Any] = redis.asyncio.sentinel.Sentinel
_SyncSentinel: Callable[..., Any] = redis.sentinel.Sentinel

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
# Credentials of the sentinels themselves; those in the URL's user info are the primary's.
SENTINEL_URL_PARAMETERS = frozenset({"sentinel_username", "sentinel_password"})
# Seconds between two questions to the sentinels about the primary, while the pool is in use.
PRIMARY_RECHECK = 1.0
# Seconds the call that asks the sentinels again waits for their answer before it goes on.
RECHECK_WAIT = 0.25


def _refuse(message: str, given: str) -> InvalidConfigError:
    return InvalidConfigError(f"{message}: {redact(given)!r}")


def _address(text: str, given: str) -> tuple[str, int]:
    """``host[:port]`` or ``[ipv6][:port]``, the port 26379 if not given."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = text, ""
    if not host or not (port == "" or (port.isascii() and port.isdigit())):
        msg = f"a sentinel address must be host:port, got {text!r} in the Redis Sentinel URL"
        raise _refuse(msg, given)
    number = int(port) if port else DEFAULT_SENTINEL_PORT
    if not 0 < number < 65536:
        msg = f"a sentinel port must be 1 to 65535, got {number}"
        raise _refuse(msg, given)
    return host, number


class _Target:
    """What a ``redis+sentinel://`` URL names, parsed and checked."""

    def __init__(self, given: str) -> None:
        if misread_userinfo(given):
            msg = "percent-encode any '#', '/', '?' or '@' in the user name or password"
            raise _refuse(msg, given)
        try:
            parts = urlsplit(given)
        except ValueError:
            raise _refuse("not a Redis Sentinel URL", given) from None
        userinfo, _, hosts = parts.netloc.rpartition("@")
        if not hosts:
            raise _refuse("a Redis Sentinel URL names at least one sentinel", given)
        self.sentinels = [_address(host, given) for host in hosts.split(",")]
        path = parts.path.split("/")[1:]
        service = unquote(path[0]) if path else ""
        database = path[1] if len(path) > 1 else ""
        if not service or len(path) > 2:
            msg = "a Redis Sentinel URL's path is /service_name or /service_name/db"
            raise _refuse(msg, given)
        if database and not (database.isascii() and database.isdigit()):
            msg = f"the database in a Redis URL's path must be a number, got {database!r}"
            raise InvalidConfigError(msg)
        self.service = service
        self.sentinel_options: dict[str, Any] = {}
        kept: list[tuple[str, str]] = []
        known = {*STORE_URL_PARAMETERS, *CONNECTION_URL_PARAMETERS, *SENTINEL_URL_PARAMETERS}
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        taken_once("the Redis URL", pairs, SENTINEL_URL_PARAMETERS)  # the rest: `_split_query`
        for name, value in pairs:
            if name in SENTINEL_URL_PARAMETERS:
                self.sentinel_options[name.removeprefix("sentinel_")] = value
            elif name in known:
                kept.append((name, value))
            else:
                allowed = ", ".join(sorted(known))
                msg = f"unknown parameter {name!r} in the Redis URL (known: {allowed})"
                raise InvalidConfigError(msg)
        # The primary's connection options are what a redis:// URL with the same user info,
        # database and query would give (the host is a placeholder: the sentinels name it).
        at = f"{userinfo}@" if userinfo else ""
        query = f"?{urlencode(kept, quote_via=quote)}" if kept else ""
        self.primary_url, self.store_options = _split_query(
            f"redis://{at}127.0.0.1/{database}{query}"
        )
        _parse_url(self.primary_url)


class _SentinelClients(_UrlClients):
    """`_UrlClients` whose clients reach the primary through the sentinels."""

    def __init__(
        self, target: _Target, options: dict[str, Any], retries: int, sentinel: dict[str, Any]
    ) -> None:
        super().__init__(target.primary_url, options, retries)
        self._target = target
        self._sentinel_options = sentinel

    def _primary_options(self) -> dict[str, Any]:
        url_options = _parse_url(self._target.primary_url)
        for placeholder in ("host", "port"):
            url_options.pop(placeholder, None)
        # As with ConnectionPool.from_url, the URL's options win over the keyword ones.
        options = {**self._options, **url_options}
        options.pop("timeout", None)  # the runners bound the waiting for a connection
        return options

    def _asyncio_client(self) -> redis.asyncio.Redis:
        sentinel = _AsyncSentinel(
            self._target.sentinels,
            sentinel_kwargs={**self._sentinel_options, "retry": AsyncRetry(NoBackoff(), 0)},
        )
        options = {"retry": AsyncRetry(self._backoff(), self._retries), **self._primary_options()}
        client: _AsyncPrimary = sentinel.master_for(
            self._target.service,
            redis_class=_AsyncPrimary,
            connection_pool_class=_AsyncPrimaryPool,
            **options,
        )
        client.sentinel_clients = list(sentinel.sentinels)
        return client

    def _sync_client(self) -> redis.Redis:
        sentinel = _SyncSentinel(
            self._target.sentinels,
            sentinel_kwargs={**self._sentinel_options, "retry": Retry(NoBackoff(), 0)},
        )
        options = {"retry": Retry(self._backoff(), self._retries), **self._primary_options()}
        client: _SyncPrimary = sentinel.master_for(
            self._target.service,
            redis_class=_SyncPrimary,
            connection_pool_class=_SyncPrimaryPool,
            **options,
        )
        client.sentinel_clients = list(sentinel.sentinels)
        return client


# After a failover that leaves the old primary running (`SENTINEL FAILOVER`, a partition), the
# old primary goes on taking writes until Sentinel turns it into a replica, some 10 s later, and
# then discards them. redis-py asks the sentinels for the primary only when it opens a
# connection, and drops only idle connections when their answer changes: the pooled connections
# kept reaching the old primary, and every write made on them in those seconds was acknowledged
# and then lost. These pools ask the sentinels again at most once a `PRIMARY_RECHECK`, in the
# background (a task, or a thread for the synchronous pool), which the call that asks waits for
# at most `RECHECK_WAIT` (sentinels that do not answer hold up no call longer, and a failed
# question changes nothing), and never hand out a connection to any
# address but the primary they last heard of: a stale one is closed and opened again, before
# any command is sent on it, so nothing is sent twice. A command already under way on the old
# primary finishes there.
_RECHECK_ERRORS = (redis.RedisError, OSError)
# redis-py leaves these untyped: each asks the sentinels, and if the primary moved, records its
# address and closes the pool's idle connections.
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
    """The primary's pool in worker threads: it hands out connections to the primary last
    named only."""

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


# The clients of the sentinels are closed from a list of their own: redis-py's `Sentinel`
# reorders its list as concurrent calls find the primary, and that race can drop one from it.


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
    """The primary's client, which closes its connections to the sentinels too."""

    sentinel_clients: list[redis.Redis]

    def close(self) -> None:
        try:
            super().close()
        finally:
            for sentinel in self.sentinel_clients:
                sentinel.close()


def sentinel_clients(
    given: str,
    timeout: float | None,
    retries: int,
    max_connections: int,
    client_options: dict[str, Any],
) -> tuple[_SentinelClients, dict[str, Any]]:
    """The clients of a store on ``redis+sentinel://`` URL `given`, checked before any I/O.

    ``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service_name[/db]``: the
    user info and the query's connection parameters are the primary's (and its replicas'),
    ``sentinel_username`` and ``sentinel_password`` the sentinels'. The store's own parameters
    (``timeout``, ``retries``, ``max_connections``...) win over the arguments, as in
    ``redis://``; they are returned with the clients.
    """
    try:
        target = _Target(given)
    except ValueError as exc:
        if isinstance(exc, InvalidConfigError):
            raise
        msg = f"not a Redis Sentinel URL: {redact(given)!r} ({redact_message(str(exc), given)})"
        raise InvalidConfigError(msg) from redact_error(exc, given)
    timeout = target.store_options.get("timeout", timeout)
    retries = target.store_options.get("retries", retries)
    max_connections = target.store_options.get("max_connections", max_connections)
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "timeout": timeout,
        "max_connections": max_connections,
        **client_options,
    }
    _check_limits(options, retries)
    _check_client_options(target.primary_url, options, given)
    # Finding the primary asks the sentinels one after another: each gets its share of the
    # timeout, so asking them all (hung ones too) fits in one call's timeout.
    share = len(target.sentinels)
    sentinel = {
        "socket_timeout": _share(options["socket_timeout"], share),
        "socket_connect_timeout": _share(options["socket_connect_timeout"], share),
        **target.sentinel_options,
    }
    return _SentinelClients(target, options, retries, sentinel), target.store_options


def _share(timeout: float | None, among: int) -> float | None:
    return None if timeout is None else timeout / among
