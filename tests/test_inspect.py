"""inspect(): what each shipped store holds, expired and unreadable records included, unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from walletmesh_sessions import (
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionRecord,
    SessionStoreConfig,
)
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio

A = SessionData("a", "https://a.example", {"eip155:1": ["eth_accounts"]})
B = SessionData("b", "https://b.example")


@pytest.fixture(params=["memory", "sqlite", "mapping", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A store of each kind, plus a way to plant a corrupt record where the kind allows."""
    mapping: dict[str, str] = {}

    def store(clock: FakeClock) -> Any:
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        if kind == "memory":
            return MemorySessionStore(config, clock=clock)
        if kind == "sqlite":
            return LocalStorageSessionStore(tmp_path / "s.db", config, clock=clock)
        if kind == "mapping":
            return LocalStorageSessionStore(mapping, config, clock=clock)
        url = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_client")  # an empty database
        return RedisSessionStore.from_url(url, config, clock=clock)

    return store


async def test_inspect_changes_nothing(make: Any, clock: FakeClock) -> None:
    """Live and expired sessions are listed with their expiry; nothing slides or goes."""
    async with make(clock) as store:
        await store.set("a", A)
        clock.advance(seconds=30)
        await store.set("b", B)
        clock.advance(seconds=31)  # "a" expired 1 s ago; "b" lives 29 s more
        records = sorted(await store.inspect(), key=lambda r: r.session_id)
        t0 = FakeClock().now_ms
        assert records == [
            SessionRecord("a", A, t0 + 60_000),
            SessionRecord("b", B, t0 + 90_000),
        ]
        assert [r.is_expired(clock.now_ms) for r in records] == [True, False]
        assert await store.inspect("b") == [SessionRecord("b", B, t0 + 90_000)]
        assert await store.inspect("missing") == []
        # inspect neither refreshed "b" nor removed "a":
        assert sorted(r.session_id for r in await store.inspect()) == ["a", "b"]
        assert (await store.inspect("b"))[0].expires_at == t0 + 90_000


async def test_inspect_shows_unreadable(tmp_path: Path, clock: FakeClock) -> None:
    """An unreadable record is listed with data None and the reason."""
    storage = {
        "wm_session_bad": "{oops",
        "wm_session_ok": json.dumps({"data": {"id": "o", "origin": "x"}}),
    }
    store = LocalStorageSessionStore(storage, clock=clock)
    records = {r.session_id: r for r in await store.inspect()}
    assert records["ok"] == SessionRecord("ok", SessionData("o", "x"), None)
    assert records["bad"].data is None
    assert records["bad"].error
