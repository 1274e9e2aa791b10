"""Rules for bad and hostile input: refused before anything is written, or stored exactly."""

from __future__ import annotations

from typing import Any

import pytest

from .._core.data import SessionData
from .._core.errors import InvalidSessionDataError, InvalidSessionIdError
from .._core.protocol import SessionStore
from ._kit_base import BAD_IDS, HOSTILE_IDS, StoreFixtures, session

__all__ = ("InputRules",)


class InputRules(StoreFixtures):
    """Input validation and hostile ids."""

    @pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
    async def test_bad_ids_refused(self, store: SessionStore, bad_id: Any) -> None:
        """Every method that takes an id refuses a bad one, and nothing changes."""
        await store.set("keep", session())
        # Not a str at all is a TypeError; an empty or invalid-text str is a ValueError.
        builtin = ValueError if isinstance(bad_id, str) else TypeError
        for name in ("get", "validate_and_refresh", "delete"):
            with pytest.raises(InvalidSessionIdError) as info:
                await getattr(store, name)(bad_id)
            assert isinstance(info.value, builtin), f"{name}: expected a {builtin.__name__}"
        with pytest.raises(InvalidSessionIdError) as info:
            await store.set(bad_id, session())
        assert isinstance(info.value, builtin), f"set: expected a {builtin.__name__}"
        assert dict(await store.get_all()) == {"keep": session()}

    @pytest.mark.parametrize(
        "bad_data",
        [None, {"id": "s", "origin": "o", "permissions": {}}, "s", 1],
        ids=repr,
    )
    async def test_bad_data_refused(self, store: SessionStore, bad_data: Any) -> None:
        """set refuses data that is not a SessionData and keeps what was stored."""
        await store.set("id", session(1))
        with pytest.raises(InvalidSessionDataError):
            await store.set("id", bad_data)
        assert await store.get("id") == session(1), "a failed set changed the stored session"

    @pytest.mark.parametrize("hostile_id", HOSTILE_IDS, ids=lambda s: repr(s[:20]))
    async def test_hostile_ids_round_trip(self, store: SessionStore, hostile_id: str) -> None:
        """Ids with wildcards, quotes, NUL, unicode or 10,000 characters are plain keys."""
        await store.set("ab", session(1))
        await store.set("a", session(2))
        await store.set(hostile_id, session(3))
        assert await store.get(hostile_id) == session(3)
        assert dict(await store.get_all()) == {
            "ab": session(1),
            "a": session(2),
            hostile_id: session(3),
        }
        await store.delete(hostile_id)
        assert dict(await store.get_all()) == {"ab": session(1), "a": session(2)}

    async def test_huge_permission_map(self, store: SessionStore) -> None:
        """A session with 2,000 chains of 20 methods each is stored and read back exactly."""
        permissions = {f"eip155:{n}": [f"method_{n}_{m}" for m in range(20)] for n in range(2000)}
        big = SessionData("big", "https://big.example", permissions)
        await store.set("small", session(1))
        await store.set("big", big)
        assert await store.get("big") == big
        assert dict(await store.get_all()) == {"small": session(1), "big": big}
