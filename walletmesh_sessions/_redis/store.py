"""`RedisSessionStore`: sessions in Redis, shared by every process using the same database."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import redis
import redis.asyncio
import redis.cluster
import sniffio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import parse_url as _untyped_parse_url
from redis.retry import Retry

from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import DEFAULT_TIMEOUT as LIFECYCLE_TIMEOUT
from .._core.decode_cache import DecodeCache
from .._core.errors import (
    InvalidConfigError,
    SessionStoreError,
    StoreClosedError,
    StoreUnavailableError,
)
from .._core.expiry import Clock
from .._core.ids import new_session_id
from .._core.lifecycle import check_change
from .._core.loops import closed_at_shutdown, trio_token
from .._core.masking import redact, redact_error, redact_message
from .._core.validation import (
    check_batch_size,
    check_clock,
    check_config,
    check_prefix,
    check_session_data,
    check_session_id,
    taken_once,
)
from . import bulk_ops, ops
from .cluster_io import ClusterAsyncioRunner, ClusterThreadRunner
from .replicas import ReplicaWait, replica_wait
from .runners import AsyncioRunner, ThreadRunner
from .spec import StoreSpec
from .steps import MORE, Op

__all__ = ("RedisSessionStore",)

_S = TypeVar("_S", bound="RedisSessionStore")
T = TypeVar("T")

Runner = AsyncioRunner | ThreadRunner

_parse_url: Callable[[str], dict[str, Any]] = _untyped_parse_url

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 1
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_REPLICA_TIMEOUT = 1.0
# The longest pause between two attempts of a command (redis-py's jittered backoff).
BACKOFF_CAP = 0.1

# URL query parameters: the store's own, parsed here, and the connection's, left to redis-py.
STORE_URL_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "retries": int,
    "max_connections": int,
    "wait_for_replicas": int,
    "replica_timeout": float,
}
CONNECTION_URL_PARAMETERS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "client_name",
        "protocol",
        # Credentials may come as query parameters too; messages mask them (see _secrets).
        "username",
        "password",
    }
)
# redis-py reads any other word as true: refuse it instead.
_BOOLEAN_URL_PARAMETERS = frozenset({"socket_keepalive", "ssl_check_hostname"})
_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "1", "0", "on", "off"})
TLS_URL_PARAMETERS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
# Options of the pool rather than of each connection.
_POOL_OPTIONS = frozenset({"max_connections", "timeout", "connection_class", "retry"})


_NO_CLUSTER_WAIT = (
    "wait_for_replicas is not supported on Redis Cluster: each write goes to its slot's "
    "primary, and the store does not follow it with WAIT there"
)


def _check_limits(options: dict[str, Any], retries: object) -> None:
    timeout, limit = options["timeout"], options["max_connections"]
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf  # sockets and timers take no infinite timeout
    ):
        msg = f"timeout must be a positive, finite number of seconds or None, got {timeout!r}"
        raise InvalidConfigError(msg)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        msg = f"max_connections must be a positive int, got {limit!r}"
        raise InvalidConfigError(msg)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        msg = f"retries must be an int >= 0, got {retries!r}"
        raise InvalidConfigError(msg)


def _split_query(url: str) -> tuple[str, dict[str, Any]]:
    """`url` without the store's own query parameters, and those parameters parsed.

    Refuses a parameter neither the store nor its connections know, naming it, so a typo
    fails when the store is made rather than at its first call; and one given twice (redis-py
    would take the first, the store the last).
    """
    base, _, query = url.partition("?")
    scheme = urlsplit(url).scheme.lower()
    known = CONNECTION_URL_PARAMETERS | (TLS_URL_PARAMETERS if scheme == "rediss" else set())
    store: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    pairs = parse_qsl(query, keep_blank_values=True)
    taken_once("the Redis URL", pairs)
    for name, value in pairs:
        if name in STORE_URL_PARAMETERS:
            try:
                store[name] = STORE_URL_PARAMETERS[name](value)
            except ValueError:
                msg = f"the Redis URL parameter {name!r} must be a number, got {value!r}"
                raise InvalidConfigError(msg) from None
        elif name in known:
            if name in _BOOLEAN_URL_PARAMETERS and value.lower() not in _BOOLEAN_WORDS:
                msg = f"the Redis URL parameter {name!r} must be true or false, got {value!r}"
                raise InvalidConfigError(msg)
            kept.append((name, value))
        else:
            allowed = ", ".join(sorted({*STORE_URL_PARAMETERS, *known}))
            msg = f"unknown parameter {name!r} in the Redis URL (known: {allowed})"
            raise InvalidConfigError(msg)
    return base + (f"?{urlencode(kept)}" if kept else ""), store


def _check_database(url: str) -> None:
    """A database in the path must be a number: redis-py would quietly use database 0."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        return
    database = parts.path.lstrip("/")
    if database and not (database.isascii() and database.isdigit()):
        msg = f"the database in a Redis URL's path must be a number, got {database!r}"
        raise InvalidConfigError(msg)


def _check_client_options(url: str, options: dict[str, Any], given: str) -> None:
    """Build (never connect) one connection of each client, so unknown options fail now."""
    kwargs = {**_parse_url(url), **options}
    default = redis.SSLConnection if urlsplit(url).scheme.lower() == "rediss" else redis.Connection
    sync_class = kwargs.pop("connection_class", default)
    async_class = {
        redis.SSLConnection: redis.asyncio.SSLConnection,
        redis.UnixDomainSocketConnection: redis.asyncio.UnixDomainSocketConnection,
    }.get(sync_class, redis.asyncio.Connection)
    per_connection = {k: v for k, v in kwargs.items() if k not in _POOL_OPTIONS}
    for connection_class in (sync_class, async_class):
        try:
            connection_class(**per_connection)
        except TypeError as exc:
            # Python names the keyword in its message; say it without the value.
            msg = f"a Redis client option is not accepted: {exc}"
            raise InvalidConfigError(msg) from None
        except Exception as exc:  # redis-py refuses bad values (a TLS mode, a protocol) here
            msg = f"a Redis URL parameter or client option has a bad value: {type(exc).__name__}"
            msg += f": {redact_message(str(exc), given)}"
            raise InvalidConfigError(msg) from None


def _cluster_nodes(url: str) -> list[str]:
    """A ``redis+cluster://`` URL's nodes, each as a URL of its own; [] for any other URL."""
    from .cluster_clients import CLUSTER_SCHEMES, node_urls

    scheme = url.partition("://")[0].lower()
    return node_urls(url) if scheme in CLUSTER_SCHEMES else []


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
        elif isinstance(client, redis.asyncio.RedisCluster):
            self._runner = ClusterAsyncioRunner(client)
        elif isinstance(client, redis.cluster.RedisCluster):
            self._runner = ClusterThreadRunner(client)
        else:
            msg = (
                "client must be a redis.asyncio.Redis, a redis.Redis, a "
                f"redis.asyncio.RedisCluster or a redis.cluster.RedisCluster, got {client!r}"
            )
            raise InvalidConfigError(msg)

    def runner(self, backend: str) -> Runner:
        if backend == "trio" and isinstance(self._runner, AsyncioRunner):
            msg = (
                "a redis.asyncio client works on asyncio only; on trio pass a synchronous "
                "redis.Redis or redis.cluster.RedisCluster (run in worker threads) or use "
                "RedisSessionStore.from_url"
            )
            raise InvalidConfigError(msg)
        return self._runner

    async def aclose(self, backend: str) -> None:
        """Nothing to do: the caller closes its own client."""


class _UrlClients:
    """Clients the store makes from a URL on first use, for the event loop in use, and closes.

    An asyncio client belongs to the loop it first ran on: when another loop calls (a second
    ``anyio.run``), a fresh client is made for it. The old one was already closed by its own
    loop as that loop shut down (see `_loops.closed_at_shutdown`); the store then just drops it. The
    synchronous client serves every trio run; only its thread limiter is per run.
    """

    def __init__(
        self, url: str, options: dict[str, Any], retries: int, *, read_timeout_given: bool = False
    ) -> None:
        self._url = url
        self._options = options
        self._retries = retries
        self._read_timeout_given = read_timeout_given
        self._limit: int = options["max_connections"]
        timeout: float | None = options["timeout"]
        # Each attempt is bounded by the timeout, and each pause between them by the backoff.
        self._budget = None if timeout is None else (retries + 1) * timeout + retries * BACKOFF_CAP
        self._asyncio: AsyncioRunner | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._loop: object = None
        self._threads: ThreadRunner | None = None
        self._run_token: object = None

    def runner(self, backend: str) -> Runner:
        if backend == "asyncio":
            loop = asyncio.get_running_loop()
            if self._loop is not loop or self._asyncio is None:
                runner = self._asyncio_runner()
                self._closer = closed_at_shutdown(runner.aclose)
                self._asyncio, self._loop = runner, loop
            return self._asyncio
        if self._threads is None:
            self._threads = self._thread_runner()
        token = trio_token()
        if self._run_token is not token:
            self._threads.new_loop()
            self._run_token = token
        return self._threads

    def _asyncio_runner(self) -> AsyncioRunner:
        return AsyncioRunner(self._asyncio_client(), self._limit, self._budget)

    def _thread_runner(self) -> ThreadRunner:
        return ThreadRunner(self._sync_client(), self._limit, self._budget)

    def _backoff(self) -> ExponentialWithJitterBackoff:
        return ExponentialWithJitterBackoff(base=0.01, cap=BACKOFF_CAP)

    def _asyncio_client(self) -> redis.asyncio.Redis:
        options = {"retry": AsyncRetry(self._backoff(), self._retries), **self._options}
        # The runner's semaphore does the waiting for a free connection (see AsyncioRunner).
        options.pop("timeout", None)
        if self._budget is not None and not self._read_timeout_given:
            # The runner's deadline bounds every call already; a timeout on each read of the
            # socket would only add a timer per reply (a third of a GET's cost, measured).
            options["socket_timeout"] = None
        pool = redis.asyncio.ConnectionPool.from_url(self._url, **options)
        return redis.asyncio.Redis.from_pool(pool)

    def _sync_client(self) -> redis.Redis:
        options = {"retry": Retry(self._backoff(), self._retries), **self._options}
        pool = redis.BlockingConnectionPool.from_url(self._url, **options)
        return redis.Redis.from_pool(pool)

    async def aclose(self, backend: str) -> None:
        closer, self._closer, self._asyncio = self._closer, None, None
        loop, self._loop = self._loop, None
        threads, self._threads = self._threads, None
        try:
            if threads is not None:
                await threads.aclose()
        finally:
            # An asyncio client can only be closed on its own loop; elsewhere its loop did it.
            if closer is not None and backend == "asyncio" and asyncio.get_running_loop() is loop:
                await closer.aclose()


class _KeyTurns:
    """One lock per key that calls are waiting on, so this store's updates of a key take
    turns: contention inside one process then costs no lost compare-and-set races.

    A key's lock exists only while some call holds or waits for it (a count of users), so
    the dict never grows with the keys ever updated, and no lock outlives its event loop.
    """

    def __init__(self) -> None:
        self._turns: dict[str, tuple[anyio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str, deadline: float, name: str) -> AsyncIterator[None]:
        """Hold the key's lock; `StoreUnavailableError` if it is not free by `deadline`."""
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = (anyio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                await lock.acquire()
            if scope.cancelled_caught:
                msg = f"Redis store: {name} waited past the call's deadline for its turn"
                raise StoreUnavailableError(msg)
            try:
                yield
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._turns[key]


class RedisSessionStore:
    """Sessions in Redis, as the TypeScript wire format, under ``prefix + session_id``.

    Satisfies `SessionStore` and `LifecycleSessionStore`. Works on asyncio (with
    `redis.asyncio`) and on trio (with the synchronous client in worker threads). Every
    expiring key carries a relative Redis TTL a little longer than its expiry (lifetime +
    max(1 s, 10 %)), so abandoned sessions vanish by themselves, while only the store's `clock`
    decides whether a session is valid. Refresh, removal of expired sessions, `create`,
    `update` and `rotate` are compare-and-set steps over the exact bytes read, so they never
    undo a concurrent write or bring back a deleted session, across processes.

    Build it with `from_url` (the store owns and closes its clients) or from a client you keep:
    a `redis.asyncio.Redis` (asyncio only) or a `redis.Redis` (asyncio and trio, in threads).
    `wait_for_replicas` and `replica_timeout` are as for `from_url`.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis
        | redis.Redis
        | redis.asyncio.RedisCluster
        | redis.cluster.RedisCluster,
        config: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock: Clock = time.time,
        wait_for_replicas: int = 0,
        replica_timeout: float = DEFAULT_REPLICA_TIMEOUT,
    ) -> None:
        wait = replica_wait(wait_for_replicas, replica_timeout, None)
        if wait is not None and isinstance(
            client, (redis.asyncio.RedisCluster, redis.cluster.RedisCluster)
        ):
            raise InvalidConfigError(_NO_CLUSTER_WAIT)
        self._setup(_CallerClient(client), config, prefix, clock, wait)

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
        wait_for_replicas: int = 0,
        replica_timeout: float = DEFAULT_REPLICA_TIMEOUT,
        **client_options: Any,
    ) -> _S:
        """A store that connects to `url` (``redis://``, ``rediss://``, ``unix://``) on first use.

        ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` over TLS) names
        nodes of a Redis Cluster: the store then uses cluster clients, with the same rules
        (there `timeout` bounds each reply on asyncio too).

        ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]`` reaches
        the primary of a Sentinel-managed service and follows it through failovers; the query
        may add ``sentinel_username`` and ``sentinel_password``, the sentinels' credentials.

        `timeout` (seconds) bounds connecting and, on trio, each reply (on asyncio the
        call's deadline bounds replies, unless `socket_timeout` is given); a failed command is
        retried `retries` times on a fresh connection; every call then finishes or fails within
        ``(retries + 1) * timeout`` plus 0.1 s per retry of being made, waiting for one of the
        `max_connections` connections included. The URL's query may give ``timeout``,
        ``retries`` and ``max_connections`` too (they win over the arguments), and the
        connection parameters in `CONNECTION_URL_PARAMETERS` (`TLS_URL_PARAMETERS` too for
        ``rediss://``); any other is refused here with `InvalidConfigError`, as is an
        unknown `client_options` keyword. `client_options` go to redis-py's connection pool
        as they are and win over the store's defaults. The store makes a `redis.asyncio`
        client on asyncio (one per event loop) and a `redis.Redis` on trio.

        With `wait_for_replicas` (also a query parameter, as is `replica_timeout`), every
        round trip that writes ends with ``WAIT``: a call that returns has its writes on that
        many replicas; if fewer confirm within `replica_timeout` (shorter than `timeout`), the
        call raises `NotReplicatedError` (the write is done on the primary only).
        """
        if not isinstance(url, str):
            msg = f"url must be a str such as 'redis://localhost:6379/0', got {url!r}"
            raise InvalidConfigError(msg)
        given = url  # messages mask secrets in the URL as given, whatever parsing cut off
        if url.partition("://")[0].lower() == "redis+sentinel":
            from .sentinel import sentinel_clients  # it builds on this module

            sentinel, from_query = sentinel_clients(
                url, timeout, retries, max_connections, client_options
            )
            wait = replica_wait(
                from_query.get("wait_for_replicas", wait_for_replicas),
                from_query.get("replica_timeout", replica_timeout),
                from_query.get("timeout", timeout),
            )
            store = cls.__new__(cls)
            store._setup(sentinel, config, prefix, clock, wait)
            return store
        cluster = _cluster_nodes(given)
        try:
            for node in cluster or [given]:
                _parse_url(node)
                url, from_query = _split_query(node)
                _parse_url(url)
                _check_database(url)
        except ValueError as exc:
            if isinstance(exc, InvalidConfigError):
                raise
            msg = f"not a Redis URL: {redact(given)!r} ({redact_message(str(exc), given)})"
            raise InvalidConfigError(msg) from redact_error(exc, given)
        timeout = from_query.get("timeout", timeout)
        retries = from_query.get("retries", retries)
        max_connections = from_query.get("max_connections", max_connections)
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "timeout": timeout,
            "max_connections": max_connections,
            **client_options,
        }
        _check_limits(options, retries)
        _check_client_options(url, options, given)
        wait = replica_wait(
            from_query.get("wait_for_replicas", wait_for_replicas),
            from_query.get("replica_timeout", replica_timeout),
            timeout,
        )
        store = cls.__new__(cls)
        given_read_timeout = "socket_timeout" in client_options
        clients = _UrlClients(url, options, retries, read_timeout_given=given_read_timeout)
        if cluster:
            from .cluster_clients import ClusterUrlClients

            if wait is not None:
                raise InvalidConfigError(_NO_CLUSTER_WAIT)

            # Cluster clients keep their read timeouts: they tell a dead node from a slow one.
            nodes = [_split_query(n)[0] for n in cluster]
            clients = ClusterUrlClients(nodes, options, retries)
        store._setup(clients, config, prefix, clock, wait)
        return store

    def _setup(
        self,
        clients: _CallerClient | _UrlClients,
        config: SessionStoreConfig | None,
        prefix: str,
        clock: Clock,
        wait: ReplicaWait | None = None,
    ) -> None:
        self._cache = DecodeCache()
        self._wait = wait
        self._spec = StoreSpec(
            check_prefix(prefix),
            check_config(config),
            check_clock(clock),
            self._cache.decode,
            waits_for_replicas=wait is not None,
        )
        self._clients = clients
        self._turns = _KeyTurns()
        self._closed = False

    @property
    def config(self) -> SessionStoreConfig:
        """The store's lifetime and refresh settings."""
        return self._spec.config

    @property
    def prefix(self) -> str:
        """The text every key of this store starts with."""
        return self._spec.prefix

    def __repr__(self) -> str:
        return f"RedisSessionStore(prefix={self._spec.prefix!r}, config={self._spec.config!r})"

    async def _run(self, name: str, op: Op[T]) -> T:
        try:
            runner = self._runner()
        except BaseException:
            op.close()
            raise
        return await runner.run(op, name)

    async def _run_pages(self, name: str, op: Op[T]) -> T:
        """`op`, a scan, run a page at a time: each page is a call of its own for the runner,
        bounded by the timeout, and the whole takes as long as the store is big."""
        try:
            while True:
                result = await self._run(name, bulk_ops.until_checkpoint(op))
                if result is not MORE:
                    return result
        finally:
            # A page that ran out of time on trio may still be running in the worker thread
            # it was abandoned to: that thread finishes its step, and the operation is closed
            # when it is collected. Any other is closed now.
            if inspect.getgeneratorstate(op) != inspect.GEN_RUNNING:
                op.close()

    def _runner(self) -> Runner:
        if self._closed:
            msg = "this RedisSessionStore was closed with aclose()"
            raise StoreClosedError(msg)
        runner = self._clients.runner(_backend())
        runner.replica_wait = self._wait  # each store's runners are its own
        return runner

    def _deadline(self, runner: Runner) -> float:
        # A lifecycle call may wait for its turn and retry lost races: never without a bound.
        budget = runner.budget
        return anyio.current_time() + (LIFECYCLE_TIMEOUT if budget is None else budget)

    async def _run_within(self, name: str, op: Op[T]) -> T:
        try:
            runner = self._runner()
            deadline = self._deadline(runner)
        except BaseException:
            op.close()
            raise
        return await runner.run(op, name, deadline)

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`: one SET, with a TTL when the record has an expiry.

        With `max_lifetime`, data without a `created_at` is stamped with the clock's now.
        """
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        await self._run("set", ops.write(self._spec, session_id, data))

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored.

        Atomic across processes: the write is a compare-and-set against what was read (no
        key, or the exact bytes of an expired record), so of concurrent creators exactly one
        wins. The expiry is as after `set`. Raises `CorruptRecordError` if the key holds
        something that is not a session record, as `get` does.
        """
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        return await self._run_within("create", ops.create(self._spec, session_id, data))

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``; the new data, or `None`.

        Atomic across processes: a compare-and-set over the exact bytes read, retried with a
        fresh read (and a fresh call of `change`) when another write got there first, so no
        concurrent write is lost or undone. Updates of one id through this store object take
        turns, so they do not race each other. `change` must be a plain function without side
        effects; on trio it runs in a worker thread. The call finishes or fails with
        `StoreUnavailableError` within the store's bound for a call (for a client you pass in,
        30 s), waiting for its turn included. The expiry changes as after a read.
        """
        session_id = check_session_id(session_id)
        change = check_change(change)
        op = ops.update(self._spec, session_id, change)
        try:
            runner = self._runner()
            deadline = self._deadline(runner)
        except BaseException:
            op.close()
            raise
        try:
            async with self._turns.turn(session_id, deadline, "update"):
                return await runner.run(op, "update", deadline)
        finally:
            op.close()

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: `new_session_id()`); return it.

        One Lua script compares both keys with what was read and then deletes the old key and
        writes the new one, so after it only the new id works, with no moment where neither
        does, and of concurrent rotates of one id exactly one wins. The data's `id` follows
        the session id; `created_at` stays; the expiry changes as after a read. `None` if the
        session is missing or expired. A `new_id` held by an unexpired session (or equal to
        `session_id`) raises `SessionIdTakenError`, and nothing changes.
        """
        session_id = check_session_id(session_id)
        new_id = new_session_id() if new_id is None else check_session_id(new_id)
        return await self._run_within("rotate", ops.rotate(self._spec, session_id, new_id))

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        session_id = check_session_id(session_id)
        return await self._run("get", ops.read(self._spec, session_id))

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`.

        Raises `CorruptRecordError` if the key holds something that is not a session record.
        """
        session_id = check_session_id(session_id)
        return await self._run("validate_and_refresh", ops.read(self._spec, session_id))

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new dict; expired ones met on the way are removed.

        Corrupt records are skipped with a warning on the ``walletmesh_sessions`` logger.
        """
        return await self._run_pages("get_all", bulk_ops.get_all(self._spec))

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = check_session_id(session_id)
        await self._run("delete", ops.delete(self._spec, session_id))

    async def clear(self) -> None:
        """Remove every key under the prefix, and no other key."""
        try:
            await self._run_pages("clear", bulk_ops.clear(self._spec))
        finally:
            self._cache.clear()

    async def clean_expired(self) -> int:
        """Remove every session expired by the clock; return how many this call removed.

        Keys Redis already dropped by their TTL are gone before this call and are not counted.
        """
        return await self._run_pages("clean_expired", bulk_ops.clean_expired(self._spec))

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record under the prefix (or the one named), expired and unreadable ones included.

        For operators and tools: nothing is refreshed or removed.
        """
        if session_id is not None:
            session_id = check_session_id(session_id)
        return await self._run_pages("inspect", bulk_ops.inspect(self._spec, session_id))

    async def aclose(self) -> None:
        """Close the clients the store made; a caller's client is left open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._cache.clear()
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

    async def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, a batch of about `batch_size` at a time.

        Each batch is SCAN pages and their reads, swept as `get_all` sweeps (expired ones
        removed, slides compare-and-set), so memory stays within a batch. As with any SCAN, a
        session may be yielded twice if the server resizes its key space meanwhile; on Redis
        Cluster the scan goes slot by slot and yields none twice, even while slots migrate.
        """
        batch_size = check_batch_size(batch_size)
        cursor: object = None
        while True:
            op = bulk_ops.iterate_page(self._spec, cursor, batch_size)
            found, cursor, done = await self._run("iter_sessions", op)
            for item in found.items():
                yield item
            if done:
                return

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record under the prefix as `inspect` shows it, about `batch_size` per call.

        Each batch is SCAN pages and their reads, as for `iter_sessions` (one call within the
        timeout, memory within a batch and one scan page), in SCAN order; nothing is refreshed
        or removed, and unreadable records are yielded. As with any SCAN, a record may be
        yielded twice if the server resizes its key space meanwhile (never on Redis Cluster,
        which is scanned slot by slot).
        """
        batch_size = check_batch_size(batch_size)
        cursor: object = None
        while True:
            op = bulk_ops.inspect_page(self._spec, cursor, batch_size)
            records, cursor, done = await self._run("iter_records", op)
            for record in records:
                yield record
            if done:
                return
