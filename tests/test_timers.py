"""The one timer queue: overdue calls cancelled on the loop's own clock, and only those."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from walletmesh_sessions._core.timers import TimerQueue, deadline_after

OFFSET = 1_000_000.0


class OffsetClockLoop(asyncio.SelectorEventLoop):
    """A loop whose clock is far from `time.monotonic`'s, as any loop's may be."""

    def time(self) -> float:
        return time.monotonic() + OFFSET


def _loop_factories() -> list[Any]:
    factories: list[Any] = [
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(OffsetClockLoop, id="offset-clock"),
    ]
    if sys.platform != "win32":
        import uvloop

        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


@pytest.fixture(params=_loop_factories())
def run(
    request: pytest.FixtureRequest,
) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a coroutine to its end on a fresh loop of the parametrized kind."""
    factory: Callable[[], asyncio.AbstractEventLoop] = request.param

    def run(main: Coroutine[Any, Any, None]) -> None:
        loop = factory()
        try:
            loop.run_until_complete(main)
        finally:
            loop.close()

    return run


class TestTimerQueue:
    def test_cancels_a_scope_at_its_deadline(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """A call still running at its end is cancelled then, measured on the loop's clock."""

        async def main() -> None:
            queue = TimerQueue.running()
            start = queue.loop.time()
            with anyio.CancelScope() as scope:
                watch = queue.watch(scope.cancel, queue.deadline_after(0.05))
                try:
                    await asyncio.sleep(5)
                finally:
                    watch.done()
            assert scope.cancelled_caught
            assert watch.fired
            assert 0.05 - 1e-6 <= queue.loop.time() - start < 2  # uvloop: whole ms

        run(main())

    def test_deadline_after_is_on_the_loops_clock(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """`deadline_after` and the queue's own helper agree with ``loop.time()``."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            assert abs(deadline_after(1.0) - (loop.time() + 1.0)) < 0.5
            assert abs(TimerQueue(loop).deadline_after(1.0) - (loop.time() + 1.0)) < 0.5

        run(main())

    def test_cancels_only_the_overdue(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """Calls past their end are cancelled; a later one and a finished one are not."""

        async def main() -> None:
            queue = TimerQueue.running()
            cancelled: list[str] = []
            soon = queue.deadline_after(0.02)
            finished = queue.watch(lambda: cancelled.append("finished"), soon)
            first = queue.watch(lambda: cancelled.append("first"), soon)
            second = queue.watch(lambda: cancelled.append("second"), soon + 0.01)
            later = queue.watch(lambda: cancelled.append("later"), queue.deadline_after(30))
            finished.done()
            await asyncio.sleep(0.2)
            assert cancelled == ["first", "second"]
            assert (first.fired, second.fired, later.fired, finished.fired) == (
                True,
                True,
                False,
                False,
            )
            assert later.pending
            assert not first.pending
            later.done()

        run(main())

    def test_an_earlier_end_moves_the_timer(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """An end given after a later one is still honoured on time."""

        async def main() -> None:
            queue = TimerQueue.running()
            cancelled: list[str] = []
            late = queue.watch(lambda: cancelled.append("late"), queue.deadline_after(30))
            queue.watch(lambda: cancelled.append("early"), queue.deadline_after(0.02))
            await asyncio.sleep(0.2)
            assert cancelled == ["early"]
            late.done()

        run(main())

    def test_sequential_calls_keep_the_queue_short(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """Finished calls leave from the front: one call after another holds one or two."""

        async def main() -> None:
            queue = TimerQueue.running()
            fired: list[int] = []
            for _ in range(500):
                watch = queue.watch(lambda: fired.append(1), queue.deadline_after(30))
                await asyncio.sleep(0)
                watch.done()
                assert len(queue) <= 2
            assert fired == []

        run(main())

    def test_a_finished_call_is_never_cancelled(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """`done()` before the end: the timer fires for nothing and sets no flag."""

        async def main() -> None:
            queue = TimerQueue.running()
            cancelled: list[str] = []
            watch = queue.watch(lambda: cancelled.append("x"), queue.deadline_after(0.01))
            watch.done()
            await asyncio.sleep(0.1)
            assert cancelled == []
            assert not watch.fired
            assert len(queue) == 0

        run(main())

    def test_cancels_a_task_as_asyncio_timeout_does(
        self, run: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        """With ``task.cancel``, `fired` tells the call's own expiry from an outside cancel."""

        if sys.version_info < (3, 11):  # pragma: no cover
            pytest.skip("Task.uncancel is new in Python 3.11")

        async def main() -> None:
            queue = TimerQueue.running()

            async def call(seconds: float) -> bool:
                task = asyncio.current_task()
                assert task is not None
                watch = queue.watch(task.cancel, queue.deadline_after(seconds))
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    if watch.fired:
                        task.uncancel()
                        return True
                    raise
                finally:
                    watch.done()
                return False

            assert await call(0.02)
            outside = asyncio.ensure_future(call(30))
            await asyncio.sleep(0.02)
            outside.cancel()
            with pytest.raises(asyncio.CancelledError):
                await outside

        run(main())
