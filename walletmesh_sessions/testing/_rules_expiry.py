"""Rules for lifetimes, the expiry boundary, sliding refresh and clean_expired."""

from __future__ import annotations

import pytest

from .._core.protocol import SessionStore
from ._clock import FakeClock
from ._kit_base import LIFETIME_MS, MakeStore, StoreFixtures, session

__all__ = ("ExpiryRules",)


class ExpiryRules(StoreFixtures):
    """Expiry, refresh and cleaning, with the fake clock."""

    async def test_valid_at_exactly_expiry(self, store: SessionStore, clock: FakeClock) -> None:
        """At exactly now + lifetime a session is still valid; 1 ms later it is expired."""
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS)
        assert await store.get("id") == session(), "expired at exactly its expiry (off by one)"
        clock.advance(ms=1)
        assert await store.get("id") is None, "still valid 1 ms after its expiry"

    async def test_expired_get_removes(self, store: SessionStore, clock: FakeClock) -> None:
        """Reading an expired session removes it: clean_expired then finds nothing."""
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS + 1)
        assert await store.validate_and_refresh("id") is None
        assert await store.clean_expired() == 0, "an expired session read by get was not removed"
        clock.advance(ms=-LIFETIME_MS)
        assert await store.get("id") is None, "an expired session came back"

    async def test_no_lifetime_never_expires(self, make_store: MakeStore, clock: FakeClock) -> None:
        """Without a lifetime, sessions outlive any clock move."""
        store = make_store(None)
        await store.set("id", session())
        clock.advance(seconds=100 * 365 * 86400)
        assert await store.get("id") == session()
        assert await store.clean_expired() == 0
        assert dict(await store.get_all()) == {"id": session()}

    async def test_no_refresh_keeps_expiry(self, store: SessionStore, clock: FakeClock) -> None:
        """Without refresh_on_access, reads do not extend a session."""
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS - 1)
        assert await store.get("id") == session()
        await store.get_all()
        clock.advance(ms=2)
        assert await store.get("id") is None, "a read extended the session without refresh"

    async def test_set_restarts_lifetime(self, store: SessionStore, clock: FakeClock) -> None:
        """Overwriting a session gives it a new expiry from now."""
        await store.set("id", session(1))
        clock.advance(ms=LIFETIME_MS - 10)
        await store.set("id", session(2))
        clock.advance(ms=LIFETIME_MS)
        assert await store.get("id") == session(2)

    @pytest.mark.parametrize("method", ["get", "validate_and_refresh"])
    async def test_read_slides_expiry(
        self, refreshing_store: SessionStore, clock: FakeClock, method: str
    ) -> None:
        """With refresh_on_access, a read sets the expiry to now + lifetime."""
        store = refreshing_store
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS - 1)
        assert await getattr(store, method)("id") == session()
        clock.advance(ms=LIFETIME_MS)
        assert await store.get("id") == session(), f"{method} did not slide the expiry"
        clock.advance(ms=LIFETIME_MS + 1)
        assert await store.get("id") is None, "expiry slid beyond now + lifetime"

    async def test_get_all_slides_expiry(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """With refresh_on_access, get_all slides every returned session."""
        store = refreshing_store
        await store.set("a", session(1))
        await store.set("b", session(2))
        clock.advance(ms=LIFETIME_MS)
        assert dict(await store.get_all()) == {"a": session(1), "b": session(2)}
        clock.advance(ms=LIFETIME_MS)
        assert dict(await store.get_all()) == {"a": session(1), "b": session(2)}, (
            "get_all did not slide the expiry"
        )

    async def test_refresh_does_not_revive(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """An expired session stays expired even with refresh_on_access."""
        await refreshing_store.set("id", session())
        clock.advance(ms=LIFETIME_MS + 1)
        assert await refreshing_store.get("id") is None
        assert dict(await refreshing_store.get_all()) == {}

    async def test_clean_expired_counts(self, store: SessionStore, clock: FakeClock) -> None:
        """clean_expired removes exactly the expired sessions and returns their number."""
        for n in range(5):
            await store.set(f"old{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2)
        for n in range(3):
            await store.set(f"new{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2)
        assert await store.clean_expired() == 0, "removed sessions at exactly their expiry"
        clock.advance(ms=1)
        assert await store.clean_expired() == 5
        assert await store.clean_expired() == 0, "a second call counted the same sessions"
        assert set(await store.get_all()) == {"new0", "new1", "new2"}

    async def test_clean_expired_after_clock_steps_back(
        self, store: SessionStore, clock: FakeClock
    ) -> None:
        """Sessions written while the clock was set back are still cleaned correctly."""
        await store.set("late", session(1))
        clock.advance(ms=-10 * LIFETIME_MS)
        await store.set("early", session(2))
        clock.advance(ms=10 * LIFETIME_MS - 1)
        assert await store.clean_expired() == 1
        assert set(await store.get_all()) == {"late"}
