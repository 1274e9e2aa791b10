"""_deadline: one deadline per call, every wait given only the time left."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import anyio
import pytest

from walletmesh_sessions import InvalidConfigError, StoreUnavailableError
from walletmesh_sessions._core.deadline import (
    DEFAULT_TIMEOUT,
    Deadline,
    check_timeout,
    current_deadline,
    run_within,
)


class TestDeadline:
    """Time left shrinks from when the deadline is taken and never goes below zero."""

    def test_remaining_shrinks_to_zero(self) -> None:
        """remaining() counts down from the timeout and stops at 0.0."""
        deadline = Deadline(0.05)
        first = deadline.remaining()
        assert 0 < first <= 0.05
        time.sleep(0.06)
        assert deadline.remaining() == 0.0
        assert deadline.remaining_ms() == 0

    def test_remaining_ms_rounds_up(self) -> None:
        """While any time is left, remaining_ms() is at least 1 (0 would mean do not wait)."""
        deadline = Deadline(0.0001)
        ms = deadline.remaining_ms()
        assert ms in (0, 1)
        assert Deadline(10).remaining_ms() in (9_999, 10_000)

    def test_acquire_waits_only_the_time_left(self) -> None:
        """A held lock is given up on when the deadline passes, not after a fresh timeout."""
        lock = threading.Lock()
        lock.acquire()
        deadline = Deadline(0.2)
        time.sleep(0.1)
        start = time.monotonic()
        assert not deadline.acquire(lock)
        assert time.monotonic() - start < 0.19
        lock.release()
        assert deadline.acquire(lock)  # a free lock is taken even after the deadline
        lock.release()

    def test_exceeded_names_the_timeout(self) -> None:
        """The error names what waited and the timeout."""
        error = Deadline(1.5).exceeded("store X", "a lock")
        assert isinstance(error, StoreUnavailableError)
        assert "store X" in str(error)
        assert "1.5 s" in str(error)
        assert "a lock" in str(error)


class TestRunWithin:
    """The deadline of the call a worker thread runs for is visible to the backend."""

    def test_current_deadline_in_a_thread(self) -> None:
        """run_within sets current_deadline() for the call only, in the thread it runs in."""
        deadline = Deadline(5)
        seen: list[Deadline | None] = []

        def work() -> None:
            seen.append(current_deadline())
            seen.append(run_within(deadline, current_deadline))
            seen.append(current_deadline())

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(5)
        assert seen == [None, deadline, None]


class TestCheckTimeout:
    """A timeout is a positive, finite number of seconds."""

    @pytest.mark.parametrize("good", [0.001, 1, 30.0, DEFAULT_TIMEOUT])
    def test_good(self, good: float) -> None:
        """Positive finite numbers are accepted as float seconds."""
        assert check_timeout(good) == float(good)
        assert type(check_timeout(good)) is float

    @pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan, True, "1", None])
    def test_bad(self, bad: object) -> None:
        """Zero, negative, infinite, NaN, bool and non-numbers are refused, naming the value."""
        with pytest.raises(InvalidConfigError, match="timeout"):
            check_timeout(bad)


class TestDeadlineClocks:
    """`end` is on the event loop's clock; `remaining()` on the monotonic one, from one moment."""

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_end_is_on_anyios_clock(self, backend: str) -> None:
        """Taken in async code, `end` is `anyio.current_time()` plus the timeout."""

        async def main() -> None:
            deadline = Deadline(5)
            assert 4.5 < deadline.end - anyio.current_time() <= 5
            assert 4.5 < deadline.remaining() <= 5

        anyio.run(main, backend=backend)

    def test_end_on_a_loop_with_its_own_clock(self) -> None:
        """A loop whose clock is not `time.monotonic`'s still gets `end` on its own clock."""

        class OffsetClockLoop(asyncio.SelectorEventLoop):
            def time(self) -> float:
                return time.monotonic() + 1_000_000.0

        async def main() -> float:
            loop = asyncio.get_running_loop()
            return Deadline(5).end - loop.time()

        loop = OffsetClockLoop()
        try:
            assert 4.5 < loop.run_until_complete(main()) <= 5
        finally:
            loop.close()

    def test_outside_a_loop_end_is_monotonic(self) -> None:
        """Taken in a thread with no event loop, `end` is on `time.monotonic`'s clock."""
        deadline = Deadline(5)
        assert 4.5 < deadline.end - time.monotonic() <= 5

    def test_cancel_brings_both_ends_to_now(self) -> None:
        """A cancelled deadline has no time left on either clock."""
        deadline = Deadline(5)
        before = deadline.end
        deadline.cancel()
        assert deadline.cancelled
        assert deadline.remaining() == 0.0
        assert 4.5 < before - deadline.end <= 5
