"""Rules for iterating over a store's sessions with `iter_sessions`."""

from __future__ import annotations

import pytest

from .._core.data import SessionData
from .._core.iteration import iter_sessions
from .._core.protocol import SessionStore
from ._clock import FakeClock
from ._kit_base import LIFETIME_MS, StoreFixtures, session

__all__ = ("IterationRules",)


async def _collect(store: SessionStore, batch_size: int) -> list[tuple[str, SessionData]]:
    return [item async for item in iter_sessions(store, batch_size)]


class IterationRules(StoreFixtures):
    """`iter_sessions(store)` yields exactly the sessions `get_all` returns, each once (through
    the public function: for stores with their own `iter_sessions` and those without)."""

    @pytest.mark.parametrize("batch_size", [1, 3, 500])
    async def test_iteration_matches_get_all(
        self, store: SessionStore, clock: FakeClock, batch_size: int
    ) -> None:
        """Live sessions appear once each, in batches of any size; expired ones never."""
        for n in range(4):
            await store.set(f"old{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2)
        for n in range(7):
            await store.set(f"id{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2 + 1)  # the first four are now expired
        items = await _collect(store, batch_size)
        ids = [sid for sid, _ in items]
        assert len(ids) == len(set(ids)), "iter_sessions yielded a session twice"
        assert dict(items) == dict(await store.get_all())
        assert dict(items) == {f"id{n}": session(n) for n in range(7)}

    async def test_iteration_of_empty_store(self, store: SessionStore) -> None:
        """An empty store yields nothing."""
        assert await _collect(store, 2) == []

    async def test_iteration_slides_like_get_all(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """A refreshing store slides the expiry of every session it yields."""
        await refreshing_store.set("a", session(1))
        await refreshing_store.set("b", session(2))
        clock.advance(ms=LIFETIME_MS - 1)
        assert dict(await _collect(refreshing_store, 1)) == {"a": session(1), "b": session(2)}
        clock.advance(ms=LIFETIME_MS - 1)
        assert dict(await refreshing_store.get_all()) == {"a": session(1), "b": session(2)}, (
            "iter_sessions did not slide the expiry"
        )

    async def test_iteration_refuses_bad_batch_size(self, store: SessionStore) -> None:
        """A batch size that is not a positive int is a ValueError."""
        for bad in (0, -1, True):
            with pytest.raises(ValueError, match="batch_size"):
                await _collect(store, bad)
