"""Drivers that run `_redis_ops` operations against Redis, and the store's error boundary.

`AsyncioRunner` awaits `redis.asyncio` directly. `ThreadRunner` runs the synchronous client in
anyio worker threads (trio, or a caller's sync client): a whole operation runs in one thread
hop, handing back to the event loop only between batches of a scan, so a refreshing read
costs one hop rather than one per command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio.to_thread
import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from ._errors import SessionStoreError, StoreUnavailableError
from ._redis_ops import CHECKPOINT, WRONG_TYPE, Batch, Command, Op, RunScript, Script, Step

__all__ = ("AsyncioRunner", "ThreadRunner", "translate")

T = TypeVar("T")

_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ReadOnlyError, OSError)


def translate(exc: Exception) -> SessionStoreError:
    """The library's error for an exception raised by the Redis client (chain it as cause)."""
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(f"Redis is unavailable: {type(exc).__name__}: {exc}")
    return SessionStoreError(f"Redis refused a command: {type(exc).__name__}: {exc}")


def _is_wrong_type(exc: ResponseError) -> bool:
    return str(exc).startswith("WRONGTYPE")


def _script_args(step: RunScript) -> tuple[Any, ...]:
    return ("EVALSHA", step.script.sha, 1, step.key, *step.args)


def _check_replies(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _unloaded(replies: list[Any]) -> list[int]:
    """Indexes of the scripts Redis did not know (after a restart or SCRIPT FLUSH)."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]


def _scripts(batch: Batch, indexes: list[int]) -> set[Script]:
    return {step.script for i in indexes if isinstance(step := batch.steps[i], RunScript)}


class AsyncioRunner:
    """Runs operations on a `redis.asyncio.Redis` client, on asyncio only.

    With `limit`, at most that many operations run at once, and an operation waits at most
    `wait` seconds for its turn: the store's own pool holds `limit` connections. redis-py's
    blocking pool would do the same waiting but costs measurably more per command.
    """

    def __init__(
        self, client: redis.asyncio.Redis, limit: int | None = None, wait: float | None = None
    ) -> None:
        self.client = client
        # redis-py leaves execute_command untyped; every reply is Any to us anyway.
        self._command: Callable[..., Awaitable[Any]] = client.execute_command
        self._slots = None if limit is None else asyncio.Semaphore(limit)
        self._wait = wait

    async def run(self, op: Op[T]) -> T:
        """Drive `op` to its result; Redis errors become the library's, with the cause kept."""
        slots = self._slots
        if slots is not None:
            if slots.locked():
                try:
                    await asyncio.wait_for(slots.acquire(), self._wait)
                except asyncio.TimeoutError:
                    op.close()
                    msg = f"no free Redis connection within {self._wait} s (all are busy)"
                    raise StoreUnavailableError(msg) from None
            else:
                await slots.acquire()
        try:
            reply: Any = None
            while True:
                try:
                    step = op.send(reply)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                try:
                    # The hot path (a lone GET or SET) is inlined: no extra coroutine per step.
                    if type(step) is Command:
                        try:
                            reply = await self._command(*step.args)
                        except ResponseError as exc:
                            if not _is_wrong_type(exc):
                                raise
                            reply = WRONG_TYPE
                    else:
                        reply = await self._execute(step)
                except (redis.RedisError, OSError) as exc:
                    op.close()
                    raise translate(exc) from exc
        finally:
            if slots is not None:
                slots.release()

    async def _execute(self, step: Step) -> Any:
        command = self._command
        if type(step) is RunScript:
            try:
                return await command(*_script_args(step))
            except NoScriptError:
                await self.client.script_load(step.script.source)
                return await command(*_script_args(step))
        if type(step) is Batch:
            return await self._batch(step)
        if step is CHECKPOINT:
            return None
        raise AssertionError(f"unknown step {step!r}")  # pragma: no cover

    async def _batch(self, batch: Batch) -> list[Any]:
        replies = await self._pipeline(batch.steps)
        missing = _unloaded(replies)
        if missing:
            for script in _scripts(batch, missing):
                await self.client.script_load(script.source)
            again = await self._pipeline(tuple(batch.steps[i] for i in missing))
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        _check_replies(replies)
        return replies

    async def _pipeline(self, steps: tuple[Command | RunScript, ...]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        queue: Callable[..., Any] = pipe.execute_command
        for step in steps:
            queue(*(step.args if isinstance(step, Command) else _script_args(step)))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self.client.aclose()


class ThreadRunner:
    """Runs operations on a synchronous `redis.Redis` client in anyio worker threads."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._command: Callable[..., Any] = client.execute_command

    async def run(self, op: Op[T]) -> T:
        """Drive `op` to its result, one thread hop per stretch between checkpoints."""
        reply: Any = None
        while True:
            done, value = await anyio.to_thread.run_sync(self._advance, op, reply)
            if done:
                result: T = value
                return result
            reply = None

    def _advance(self, op: Op[T], reply: Any) -> tuple[bool, Any]:
        """Run `op` in this thread until it finishes or reaches a checkpoint."""
        while True:
            try:
                step = op.send(reply)
            except StopIteration as stop:
                return True, stop.value
            if step is CHECKPOINT:
                return False, None
            try:
                reply = self._execute(step)
            except (redis.RedisError, OSError) as exc:
                op.close()
                raise translate(exc) from exc

    def _execute(self, step: Step) -> Any:
        command = self._command
        if type(step) is Command:
            try:
                return command(*step.args)
            except ResponseError as exc:
                if _is_wrong_type(exc):
                    return WRONG_TYPE
                raise
        if type(step) is RunScript:
            try:
                return command(*_script_args(step))
            except NoScriptError:
                self.client.script_load(step.script.source)
                return command(*_script_args(step))
        if type(step) is Batch:
            return self._batch(step)
        raise AssertionError(f"unknown step {step!r}")  # pragma: no cover

    def _batch(self, batch: Batch) -> list[Any]:
        replies = self._pipeline(batch.steps)
        missing = _unloaded(replies)
        if missing:
            for script in _scripts(batch, missing):
                self.client.script_load(script.source)
            again = self._pipeline(tuple(batch.steps[i] for i in missing))
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        _check_replies(replies)
        return replies

    def _pipeline(self, steps: tuple[Command | RunScript, ...]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        queue: Callable[..., Any] = pipe.execute_command
        for step in steps:
            queue(*(step.args if isinstance(step, Command) else _script_args(step)))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    async def aclose(self) -> None:
        """Close the client's connections (in a thread: disconnecting may block briefly)."""
        await anyio.to_thread.run_sync(self.client.close)
