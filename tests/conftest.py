"""Shared fixtures: both anyio backends, and one store factory per shipped store."""

from __future__ import annotations

from pathlib import Path

import pytest

from walletmesh_sessions import LocalStorageSessionStore, MemorySessionStore, SessionStoreConfig
from walletmesh_sessions._expiry import Clock
from walletmesh_sessions.testing import StoreFactory
from walletmesh_sessions.testing._clock import FakeClock

pytest_plugins = ("tests.redis_server",)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Explicit backends, so a missing trio fails the run instead of skipping it."""
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_factory() -> StoreFactory:
    def make(config: SessionStoreConfig, clock: Clock) -> MemorySessionStore:
        return MemorySessionStore(config, clock=clock)

    return make


@pytest.fixture
def sqlite_file_factory(tmp_path: Path) -> StoreFactory:
    """Stores over one real SQLite file per test (several stores share it)."""
    path = tmp_path / "sessions.db"

    def make(config: SessionStoreConfig, clock: Clock) -> LocalStorageSessionStore:
        return LocalStorageSessionStore(path, config, clock=clock)

    return make


@pytest.fixture
def mapping_factory() -> StoreFactory:
    """Stores over a plain dict that already holds a foreign key."""
    storage = {"theme": "dark"}

    def make(config: SessionStoreConfig, clock: Clock) -> LocalStorageSessionStore:
        return LocalStorageSessionStore(storage, config, clock=clock)

    return make
