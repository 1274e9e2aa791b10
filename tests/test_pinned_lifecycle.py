"""What rotate carries to the new id on a sliding store, and how a fractional expiresAt reads."""

from __future__ import annotations

import json

import pytest

from walletmesh_sessions import (
    FullSessionStore,
    LocalStorageSessionStore,
    SessionData,
    SessionStoreConfig,
)
from walletmesh_sessions._core.codec import decode_record
from walletmesh_sessions.testing import FakeClock, StoreFactory

LIFETIME_MS = 60_000
DATA = SessionData("old", "https://app.example", {"eip155:1": ["eth_accounts"]})
PREFIX = "wm_session_"
STORES = ["mapping_factory", "memory_factory", "sqlite_file_factory"]


def sliding() -> SessionStoreConfig:
    return SessionStoreConfig(lifetime=LIFETIME_MS / 1000, refresh_on_access=True)


def record(expires_at: str) -> str:
    """A record as the TypeScript store writes it, with `expires_at` as raw JSON number text."""
    return f'{{"data":{{"id":"s","origin":"https://app.example"}},"expiresAt":{expires_at}}}'


class TestRotateCarriesTheSlidExpiry:
    """On a sliding store, rotate is a read: the moved session expires a lifetime after the
    rotate, not when the old id would have."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("factory", STORES)
    async def test_moved_session_outlives_the_old_expiry(
        self, request: pytest.FixtureRequest, factory: str, clock: FakeClock
    ) -> None:
        """Rotated halfway through its lifetime, the session is still valid past the expiry
        it had before the rotate, and expires a lifetime after the rotate."""
        make: StoreFactory = request.getfixturevalue(factory)
        store = make(sliding(), clock)
        assert isinstance(store, FullSessionStore)
        async with store:
            await store.set("old", DATA)
            old_expiry = clock.now_ms + LIFETIME_MS
            clock.advance(ms=LIFETIME_MS // 2)
            rotated_at = clock.now_ms
            assert await store.rotate("old", "new") == "new"
            clock.advance(ms=old_expiry - clock.now_ms + 1)  # just past the old expiry
            assert await store.get("old") is None
            clock.now_ms = rotated_at + LIFETIME_MS  # valid at exactly its expiry ...
            assert (await store.get("new")) == SessionData("new", DATA.origin, DATA.permissions)

    @pytest.mark.anyio
    async def test_mapping_writes_the_slid_expiry(
        self, shared_mapping: dict[str, str], clock: FakeClock
    ) -> None:
        """The record written under the new id carries expiresAt = the rotate's now + lifetime."""
        async with LocalStorageSessionStore(shared_mapping, sliding(), clock=clock) as store:
            await store.set("old", DATA)
            clock.advance(ms=12_345)
            assert await store.rotate("old", "new") == "new"
        assert set(shared_mapping) == {PREFIX + "new"}
        written = json.loads(shared_mapping[PREFIX + "new"])
        assert written["expiresAt"] == clock.now_ms + LIFETIME_MS
        assert written["data"]["id"] == "new"


class TestFractionalExpiry:
    """A fractional expiresAt (the TypeScript store writes one for a fractional lifetime) reads
    as its floor: valid while ``now <= expiresAt``, never rounded up."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("1.5", 1),
            ("1.9", 1),
            ("1.1", 1),
            ("1700000060001.5", 1700000060001),
            ("1700000060000.9", 1700000060000),
        ],
    )
    def test_decoded_as_the_floor(self, raw: str, expected: int) -> None:
        """1.5 reads as 1 and 1.9 as 1: the floor, not the nearest whole millisecond."""
        _, expires_at = decode_record(record(raw), "s")
        assert expires_at == expected
        assert type(expires_at) is int

    @pytest.mark.parametrize("raw", ["0.5", "0.001", "1e-300"])
    def test_a_fraction_below_one_is_an_expiry_long_past(self, raw: str) -> None:
        """Not 0 ("no expiry"): the TypeScript store treats any non-zero expiresAt as one, so
        a fraction of the first millisecond of 1970 has expired, never lives forever."""
        _, expires_at = decode_record(record(raw), "s")
        assert expires_at == 1

    @pytest.mark.anyio
    @pytest.mark.parametrize("fraction", [".5", ".9"])
    async def test_expired_one_millisecond_after_the_floor(
        self, shared_mapping: dict[str, str], clock: FakeClock, fraction: str
    ) -> None:
        """A record planted with expiresAt = N + fraction is valid at N and expired at N + 1,
        as the TypeScript store (``now > expiresAt``) decides it."""
        whole = 1_700_000_060_001  # odd: rounding half to even would move .5 up too
        shared_mapping[PREFIX + "s"] = record(f"{whole}{fraction}")
        async with LocalStorageSessionStore(shared_mapping, clock=clock) as store:
            clock.now_ms = whole
            assert (await store.get("s")) == SessionData("s", "https://app.example")
            clock.now_ms = whole + 1
            assert await store.get("s") is None
        assert shared_mapping == {}
