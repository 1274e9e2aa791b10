"""MemorySessionStore specifics: memory reclaimed without cleaning, default_store."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest
from typing_extensions import assert_type

from walletmesh_sessions import (
    InvalidConfigError,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    StoreClosedError,
    default_store,
)
from walletmesh_sessions._local import steps as _steps
from walletmesh_sessions._local.steps import next_step as _next_step
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio


def data(n: int) -> SessionData:
    return SessionData(f"s{n}", "https://a.example")


class TestReclaim:
    """Expired sessions do not pile up even when nobody cleans or reads them."""

    async def test_writes_reclaim_expired(self, clock: FakeClock) -> None:
        """Each set removes a few expired sessions, so memory tracks the live set."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        for n in range(1000):
            await store.set(f"old{n}", data(n))
        clock.advance(seconds=61)
        for n in range(300):
            await store.set(f"new{n}", data(n))
        # Two reclaimed per write: 300 writes reclaim 600 of the 1000 expired sessions.
        assert len(store._sessions) == 400 + 300
        assert await store.clean_expired() == 400
        assert len(store._sessions) == 300

    async def test_clock_step_back_then_clean(self, clock: FakeClock) -> None:
        """Out-of-order expiries are found by clean_expired, which restores the order."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        await store.set("a", data(1))
        clock.advance(seconds=-120)
        await store.set("b", data(2))
        assert not store._in_expiry_order
        clock.advance(seconds=120 + 1)
        assert await store.clean_expired() == 1
        assert store._in_expiry_order
        assert list(await store.get_all()) == ["a"]

    async def test_second_step_back_after_a_scan(self, clock: FakeClock) -> None:
        """After a scan restored the order, a later step back is noticed again."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        await store.set("a", data(1))
        clock.advance(seconds=-120)
        await store.set("b", data(2))
        assert await store.clean_expired() == 0  # scans, and restores the order
        clock.advance(seconds=-120)
        await store.set("c", data(3))  # expires before "a" and "b", but is stored last
        clock.advance(seconds=140)
        assert await store.clean_expired() == 1
        assert sorted(store._sessions) == ["a", "b"]

    async def test_writes_recover_from_a_clock_step_back(self, clock: FakeClock) -> None:
        """Set-only traffic after the clock steps back an hour keeps memory near the live set."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        for n in range(100):
            await store.set(f"before{n}", data(n))
        clock.advance(seconds=-3600)
        largest = 0
        for n in range(7200):  # two hours of one new session a second, none ever read
            clock.advance(seconds=1)
            await store.set(f"after{n}", data(n))
            largest = max(largest, len(store._sessions))
        # The hundred early sessions stay valid until the clock is back where it was.
        most_live = 100 + 61
        assert largest <= 2 * most_live + 1, largest  # without the rescan: thousands
        assert len(await store.get_all()) == 61

    async def test_get_all_removes_expired(self, clock: FakeClock) -> None:
        """get_all drops the expired sessions it meets, not only hides them."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        await store.set("a", data(1))
        clock.advance(seconds=61)
        await store.set("b", data(2))
        store._reclaim(0, 0)  # nothing reclaimed by the write path beyond this point
        assert await store.get_all() == {"b": data(2)}
        assert "a" not in store._sessions

    async def test_refresh_moves_to_back(self, clock: FakeClock) -> None:
        """A refreshed session is no longer at the front of the expiry order."""
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        store = MemorySessionStore(config, clock=clock)
        await store.set("a", data(1))
        await store.set("b", data(2))
        clock.advance(seconds=30)
        await store.get("a")
        assert list(store._sessions) == ["b", "a"]
        clock.advance(seconds=31)
        assert await store.clean_expired() == 1
        assert await store.get("a") == data(1)


class TestClosed:
    """A closed memory store refuses every call, as the other stores do."""

    async def test_every_method_refuses(self) -> None:
        """After aclose(), each method raises StoreClosedError; closing twice is fine."""
        store = MemorySessionStore()
        await store.set("a", data(1))
        await store.aclose()
        await store.aclose()
        calls = [
            store.set("a", data(1)),
            store.get("a"),
            store.validate_and_refresh("a"),
            store.get_all(),
            store.delete("a"),
            store.clear(),
            store.clean_expired(),
            store.inspect(),
        ]
        for call in calls:
            with pytest.raises(StoreClosedError):
                await call
        assert store._sessions == {}


class TestConstruction:
    """Bad arguments fail at construction."""

    def test_bad_config(self) -> None:
        """A config that is not a SessionStoreConfig is refused."""
        with pytest.raises(InvalidConfigError):
            MemorySessionStore({"lifetime": 60})  # type: ignore[arg-type]

    def test_bad_clock(self) -> None:
        """A clock that is not callable is refused."""
        with pytest.raises(InvalidConfigError, match="clock"):
            MemorySessionStore(clock=5)  # type: ignore[arg-type]


async def test_async_with_gives_a_subclass_its_own_type() -> None:
    """``async with`` on a subclass gives the subclass, to type checkers too."""

    class Mine(MemorySessionStore):
        pass

    async with Mine() as store:
        assert_type(store, Mine)
        assert type(store) is Mine


def test_default_store() -> None:
    """default_store is a memory store with a 24 hour lifetime and no refresh."""
    assert isinstance(default_store, MemorySessionStore)
    assert default_store.config == SessionStoreConfig(lifetime=timedelta(hours=24))


class TestPassesInSteps:
    """get_all and iter_sessions let other tasks run, and writes meanwhile break nothing."""

    async def test_writes_during_iteration(self, clock: FakeClock) -> None:
        """Deleting, overwriting and adding while iterating: each untouched session once."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        for n in range(25_000):
            await store.set(f"id{n}", data(n))
        seen: list[str] = []
        async for session_id, _data in store.iter_sessions(batch_size=1000):
            seen.append(session_id)
            if len(seen) == 1:
                # A middle batch: not read yet, whichever end the iteration starts from.
                await store.delete("id12000")
                await store.set("id12001", data(0))
                await store.set("added", data(0))
        assert len(seen) == len(set(seen))
        assert "id12000" not in seen
        assert {f"id{n}" for n in range(25_000)} - {"id12000"} <= set(seen)

    async def test_get_all_yields_to_other_tasks(self, clock: FakeClock) -> None:
        """A task scheduled during get_all runs before it returns, and its write is safe."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        for n in range(30_000):
            await store.set(f"id{n}", data(n))
        ran: list[int] = []

        async def writer() -> None:
            await store.delete("id0")
            await store.set("late", data(1))
            ran.append(len(store._sessions))

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            found = await store.get_all()
        assert ran, "get_all never let the other task run"
        assert "id0" not in found
        assert len(found) >= 29_999


async def _turns_of_a_watcher(
    store: MemorySessionStore, batch_size: int, each: Callable[[], None] = lambda: None
) -> list[int]:
    """Iterate `store`, calling `each` per session; how many were yielded at each turn that
    another task got meanwhile."""
    seen: list[str] = []
    turns: list[int] = []

    async def watcher() -> None:
        while True:
            turns.append(len(seen))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher)
        async for session_id, _data in store.iter_sessions(batch_size=batch_size):
            seen.append(session_id)
            each()
        tg.cancel_scope.cancel()
    assert len(seen) == len(set(seen)) == len(store._sessions)
    return turns


class FakeTime:
    """Stands in for the `time` module in `_local.steps`: a perf_counter the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class TestTimedSteps:
    """`get_all` and `iter_sessions` size their steps by the time the last one took."""

    async def test_iter_sessions_never_reads_more_than_batch_size(self, clock: FakeClock) -> None:
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        for n in range(2000):
            await store.set(f"id{n}", data(n))
        turns = await _turns_of_a_watcher(store, batch_size=5)
        # The watcher may see two steps between its turns, never more.
        assert max(b - a for a, b in itertools.pairwise(turns)) <= 10

    async def test_a_slow_consumer_shrinks_the_steps(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The time between two checkpoints counts the consumer's work, not only the read."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=60), clock=clock)
        for n in range(2000):
            await store.set(f"id{n}", data(n))
        fake = FakeTime()
        monkeypatch.setattr(_steps, "time", fake)

        def take_a_millisecond() -> None:
            fake.now += 0.001

        turns = await _turns_of_a_watcher(store, batch_size=500, each=take_a_millisecond)
        # The first step's size, before any time was measured; trio may run the second (16)
        # before the watcher's first turn.
        assert turns[0] <= 200 + 16
        # Then the smallest step, 16 (the watcher may see two between its turns).
        assert max(b - a for a, b in itertools.pairwise(turns)) <= 2 * 16

    def test_a_slow_step_shrinks_the_next_in_proportion(self) -> None:
        assert _next_step(1000, 0.004) == 250
        assert _next_step(100, 1.0) == 16  # never below the floor

    def test_a_quick_step_doubles_the_next_up_to_a_ceiling(self) -> None:
        assert _next_step(200, 0.0001) == 400
        assert _next_step(4096, 0.0) == 4096

    def test_a_step_near_the_target_keeps_its_size(self) -> None:
        assert _next_step(300, 0.0008) == 300
