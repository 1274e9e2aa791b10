"""Running operations on a Redis Cluster: the two runners, I/O only.

`ClusterAsyncioRunner` (a `redis.asyncio.RedisCluster`, asyncio) and `ClusterThreadRunner` (a
`redis.cluster.RedisCluster`, in anyio worker threads) are the single-server runners with the
cluster's exchanges (`cluster_steps`) and a sender that routes: a command for one node
goes to it as it is, a keyed command through the client (which follows MOVED and ASK), several
keyed ones in one cluster pipeline. Deadlines, limits and error translation are the
single-server runners' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
import redis.asyncio
import redis.cluster
from redis.exceptions import RedisClusterException, ResponseError

from .cluster_steps import CLUSTER_EXCHANGES, LOCATE, REFRESH, At
from .conversation import Conversation
from .exchanges import Args
from .runners import AsyncioRunner, ThreadRunner
from .steps import Op

T = TypeVar("T")

__all__ = ("ClusterAsyncioRunner", "ClusterConversation", "ClusterThreadRunner")

# A node answer that is an error stays a value: the cluster exchanges decide what it means.
_NODE_ERRORS = (redis.RedisError, RedisClusterException, OSError)


class ClusterConversation(Conversation[Any]):
    """A `Conversation` that carries the steps out on a cluster."""

    __slots__ = ()

    exchanges = CLUSTER_EXCHANGES


def _loaded(commands: list[Args], replies: list[Any]) -> list[Args]:
    """The round with every script load folded into the EVALSHA after it.

    A cluster has no one node to load a script on: an EVALSHA that needs its script becomes
    EVAL of the source, sent where the EVALSHA would go (which caches it there), and the load
    is answered with the script's hash at once.
    """
    sources: dict[str, Any] = {}
    for i, command in enumerate(commands):
        body = command[1:] if isinstance(command[0], At) else command
        if body[:2] == ("SCRIPT", "LOAD"):
            sha = hashlib.sha1(str(body[2]).encode()).hexdigest()
            sources[sha] = body[2]
            replies[i] = sha.encode()
    if not sources:
        return commands
    folded: list[Args] = []
    for command in commands:
        at = command[:1] if isinstance(command[0], At) else ()
        body = command[len(at) :]
        if body[:1] == ("EVALSHA",) and body[1] in sources:
            command = (*at, "EVAL", sources[body[1]], *body[2:])
        folded.append(command)
    return folded


def _split(commands: list[Args]) -> tuple[list[int], list[int]]:
    """Indexes of the commands for the client's routing, and of the rest (answered already:
    script loads), in order."""
    routed: list[int] = []
    other: list[int] = []
    for i, command in enumerate(commands):
        head = command[0]
        body = command[1:] if isinstance(head, At) else command
        if body[:2] == ("SCRIPT", "LOAD"):
            continue
        (other if isinstance(head, At) or head in (LOCATE, REFRESH) else routed).append(i)
    return routed, other


class _Unmade:
    """Stands for a cluster client not made yet: closing it closes nothing."""

    def execute_command(self, *args: Any) -> Any:
        msg = "the cluster client is not made yet"
        raise redis.ConnectionError(msg)

    def close(self) -> None:
        """No client, no connections."""


def _address(node: Any) -> str | None:
    return None if node is None else f"{node.host}:{node.port}"


def _locate(cluster: Any, slot: int) -> str | None:
    """The address of `slot`'s primary in the client's view of the topology, or None."""
    try:
        return _address(cluster.nodes_manager.get_node_from_slot(slot))
    except (RedisClusterException, KeyError):
        return None


# Operations that run to their end once started, even if their caller is cancelled: a
# `rotate` to another slot is two steps, and stopping between them would leave both ids valid.
_FINISHED_ONCE_STARTED = frozenset({"rotate"})


class ClusterAsyncioRunner(AsyncioRunner):
    """Runs operations on a `redis.asyncio.RedisCluster`, on asyncio only.

    A `rotate` runs in a task of its own that the caller's cancellation does not reach: it
    ends, within its own deadline, as on trio, where a thread runs it to its end too. The
    caller who is cancelled does not learn the outcome (the session was rotated or not).
    """

    conversation = ClusterConversation

    def __init__(
        self,
        client: redis.asyncio.RedisCluster,
        limit: int | None = None,
        budget: float | None = None,
    ) -> None:
        # The single-server runner uses only what both clients have (commands, pipelines).
        super().__init__(cast("redis.asyncio.Redis", client), limit, budget)
        self._unawaited: set[asyncio.Task[Any]] = set()
        self.cluster = client

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        if name not in _FINISHED_ONCE_STARTED:
            return await super().run(op, name, deadline)
        task = asyncio.ensure_future(super().run(op, name, deadline))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._unawaited.add(task)
                task.add_done_callback(self._settled)
            raise

    def _settled(self, task: asyncio.Task[Any]) -> None:
        """A rotate whose caller was cancelled has ended: nobody waits for its outcome."""
        self._unawaited.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an error nobody awaits is not reported as lost

    async def _send(self, commands: list[Args]) -> list[Any]:
        try:
            # Topology first, under the client's lock: redis-py's lazy start, raced by many
            # first commands at once, can drop connections that are just being opened.
            await self.cluster.initialize()
            return await self._send_ready(commands)
        except AttributeError as exc:
            # What such a dropped connection raises in redis-py (a write to no socket).
            msg = f"a cluster connection was closed while in use ({exc})"
            raise redis.ConnectionError(msg) from exc

    async def _send_ready(self, commands: list[Args]) -> list[Any]:
        replies: list[Any] = [None] * len(commands)
        commands = _loaded(commands, replies)
        routed, other = _split(commands)
        for i in other:
            replies[i] = await self._local(commands[i])
        if len(routed) == 1:
            try:
                replies[routed[0]] = await self.cluster.execute_command(*commands[routed[0]])
            except ResponseError as exc:
                replies[routed[0]] = exc
        elif routed:
            pipe = self.cluster.pipeline()
            for i in routed:
                pipe.execute_command(*commands[i])
            answers = await pipe.execute(raise_on_error=False)
            for i, answer in zip(routed, answers, strict=True):
                replies[i] = answer
        return replies

    async def _local(self, command: Args) -> Any:
        head, *args = command
        cluster = self.cluster
        if head is LOCATE:
            return [_locate(self.cluster, slot) for slot in args]
        if head is REFRESH:
            await asyncio.sleep(args[0])
            # No node answering is no error here: the exchange tries again, within the deadline.
            with contextlib.suppress(*_NODE_ERRORS):
                await cluster.nodes_manager.initialize()
            return None
        host, _, port = head.address.rpartition(":")
        node = cluster.get_node(host, int(port))
        if node is None:
            return redis.ConnectionError("the cluster's topology does not list this node")
        try:
            return await cluster.execute_command(*args, target_nodes=node)
        except _NODE_ERRORS as exc:
            return exc


class ClusterThreadRunner(ThreadRunner):
    """Runs operations on a synchronous `redis.cluster.RedisCluster` in anyio worker threads.

    `client` may be a function that makes the client: redis-py's synchronous cluster client
    reads the topology from the nodes as it is made, so it is then made in the worker thread
    of the first call that needs it, within that call's bound and with its errors translated,
    never on the event loop.
    """

    conversation = ClusterConversation

    def __init__(
        self,
        client: redis.cluster.RedisCluster | Callable[[], redis.cluster.RedisCluster],
        limit: int | None = None,
        budget: float | None = None,
    ) -> None:
        made = isinstance(client, redis.cluster.RedisCluster)
        super().__init__(cast("redis.Redis", client if made else _Unmade()), limit, budget)
        # redis-py leaves the synchronous cluster client untyped.
        self._cluster: Any = client if made else None
        self._make: Any = None if made else client
        self._making = threading.Lock()
        self._closed = False

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
                    self._cluster = self.client = made
                cluster = self._cluster
        return cluster

    async def aclose(self) -> None:
        """Close the client if it was made; one still being made is closed when it is."""
        self._closed = True
        await super().aclose()

    def _send(self, commands: list[Args]) -> list[Any]:
        replies: list[Any] = [None] * len(commands)
        commands = _loaded(commands, replies)
        routed, other = _split(commands)
        for i in other:
            replies[i] = self._local(commands[i])
        if len(routed) == 1:
            try:
                replies[routed[0]] = self.cluster.execute_command(*commands[routed[0]])
            except ResponseError as exc:
                replies[routed[0]] = exc
        elif routed:
            pipe = self.cluster.pipeline()
            for i in routed:
                pipe.execute_command(*commands[i])
            answers = pipe.execute(raise_on_error=False)
            for i, answer in zip(routed, answers, strict=True):
                replies[i] = answer
        return replies

    def _local(self, command: Args) -> Any:
        head, *args = command
        cluster = self.cluster
        if head is LOCATE:
            return [_locate(self.cluster, slot) for slot in args]
        if head is REFRESH:
            time.sleep(args[0])
            # No node answering is no error here: the exchange tries again, within the deadline.
            with contextlib.suppress(*_NODE_ERRORS):
                cluster.nodes_manager.initialize()
            return None
        host, _, port = head.address.rpartition(":")
        node = cluster.get_node(host, int(port))
        if node is None:
            return redis.ConnectionError("the cluster's topology does not list this node")
        try:
            return cluster.execute_command(*args, target_nodes=node)
        except _NODE_ERRORS as exc:
            return exc
