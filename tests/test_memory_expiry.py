"""The memory store's inlined expiry arithmetic agrees with the shared `_expiry` rules."""

from __future__ import annotations

import anyio
from hypothesis import given
from hypothesis import strategies as st

from walletmesh_sessions import MemorySessionStore, SessionData, SessionStoreConfig
from walletmesh_sessions._core.expiry import EXPIRED, after_read, expiry_after_write
from walletmesh_sessions.testing import FakeClock

DATA = SessionData("s", "https://a.example")
lifetimes = st.none() | st.integers(min_value=1, max_value=10**7)
steps = st.integers(min_value=0, max_value=2 * 10**7)


class TestInlinedExpiry:
    """set and get on the fast path decide exactly as expiry_after_write and after_read."""

    @given(lifetime_ms=lifetimes, refresh=st.booleans(), steps=st.lists(steps, max_size=6))
    def test_set_then_reads(self, lifetime_ms: int | None, refresh: bool, steps: list[int]) -> None:
        """Each read's answer and the stored expiry match the shared functions."""
        lifetime = None if lifetime_ms is None else lifetime_ms / 1000
        config = SessionStoreConfig(lifetime=lifetime, refresh_on_access=refresh)

        async def run() -> None:
            clock = FakeClock()
            store = MemorySessionStore(config, clock=clock)
            await store.set("s", DATA)
            expected = expiry_after_write(config, clock.now_ms)
            assert (await store.inspect("s"))[0].expires_at == expected
            for step in steps:
                clock.advance(ms=step)
                after = after_read(config, clock.now_ms, expected)
                got = await store.get("s")
                if after is EXPIRED:
                    assert got is None
                    assert await store.inspect("s") == []
                    return
                assert got == DATA
                expected = after
                assert (await store.inspect("s"))[0].expires_at == expected

        anyio.run(run)
