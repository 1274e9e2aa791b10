"""The Redis Cluster clients a ``redis+cluster://`` store makes on first use and closes.

Every node of the target (``rediss+cluster://``: over TLS) is a startup node, so the store
still finds the cluster when one is down; each node's connections take the same options.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry

from .clients import UrlClients
from .runners import ClusterAsyncioRunner, ThreadRunner
from .senders import AsyncClusterSender, SyncClusterSender
from .target import RedisTarget
from .url_checks import POOL_OPTIONS, parse_url

__all__ = ("ClusterUrlClients",)

# What parse_url gives that names one node rather than how to talk to every node.
_PER_NODE = frozenset({"host", "port", "db", "connection_class"})


class ClusterUrlClients(UrlClients):
    """The cluster clients of a `redis+cluster://` store: made on first use, closed by it."""

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
        return ClusterAsyncioRunner(AsyncClusterSender(client), self._limit, self._budget)

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
