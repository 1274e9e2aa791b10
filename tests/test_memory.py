"""MemorySessionStore specifics: memory reclaimed without cleaning, default_store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from walletmesh_sessions import (
    InvalidConfigError,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    default_store,
)
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


def test_default_store() -> None:
    """default_store is a memory store with a 24 hour lifetime and no refresh."""
    assert isinstance(default_store, MemorySessionStore)
    assert default_store.config == SessionStoreConfig(lifetime=timedelta(hours=24))
