"""`RedisSessionStore`: sessions in Redis, shared by every process using the same database."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import anyio
import redis
import redis.asyncio
import redis.cluster
import sniffio

from .._core import errors, validation
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import DEFAULT_TIMEOUT as LIFECYCLE_TIMEOUT
from .._core.decode_cache import DecodeCache
from .._core.expiry import Clock
from .._core.ids import new_session_id
from .._core.lifecycle import check_change
from . import bulk_ops, ops, target
from .clients import CallerClient, ClusterUrlClients, Runner, UrlClients
from .ops import StoreSpec
from .replicas import replica_wait
from .sentinel import SentinelClients
from .steps import MORE, Op
from .url_checks import check_auto_pipeline

__all__ = ("RedisSessionStore",)

_S = TypeVar("_S", bound="RedisSessionStore")
T = TypeVar("T")
_Page = tuple[list[T], object, bool]  # a batch, the cursor after it, and whether it ends


def _backend() -> str:
    library = sniffio.current_async_library()
    if library not in ("asyncio", "trio"):
        msg = f"RedisSessionStore runs on asyncio or trio, not on {library!r}"
        raise errors.SessionStoreError(msg)
    return library


def _url_clients(named: target.RedisTarget) -> UrlClients:
    """The clients a target names, made on first use."""
    if named.nodes:
        return ClusterUrlClients(named)
    if named.sentinels:
        return SentinelClients(named)
    return UrlClients(named)


class KeyTurns:
    """One lock per key in use, so this store's updates of a key take turns: contention inside
    one process then costs no lost compare-and-set races. A lock lives only while some call
    holds or waits for it, so none outlives its event loop.
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
                raise errors.StoreUnavailableError(msg)
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

    Satisfies `SessionStore` and `LifecycleSessionStore`, on asyncio (`redis.asyncio`) and on
    trio (the synchronous client in worker threads). Every expiring key carries a Redis TTL a
    little longer than its expiry, so abandoned sessions vanish, while only `clock` decides
    validity. Refreshes, removals and the lifecycle calls compare the exact bytes read, so
    none undoes a concurrent write or brings back a deleted session, across processes.

    Build it with `from_url` (the store owns and closes its clients) or from a client you keep:
    a `redis.asyncio.Redis` (asyncio only), a `redis.Redis`, or their cluster forms.
    `wait_for_replicas` and `replica_timeout` are as for `from_url`.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis
        | redis.Redis
        | redis.asyncio.RedisCluster
        | redis.cluster.RedisCluster
        | target.RedisTarget,
        config: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock: Clock = time.time,
        wait_for_replicas: int = 0,
        replica_timeout: float = target.DEFAULT_REPLICA_TIMEOUT,
        auto_pipeline: bool = True,
    ) -> None:
        if isinstance(client, target.RedisTarget):  # from `from_url`, its settings checked there
            wait = client.wait
            self._clients: CallerClient | UrlClients = _url_clients(client)
        else:
            wait = replica_wait(wait_for_replicas, replica_timeout, None)
            if wait is not None and isinstance(
                client, (redis.asyncio.RedisCluster, redis.cluster.RedisCluster)
            ):
                raise errors.InvalidConfigError(target.NO_CLUSTER_WAIT)
            self._clients = CallerClient(client, check_auto_pipeline(auto_pipeline))
        self._cache = DecodeCache()
        self._wait = wait
        self._spec = StoreSpec(
            validation.check_prefix(prefix),
            validation.check_config(config),
            validation.check_clock(clock),
            self._cache.decode,
            waits_for_replicas=wait is not None,
        )
        self._turns = KeyTurns()
        self._closed = False

    @classmethod
    def from_url(
        cls: type[_S],
        url: str,
        config: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock: Clock = time.time,
        timeout: float | None = target.DEFAULT_TIMEOUT,
        retries: int = target.DEFAULT_RETRIES,
        max_connections: int = target.DEFAULT_MAX_CONNECTIONS,
        wait_for_replicas: int = 0,
        replica_timeout: float = target.DEFAULT_REPLICA_TIMEOUT,
        auto_pipeline: bool = True,
        **client_options: Any,
    ) -> _S:
        """A store that connects to `url` (``redis://``, ``rediss://``, ``unix://``) on first use.

        ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` over TLS) names
        nodes of a Redis Cluster; ``redis+sentinel://[user:password@]host:port[,host:port...]/
        service_name[/db]`` the primary of a Sentinel-managed service, followed through
        failovers (the query may add ``sentinel_username`` and ``sentinel_password``).

        A failed command is retried `retries` times on a fresh connection; a call finishes or
        fails within ``(retries + 1) * timeout`` plus 0.1 s per retry, waiting for one of the
        `max_connections` connections included. The URL's query may give the store's
        parameters too (they win over the arguments) and the connection's; any other, or an
        unknown `client_options` keyword, raises `InvalidConfigError`. With
        `wait_for_replicas`, a call that writes returns once that many replicas have its
        writes, or raises `NotReplicatedError` after `replica_timeout`. With `auto_pipeline`
        (on by default, asyncio, one server or Sentinel), the commands of calls made in one
        event-loop turn go out as one pipeline. The Redis page of the docs details every
        parameter.
        """
        named = target.parse_target(
            url,
            timeout=timeout,
            retries=retries,
            max_connections=max_connections,
            wait_for_replicas=wait_for_replicas,
            replica_timeout=replica_timeout,
            client_options=client_options,
            auto_pipeline=auto_pipeline,
        )
        return cls(named, config, prefix=prefix, clock=clock)

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

    async def _run(self, name: str, op: Op[T], *, bounded: bool = False, turn: str = "") -> T:
        """`op` on this event loop's runner; `bounded` by a lifecycle call's deadline (it may
        wait and retry: never without a bound), after this store's other calls on `turn`."""
        try:
            runner = self._runner()
            deadline = None
            if bounded:
                budget = LIFECYCLE_TIMEOUT if runner.budget is None else runner.budget
                deadline = anyio.current_time() + budget
        except BaseException:
            op.close()
            raise
        if deadline is None or not turn:
            return await runner.run(op, name, deadline)
        try:
            async with self._turns.turn(turn, deadline, name):
                self._runner()  # closed while this call waited for its turn: nothing more
                return await runner.run(op, name, deadline)
        finally:
            op.close()

    async def _run_pages(self, name: str, op: Op[T]) -> T:
        """`op`, a scan, a page per call: each page within the timeout, the whole unbounded."""
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

    async def _batches(
        self, name: str, page: Callable[[StoreSpec, object, int], Op[_Page[T]]], batch_size: int
    ) -> AsyncIterator[T]:
        """Each item of `page`'s batches, a call of its own each, from the scan's start."""
        batch_size = validation.check_batch_size(batch_size)
        cursor: object = None
        while True:
            items, cursor, done = await self._run(name, page(self._spec, cursor, batch_size))
            for item in items:
                yield item
            if done:
                return

    def _runner(self) -> Runner:
        if self._closed:
            msg = "this RedisSessionStore was closed with aclose()"
            raise errors.StoreClosedError(msg)
        runner = self._clients.runner(_backend())
        runner.replica_wait = self._wait  # each store's runners are its own
        return runner

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`: one SET, with a TTL when the record has an expiry
        (with `max_lifetime`, data without a `created_at` is stamped with the clock's now)."""
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        await self._run("set", ops.write(self._spec, session_id, data))

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored.

        A compare-and-set against what was read (no key, or an expired record's exact bytes),
        so of concurrent creators exactly one wins. Raises `CorruptRecordError` as `get` does.
        """
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        return await self._run("create", ops.create(self._spec, session_id, data), bounded=True)

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``; the new data, or `None`.

        A compare-and-set over the exact bytes read, retried with a fresh read (and a fresh
        call of `change`) when another write got there first; this store's updates of one id
        take turns. `change` must be a plain function without side effects (on trio it runs in
        a worker thread). Fails with `StoreUnavailableError` past the store's bound for a call
        (30 s for a client you pass in), waiting for its turn included.
        """
        session_id = validation.check_session_id(session_id)
        change = check_change(change)
        op = ops.update(self._spec, session_id, change)
        return await self._run("update", op, bounded=True, turn=session_id)

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: `new_session_id()`); return it.

        One script compares both keys with what was read, then moves the record: there is no
        moment where neither id works, and of concurrent rotates exactly one wins. `None` if
        the session is missing or expired; a `new_id` held by an unexpired session (or equal to
        `session_id`) raises `SessionIdTakenError`, and nothing changes.
        """
        session_id = validation.check_session_id(session_id)
        new_id = new_session_id() if new_id is None else validation.check_session_id(new_id)
        op = ops.rotate(self._spec, session_id, new_id)
        return await self._run("rotate", op, bounded=True)

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        session_id = validation.check_session_id(session_id)
        return await self._run("get", ops.read(self._spec, session_id))

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`;
        `CorruptRecordError` if the key holds something that is not a session record."""
        session_id = validation.check_session_id(session_id)
        return await self._run("validate_and_refresh", ops.read(self._spec, session_id))

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new dict; expired ones met are removed, corrupt ones
        skipped with a warning on the ``walletmesh_sessions`` logger."""
        return await self._run_pages("get_all", bulk_ops.get_all(self._spec))

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = validation.check_session_id(session_id)
        await self._run("delete", ops.delete(self._spec, session_id))

    async def clear(self) -> None:
        """Remove every key under the prefix, and no other key."""
        try:
            await self._run_pages("clear", bulk_ops.clear(self._spec))
        finally:
            self._cache.clear()

    async def clean_expired(self) -> int:
        """Remove every session expired by the clock; how many this call removed (not those
        Redis already dropped by their TTL)."""
        return await self._run_pages("clean_expired", bulk_ops.clean_expired(self._spec))

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record under the prefix (or the one named), expired and unreadable ones
        included; nothing is refreshed or removed."""
        if session_id is not None:
            session_id = validation.check_session_id(session_id)
        return await self._run_pages("inspect", bulk_ops.inspect(self._spec, session_id))

    async def aclose(self) -> None:
        """Close the clients the store made; a caller's client is left open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._cache.clear()
        await self._clients.aclose(_backend())

    async def __aenter__(self: _S) -> _S:
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

        Each batch is swept as `get_all` sweeps. As with any SCAN, a session may be yielded
        twice if the server resizes its key space meanwhile (never on Redis Cluster).
        """
        async for item in self._batches("iter_sessions", bulk_ops.iterate_page, batch_size):
            yield item

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record under the prefix as `inspect` shows it, about `batch_size` per call.

        Batches as for `iter_sessions`; nothing is refreshed or removed, and unreadable
        records are yielded.
        """
        async for record in self._batches("iter_records", bulk_ops.inspect_page, batch_size):
            yield record
