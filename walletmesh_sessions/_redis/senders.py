"""The senders: the one place a runner does I/O, one request of a round trip at a time, on
a client of one server or of a cluster, awaited or blocking (in a worker thread).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
import redis.cluster

from .cluster_steps import CLUSTER_EXCHANGES
from .exchanges import EXCHANGES
from .pipelining import REROUTE, AutoPipeline, ClusterAutoPipeline
from .round_trips import (
    Call,
    ConnectionDropped,
    Locate,
    OnNode,
    Pipeline,
    Ready,
    Refresh,
    Request,
    on_cluster,
    on_one_server,
)

__all__ = (
    "AsyncClusterSender",
    "AsyncSender",
    "SyncClusterSender",
    "SyncSender",
)

ClusterMaker = Callable[[], redis.cluster.RedisCluster]


def _locate(cluster: Any, slots: tuple[int, ...]) -> list[str | None]:
    """Each slot's primary address in the client's view of the topology, or None."""
    found: list[str | None] = []
    for slot in slots:
        try:
            node = cluster.nodes_manager.get_node_from_slot(slot)
        except (redis.exceptions.RedisClusterException, KeyError):
            node = None
        found.append(None if node is None else f"{node.host}:{node.port}")
    return found


def _node(cluster: Any, address: str) -> Any:
    host, _, port = address.rpartition(":")
    node = cluster.get_node(host, int(port))
    if node is None:
        raise redis.ConnectionError("the cluster's topology does not list this node")
    return node


def _queued(pipe: Any, commands: list[Any]) -> Any:
    queue: Callable[..., Any] = pipe.execute_command
    for args in commands:
        queue(*args)
    return pipe


class AsyncSender:
    """Requests on one server, through a `redis.asyncio.Redis`; with `auto`, those of calls
    made in one event-loop turn go out as one pipeline (`pipelining`)."""

    exchanges = EXCHANGES
    round_trip = staticmethod(on_one_server)

    def __init__(self, client: redis.asyncio.Redis, auto: AutoPipeline | None = None) -> None:
        self.client = client
        self.auto = auto
        # redis-py leaves execute_command untyped; every reply is Any to us anyway.
        self._command: Callable[..., Awaitable[Any]] = client.execute_command

    async def perform(self, request: Request) -> Any:
        """Carry out `request`: its answer, or the redis-py error it raised."""
        auto = self.auto
        if isinstance(request, Call):
            if auto is not None:
                return await auto.send([request.args], every=False)
            return await self._command(*request.args)
        assert isinstance(request, Pipeline)  # one server gets no other request
        commands = request.commands
        if auto is not None:
            if commands[-1][0] == "WAIT":
                # WAIT blocks its connection until replicas answer: it never holds up others.
                return await auto.alone(commands)
            return await auto.send(commands, every=True)
        pipe = _queued(self.client.pipeline(transaction=False), commands)
        return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        """Close the client and its connection pool, the batches in flight first."""
        if self.auto is not None:
            await self.auto.aclose()
        await self.client.aclose()


class SyncSender:
    """Requests on one server, through a synchronous `redis.Redis` (in a worker thread)."""

    exchanges = EXCHANGES
    round_trip = staticmethod(on_one_server)

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._command: Callable[..., Any] = client.execute_command

    def perform(self, request: Request) -> Any:
        """Carry out `request`: its answer, or the redis-py error it raised."""
        if isinstance(request, Call):
            return self._command(*request.args)
        assert isinstance(request, Pipeline)  # one server gets no other request
        return _queued(self.client.pipeline(transaction=False), request.commands).execute(
            raise_on_error=False
        )

    def closer(self) -> Callable[[], None]:
        """What closes the client's connections (it may block briefly: run it in a thread)."""
        return self.client.close


class AsyncClusterSender:
    """Requests on a cluster, through a `redis.asyncio.RedisCluster`; with `auto`, a keyed
    command of calls made in one event-loop turn goes out in one pipeline per node."""

    exchanges = CLUSTER_EXCHANGES
    round_trip = staticmethod(on_cluster)

    def __init__(
        self, cluster: redis.asyncio.RedisCluster, auto: ClusterAutoPipeline | None = None
    ) -> None:
        self.client = self.cluster = cluster
        self.auto = auto

    async def perform(self, request: Request) -> Any:
        """Carry out `request`: its answer, or the redis-py error it raised."""
        try:
            return await self._perform(request)
        except AttributeError as exc:
            # What a connection dropped while in use raises in redis-py (a write to no socket).
            msg = f"a cluster connection was closed while in use ({exc})"
            raise ConnectionDropped(msg) from exc

    async def _perform(self, request: Request) -> Any:
        cluster = self.cluster
        if isinstance(request, Ready):
            # Topology first, under the client's lock: redis-py's lazy start, raced by many
            # first commands at once, can drop connections that are just being opened.
            return await cluster.initialize()
        if isinstance(request, Locate):
            return _locate(cluster, request.slots)
        if isinstance(request, Refresh):
            await asyncio.sleep(request.pause)
            return await cluster.nodes_manager.initialize()
        auto = self.auto
        if auto is not None and isinstance(request, Call):
            node = auto.node_of(request.args)
            if node is not None:
                answer = await auto.send([request.args], False, node)
                if answer is not REROUTE:
                    return answer
        slots = None if auto is None else auto.slots
        if slots is None:
            return await self._direct(request)
        # Sent outside a batch: it takes a turn as a batch does (the runner's max_connections).
        async with slots:
            return await self._direct(request)

    async def _direct(self, request: Request) -> Any:
        """A call, pipeline or node call through the client's own routing."""
        cluster = self.cluster
        if isinstance(request, Call):
            return await cluster.execute_command(*request.args)
        if isinstance(request, Pipeline):
            return await _queued(cluster.pipeline(), request.commands).execute(raise_on_error=False)
        assert isinstance(request, OnNode)
        return await cluster.execute_command(
            *request.args, target_nodes=_node(cluster, request.address)
        )

    async def aclose(self) -> None:
        """Close the client and its connections, the batches in flight first."""
        if self.auto is not None:
            await self.auto.aclose()
        await self.cluster.aclose()


class SyncClusterSender:
    """Requests on a cluster, through a synchronous `redis.cluster.RedisCluster`, or a function
    that makes one: it reads the topology as it is made, so it is then made in the worker
    thread of the first request (bounded, errors translated), never on the event loop."""

    exchanges = CLUSTER_EXCHANGES
    round_trip = staticmethod(on_cluster)

    def __init__(self, client: redis.cluster.RedisCluster | ClusterMaker) -> None:
        made = isinstance(client, redis.cluster.RedisCluster)
        # redis-py leaves the synchronous cluster client untyped.
        self._cluster: Any = client if made else None
        self._make: Any = None if made else client
        self._making = threading.Lock()
        self._closed = False

    @property
    def client(self) -> Any:
        """The client, or None if it is not made yet."""
        return self._cluster

    @property
    def cluster(self) -> Any:
        """The client, made now (in the calling worker thread) if it was not yet."""
        cluster = self._cluster
        if cluster is None:
            with self._making:
                if self._cluster is None:
                    made: Any = None if self._closed else self._make()
                    if self._closed:  # closed before or while it was made
                        if made is not None:
                            made.close()
                        msg = "the store's cluster client was closed"
                        raise redis.ConnectionError(msg)
                    self._cluster = made
                cluster = self._cluster
        return cluster

    def perform(self, request: Request) -> Any:
        """Carry out `request`: its answer, or the redis-py error it raised."""
        cluster = self.cluster
        if isinstance(request, Ready):
            return None  # the client read the topology as it was made
        if isinstance(request, Call):
            return cluster.execute_command(*request.args)
        if isinstance(request, Pipeline):
            return _queued(cluster.pipeline(), request.commands).execute(raise_on_error=False)
        if isinstance(request, Locate):
            return _locate(cluster, request.slots)
        if isinstance(request, Refresh):
            time.sleep(request.pause)
            return cluster.nodes_manager.initialize()
        assert isinstance(request, OnNode)
        node = _node(cluster, request.address)
        return cluster.execute_command(*request.args, target_nodes=node)

    def closer(self) -> Callable[[], None]:
        """What closes the client if it was made; one still being made is closed when it is."""
        self._closed = True
        cluster = self._cluster
        return (lambda: None) if cluster is None else cluster.close
