"""Auto-pipelining on asyncio: the round trips that concurrent calls start in one event-loop
turn go out together, one write and one read on one connection, each reply to its caller.

Every call waits for a future of its own, so its deadline, cancellation and errors stay its
own: an error reply fails only the call it answers, and a call that stops waiting leaves the
batch to go on (its replies are read and dropped, so the connection stays in step). A batch
whose reply stream is in doubt (cut off, out of time, cancelled) disconnects its connection
before the pool gets it back. The idea is ioredis' (``lib/autoPipelining.ts``); one server only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from .exchanges import Args

__all__ = ("AutoPipeline",)

_Entry = tuple[list[Args], "asyncio.Future[Any]", bool]
"""A call's commands, its future, and whether it wants every reply (or the one, raised)."""


class AutoPipeline:
    """Batches of the commands queued in one loop turn, each sent on a connection of `client`'s
    pool, one per turn of `slots` if given (the runner's); each ends within `budget` (seconds)
    if given.

    `send` queues one call's commands; the first queued in a turn schedules the batch's task,
    which starts once the calls ready in that turn have queued theirs.
    """

    __slots__ = ("_callbacks", "_client", "_pool", "_queue", "_tasks", "budget", "slots")

    def __init__(self, client: redis.asyncio.Redis, budget: float | None = None) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._callbacks: dict[Any, Callable[..., Any]] = client.response_callbacks  # type: ignore[assignment]
        self._queue: list[_Entry] = []
        self.slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.budget = budget

    def send(self, commands: list[Args], every: bool) -> asyncio.Future[Any]:
        """Queue `commands` (one call's round trip); the future of their replies: a list of
        them, errors as values, if `every`, else the one reply (an error reply raised)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        queue = self._queue
        queue.append((commands, future, every))
        if len(queue) == 1:
            # A task's first step runs after every callback already ready: this turn's calls.
            task = asyncio.Task(self._carry(), loop=loop)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _carry(self) -> None:
        """Send the queued calls as one batch and hand out the replies; any failure of the
        batch fails the calls still waiting, with it."""
        batch, self._queue = self._queue, []
        slots = self.slots
        try:
            if slots is None:
                await self._bounded(batch)
            else:
                async with slots:
                    await self._bounded(batch)
        except Exception as exc:
            _fail(batch, exc)
        except BaseException:
            _fail(batch, redis.ConnectionError("the batch was cancelled (the store closed?)"))
            raise

    async def _bounded(self, batch: list[_Entry]) -> None:
        if all(future.done() for _, future, _ in batch):
            return  # every caller gave up while it waited for a connection
        budget = self.budget
        timer = contextlib.nullcontext() if budget is None else asyncio.timeout(budget)
        try:
            async with timer:
                await self._on_connection(batch)
        except TimeoutError:
            raise redis.TimeoutError("no reply to a pipelined batch within the budget") from None

    async def _on_connection(self, batch: list[_Entry]) -> None:
        pool = self._pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
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
            await pool.release(connection)

    async def _exchange(self, connection: Any, batch: list[_Entry]) -> None:
        """One write of the waiting calls' commands, then their replies read in order (on a
        retry, the calls that got theirs or stopped waiting are not sent again)."""
        waiting = [entry for entry in batch if not entry[1].done()]
        if not waiting:
            return
        await connection.send_packed_command(
            connection.pack_commands([args for commands, _, _ in waiting for args in commands])
        )
        read = connection.read_response
        callbacks = self._callbacks
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
            if every:
                future.set_result(replies)
            elif isinstance(replies[0], Exception):
                future.set_exception(replies[0])
            else:
                future.set_result(replies[0])

    async def aclose(self) -> None:
        """Cancel the batches in flight (their calls fail); their connections are dropped."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _fail(batch: list[_Entry], exc: Exception) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(exc)
