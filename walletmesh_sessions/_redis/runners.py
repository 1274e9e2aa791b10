"""The runners: they move the bytes of `Conversation`s to one Redis server, and nothing else.

`AsyncioRunner` awaits `redis.asyncio`; `ThreadRunner` blocks on the synchronous client in
anyio worker threads, a whole operation (or a page of a scan) per thread hop. Errors leave
through `failures.translate`, whose messages never echo command arguments.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import redis
import redis.asyncio
from redis.exceptions import RedisClusterException, ResponseError

from .._core.deadline import let_thread_end
from .conversation import Conversation
from .deadlines import Deadlines
from .exchanges import Args
from .failures import late
from .replicas import ReplicaWait, with_wait, without_wait
from .steps import CHECKPOINT, Op

__all__ = ("AsyncioRunner", "ThreadRunner")

T = TypeVar("T")


class AsyncioRunner:
    """Runs operations on a `redis.asyncio.Redis` client, on asyncio only.

    With `limit`, at most that many operations run at once (the store's pool holds `limit`
    connections; redis-py's blocking pool would wait too, at a higher cost per command). With
    `budget`, each call finishes or fails within that many seconds of being made, waiting for
    its turn included.
    """

    conversation: type[Conversation[Any]] = Conversation

    def __init__(
        self, client: redis.asyncio.Redis, limit: int | None = None, budget: float | None = None
    ) -> None:
        self.client = client
        # redis-py leaves execute_command untyped; every reply is Any to us anyway.
        self._command: Callable[..., Awaitable[Any]] = client.execute_command
        self._slots = None if limit is None else asyncio.Semaphore(limit)
        self._budget = budget
        self._deadlines: Deadlines | None = None
        self.replica_wait: ReplicaWait | None = None

    @property
    def budget(self) -> float | None:
        """Seconds each call may take, or `None` (the client's own timeouts apply)."""
        return self._budget

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        """Drive `op` to its result; Redis errors become the library's, with the cause kept.

        `deadline` (on `anyio.current_time`'s clock) replaces the runner's own budget.
        """
        budget = self._budget
        loop = asyncio.get_running_loop()
        if deadline is None:
            if budget is None:
                return await self._guarded(op, name)
            if sys.version_info >= (3, 11):
                return await self._watched(op, name, loop, budget)
            deadline = loop.time() + budget  # pragma: no cover
        else:
            budget = None
        try:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout_at(deadline):
                    return await self._guarded(op, name)
            else:  # pragma: no cover
                left = max(0.0, deadline - loop.time())
                return await asyncio.wait_for(self._guarded(op, name), left)
        except asyncio.TimeoutError:
            op.close()
            raise late(name, budget) from None

    async def _watched(
        self, op: Op[T], name: str, loop: asyncio.AbstractEventLoop, budget: float
    ) -> T:
        """`_guarded` within `budget` of now, under the runner's one deadline timer.

        Cancels as ``asyncio.timeout`` does: only this call's own expiry becomes
        `StoreUnavailableError`; a cancellation from outside stays a cancellation.
        """
        if sys.version_info < (3, 11):  # pragma: no cover
            raise NotImplementedError  # Python 3.10 takes `asyncio.wait_for` instead
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(loop)
        task = asyncio.current_task()
        assert task is not None  # a coroutine awaited on asyncio always runs in a task
        call = deadlines.watch(task, loop.time() + budget)
        try:
            return await self._guarded(op, name)
        except asyncio.CancelledError:
            if call.fired:
                call.fired = False
                if task.uncancel() <= call.cancelling:
                    op.close()
                    raise late(name, budget) from None
            raise
        finally:
            call.task = None
            if call.fired:  # expired just as it finished: take back the cancellation
                task.uncancel()

    async def _guarded(self, op: Op[T], name: str) -> T:
        slots = self._slots
        talk: Conversation[T] = self.conversation(op, name)
        if slots is None:
            return await self._drive(talk)
        async with slots:
            return await self._drive(talk)

    async def _drive(self, talk: Conversation[T]) -> T:
        try:
            commands = talk.advance(None)
            while commands is not None:
                if commands is CHECKPOINT:
                    commands = talk.advance(None)
                else:
                    commands = talk.advance(await self._send(commands))
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise talk.fail(exc) from exc
        return talk.result

    async def _send(self, commands: list[Args]) -> list[Any]:
        wait = self.replica_wait
        sent = with_wait(commands, wait)
        if len(sent) == 1:
            try:
                return [await self._command(*sent[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        queue: Callable[..., Any] = pipe.execute_command
        for args in sent:
            queue(*args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return (
            replies if sent is commands or wait is None else without_wait(commands, replies, wait)
        )

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self.client.aclose()


class ThreadRunner:
    """Runs operations on a synchronous `redis.Redis` client in anyio worker threads.

    With `limit`, the store's own thread limiter (sized to its pool) replaces anyio's shared
    default, so the store never queues behind other code's threads. With `budget`, each call
    finishes or fails within that many seconds of being made: a thread still blocked then is
    abandoned (its socket timeout ends it soon after) and keeps its limiter token until then.
    """

    conversation: type[Conversation[Any]] = Conversation

    def __init__(
        self, client: redis.Redis, limit: int | None = None, budget: float | None = None
    ) -> None:
        self.client = client
        self._command: Callable[..., Any] = client.execute_command
        self._limit = limit
        self._limiter: anyio.CapacityLimiter | None = None
        self._budget = budget
        self.replica_wait: ReplicaWait | None = None

    @property
    def budget(self) -> float | None:
        """Seconds each call may take, or `None` (the client's own timeouts apply)."""
        return self._budget

    def new_loop(self) -> None:
        """Forget what belongs to the previous event loop (a limiter is bound to its run)."""
        self._limiter = None

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        """Drive `op` to its result, one thread hop per stretch between checkpoints.

        A thread cannot be interrupted. A call cancelled from outside lets the stretch in
        flight end (`let_thread_end`: what it began has settled when the call returns) and
        goes no further; a stretch still blocked then (a server that does not answer) is
        left to its thread, and the call returns. At its own deadline a call
        leaves its thread at once and raises `StoreUnavailableError`. `deadline` (on
        `anyio.current_time`'s clock) replaces the runner's own budget. A call made in a
        cancelled scope starts nothing.
        """
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            op.close()
            raise
        talk: Conversation[T] = self.conversation(op, name)
        limiter = self._limiter
        if limiter is None and self._limit is not None:
            limiter = self._limiter = anyio.CapacityLimiter(self._limit)
        budget = self._budget
        if deadline is None:
            deadline = math.inf if budget is None else anyio.current_time() + budget
        else:
            budget = None
        while True:
            ended = threading.Event()
            with anyio.CancelScope(deadline=deadline) as scope:
                try:
                    done = await anyio.to_thread.run_sync(
                        self._advance, talk, ended, limiter=limiter, abandon_on_cancel=True
                    )
                except anyio.get_cancelled_exc_class():
                    if not scope.cancel_called:  # from outside, not the call's deadline
                        await let_thread_end(ended, deadline)
                    raise
            if scope.cancelled_caught:
                raise late(name, budget)
            if done:
                return talk.result

    def _advance(self, talk: Conversation[T], ended: threading.Event | None = None) -> bool:
        """Run the operation in this thread until it is done (True) or at a checkpoint."""
        try:
            commands = talk.advance(None)
            while commands is not None:
                if commands is CHECKPOINT:
                    return False
                commands = talk.advance(self._send(commands))
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise talk.fail(exc) from exc
        finally:
            if ended is not None:
                ended.set()
        return True

    def _send(self, commands: list[Args]) -> list[Any]:
        wait = self.replica_wait
        sent = with_wait(commands, wait)
        if len(sent) == 1:
            try:
                return [self._command(*sent[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        queue: Callable[..., Any] = pipe.execute_command
        for args in sent:
            queue(*args)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return (
            replies if sent is commands or wait is None else without_wait(commands, replies, wait)
        )

    async def aclose(self) -> None:
        """Close the client's connections (in a thread: disconnecting may block briefly)."""
        await anyio.to_thread.run_sync(self.client.close)
