"""The mapping backend of LocalStorageSessionStore: whatever a foreign writer left in the dict."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from walletmesh_sessions import (
    CorruptRecordError,
    LocalStorageSessionStore,
    SessionData,
    SessionStoreConfig,
)
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio

PREFIX = "wm_session_"
GOOD = SessionData("good", "https://a.example")
# Valid to many JSON writers, but NaN and Infinity are not JSON: JSON.parse refuses them.
NOT_JSON = (
    '{"data":{"id":"n","origin":"o"},"x":NaN}',
    '{"data":{"id":"n","origin":"o"},"x":Infinity}',
)
NOT_TEXT: tuple[Any, ...] = ({"data": {"id": "d", "origin": "o"}}, b'{"data":{}}', 42)


def refreshing_store(storage: dict[str, Any], clock: FakeClock) -> LocalStorageSessionStore:
    config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
    return LocalStorageSessionStore(storage, config, clock=clock)


class TestUnreadableValues:
    """One bad value never hides the others, and is never removed but by delete/clear."""

    @pytest.mark.parametrize("bad", [*NOT_JSON, *NOT_TEXT], ids=repr)
    async def test_bulk_calls_skip_it(
        self, bad: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """get_all and clean_expired serve the rest and keep it; get names it."""
        storage: dict[str, Any] = {PREFIX + "bad": bad}
        store = refreshing_store(storage, clock)
        await store.set("good", GOOD)
        with caplog.at_level(logging.WARNING, "walletmesh_sessions"):
            assert await store.get_all() == {"good": GOOD}
            assert await store.clean_expired() == 0
        assert storage[PREFIX + "bad"] is bad
        assert any("corrupt" in r.getMessage() for r in caplog.records)
        with pytest.raises(CorruptRecordError, match="'bad'"):
            await store.get("bad")
        [record] = await store.inspect("bad")
        assert record.data is None
        assert record.error
        await store.delete("bad")
        assert PREFIX + "bad" not in storage

    async def test_clear_removes_unreadable(self, clock: FakeClock) -> None:
        """clear removes every key under the prefix, unreadable values included."""
        storage: dict[str, Any] = {PREFIX + "a": {"x": 1}, PREFIX + "b": b"\xff", "theme": "dark"}
        await refreshing_store(storage, clock).clear()
        assert storage == {"theme": "dark"}

    async def test_bare_prefix_key_is_skipped(self, clock: FakeClock) -> None:
        """A valid record under the bare prefix has no session id: get_all leaves it out."""
        storage: dict[str, Any] = {PREFIX: encode_record(GOOD, None)}
        store = refreshing_store(storage, clock)
        assert await store.get_all() == {}
        assert PREFIX in storage


class TestRefreshKeepsBytes:
    """A refresh rewrites only expiresAt; every other byte of the record stays."""

    async def test_foreign_spelling_survives(self, clock: FakeClock) -> None:
        """1e3, escapes and unknown fields written by another program come back unchanged."""
        first_expiry = clock.now_ms + 1000
        raw = (
            '{"data":{"id":"s","origin":"caf\\u00e9","permissions":{},"n":1e3},'
            f'"expiresAt":{first_expiry},"v":2}}'
        )
        storage: dict[str, Any] = {PREFIX + "s": raw}
        store = refreshing_store(storage, clock)
        clock.advance(seconds=1)
        assert await store.get("s") == SessionData("s", "caf\u00e9")
        slid = f'"expiresAt":{clock.now_ms + 60_000}'
        assert storage[PREFIX + "s"] == raw.replace(f'"expiresAt":{first_expiry}', slid)
        clock.advance(seconds=1)
        assert await store.get_all() == {"s": SessionData("s", "caf\u00e9")}
        assert '"n":1e3' in storage[PREFIX + "s"]
        assert '"origin":"caf\\u00e9"' in storage[PREFIX + "s"]
        assert f'"expiresAt":{clock.now_ms + 60_000},"v":2}}' in storage[PREFIX + "s"]


class TestDecodeCache:
    """The store's cache of decoded records is its own, bounded, and emptied by clear/aclose."""

    async def test_cleared_with_the_store(self, clock: FakeClock) -> None:
        """After clear() and aclose() the cache holds no record."""
        store = refreshing_store({}, clock)
        await store.set("a", GOOD)
        await store.get("a")
        cache = store._backend._cache  # type: ignore[attr-defined]
        assert len(cache) == 1
        await store.clear()
        assert len(cache) == 0
        await store.set("a", GOOD)
        await store.get("a")
        await store.aclose()
        assert len(cache) == 0

    def test_bounded_by_size(self) -> None:
        """The text held never exceeds the bound, whatever the records' sizes."""
        from walletmesh_sessions._core.decode_cache import DecodeCache

        cache = DecodeCache(max_chars=10_000)
        for n in range(200):
            data = SessionData(f"s{n}", "o" * (n * 10))
            cache.decode(encode_record(data, None), f"s{n}")
            assert cache.chars <= 10_000
