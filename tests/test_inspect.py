"""inspect(): what each shipped store holds, expired and unreadable records included, unchanged."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from walletmesh_sessions import (
    InvalidConfigError,
    IterableRecords,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionRecord,
    SessionStoreConfig,
)
from walletmesh_sessions._local.sqlite import TABLE
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


STORES = ["memory", "sqlite_file", "mapping", "redis", "redis_cluster", "postgres"]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# `(config, clock) -> store`: a shipped store, with iter_records and async with.
Make = Callable[[SessionStoreConfig, FakeClock], Any]


@pytest.fixture
def factory(store_kind: str, request: pytest.FixtureRequest) -> Make:
    """The shared fixture's store factory for each shipped store."""
    made: Make = request.getfixturevalue(f"{store_kind}_factory")
    return made


def plant_unreadable(kind: str, request: pytest.FixtureRequest) -> None:
    """A record under the id "bad" that no store can read, written as another program would."""
    if kind == "sqlite_file":
        path = request.getfixturevalue("sqlite_path")
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(f"INSERT INTO {TABLE} (key, value) VALUES ('wm_session_bad', '{{oops')")
    elif kind == "mapping":
        request.getfixturevalue("shared_mapping")["wm_session_bad"] = "{oops"
    elif kind == "redis":
        request.getfixturevalue("redis_client").set("wm_session_bad", "{oops")
    elif kind == "redis_cluster":
        request.getfixturevalue("redis_cluster_client").set("wm_session_bad", "{oops")
    else:
        table = request.getfixturevalue("postgres_table")
        conn = request.getfixturevalue("postgres_conn")
        # The table's generated expiry column refuses text that is not JSON at all.
        conn.execute(f"INSERT INTO {table} (id, value) VALUES ('bad', '[1]')")


class TestIterRecords:
    """iter_records(): what inspect() shows, a page at a time, on every shipped store."""

    async def test_same_records_as_inspect(self, factory: Make, clock: FakeClock) -> None:
        """Every record once (live and expired), in pages of any size, equal to inspect()'s."""
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with factory(config, clock) as store:
            shipped: object = store
            assert isinstance(shipped, IterableRecords)
            for i in range(7):
                await store.set(f"s{i}", SessionData(f"s{i}", "https://a.example"))
                clock.advance(seconds=10)  # s0 expires 70 s after the start: 10 s ago
            inspected = sorted(await store.inspect(), key=lambda r: r.session_id)
            assert inspected[0].is_expired(clock.now_ms)
            for batch_size in (1, 2, 7, 500):
                records = [r async for r in store.iter_records(batch_size)]
                assert sorted(records, key=lambda r: r.session_id) == inspected
            # Nothing was refreshed or removed on the way.
            assert sorted(await store.inspect(), key=lambda r: r.session_id) == inspected

    @pytest.mark.parametrize("store_kind", [kind for kind in STORES if kind != "memory"])
    async def test_unreadable_is_yielded(
        self,
        store_kind: str,
        factory: Make,
        clock: FakeClock,
        request: pytest.FixtureRequest,
    ) -> None:
        """An unreadable record comes as a record with the reason, never as an error.

        (A memory store holds only checked `SessionData`: it has none.)
        """
        async with factory(SessionStoreConfig(), clock) as store:
            await store.set("ok", A)  # the table or file exists from here on
            plant_unreadable(store_kind, request)
            records = {r.session_id: r async for r in store.iter_records(1)}
        assert records["ok"] == SessionRecord("ok", A, None)
        assert records["bad"].data is None
        assert records["bad"].error

    async def test_empty(self, factory: Make, clock: FakeClock) -> None:
        """An empty store yields nothing."""
        async with factory(SessionStoreConfig(), clock) as store:
            assert [r async for r in store.iter_records()] == []

    @pytest.mark.parametrize("batch_size", [0, -1, True, 1.5, "2"])
    async def test_bad_batch_size(self, factory: Make, clock: FakeClock, batch_size: Any) -> None:
        """A batch size that is not a positive int is refused on the first step."""
        async with factory(SessionStoreConfig(), clock) as store:
            with pytest.raises(InvalidConfigError, match="batch_size"):
                await anext(aiter(store.iter_records(batch_size)))
