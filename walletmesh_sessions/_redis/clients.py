"""Where a store's runners come from: a client the caller keeps, or clients made from a URL
on first use (one asyncio client per event loop, one synchronous client for every trio run).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .._core.errors import InvalidConfigError
from .._core.loops import PerLoop
from .pipelining import AutoPipeline, ClusterAutoPipeline
from .runners import AsyncioRunner, ClusterAsyncioRunner, ThreadRunner
from .senders import AsyncClusterSender, AsyncSender, SyncClusterSender, SyncSender
from .target import RedisTarget
from .url_checks import POOL_OPTIONS, parse_url

__all__ = ("CallerClient", "ClusterUrlClients", "Runner", "UrlClients")

Runner = AsyncioRunner | ThreadRunner

# The longest pause between two attempts of a command (redis-py's jittered backoff).
BACKOFF_CAP = 0.1


class CallerClient:
    """A client the caller made and keeps: used as it is, never closed by the store (with
    `auto_pipeline`, a `redis.asyncio.Redis` of a pool, not of one connection, pipelines)."""

    def __init__(self, client: object, auto_pipeline: bool = True) -> None:
        if isinstance(client, redis.asyncio.Redis):
            auto = None
            if auto_pipeline and not client.single_connection_client:
                auto = AutoPipeline(client, keep=False)  # the pool is the caller's too
            self._runner: Runner = AsyncioRunner(AsyncSender(client, auto))
        elif isinstance(client, redis.Redis):
            self._runner = ThreadRunner(SyncSender(client))
        elif isinstance(client, redis.asyncio.RedisCluster):
            cluster_auto = ClusterAutoPipeline(client) if auto_pipeline else None
            self._runner = ClusterAsyncioRunner(AsyncClusterSender(client, cluster_auto))
        elif isinstance(client, redis.cluster.RedisCluster):
            self._runner = ThreadRunner(SyncClusterSender(client))
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


class UrlClients:
    """Clients the store makes from a URL on first use, for the event loop in use, and closes;
    an old loop's asyncio client is closed by that loop as it shuts down (`PerLoop`)."""

    def __init__(self, target: RedisTarget) -> None:
        self._target = target
        self._url = target.url
        self._options = target.options
        self._retries = retries = target.retries
        self._limit: int = target.options["max_connections"]
        timeout: float | None = target.options["timeout"]
        # Each attempt is bounded by the timeout, and each pause between them by the backoff.
        self._budget = None if timeout is None else (retries + 1) * timeout + retries * BACKOFF_CAP
        self._asyncio = PerLoop(self._asyncio_runner, close=lambda runner: runner.aclose())
        self._threads: ThreadRunner | None = None

    def runner(self, backend: str) -> Runner:
        if backend == "asyncio":
            return self._asyncio.get()
        if self._threads is None:
            self._threads = self._thread_runner()
        return self._threads

    def _asyncio_runner(self) -> AsyncioRunner:
        client = self._asyncio_client()
        if not self._target.auto_pipeline:
            return AsyncioRunner(AsyncSender(client), self._limit, self._budget)
        auto = AutoPipeline(client, self._budget)
        return AsyncioRunner(AsyncSender(client, auto), self._limit, self._budget)

    def _thread_runner(self) -> ThreadRunner:
        return ThreadRunner(SyncSender(self._sync_client()), self._limit, self._budget)

    def _backoff(self) -> ExponentialWithJitterBackoff:
        return ExponentialWithJitterBackoff(base=0.01, cap=BACKOFF_CAP)

    def _asyncio_client(self) -> redis.asyncio.Redis:
        options = {"retry": AsyncRetry(self._backoff(), self._retries), **self._options}
        # The runner's semaphore does the waiting for a free connection (see AsyncioRunner).
        options.pop("timeout", None)
        if self._budget is not None and not self._target.read_timeout_given:
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
        threads, self._threads = self._threads, None
        try:
            if threads is not None:
                await threads.aclose()
        finally:
            # An asyncio client can only be closed on its own loop; elsewhere its loop does it.
            if backend == "asyncio":
                await self._asyncio.aclose()


# What parse_url gives that names one node rather than how to talk to every node.
_PER_NODE = frozenset({"host", "port", "db", "connection_class"})


class ClusterUrlClients(UrlClients):
    """The cluster clients of a ``redis+cluster://`` store, made on first use and closed.

    Every node of the target (``rediss+cluster://``: over TLS) is a startup node, so the store
    still finds the cluster when one is down; each node's connections take the same options.
    """

    def __init__(self, target: RedisTarget) -> None:
        super().__init__(target)
        self._nodes = [
            (parts.hostname or "localhost", parts.port or 6379)
            for parts in map(urlsplit, target.nodes)
        ]
        self._tls = urlsplit(target.url).scheme.lower() == "rediss"

    def _cluster_options(self) -> dict[str, Any]:
        """What every node's connections take: the URL's settings, then `client_options`."""
        parsed = {k: v for k, v in parse_url(self._url).items() if k not in _PER_NODE}
        options = {k: v for k, v in self._options.items() if k not in POOL_OPTIONS}
        tls = {"ssl": True} if self._tls else {}
        return {**tls, **parsed, **options, "max_connections": self._limit}

    def _asyncio_runner(self) -> ClusterAsyncioRunner:
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in self._nodes]
        client = redis.asyncio.RedisCluster(
            startup_nodes=nodes,
            retry=AsyncRetry(self._backoff(), self._retries),
            **self._cluster_options(),
        )
        auto = ClusterAutoPipeline(client, self._budget) if self._target.auto_pipeline else None
        return ClusterAsyncioRunner(AsyncClusterSender(client, auto), self._limit, self._budget)

    def _thread_runner(self) -> ThreadRunner:
        make_node: Any = redis.cluster.ClusterNode  # untyped in redis-py
        nodes = [make_node(host, port) for host, port in self._nodes]
        options = self._cluster_options()

        def make() -> redis.cluster.RedisCluster:
            # Reads the topology as it is made: the runner does it in a worker thread.
            return redis.cluster.RedisCluster(
                startup_nodes=nodes, retry=Retry(self._backoff(), self._retries), **options
            )

        return ThreadRunner(SyncClusterSender(make), self._limit, self._budget)
