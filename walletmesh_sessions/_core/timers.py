"""One timer for the deadlines of many calls on an asyncio loop, instead of one timer per call.

A store gives each call the same timeout, so its calls' deadlines come in about the order the
calls were made. A `TimerQueue` holds them and keeps one loop timer, set for the earliest
unfinished deadline; when it fires, it cancels whatever is overdue and sets itself for the
next. A call then costs a push and a flag, not a timer handle scheduled and cancelled on the
loop (the bulk of a per-call ``asyncio.timeout`` or `anyio.CancelScope` deadline).

Every end is on the loop's clock, ``loop.time()`` (which is `anyio.current_time()` on
asyncio): take it from `deadline_after` or from a `Deadline`'s `end`, never from
`time.monotonic`, which a loop (uvloop, a test's loop) need not share.

Every store on a loop shares that loop's one queue, `running_queue()`. Usage, cancelling an
`anyio.CancelScope` at the call's deadline::

    queue = running_queue()
    with anyio.CancelScope() as scope:
        watch = queue.watch(scope.cancel, queue.deadline_after(timeout))
        try:
            return await call()
        finally:
            watch.done()
    # here, watch.fired says whether the deadline (not the caller) cancelled the call

or cancelling a task, as ``asyncio.timeout`` does::

    watch = queue.watch(task.cancel, end)
    ...  # on CancelledError: `watch.fired` tells the call's own expiry from outside cancels
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .loops import PerLoop

__all__ = ("TimerQueue", "Watch", "deadline_after", "running_queue", "within")

T = TypeVar("T")


def deadline_after(seconds: float) -> float:
    """The moment `seconds` from now on the running loop's clock (`anyio.current_time`)."""
    return anyio.current_time() + seconds


class Watch:
    """One call under a `TimerQueue`, from `watch` until `done` (or until its deadline).

    `fired` turns True when the queue cancelled the call at its deadline; the caller may set
    it back to False once it has dealt with that (so a later step does not deal with it twice).
    """

    __slots__ = ("_cancel", "end", "fired")

    def __init__(self, cancel: Callable[[], object], end: float) -> None:
        self._cancel: Callable[[], object] | None = cancel
        self.end = end
        self.fired = False

    @property
    def pending(self) -> bool:
        """True until the call is done or its deadline has cancelled it."""
        return self._cancel is not None

    def done(self) -> None:
        """The call has finished: its deadline no longer cancels anything."""
        self._cancel = None

    def __lt__(self, other: Watch) -> bool:  # the queue's order: earliest end first
        return self.end < other.end


class TimerQueue:
    """The deadlines of calls running on one asyncio `loop`, under a single loop timer.

    Ends given out of order are still honoured (the timer is moved earlier); in order, as a
    store's calls are, pushing costs no timer at all and finished calls leave from the front,
    so sequential calls keep the queue at one or two.
    """

    __slots__ = ("_timer", "_timer_at", "_watches", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._watches: list[Watch] = []  # a heap, earliest end first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @classmethod
    def running(cls) -> TimerQueue:
        """A queue on the running asyncio loop (for a per-loop holder's factory)."""
        return cls(asyncio.get_running_loop())

    def deadline_after(self, seconds: float) -> float:
        """The moment `seconds` from now on this queue's loop's clock."""
        return self.loop.time() + seconds

    def watch(self, cancel: Callable[[], object], end: float) -> Watch:
        """Call ``cancel()`` once the loop's clock passes `end`, unless `done()` comes first."""
        watches = self._watches
        while watches and watches[0]._cancel is None:
            heapq.heappop(watches)  # finished
        watch = Watch(cancel, end)
        heapq.heappush(watches, watch)
        timer = self._timer
        if timer is None or end < self._timer_at:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(end, self._expire)
            self._timer_at = end
        return watch

    def __len__(self) -> int:
        """Calls held, finished ones not yet dropped included."""
        return len(self._watches)

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        watches = self._watches
        while watches:
            watch = watches[0]
            cancel = watch._cancel
            if cancel is not None and watch.end > now:
                self._timer = self.loop.call_at(watch.end, self._expire)
                self._timer_at = watch.end
                return
            heapq.heappop(watches)
            if cancel is not None:
                watch._cancel = None
                watch.fired = True
                cancel()


_QUEUES: PerLoop[TimerQueue] = PerLoop(TimerQueue.running)


def running_queue() -> TimerQueue:
    """The running asyncio loop's one queue, shared by every store on that loop."""
    return _QUEUES.get()


async def within(budget: float, awaitable: Awaitable[T], expired: Callable[[], Exception]) -> T:
    """`awaitable`, awaited by the current task, cancelled after `budget` seconds by the loop's
    queue. As ``asyncio.timeout`` does, only this expiry becomes ``expired()`` (raised); a
    cancellation from outside stays a cancellation."""
    task = asyncio.current_task()
    assert task is not None  # a coroutine awaited on asyncio always runs in a task
    cancelling = task.cancelling()
    timers = running_queue()
    watch = timers.watch(task.cancel, timers.deadline_after(budget))
    try:
        return await awaitable
    except asyncio.CancelledError:
        if watch.fired:
            watch.fired = False
            if task.uncancel() <= cancelling:
                raise expired() from None
        raise
    finally:
        watch.done()
        if watch.fired:  # expired just as it finished: take back the cancellation
            task.uncancel()
