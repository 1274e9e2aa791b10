"""A real Redis Cluster for the tests, loaded as a pytest plugin by conftest.py.

Three primaries and three replicas on 127.0.0.1 and free ports, without persistence, each in
its own temporary directory, made with ``redis-cli --cluster create``. One cluster serves the
whole test session; tests that kill a node ask `dedicated_cluster` for one of their own, so the
shared one stays healthy. A missing redis-server or redis-cli fails the run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

from walletmesh_sessions.testing import StoreFactory

from .redis_server import FOREIGN_KEYS, RedisServer, url_factory
from .servers import executable, free_port, starting, wait_for

__all__ = ("ClusterForeignData", "RedisClusterNodes")

# How long a node may be silent before the others fail it over. The shared cluster must ride
# out a busy machine (two cores, several test runs); a dedicated one fails over quickly.
SHARED_NODE_TIMEOUT_MS = 5000
DEDICATED_NODE_TIMEOUT_MS = 1500
READY_TIMEOUT = 30.0


class RedisClusterNodes:
    """Six redis-server processes made into one cluster: 3 primaries, each with a replica."""

    def __init__(self, directory: Path, node_timeout_ms: int, size: int = 6) -> None:
        self.cli = executable("redis-cli", "redis-server")
        self.nodes: list[RedisServer] = []
        for n in range(size):
            node_dir = directory / f"node{n}"
            node_dir.mkdir()
            extra = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                # A replica syncs at once, not after the default 5 s wait for more replicas.
                "--repl-diskless-sync-delay", "0",
                # Its own bus port: the default (port + 10000) may be taken or out of range.
                "--cluster-port", str(free_port()),
            )  # fmt: skip
            self.nodes.append(RedisServer(node_dir, extra))

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming two of the nodes."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"

    def start(self, *, replicas_known: bool = False) -> None:
        """Start every node, create the cluster and wait until every node agrees it is ok.

        With `replicas_known`, also until every node's view lists each primary's replica
        (gossip takes seconds): what a failover needs, and a scan or a flush does not.
        """
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{port}" for port in self.ports]
            command = [self.cli, "--cluster", "create", *addresses]
            command += ["--cluster-replicas", "1", "--cluster-yes"]
            done = subprocess.run(command, capture_output=True, timeout=60, check=False)
            if done.returncode != 0:
                pytest.fail(f"redis-cli --cluster create failed:\n{done.stdout!r}")
            self.wait_ready(replicas_known=replicas_known)
        except BaseException:
            self.stop()
            raise

    def node_client(self, port: int) -> Any:
        """A plain client of one node (untyped: redis-py types its replies loosely)."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)

    def running_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running]

    def wait_ready(self, timeout: float = READY_TIMEOUT, *, replicas_known: bool = False) -> None:
        """Until every running node says ``cluster_state:ok``, all agree on the slots' primaries
        and every replica is in sync with its primary."""
        wait_for(
            lambda: self._agreed(replicas_known),
            "the Redis Cluster to become ready",
            timeout,
            *self.nodes,
        )

    def _agreed(self, replicas_known: bool) -> bool:
        views: set[tuple[tuple[int, ...], ...]] = set()
        for node in self.running_nodes():
            client = self.node_client(node.port)
            try:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
                role = client.execute_command("ROLE")
                if role[0] == b"slave" and role[3] != b"connected":
                    return False
                view = self._slot_view(client)
                views.add(view if replicas_known else tuple(r[:3] for r in view))
            except redis.RedisError:
                return False
            finally:
                client.close()
        if len(views) != 1 or not replicas_known:
            return len(views) == 1
        (view,) = views
        # Every range served by a primary with a replica, when every node runs.
        return all(r[3] >= 1 for r in view) or len(self.running_nodes()) < len(self.nodes)

    @staticmethod
    def _slot_view(client: Any) -> tuple[tuple[int, ...], ...]:
        # CLUSTER SLOTS: (start, end, primary port, replicas) per range, as this node sees it.
        reply = client.execute_command("CLUSTER", "SLOTS")
        return tuple(sorted((int(r[0]), int(r[1]), int(r[2][1]), len(r) - 3) for r in reply))

    def primaries(self) -> list[tuple[int, str]]:
        """``(port, node id)`` of every primary serving slots, each node asked about itself
        (another node's view of who is a replica lags behind by a gossip round)."""
        found = []
        for node in self.running_nodes():
            client = self.node_client(node.port)
            try:
                raw = client.execute_command("CLUSTER", "NODES")
            finally:
                client.close()
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            myself = next(line for line in text.splitlines() if "myself" in line).split()
            if "master" in myself[2].split(",") and len(myself) > 8:
                found.append((node.port, myself[0]))
        return sorted(found)

    def slots_of(self, port: int) -> set[int]:
        """The slots the primary on `port` serves, as the first running node sees it."""
        client = self.node_client(self.running_nodes()[0].port)
        try:
            view = self._slot_view(client)
        finally:
            client.close()
        return {s for start, end, owner, _ in view if owner == port for s in range(start, end + 1)}

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def flush(self) -> None:
        """Empty every primary (replicas follow), each asked for its own role."""
        for node in self.running_nodes():
            client = self.node_client(node.port)
            try:
                if client.execute_command("ROLE")[0] in (b"master", "master"):
                    client.flushall()
            finally:
                client.close()

    def client(self) -> redis.cluster.RedisCluster:
        """A new synchronous cluster client with short timeouts."""
        return redis.cluster.RedisCluster(
            host="127.0.0.1", port=self.ports[0], socket_timeout=5, socket_connect_timeout=5
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class ClusterForeignData:
    """Keys of other programs in the cluster, planted key by key (they span many slots)."""

    def __init__(self, client: redis.cluster.RedisCluster) -> None:
        self._client = client

    async def plant(self) -> None:
        for key, value in FOREIGN_KEYS.items():
            self._client.set(key, value)
        self._client.hset("wm_sessions_hash", mapping={"f": "v"})

    async def intact(self) -> bool:
        values = [self._client.get(key) for key in FOREIGN_KEYS]
        hash_ok = self._client.hgetall("wm_sessions_hash") == {b"f": b"v"}
        return values == list(FOREIGN_KEYS.values()) and hash_ok


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A running 3 + 3 Redis Cluster for the whole test session."""
    starting("redis_cluster", "redis-url")
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"), SHARED_NODE_TIMEOUT_MS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def dedicated_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], RedisClusterNodes]]:
    """Start clusters of a test's own (to kill nodes of); each is stopped afterwards."""
    started: list[RedisClusterNodes] = []

    def start() -> RedisClusterNodes:
        starting("redis_cluster", "redis-url")
        directory = tmp_path_factory.mktemp("redis-cluster-dedicated")
        cluster = RedisClusterNodes(directory, DEDICATED_NODE_TIMEOUT_MS)
        started.append(cluster)
        cluster.start(replicas_known=True)
        return cluster

    try:
        yield start
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture
def redis_cluster_client(
    redis_cluster: RedisClusterNodes,
) -> Iterator[redis.cluster.RedisCluster]:
    """A raw synchronous cluster client over freshly emptied primaries."""
    redis_cluster.wait_ready()
    redis_cluster.flush()
    client = redis_cluster.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_cluster_factory(
    redis_cluster_client: redis.cluster.RedisCluster, redis_cluster: RedisClusterNodes
) -> StoreFactory:
    """Stores over the emptied cluster."""
    return url_factory(redis_cluster.url)


@pytest.fixture
def redis_cluster_foreign(redis_cluster_client: redis.cluster.RedisCluster) -> ClusterForeignData:
    """Foreign keys next to the `redis_cluster_factory` stores' keys, for the contract kit."""
    return ClusterForeignData(redis_cluster_client)
