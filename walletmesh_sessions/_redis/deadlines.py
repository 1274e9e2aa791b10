"""`Deadlines`: one timer for every call of an asyncio runner, instead of a timeout per call."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any

__all__ = ("Deadlines", "Watched")


class Watched:
    """One call under `Deadlines`: its task until it finishes, and whether it was cancelled."""

    __slots__ = ("cancelling", "deadline", "fired", "task")

    task: asyncio.Task[Any] | None
    deadline: float
    cancelling: int
    fired: bool

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        if sys.version_info < (3, 11):  # pragma: no cover
            raise NotImplementedError  # Python 3.10 takes `asyncio.wait_for` instead
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        self.fired = False


class Deadlines:
    """One timer for every call of a runner, instead of a timeout per call.

    Each call's deadline is when it was made plus the same budget, so deadlines come in
    order: a queue holds the calls, and the one timer wakes at the oldest unfinished call's
    deadline and cancels whatever is overdue. A call costs an append and a flag, not a timer
    handle scheduled and cancelled on the loop (the bulk of a per-call ``asyncio.timeout``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: deque[Watched] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], deadline: float) -> Watched:
        calls = self._calls
        while calls and calls[0].task is None:
            calls.popleft()  # finished: sequential calls keep the queue at one or two
        call = Watched(task, deadline)
        calls.append(call)
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._expire)
        return call

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        calls = self._calls
        while calls:
            call = calls[0]
            if call.task is not None and call.deadline > now:
                self._timer = self.loop.call_at(call.deadline, self._expire)
                return
            calls.popleft()
            if call.task is not None:
                call.fired = True
                call.task.cancel()
