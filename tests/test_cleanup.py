"""Background cleanup: runs clean_expired, logs, survives failures, stops on cancellation."""

from __future__ import annotations

import logging

import anyio
import pytest

from walletmesh_sessions import (
    InvalidConfigError,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    clean_expired_every,
    periodic_cleanup,
)
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio


class CountingStore(MemorySessionStore):
    """A memory store that reports each clean_expired run, and can fail some of them."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        super().__init__(SessionStoreConfig(lifetime=60), clock=clock)
        self.runs = 0
        self.failures = failures
        self.ran = anyio.Event()
        self.wanted = 1

    async def clean_expired(self) -> int:
        self.runs += 1
        if self.runs >= self.wanted:
            self.ran.set()
        if self.runs <= self.failures:
            raise OSError("disk on fire")
        return await super().clean_expired()

    async def wait_for_runs(self, count: int) -> None:
        self.wanted = count
        if self.runs < count:
            self.ran = anyio.Event()
            await self.ran.wait()


async def fill(store: MemorySessionStore, count: int) -> None:
    for n in range(count):
        await store.set(f"id{n}", SessionData(f"s{n}", "https://a.example"))


class TestPeriodicCleanup:
    """The async context manager and the coroutine."""

    async def test_removes_and_logs(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Expired sessions go without anyone calling clean_expired; the count is logged."""
        store = CountingStore(clock)
        await fill(store, 3)
        clock.advance(seconds=61)
        caplog.set_level(logging.INFO, logger="walletmesh_sessions")
        with anyio.fail_after(30):
            async with periodic_cleanup(store, 0.001):
                await store.wait_for_runs(2)
        assert store._sessions == {}
        assert "clean_expired removed 3 expired session(s)" in caplog.text

    async def test_survives_failing_runs(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A run that raises is logged with its traceback, and cleaning goes on."""
        store = CountingStore(clock, failures=2)
        await fill(store, 2)
        clock.advance(seconds=61)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(clean_expired_every, store, 0.001)
                await store.wait_for_runs(4)
                tg.cancel_scope.cancel()
        failures = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failures) == 2
        assert failures[0].exc_info is not None
        assert "disk on fire" in caplog.text
        assert store._sessions == {}

    async def test_stops_promptly(self, clock: FakeClock) -> None:
        """Leaving the block cancels the cleaner mid-interval instead of waiting it out."""
        store = CountingStore(clock)
        with anyio.fail_after(30):  # a safety net, not a speed target: the interval is an hour
            async with periodic_cleanup(store, 3600):
                pass
        assert store.runs == 1

    @pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "5", True])
    async def test_bad_interval(self, clock: FakeClock, interval: object) -> None:
        """A non-positive or non-numeric interval is refused before anything runs."""
        store = CountingStore(clock)
        with pytest.raises(InvalidConfigError, match="interval"):
            async with periodic_cleanup(store, interval):  # type: ignore[arg-type]
                pass
        assert store.runs == 0
