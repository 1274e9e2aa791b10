"""The runners: they drive each operation, a `Conversation`, to its end, the I/O left to a sender.

`Runner._requests` turns an operation into the requests of its round trips (`round_trips`), and
a sender carries each out: `AsyncioRunner` awaits it, `ThreadRunner` calls it in worker threads,
a whole operation (or a page of a scan) per thread hop. The sender also names its topology (one
server or a cluster), so one runner serves both. Errors leave through `translate`.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Generator
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import redis

from .._core.deadline import let_thread_end
from .._core.errors import NotReplicatedError, SessionStoreError, StoreUnavailableError
from .._core.loops import PerLoop
from .._core.timers import within
from .exchanges import Args, Exchange, Exchanges, error_code
from .replicas import ReplicasBehind, ReplicaWait, Unconfirmed
from .round_trips import Request, RoundTrip
from .senders import AsyncClusterSender, AsyncSender, SyncClusterSender, SyncSender
from .steps import CHECKPOINT, Checkpoint, Op

__all__ = (
    "AsyncioRunner",
    "ClusterAsyncioRunner",
    "ThreadRunner",
    "translate",
)

T = TypeVar("T")
S = TypeVar("S", bound="AsyncSender | AsyncClusterSender | SyncSender | SyncClusterSender")

Requests = Generator[Request | Checkpoint, Any, None]

# What a sender may raise: thrown into the round trip, which keeps some as replies.
_IO_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)

# One timer queue per asyncio loop, for the deadlines of every runner's calls on it.


# A cluster without an owner for a slot (failover under way) is unavailable too.
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    OSError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)


def translate(exc: Exception, operation: str) -> SessionStoreError:
    """The library's error for a redis-py exception raised during `operation`.

    The message names the operation and the kind of error only: Redis error replies may echo
    command arguments (keys, so session ids, and records), so an error reply's own text is
    cut down to its code in place too, and only then kept as the cause.
    """
    if isinstance(exc, ReplicasBehind):
        return NotReplicatedError(f"Redis wrote ({operation}) on the primary only: {exc}")
    if isinstance(exc, redis.exceptions.ResponseError):
        code = error_code(exc)
        exc.args = (f"{code} (the rest of the reply is withheld: it may echo arguments)",)
        kind = f"{type(exc).__name__} {code}"
    else:
        kind = type(exc).__name__
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(f"Redis is unavailable ({operation}): {kind}")
    return SessionStoreError(f"Redis refused a command ({operation}): {kind}")


def late(operation: str, budget: float | None) -> StoreUnavailableError:
    """The error of a call that ran out of time (its `budget`, or the deadline it was given)."""
    within = "before the call's deadline" if budget is None else f"within {budget:.3g} s"
    return StoreUnavailableError(
        f"Redis did not answer ({operation}) {within}: no reply, or no free connection"
    )


class Conversation(Generic[T]):
    """One operation in progress: which commands to send next, and what the replies mean.

    `exchanges` maps each step type to its exchange: one Redis server's, or a cluster's.
    """

    __slots__ = ("_exchange", "_op", "exchanges", "name", "result", "shortfall")

    def __init__(self, op: Op[T], name: str, exchanges: Exchanges) -> None:
        self._op = op
        self.exchanges = exchanges
        self._exchange: Exchange | None = None
        self.name = name
        self.result: T
        self.shortfall: str | None = None  # writes too few replicas confirmed, if any

    def advance(self, replies: list[Any] | None) -> list[Args] | Checkpoint | None:
        """Feed the replies to the last commands (`None` at first and after a checkpoint).

        Returns the commands of the next round trip, `CHECKPOINT` where a runner may return
        to its event loop, or `None` once the operation is done (its value in `result`).
        """
        reply: Any = None
        if isinstance(replies, Unconfirmed):
            self.shortfall = self.shortfall or replies.shortfall
        talk = self._exchange
        if talk is not None:
            try:
                return talk.send(replies)  # type: ignore[arg-type]
            except StopIteration as stop:
                reply = stop.value
                self._exchange = None
        try:
            step = self._op.send(reply)
        except StopIteration as stop:
            self.result = stop.value
            if self.shortfall is not None:
                raise ReplicasBehind(self.shortfall) from None
            return None
        if step is CHECKPOINT:
            return CHECKPOINT
        talk = self._exchange = self.exchanges[type(step)](step)
        return next(talk)

    def fail(self, exc: Exception) -> SessionStoreError:
        """Abandon the operation; the library's error for `exc` (chain it as the cause)."""
        self._op.close()
        if self._exchange is not None:
            self._exchange.close()
        return translate(exc, self.name)


class Runner(Generic[S]):
    """What both runners share: everything but the sender's I/O and how at most `limit` calls
    run at once. With `budget` (seconds, or `None`: the client's own timeouts apply), each call
    finishes or fails within it, waiting for its turn included."""

    def __init__(self, sender: S, limit: int | None = None, budget: float | None = None) -> None:
        self.sender = sender
        self.budget = budget
        self._exchanges: Exchanges = sender.exchanges
        self.replica_wait: ReplicaWait | None = None
        self._bound(limit)

    def _bound(self, limit: int | None) -> None:
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The client the sender talks through."""
        return self.sender.client

    def _round_trip(self, commands: list[Args]) -> RoundTrip:
        return self.sender.round_trip(commands, self.replica_wait)

    def _requests(self, talk: Conversation[Any]) -> Requests:
        """The requests of `talk`'s round trips, in order, with its checkpoints between."""
        commands = talk.advance(None)
        while commands is not None:
            if commands is CHECKPOINT:
                yield CHECKPOINT
                commands = talk.advance(None)
            else:
                commands = talk.advance((yield from self._round_trip(commands)))


class AsyncioRunner(Runner[AsyncSender | AsyncClusterSender]):
    """Runs operations on a `redis.asyncio` client, on asyncio only; a semaphore of `limit`
    (the pool's size) does the waiting, cheaper than redis-py's blocking pool. With a sender
    that pipelines, its batches take the semaphore's turns rather than the calls."""

    def _bound(self, limit: int | None) -> None:
        self._slots = None if limit is None else asyncio.Semaphore(limit)
        auto = self.sender.auto
        self._call_slots = self._slots if auto is None else None
        if auto is not None:
            auto.slots = self._slots

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        """Drive `op` to its result; Redis errors become the library's, with the cause kept.
        `deadline` (on `anyio.current_time`'s clock) replaces the runner's own budget."""
        budget = self.budget
        if deadline is None:
            if budget is None:
                return await self._guarded(op, name)
            return await self._watched(op, name, budget)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._guarded(op, name)
        except TimeoutError:
            op.close()
            raise late(name, None) from None

    async def _watched(self, op: Op[T], name: str, budget: float) -> T:
        """`_guarded` within `budget` of now, under the loop's one timer queue.

        Cancels as ``asyncio.timeout`` does: only this call's own expiry becomes
        `StoreUnavailableError`; a cancellation from outside stays a cancellation.
        """

        def expired() -> Exception:
            op.close()
            return late(name, budget)

        return await within(budget, self._guarded(op, name), expired)

    async def _guarded(self, op: Op[T], name: str) -> T:
        slots = self._call_slots
        talk = Conversation(op, name, self._exchanges)
        if slots is None:
            return await self._drive(talk)
        async with slots:
            return await self._drive(talk)

    async def _drive(self, talk: Conversation[T]) -> T:
        requests = self._requests(talk)
        perform = self.sender.perform
        try:
            request = next(requests)
            while True:
                if request is CHECKPOINT:
                    request = next(requests)
                    continue
                try:
                    answer = await perform(request)
                except _IO_ERRORS as exc:
                    request = requests.throw(exc)
                else:
                    request = requests.send(answer)
        except StopIteration:
            return talk.result
        except _IO_ERRORS as exc:
            raise talk.fail(exc) from exc

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self.sender.aclose()


# A `rotate` to another slot is two steps: stopping between them would leave both ids valid.
_FINISHED_ONCE_STARTED = frozenset({"rotate"})


class ClusterAsyncioRunner(AsyncioRunner):
    """Runs operations on a `redis.asyncio.RedisCluster`, on asyncio only. A `rotate` runs in
    a task the caller's cancellation does not reach, to its end within its own deadline (as a
    thread does on trio); a cancelled caller does not learn whether it rotated."""

    # Rotates whose callers were cancelled, kept until they end (a task nobody holds may vanish).
    _unawaited: frozenset[asyncio.Task[Any]] = frozenset()

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        if name not in _FINISHED_ONCE_STARTED:
            return await super().run(op, name, deadline)
        task = asyncio.ensure_future(super().run(op, name, deadline))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._unawaited = self._unawaited | {task}
                task.add_done_callback(self._settled)
            raise

    def _settled(self, task: asyncio.Task[Any]) -> None:
        """A rotate whose caller was cancelled has ended: nobody waits for its outcome."""
        self._unawaited = self._unawaited - {task}
        if not task.cancelled():
            task.exception()  # retrieved: an error nobody awaits is not reported as lost


class ThreadRunner(Runner[SyncSender | SyncClusterSender]):
    """Runs operations on a synchronous client in anyio worker threads, under a limiter of
    its own (`limit`, one per event loop), so the store never queues behind other code's
    threads. A thread still blocked at the call's end is abandoned (its socket timeout ends
    it soon after) and keeps its limiter token until then."""

    def _bound(self, limit: int | None) -> None:
        self._limiters = None if limit is None else PerLoop(lambda: anyio.CapacityLimiter(limit))

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        """Drive `op` to its result, one thread hop per stretch between checkpoints.

        A call cancelled from outside lets the stretch in flight end (`let_thread_end`) and
        goes no further; at its own deadline it leaves its thread at once and raises
        `StoreUnavailableError`. A call made in a cancelled scope starts nothing.
        """
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            op.close()
            raise
        talk = Conversation(op, name, self._exchanges)
        requests = self._requests(talk)
        limiter = None if self._limiters is None else self._limiters.get()
        budget = self.budget
        if deadline is None:
            deadline = math.inf if budget is None else anyio.current_time() + budget
        else:
            budget = None
        while True:
            ended = threading.Event()
            with anyio.CancelScope(deadline=deadline) as scope:
                try:
                    done = await anyio.to_thread.run_sync(
                        self._advance,
                        talk,
                        requests,
                        ended,
                        limiter=limiter,
                        abandon_on_cancel=True,
                    )
                except anyio.get_cancelled_exc_class():
                    if not scope.cancel_called:  # from outside, not the call's deadline
                        await let_thread_end(ended, deadline)
                    raise
            if scope.cancelled_caught:
                raise late(name, budget)
            if done:
                return talk.result

    def _advance(self, talk: Conversation[Any], requests: Requests, ended: threading.Event) -> bool:
        """Run the operation in this thread until it is done (True) or at a checkpoint."""
        perform = self.sender.perform
        try:
            request = requests.send(None)
            while request is not CHECKPOINT:
                try:
                    answer = perform(request)
                except _IO_ERRORS as exc:
                    request = requests.throw(exc)
                else:
                    request = requests.send(answer)
        except StopIteration:
            return True
        except _IO_ERRORS as exc:
            raise talk.fail(exc) from exc
        finally:
            ended.set()
        return False

    async def aclose(self) -> None:
        """Close the client's connections (in a thread: disconnecting may block briefly)."""
        await anyio.to_thread.run_sync(self.sender.closer())
