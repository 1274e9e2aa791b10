"""Rules for storing, reading, listing and removing sessions."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from .._core.data import SessionData
from .._core.protocol import SessionStore
from ._clock import FakeClock
from ._kit_base import LIFETIME_MS, ForeignData, StoreFixtures, session

__all__ = ("BasicRules",)


class BasicRules(StoreFixtures):
    """set, get, get_all, delete and clear."""

    async def test_satisfies_protocol(self, store: SessionStore) -> None:
        """The store is a SessionStore at runtime (subclassing the protocol is allowed)."""
        assert isinstance(store, SessionStore), "store does not have the seven methods"

    async def test_set_then_get(self, store: SessionStore) -> None:
        """A stored session reads back equal."""
        data = session(1, **{"eip155:1": ["eth_accounts", "eth_sendTransaction"]})
        await store.set("id-1", data)
        assert await store.get("id-1") == data, "get must return what set stored"

    async def test_round_trips_every_field(self, store: SessionStore) -> None:
        """created_at, empty permissions and many chains survive storage."""
        full = SessionData(
            "s", "https://a.example", {"eip155:1": [], "aztec:testnet": ["a", "b"]}, 1_699_999
        )
        empty = SessionData("e", "https://b.example")
        await store.set("full", full)
        await store.set("empty", empty)
        assert await store.get("full") == full
        assert await store.get("empty") == empty

    async def test_get_missing_is_none(self, store: SessionStore) -> None:
        """A session never stored reads as None."""
        assert await store.get("nope") is None
        assert await store.validate_and_refresh("nope") is None

    async def test_set_overwrites(self, store: SessionStore) -> None:
        """A second set replaces the first."""
        await store.set("id", session(1))
        await store.set("id", session(2))
        assert await store.get("id") == session(2)
        assert dict(await store.get_all()) == {"id": session(2)}

    async def test_ids_are_distinct_keys(self, store: SessionStore) -> None:
        """The session id, not data.id, is the key."""
        await store.set("a", session(1))
        await store.set("b", session(1))
        assert dict(await store.get_all()) == {"a": session(1), "b": session(1)}

    async def test_get_all_skips_expired(self, store: SessionStore, clock: FakeClock) -> None:
        """get_all returns only unexpired sessions, keyed by session id."""
        await store.set("old", session(1))
        clock.advance(ms=LIFETIME_MS // 2)
        await store.set("new", session(2))
        clock.advance(ms=LIFETIME_MS // 2 + 1)
        assert dict(await store.get_all()) == {"new": session(2)}, "get_all returned expired"

    async def test_get_all_empty(self, store: SessionStore) -> None:
        """An empty store has an empty mapping."""
        result = await store.get_all()
        assert isinstance(result, Mapping)
        assert dict(result) == {}

    async def test_get_all_is_a_new_mapping(self, store: SessionStore) -> None:
        """Changing the returned mapping does not change the store."""
        await store.set("a", session(1))
        first = await store.get_all()
        if isinstance(first, dict):
            first.clear()
        assert dict(await store.get_all()) == {"a": session(1)}, "get_all returned its own state"

    async def test_delete(self, store: SessionStore) -> None:
        """delete removes one session and leaves the others."""
        await store.set("a", session(1))
        await store.set("b", session(2))
        await store.delete("a")
        assert await store.get("a") is None
        assert await store.get("b") == session(2)

    async def test_delete_missing_is_fine(self, store: SessionStore) -> None:
        """Deleting a missing id is not an error."""
        await store.delete("never-there")
        await store.delete("never-there")

    async def test_clear(self, store: SessionStore, clock: FakeClock) -> None:
        """clear removes every session, expired or not."""
        await store.set("a", session(1))
        clock.advance(ms=LIFETIME_MS + 1)
        await store.set("b", session(2))
        await store.clear()
        assert dict(await store.get_all()) == {}
        assert await store.clean_expired() == 0
        clock.advance(ms=-LIFETIME_MS - 1)
        assert await store.get("a") is None, "clear left an expired session behind"

    async def test_foreign_data_survives(
        self, store: SessionStore, clock: FakeClock, foreign_data: ForeignData | None
    ) -> None:
        """clear, get_all and clean_expired never see, count or touch data of others."""
        if foreign_data is None:
            pytest.skip("no foreign_data fixture: provide one to check that clear is contained")
        await foreign_data.plant()
        await store.set("mine", session(1))
        assert dict(await store.get_all()) == {"mine": session(1)}, "get_all saw foreign data"
        clock.advance(ms=LIFETIME_MS + 1)
        assert await store.clean_expired() == 1, "clean_expired counted foreign data"
        await store.set("mine", session(2))
        await store.clear()
        assert dict(await store.get_all()) == {}
        assert await foreign_data.intact(), "clear (or a scan) changed data outside the store"
