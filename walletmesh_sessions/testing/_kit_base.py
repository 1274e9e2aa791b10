"""Fixtures and helpers shared by the conformance rules (see `SessionStoreContract`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar, Protocol, TypeVar

import anyio
import pytest

from .._core.data import SessionData, SessionStoreConfig
from .._core.expiry import Clock
from .._core.protocol import LifecycleSessionStore, SessionStore
from ._clock import FakeClock

__all__ = (
    "BAD_IDS",
    "HOSTILE_IDS",
    "LIFETIME_MS",
    "ForeignData",
    "MakeStore",
    "StoreFactory",
    "StoreFixtures",
    "lifecycle",
    "race",
    "session",
)

StoreFactory = Callable[[SessionStoreConfig, Clock], SessionStore]
"""Makes a fresh, empty store with the given config, reading the given clock."""

MakeStore = Callable[..., SessionStore]
T = TypeVar("T")

LIFETIME_MS = 60_000
HOSTILE_IDS = (
    "a*",
    "a?",
    "[ab]",
    "a%",
    "a_",
    "a\\",
    "a\\*",
    "a\x00b",
    "a'b\"c;--",
    "sessi\u00f6n-\u4f1a\u8bdd-\U0001f600",
    "x" * 10_000,
    " ",
    "\n",
)
BAD_IDS: tuple[Any, ...] = ("", None, 1, b"id", ["id"], "\ud800")


def session(n: int | str = 1, **permissions: list[str]) -> SessionData:
    """A small distinct session for tests."""
    return SessionData(
        id=f"s{n}",
        origin=f"https://app{n}.example",
        permissions=permissions or {"eip155:1": ["eth_accounts"]},
    )


def lifecycle(store: SessionStore) -> LifecycleSessionStore:
    """`store` as a `LifecycleSessionStore`, failing the rule if it lacks the operations."""
    assert isinstance(store, LifecycleSessionStore), "store lacks create, update or rotate"
    return store


async def race(count: int, attempt: Callable[[int], Awaitable[T]]) -> list[tuple[int, T]]:
    """Run ``attempt(n)`` for every n below `count` at once; ``(n, result)`` of the truthy ones."""
    won: list[tuple[int, T]] = []

    async def one(n: int) -> None:
        result = await attempt(n)
        if result:
            won.append((n, result))

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(one, n)
    return won


async def close_store(store: object) -> None:
    aclose = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()


class ForeignData(Protocol):
    """Data that shares the store's storage without belonging to it (other keys, another prefix)."""

    async def plant(self) -> None:
        """Write the foreign data into the storage the factory's stores use."""

    async def intact(self) -> bool:
        """True if everything `plant` wrote is still there, unchanged."""


class StoreFixtures:
    """The fixtures every rule uses. Override `store_factory`, and `foreign_data` if you can."""

    # Every async rule runs under anyio; subclasses inherit the mark.
    pytestmark: ClassVar[pytest.MarkDecorator] = pytest.mark.anyio

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        """Every test runs on both backends; a missing trio fails instead of skipping."""
        return str(request.param)

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        """Override in the subclass: return ``(config, clock) -> fresh empty store``."""
        raise NotImplementedError("provide a store_factory fixture")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def make_store(
        self, store_factory: StoreFactory, clock: FakeClock, anyio_backend: str
    ) -> AsyncIterator[MakeStore]:
        """Make stores with a config (and the shared fake clock); close them afterwards."""
        made: list[SessionStore] = []

        def make(
            lifetime: float | timedelta | None = None,
            *,
            refresh: bool = False,
            clock_: Clock | None = None,
            max_lifetime: float | timedelta | None = None,
        ) -> SessionStore:
            config = SessionStoreConfig(
                lifetime=lifetime, refresh_on_access=refresh, max_lifetime=max_lifetime
            )
            store = store_factory(config, clock_ or clock)
            made.append(store)
            return store

        yield make
        for store in made:
            await close_store(store)

    @pytest.fixture
    def store(self, make_store: MakeStore) -> SessionStore:
        """A store with a 60 s lifetime and no refresh."""
        return make_store(timedelta(milliseconds=LIFETIME_MS))

    @pytest.fixture
    def refreshing_store(self, make_store: MakeStore) -> SessionStore:
        """A store with a 60 s lifetime that slides expiry on every read."""
        return make_store(timedelta(milliseconds=LIFETIME_MS), refresh=True)

    @pytest.fixture
    def shares_storage(self) -> bool:
        """Override to return True if two stores the factory makes in one test share their
        storage (a file, a server): the rules for two store objects then run."""
        return False

    @pytest.fixture
    def foreign_data(self) -> ForeignData | None:
        """Override to return a `ForeignData` for the factory's storage; `None` skips its rules."""
        return None
