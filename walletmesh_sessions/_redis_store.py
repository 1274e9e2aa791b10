"""`RedisSessionStore`: sessions in Redis, shared by every process using the same database."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import redis
import redis.asyncio
import sniffio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import parse_url as _untyped_parse_url
from redis.retry import Retry

from . import _redis_ops as ops
from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._errors import InvalidConfigError, SessionStoreError, StoreClosedError
from ._expiry import Clock
from ._redis_io import AsyncioRunner, ThreadRunner
from ._secrets import redact, redact_error, redact_message
from ._validation import (
    check_clock,
    check_config,
    check_prefix,
    check_session_data,
    check_session_id,
)

__all__ = ("RedisSessionStore",)

_S = TypeVar("_S", bound="RedisSessionStore")

Runner = AsyncioRunner | ThreadRunner

_parse_url: Callable[[str], dict[str, Any]] = _untyped_parse_url

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 1
DEFAULT_MAX_CONNECTIONS = 50


def _check_limits(options: dict[str, Any], retries: object) -> None:
    timeout, limit = options["timeout"], options["max_connections"]
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        msg = f"timeout must be a positive number of seconds or None, got {timeout!r}"
        raise InvalidConfigError(msg)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        msg = f"max_connections must be a positive int, got {limit!r}"
        raise InvalidConfigError(msg)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        msg = f"retries must be an int >= 0, got {retries!r}"
        raise InvalidConfigError(msg)


def _backend() -> str:
    library = sniffio.current_async_library()
    if library not in ("asyncio", "trio"):
        msg = f"RedisSessionStore runs on asyncio or trio, not on {library!r}"
        raise SessionStoreError(msg)
    return library


class _CallerClient:
    """A client the caller made and keeps: used as it is, never closed by the store."""

    def __init__(self, client: object) -> None:
        if isinstance(client, redis.asyncio.Redis):
            self._runner: Runner = AsyncioRunner(client)
        elif isinstance(client, redis.Redis):
            self._runner = ThreadRunner(client)
        else:
            msg = (
                "client must be a redis.asyncio.Redis or a redis.Redis "
                f"(Redis Cluster clients are not supported), got {client!r}"
            )
            raise InvalidConfigError(msg)

    def runner(self, backend: str) -> Runner:
        if backend == "trio" and isinstance(self._runner, AsyncioRunner):
            msg = (
                "a redis.asyncio client works on asyncio only; on trio pass a synchronous "
                "redis.Redis (run in worker threads) or use RedisSessionStore.from_url"
            )
            raise InvalidConfigError(msg)
        return self._runner

    async def aclose(self, backend: str) -> None:
        """Nothing to do: the caller closes its own client."""


class _UrlClients:
    """Clients the store makes from a URL on first use, one per backend, and closes."""

    def __init__(self, url: str, options: dict[str, Any], retries: int) -> None:
        self._url = url
        self._options = options
        self._retries = retries
        self._limit: int = options["max_connections"]
        self._wait: float | None = options["timeout"]
        self._asyncio: AsyncioRunner | None = None
        self._threads: ThreadRunner | None = None

    def runner(self, backend: str) -> Runner:
        if backend == "asyncio":
            if self._asyncio is None:
                self._asyncio = AsyncioRunner(self._asyncio_client(), self._limit, self._wait)
            return self._asyncio
        if self._threads is None:
            self._threads = ThreadRunner(self._sync_client())
        return self._threads

    def _backoff(self) -> ExponentialWithJitterBackoff:
        return ExponentialWithJitterBackoff(base=0.01, cap=0.1)

    def _asyncio_client(self) -> redis.asyncio.Redis:
        options = {"retry": AsyncRetry(self._backoff(), self._retries), **self._options}
        # The runner's semaphore does the waiting for a free connection (see AsyncioRunner).
        options.pop("timeout", None)
        pool = redis.asyncio.ConnectionPool.from_url(self._url, **options)
        return redis.asyncio.Redis.from_pool(pool)

    def _sync_client(self) -> redis.Redis:
        options = {"retry": Retry(self._backoff(), self._retries), **self._options}
        pool = redis.BlockingConnectionPool.from_url(self._url, **options)
        return redis.Redis.from_pool(pool)

    async def aclose(self, backend: str) -> None:
        asyncio_runner, self._asyncio = self._asyncio, None
        threads, self._threads = self._threads, None
        try:
            if threads is not None:
                await threads.aclose()
        finally:
            # An asyncio client can only be closed on its own loop; elsewhere it is dropped.
            if asyncio_runner is not None and backend == "asyncio":
                await asyncio_runner.aclose()


class RedisSessionStore:
    """Sessions in Redis, as the TypeScript wire format, under ``prefix + session_id``.

    Satisfies `SessionStore`. Works on asyncio (with `redis.asyncio`) and on trio (with the
    synchronous client in worker threads). Every expiring key carries a relative Redis TTL a
    little longer than the lifetime (lifetime + max(1 s, 10 %)), so abandoned sessions vanish by
    themselves, while only the store's `clock` decides whether a session is valid. Refresh and
    removal of expired sessions are compare-and-set scripts over the exact bytes read, so they
    never undo a concurrent `set` or bring back a deleted session.

    Build it with `from_url` (the store owns and closes its clients) or from a client you keep:
    a `redis.asyncio.Redis` (asyncio only) or a `redis.Redis` (asyncio and trio, in threads).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.Redis,
        config: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock: Clock = time.time,
    ) -> None:
        self._setup(_CallerClient(client), config, prefix, clock)

    @classmethod
    def from_url(
        cls: type[_S],
        url: str,
        config: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock: Clock = time.time,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        **client_options: Any,
    ) -> _S:
        """A store that connects to `url` (``redis://``, ``rediss://``, ``unix://``) on first use.

        `timeout` (seconds) bounds connecting, each reply and waiting for a free pooled
        connection; a failed command is retried `retries` times on a fresh connection.
        `client_options` go to redis-py's connection pool as they are and win over these.
        The store makes a `redis.asyncio` client on asyncio and a `redis.Redis` on trio.
        """
        if not isinstance(url, str):
            msg = f"url must be a str such as 'redis://localhost:6379/0', got {url!r}"
            raise InvalidConfigError(msg)
        try:
            _parse_url(url)
        except ValueError as exc:
            msg = f"not a Redis URL: {redact(url)!r} ({redact_message(str(exc), url)})"
            raise InvalidConfigError(msg) from redact_error(exc, url)
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "timeout": timeout,
            "max_connections": max_connections,
            **client_options,
        }
        _check_limits(options, retries)
        store = cls.__new__(cls)
        store._setup(_UrlClients(url, options, retries), config, prefix, clock)
        return store

    def _setup(
        self,
        clients: _CallerClient | _UrlClients,
        config: SessionStoreConfig | None,
        prefix: str,
        clock: Clock,
    ) -> None:
        self._space = ops.Keyspace(check_prefix(prefix), check_config(config), check_clock(clock))
        self._clients = clients
        self._closed = False

    @property
    def config(self) -> SessionStoreConfig:
        """The store's lifetime and refresh settings."""
        return self._space.config

    @property
    def prefix(self) -> str:
        """The text every key of this store starts with."""
        return self._space.prefix

    def __repr__(self) -> str:
        return f"RedisSessionStore(prefix={self._space.prefix!r}, config={self._space.config!r})"

    def _runner(self) -> Runner:
        if self._closed:
            msg = "this RedisSessionStore was closed with aclose()"
            raise StoreClosedError(msg)
        return self._clients.runner(_backend())

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`: one SET, with a TTL when there is a lifetime."""
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        await self._runner().run(ops.write(self._space, session_id, data))

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        session_id = check_session_id(session_id)
        return await self._runner().run(ops.read(self._space, session_id))

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`.

        Raises `CorruptRecordError` if the key holds something that is not a session record.
        """
        session_id = check_session_id(session_id)
        return await self._runner().run(ops.read(self._space, session_id))

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new dict; expired ones met on the way are removed.

        Corrupt records are skipped with a warning on the ``walletmesh_sessions`` logger.
        """
        return await self._runner().run(ops.get_all(self._space))

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = check_session_id(session_id)
        await self._runner().run(ops.delete(self._space, session_id))

    async def clear(self) -> None:
        """Remove every key under the prefix, and no other key."""
        await self._runner().run(ops.clear(self._space))

    async def clean_expired(self) -> int:
        """Remove every session expired by the clock; return how many this call removed.

        Keys Redis already dropped by their TTL are gone before this call and are not counted.
        """
        return await self._runner().run(ops.clean_expired(self._space))

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record under the prefix (or the one named), expired and unreadable ones included.

        For operators and tools: nothing is refreshed or removed.
        """
        if session_id is not None:
            session_id = check_session_id(session_id)
        return await self._runner().run(ops.inspect(self._space, session_id))

    async def aclose(self) -> None:
        """Close the clients the store made; a caller's client is left open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._clients.aclose(_backend())

    async def __aenter__(self) -> RedisSessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
