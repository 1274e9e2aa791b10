"""Auto-pipelining on asyncio: the round trips that concurrent calls start in one event-loop
turn go out together, one write and one read on one connection, each reply to its caller.

Every call waits for a future of its own, so its deadline, cancellation and errors stay its
own: an error reply fails only the call it answers, and a call that stops waiting leaves the
batch to go on (its replies are read and dropped, so the connection stays in step). A batch
whose reply stream is in doubt (cut off, out of time, cancelled) disconnects its connection
before the pool gets it back. The idea is ioredis' (``lib/autoPipelining.ts``).

On a cluster (`ClusterAutoPipeline`) a batch goes to one node: each call's command goes to its
slot's primary in the client's view, and a call whose reply is a redirection (MOVED, ASK), a
TRYAGAIN or CLUSTERDOWN, or whose node's batch failed, gets `REROUTE`: its sender then sends it
the usual way, through the client's routing, which follows redirections and failovers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from .._core.timers import within
from .exchanges import Args

__all__ = ("REROUTE", "AutoPipeline", "ClusterAutoPipeline")

# Commands that only read: their batches never wait behind a write.
_READS = frozenset({"GET", "MGET", "PTTL", "TTL", "EXISTS", "STRLEN", "SCAN"})

REROUTE: Any = object()
"""A cluster call's answer when it is to be sent again through the client's own routing."""

_Entry = tuple[list[Args], "asyncio.Future[Any]", bool]
"""A call's commands, its future, and whether it wants every reply (or the one, raised)."""


class AutoPipeline:
    """Batches of the commands queued in one loop turn, each sent on a connection of `client`'s
    pool, one per turn of `slots` if given (the runner's); each ends within `budget` (seconds)
    if given.

    `send` queues one call's commands; the first queued in a turn schedules the batch's task,
    which starts once the calls ready in that turn have queued theirs.
    """

    __slots__ = ("_callbacks", "_idle", "_pool", "_queues", "_tasks", "budget", "slots")

    # Error replies that send a cluster call back through the client's routing (none here).
    _REROUTED: tuple[type[Exception], ...] = ()

    def __init__(self, client: Any, budget: float | None = None, *, keep: bool = True) -> None:
        # One server's pool (a cluster's connections are its nodes').
        self._pool: Any = getattr(client, "connection_pool", None)
        # Connections between batches, kept from the pool (`keep`, for the store's own pool
        # only: a caller's pool is theirs to use too): taking one from redis-py's pool and
        # giving it back costs more than a lone GET's own work. A pool of another kind (a
        # Sentinel primary's, which checks where the primary is as it hands one out) is
        # asked every time.
        self._idle: list[Any] | None = (
            []
            if keep
            and type(self._pool)
            in (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)
            else None
        )
        self._callbacks: dict[Any, Callable[..., Any]] = client.response_callbacks
        self._queues: dict[Any, list[_Entry]] = {}
        self.slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.budget = budget

    def send(self, commands: list[Args], every: bool, node: Any = None) -> asyncio.Future[Any]:
        """Queue `commands` (one call's round trip) for `node` (a cluster's; one server: None);
        the future of their replies: a list of them, errors as values, if `every`, else the
        one reply (an error reply raised)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # Reads and writes go in batches of their own, on connections of their own: a write
        # the server holds back (CLIENT PAUSE WRITE, as in a failover) holds back only writes.
        key = (node, all(args[0] in _READS for args in commands))
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
            # A task's first step runs after every callback already ready: this turn's calls.
            self._tasks.add(asyncio.Task(self._carry(node, key), loop=loop))
        queue.append((commands, future, every))
        return future

    def alone(self, commands: list[Args]) -> asyncio.Future[Any]:
        """`send` for commands that must not share their connection (``WAIT`` holds it until
        replicas answer): a batch of their own, every reply in a list."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batch = [(commands, future, True)]
        self._tasks.add(asyncio.Task(self._carry(None, batch=batch), loop=loop))
        return future

    async def _carry(
        self, node: Any, key: tuple[Any, bool] | None = None, batch: list[_Entry] | None = None
    ) -> None:
        """Send the calls queued under `key` (or `batch`) to `node` as one batch and hand out
        the replies; any failure of the batch fails the calls still waiting, with it."""
        if batch is None:
            batch = self._queues.pop(key)
        slots = self.slots
        try:
            if slots is None:
                await self._bounded(batch, node)
            else:
                async with slots:
                    await self._bounded(batch, node)
        except Exception as exc:
            _fail(batch, exc)
        except BaseException:
            _fail(batch, _closed())
            raise
        finally:
            self._tasks.discard(asyncio.current_task())

    async def _bounded(self, batch: list[_Entry], node: Any) -> None:
        """`_on_connection` within the budget, under the loop's one timer queue."""
        if all(future.done() for _, future, _ in batch):
            return  # every caller gave up while it waited for a connection
        budget = self.budget
        if budget is None:
            await self._on_connection(batch, node)
            return
        message = "no reply to a pipelined batch within the budget"
        await within(budget, self._on_connection(batch, node), lambda: redis.TimeoutError(message))

    async def _on_connection(self, batch: list[_Entry], node: Any) -> None:
        idle = self._idle
        connection = idle.pop() if idle else await self._pool.get_connection()
        try:
            retry: Any = connection.retry
            await retry.call_with_retry(
                lambda: self._exchange(connection, batch),
                lambda _error: connection.disconnect(),
            )
        except BaseException:
            # Replies may still be on their way: nobody else may read them.
            await connection.disconnect(nowait=True)
            raise
        finally:
            if idle is not None:
                idle.append(connection)
            else:
                await self._pool.release(connection)

    async def _exchange(self, connection: Any, batch: list[_Entry]) -> None:
        """One write of the waiting calls' commands, then their replies read in order (on a
        retry, the calls that got theirs or stopped waiting are not sent again)."""
        encoder = connection.encoder
        waiting: list[_Entry] = []
        parts: list[bytes] = []
        for entry in batch:
            commands, future, _ = entry
            if future.done():
                continue
            try:
                parts.append(_packed(commands, encoder))
            except Exception as exc:  # an argument redis-py cannot send: this call's error
                future.set_exception(exc)
                continue
            waiting.append(entry)
        if not waiting:
            return
        await connection.send_packed_command(b"".join(parts))
        read = connection.read_response
        callbacks = self._callbacks
        rerouted = self._REROUTED
        for commands, future, every in waiting:
            replies: list[Any] = []
            for args in commands:
                try:
                    reply = await read()
                except redis.ResponseError as exc:
                    reply = exc
                else:
                    callback = callbacks.get(args[0])
                    if callback is not None:
                        try:
                            reply = callback(reply)
                        except Exception as exc:  # a reply it cannot read: this call's error
                            reply = exc
                replies.append(reply)
            if future.done():
                continue  # its caller stopped waiting: the replies are dropped
            if rerouted and any(isinstance(reply, rerouted) for reply in replies):
                future.set_result(REROUTE)
            elif every:
                future.set_result(replies)
            elif isinstance(replies[0], Exception):
                future.set_exception(replies[0])
            else:
                future.set_result(replies[0])

    async def aclose(self) -> None:
        """Cancel the batches in flight (their calls fail; their connections are dropped), and
        give the idle connections back to the pool."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        queues, self._queues = self._queues, {}
        for batch in queues.values():  # of batches cancelled before they started
            _fail(batch, _closed())
        idle, self._idle = self._idle, None if self._idle is None else []
        for connection in idle or ():
            await self._pool.release(connection)


class ClusterAutoPipeline(AutoPipeline):
    """Batches per node of a `redis.asyncio.RedisCluster`: `node_of` says where a call goes."""

    __slots__ = ("_cluster",)

    _REROUTED = (
        redis.exceptions.AskError,  # MOVED too: a subclass
        redis.exceptions.TryAgainError,
        redis.exceptions.ClusterDownError,
    )

    def __init__(self, cluster: redis.asyncio.RedisCluster, budget: float | None = None) -> None:
        super().__init__(cluster, budget)
        self._cluster = cluster

    def node_of(self, args: Args) -> Any:
        """The primary that holds the key(s) of `args` in the client's view, or None if the
        command has no such one place (no keys, keys of several slots, an unknown command,
        a slot no node covers): the client's routing then sends it."""
        name = args[0]
        if name in ("GET", "SET") or (name == "DEL" and len(args) == 2):
            keys: tuple[Any, ...] = args[1:2]
        elif name in ("EVALSHA", "EVAL"):
            keys = args[3 : 3 + int(args[2])]
        else:
            return None
        cluster = self._cluster
        slots = {cluster.keyslot(key) for key in keys}
        if len(slots) != 1:
            return None
        try:
            return cluster.nodes_manager.get_node_from_slot(slots.pop())
        except redis.exceptions.RedisClusterException:
            return None

    async def _on_connection(self, batch: list[_Entry], node: Any) -> None:
        """On one of `node`'s connections, without retries: a failed batch's calls still
        waiting are sent again through the client's routing (which retries, and follows a
        failover), each by its own caller."""
        try:
            connection = node.acquire_connection()
        except redis.exceptions.MaxConnectionsError:
            _reroute(batch)
            return
        try:
            await self._exchange(connection, batch)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            await connection.disconnect(nowait=True)
            _reroute(batch)
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            node.release(connection)


def _reroute(batch: list[_Entry]) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_result(REROUTE)


def _packed(commands: list[Args], encoder: Any) -> bytes:
    """`commands` in the Redis protocol, arguments encoded as redis-py's `encoder` does (str,
    bytes and int here at once, the rest by it: a float, or a `DataError` for a bad type)."""
    encoding, errors = encoder.encoding, encoder.encoding_errors
    parts: list[bytes] = []
    add = parts.append
    for args in commands:
        add(b"*%d\r\n" % len(args))
        for arg in args:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is bytes:
                data = arg
            elif kind is int:
                data = b"%d" % arg
            else:
                data = encoder.encode(arg)
            add(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _closed() -> redis.ConnectionError:
    return redis.ConnectionError("the batch was cancelled (the store closed?)")


def _fail(batch: list[_Entry], exc: Exception) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(exc)
