# mypy: disable-error-code="empty-body"
"""Usages mypy --strict must reject: each line's ignore is required (warn_unused_ignores)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType

from typing_extensions import Self

from walletmesh_sessions import (
    ClosableSessionStore,
    FullSessionStore,
    Inspectable,
    IterableSessionStore,
    LifecycleSessionStore,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionRecord,
    SessionStore,
    SessionStoreConfig,
    iter_sessions,
    open_store,
)


class MissingMethod:
    """Six of the seven methods: clean_expired is missing."""

    async def set(self, session_id: str, data: SessionData) -> None: ...
    async def get(self, session_id: str) -> SessionData | None: ...
    async def get_all(self) -> Mapping[str, SessionData]: ...
    async def delete(self, session_id: str) -> None: ...
    async def clear(self) -> None: ...
    async def validate_and_refresh(self, session_id: str) -> SessionData | None: ...


class DictLike(MissingMethod):
    """All seven methods, but no aclose and no inspect."""

    async def clean_expired(self) -> int: ...


class WrongSignature:
    """get takes an int id."""

    async def set(self, session_id: str, data: SessionData) -> None: ...
    async def get(self, session_id: int) -> SessionData | None: ...
    async def get_all(self) -> Mapping[str, SessionData]: ...
    async def delete(self, session_id: str) -> None: ...
    async def clear(self) -> None: ...
    async def validate_and_refresh(self, session_id: str) -> SessionData | None: ...
    async def clean_expired(self) -> int: ...


class SyncMethod:
    """clean_expired is a plain method where a coroutine is required."""

    async def set(self, session_id: str, data: SessionData) -> None: ...
    async def get(self, session_id: str) -> SessionData | None: ...
    async def get_all(self) -> Mapping[str, SessionData]: ...
    async def delete(self, session_id: str) -> None: ...
    async def clear(self) -> None: ...
    async def validate_and_refresh(self, session_id: str) -> SessionData | None: ...
    def clean_expired(self) -> int: ...


class WrongReturn:
    """get_all returns a list."""

    async def set(self, session_id: str, data: SessionData) -> None: ...
    async def get(self, session_id: str) -> SessionData | None: ...
    async def get_all(self) -> list[SessionData]: ...
    async def delete(self, session_id: str) -> None: ...
    async def clear(self) -> None: ...
    async def validate_and_refresh(self, session_id: str) -> SessionData | None: ...
    async def clean_expired(self) -> int: ...


missing: SessionStore = MissingMethod()  # type: ignore[assignment]
wrong: SessionStore = WrongSignature()  # type: ignore[assignment]
sync: SessionStore = SyncMethod()  # type: ignore[assignment]
wrong_return: SessionStore = WrongReturn()  # type: ignore[assignment]
not_closable: ClosableSessionStore = DictLike()  # type: ignore[assignment]
not_inspectable: Inspectable = DictLike()  # type: ignore[assignment]
no_lifecycle: LifecycleSessionStore = DictLike()  # type: ignore[assignment]


class NoRotate(DictLike):
    """create and update, but no rotate."""

    async def create(self, session_id: str, data: SessionData) -> bool: ...
    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None: ...


no_rotate: LifecycleSessionStore = NoRotate()  # type: ignore[assignment]

SessionData(id=1, origin="o")  # type: ignore[arg-type]
SessionData("s", "o", permissions=["eth_accounts"])  # type: ignore[arg-type]
SessionStoreConfig(lifetime="60")  # type: ignore[arg-type]
SessionStoreConfig(refresh_on_access="yes")  # type: ignore[arg-type]
MemorySessionStore(clock=5)  # type: ignore[arg-type]


async def misuse_lifecycle(store: LifecycleSessionStore, data: SessionData) -> None:
    await store.update("id", lambda current: None)  # type: ignore[arg-type,return-value]
    created: str = await store.create("id", data)  # type: ignore[assignment]
    await store.rotate("id", 5)  # type: ignore[arg-type]
    SessionStoreConfig(max_lifetime="1h")  # type: ignore[arg-type]
    del created


async def misuse(store: SessionStore, data: SessionData) -> None:
    await store.set(1, data)  # type: ignore[arg-type]
    await store.set("id", {"id": "s"})  # type: ignore[arg-type]
    data.id = "other"  # type: ignore[misc]
    result: SessionData = await store.get("id")  # type: ignore[assignment]
    count: str = await store.clean_expired()  # type: ignore[assignment]
    store.get("id").id  # type: ignore[attr-defined]
    del result, count


not_iterable: IterableSessionStore = MissingMethod()  # type: ignore[assignment]


async def iteration_misuse(store: IterableSessionStore) -> None:
    await store.iter_sessions()  # type: ignore[misc]
    async for session_id, data in iter_sessions(store, "500"):  # type: ignore[arg-type]
        count: int = session_id  # type: ignore[assignment]
        del count, data


class AllButRotateAndConfig(NoRotate):
    """Iteration, inspect and closing on top of NoRotate: still no rotate, no config."""

    def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]: ...
    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AllButRotate(AllButRotateAndConfig):
    """Everything FullSessionStore names except rotate."""

    @property
    def config(self) -> SessionStoreConfig: ...


class AllButConfig(AllButRotateAndConfig):
    """Everything FullSessionStore names except config."""

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None: ...


class WrongConfig(AllButConfig):
    """config is there, but not a SessionStoreConfig."""

    @property
    def config(self) -> dict[str, int]: ...


full_without_rotate: FullSessionStore = AllButRotate()  # type: ignore[assignment]
full_without_config: FullSessionStore = AllButConfig()  # type: ignore[assignment]
full_wrong_config: FullSessionStore = WrongConfig()  # type: ignore[assignment]
full_plain: FullSessionStore = DictLike()  # type: ignore[assignment]


def needs_memory(store: MemorySessionStore) -> None: ...
def needs_file(store: LocalStorageSessionStore) -> None: ...


async def misuse_full(config: SessionStoreConfig) -> None:
    needs_memory(open_store("memory://"))  # type: ignore[arg-type]
    async with open_store("sqlite:///sessions.db?max_lifetime=3600") as s:
        needs_file(s)  # type: ignore[arg-type]
        s.config = config  # type: ignore[misc]
        s.prefix  # type: ignore[attr-defined]
        await s.rotate("id", 5)  # type: ignore[arg-type]
        await s.iter_sessions()  # type: ignore[misc]
        lifetime: int | None = s.config.max_lifetime  # type: ignore[assignment]
        del lifetime
