"""`redis+cluster://` URLs: the Redis Cluster clients a `RedisSessionStore` makes and closes.

``redis+cluster://[user:password@]host:port[,host:port...][/][?query]`` names some nodes of one
cluster (more than one, so that the store still finds the cluster when one is down);
``rediss+cluster://`` is the same over TLS. The query takes what a ``redis://`` URL takes,
except ``db`` (a cluster has database 0 only). Each node is checked as a ``redis://`` URL of
its own, by the same rules, before anything connects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry

from .._core.errors import InvalidConfigError
from .._core.masking import redact
from .cluster_io import ClusterAsyncioRunner, ClusterThreadRunner
from .store import _POOL_OPTIONS, _parse_url, _UrlClients

__all__ = ("CLUSTER_SCHEMES", "ClusterUrlClients", "node_urls")

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What parse_url gives that names one node rather than how to talk to every node.
_PER_NODE = frozenset({"host", "port", "db", "connection_class"})


def node_urls(url: str) -> list[str]:
    """One ``redis://`` (or ``rediss://``) URL per node named in a cluster URL, query kept."""
    shown = redact(url)
    scheme, _, rest = url.partition("://")
    base = CLUSTER_SCHEMES[scheme.lower()]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    path = tail.partition("?")[0]
    if path not in ("", "/", "/0"):
        msg = f"a Redis Cluster URL has no database (only 0): {shown!r}"
        raise InvalidConfigError(msg)
    query = tail.partition("?")[2]
    # Names as the query's parser reads them: ``%64b`` is ``db`` too.
    if any(name == "db" for name, _ in parse_qsl(query, keep_blank_values=True)):
        msg = (
            f"a Redis Cluster URL takes no db parameter (a cluster has database 0 only): {shown!r}"
        )
        raise InvalidConfigError(msg)
    nodes = hosts.split(",")
    if not all(nodes):
        msg = f"a Redis Cluster URL names nodes as host:port[,host:port...], got {shown!r}"
        raise InvalidConfigError(msg)
    suffix = f"?{query}" if query else ""
    return [f"{base}://{userinfo}{at}{node}{suffix}" for node in nodes]


class ClusterUrlClients(_UrlClients):
    """The cluster clients of a `redis+cluster://` store: made on first use, closed by it."""

    def __init__(self, urls: list[str], options: dict[str, Any], retries: int) -> None:
        super().__init__(urls[0], options, retries)
        self._nodes = [
            (parts.hostname or "localhost", parts.port or 6379) for parts in map(urlsplit, urls)
        ]
        self._tls = urlsplit(urls[0]).scheme.lower() == "rediss"

    def _cluster_options(self) -> dict[str, Any]:
        """What every node's connections take: the URL's settings, then `client_options`."""
        parsed = {k: v for k, v in _parse_url(self._url).items() if k not in _PER_NODE}
        options = {k: v for k, v in self._options.items() if k not in _POOL_OPTIONS}
        tls = {"ssl": True} if self._tls else {}
        return {**tls, **parsed, **options, "max_connections": self._limit}

    def _asyncio_runner(self) -> ClusterAsyncioRunner:
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in self._nodes]
        client = redis.asyncio.RedisCluster(
            startup_nodes=nodes,
            retry=AsyncRetry(self._backoff(), self._retries),
            **self._cluster_options(),
        )
        return ClusterAsyncioRunner(client, self._limit, self._budget)

    def _thread_runner(self) -> ClusterThreadRunner:
        make_node: Any = redis.cluster.ClusterNode  # untyped in redis-py
        nodes = [make_node(host, port) for host, port in self._nodes]
        options = self._cluster_options()

        def make() -> redis.cluster.RedisCluster:
            # Reads the topology as it is made: the runner does it in a worker thread.
            return redis.cluster.RedisCluster(
                startup_nodes=nodes, retry=Retry(self._backoff(), self._retries), **options
            )

        return ClusterThreadRunner(make, self._limit, self._budget)
