"""Timed steps: a long pass over a store in memory, cut so each step holds the loop ~1 ms.

A fixed count per step is too long on a slow or busy machine: the next step's size follows
the time the last one took.
"""

from __future__ import annotations

import time
from typing import TypeVar

from anyio.lowlevel import checkpoint

__all__ = ("STEP_MAX", "TimedSteps", "next_step")

T = TypeVar("T")

_STEP_SECONDS = 0.001
_STEP_FIRST, _STEP_MIN, STEP_MAX = 200, 16, 4096
_NEVER = float("-inf")


def next_step(size: int, took: float) -> int:
    """The size of the next step of a timed pass, after one of `size` took `took` seconds."""
    if took > _STEP_SECONDS:
        return max(_STEP_MIN, int(size * _STEP_SECONDS / took))
    if took < _STEP_SECONDS / 2:
        return min(STEP_MAX, size * 2)
    return size


class TimedSteps:
    """Takes the steps of one pass from the end of a list (so references are released a step
    at a time), at most `most` items each, timed from one step to the next (the consumer's
    work on a step's items included)."""

    def __init__(self, most: int = STEP_MAX) -> None:
        self._most = most
        self._size = min(_STEP_FIRST, most)
        self._started = _NEVER

    async def take(self, items: list[T]) -> list[T]:
        """The next step's items, removed from `items`; a checkpoint before every step but
        the first."""
        if self._started != _NEVER:
            took = time.perf_counter() - self._started
            self._size = min(self._most, next_step(self._size, took))
            await checkpoint()
        self._started = time.perf_counter()
        step = items[-self._size :]
        del items[-self._size :]
        return step
