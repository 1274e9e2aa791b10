"""Usages mypy --strict must accept: shipped and duck-typed stores are SessionStores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from types import TracebackType

from typing_extensions import Self, assert_type

from walletmesh_sessions import (
    ClosableSessionStore,
    FullSessionStore,
    Inspectable,
    IterableSessionStore,
    LifecycleSessionStore,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionRecord,
    SessionData,
    SessionStore,
    SessionStoreConfig,
    default_store,
    iter_sessions,
    new_session_id,
    open_store,
)
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.redis import RedisSessionStore


class DictStore:
    """A user's own store: no base class, just the seven coroutine methods."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionData] = {}

    async def set(self, session_id: str, data: SessionData) -> None:
        self._sessions[session_id] = data

    async def get(self, session_id: str) -> SessionData | None:
        return self._sessions.get(session_id)

    async def get_all(self) -> Mapping[str, SessionData]:
        return dict(self._sessions)

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def clear(self) -> None:
        self._sessions.clear()

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        return self._sessions.get(session_id)

    async def clean_expired(self) -> int:
        return 0


custom: SessionStore = DictStore()
memory: SessionStore = MemorySessionStore()
configured: SessionStore = MemorySessionStore(
    SessionStoreConfig(lifetime=timedelta(minutes=5), refresh_on_access=True), clock=lambda: 0.0
)
seconds = SessionStoreConfig(lifetime=60)
fractional = SessionStoreConfig(lifetime=1.5)
default: SessionStore = default_store
data = SessionData("s", "https://a.example", {"eip155:1": ["eth_accounts"]}, created_at=1)
tuples = SessionData("s", "https://a.example", {"eip155:1": ("eth_accounts",)})


async def use(store: SessionStore) -> None:
    sid = new_session_id()
    assert_type(sid, str)
    assert_type(await store.set(sid, data), None)
    assert_type(await store.get(sid), SessionData | None)
    assert_type(await store.validate_and_refresh(sid), SessionData | None)
    assert_type(await store.get_all(), Mapping[str, SessionData])
    assert_type(await store.clean_expired(), int)
    assert_type(data.permissions["eip155:1"], tuple[str, ...])
    assert_type(seconds.lifetime, timedelta | None)


closable: ClosableSessionStore = LocalStorageSessionStore("sessions.db")
inspectable: Inspectable = MemorySessionStore()


async def closing() -> None:
    async with open_store("memory://") as opened:
        assert_type(opened, FullSessionStore)
        assert_type(await opened.get("id"), SessionData | None)
    async with MemorySessionStore() as own:
        assert_type(own, MemorySessionStore)
    assert_type(await inspectable.inspect(), list[SessionRecord])


lifecycle_memory: LifecycleSessionStore = MemorySessionStore()
lifecycle_file: LifecycleSessionStore = LocalStorageSessionStore("sessions.db")
as_plain: SessionStore = lifecycle_memory
absolute = SessionStoreConfig(lifetime=60, refresh_on_access=True, max_lifetime=timedelta(hours=1))


async def lifecycle(store: LifecycleSessionStore) -> None:
    assert_type(await store.create("id", data), bool)
    assert_type(await store.update("id", lambda current: current), SessionData | None)
    assert_type(await store.rotate("id"), str | None)
    assert_type(await store.rotate("id", "new"), str | None)
    assert_type(absolute.max_lifetime, timedelta | None)


iterable_memory: IterableSessionStore = MemorySessionStore()
iterable_file: IterableSessionStore = LocalStorageSessionStore("sessions.db")
iterable_mapping: IterableSessionStore = LocalStorageSessionStore({})


async def iteration(store: IterableSessionStore, plain: SessionStore) -> None:
    async for session_id, data in store.iter_sessions(batch_size=100):
        assert_type(session_id, str)
        assert_type(data, SessionData)
    async for item in iter_sessions(plain):
        assert_type(item, tuple[str, SessionData])


# Every shipped store is a FullSessionStore, structurally: no cast, no isinstance.
full_memory: FullSessionStore = MemorySessionStore()
full_file: FullSessionStore = LocalStorageSessionStore("sessions.db")
full_mapping: FullSessionStore = LocalStorageSessionStore({})
full_redis: FullSessionStore = RedisSessionStore.from_url("redis://localhost:6379/0")
full_postgres: FullSessionStore = PostgresSessionStore.from_url("postgresql://localhost/app")
full_opened: FullSessionStore = open_store("memory://")
# ... and a FullSessionStore is each of the narrower protocols.
full_as_plain: SessionStore = full_opened
full_as_lifecycle: LifecycleSessionStore = full_opened
full_as_iterable: IterableSessionStore = full_opened
full_as_closable: ClosableSessionStore = full_opened
full_as_inspectable: Inspectable = full_opened


async def whole_store_from_one_url() -> None:
    url = "sqlite:///sessions.db?lifetime=900&refresh_on_access=true&max_lifetime=3600"
    async with open_store(url) as s:
        assert_type(s, FullSessionStore)
        assert_type(await s.create("id", data), bool)
        assert_type(await s.update("id", lambda current: current), SessionData | None)
        assert_type(await s.rotate("id"), str | None)
        async for session_id, session in s.iter_sessions(batch_size=100):
            assert_type(session_id, str)
            assert_type(session, SessionData)
        assert_type(await s.inspect(), list[SessionRecord])
        assert_type(await s.inspect("id"), list[SessionRecord])
        assert_type(s.config, SessionStoreConfig)
        assert_type(s.config.max_lifetime, timedelta | None)
        assert_type(await s.get("id"), SessionData | None)
        async with s as again:
            assert_type(again, FullSessionStore)
        assert_type(await s.aclose(), None)


async def takes_full(store: FullSessionStore) -> SessionStoreConfig:
    await store.clean_expired()
    return store.config


class CompleteDictStore(DictStore):
    """A user's store with every member FullSessionStore names, and no base class of ours."""

    async def create(self, session_id: str, data: SessionData) -> bool:
        return self._sessions.setdefault(session_id, data) is data

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        return None

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        return None

    async def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        for item in list(self._sessions.items()):
            yield item

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        return []

    @property
    def config(self) -> SessionStoreConfig:
        return SessionStoreConfig()

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


full_custom: FullSessionStore = CompleteDictStore()
