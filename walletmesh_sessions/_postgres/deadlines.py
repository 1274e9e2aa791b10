"""One timer for the deadlines of every call on an asyncio loop, instead of one per call.

A heap holds the calls' deadlines, and one timer wakes at the earliest unfinished one and
cancels whatever is overdue (a store's calls all get the same timeout, so theirs come in
order and finished ones leave from the front). A call costs a push and a flag, not a timer
handle scheduled and cancelled on the loop (as an `anyio.CancelScope` deadline is). Every
end is on the loop's own clock (``loop.time()``), which a loop need not share with
`time.monotonic`.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from anyio.lowlevel import RunVar

__all__ = ("Deadlines", "Watched", "deadlines")


class Watched:
    """One call under `Deadlines`: what cancels it, until the call is done."""

    __slots__ = ("cancel", "end")

    def __init__(self, cancel: Callable[[], object], end: float) -> None:
        self.cancel: Callable[[], object] | None = cancel
        self.end = end

    def done(self) -> None:
        """The call has finished: its deadline no longer cancels anything."""
        self.cancel = None

    def __lt__(self, other: Watched) -> bool:  # the heap's order: earliest end first
        return self.end < other.end


class Deadlines:
    """The deadlines of the calls running on one asyncio `loop`, under a single timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: list[Watched] = []  # a heap, earliest end first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def watch(self, cancel: Callable[[], object], seconds: float) -> Watched:
        """Call ``cancel()`` `seconds` from now, unless the call is `done` first."""
        calls = self._calls
        while calls and calls[0].cancel is None:
            heapq.heappop(calls)  # done: sequential calls keep the heap at one or two
        call = Watched(cancel, self.loop.time() + seconds)
        heapq.heappush(calls, call)
        if self._timer is None or call.end < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._set_timer(call.end)
        return call

    def _set_timer(self, end: float) -> None:
        self._timer, self._timer_at = self.loop.call_at(end, self._expire), end

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        calls = self._calls
        while calls:
            call = calls[0]
            cancel = call.cancel
            if cancel is not None and call.end > now:
                self._set_timer(call.end)
                return
            heapq.heappop(calls)
            if cancel is not None:
                call.cancel = None
                cancel()


_running: RunVar[Deadlines] = RunVar("walletmesh_sessions_postgres_deadlines")


def deadlines() -> Deadlines:
    """The `Deadlines` of the running asyncio loop."""
    try:
        return _running.get()
    except LookupError:
        queue = Deadlines(asyncio.get_running_loop())
        _running.set(queue)
        return queue
