"""Shared fixtures: both anyio backends, and one store factory per shipped store."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from walletmesh_sessions import (
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
)
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._core.expiry import Clock
from walletmesh_sessions._local.sqlite import SCHEMA, TABLE
from walletmesh_sessions.testing import ForeignData, StoreFactory
from walletmesh_sessions.testing._clock import FakeClock

pytest_plugins = (
    "tests.redis_server",
    "tests.redis_cluster",
    "tests.redis_sentinel",
    "tests.postgres_server",
)


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
def sqlite_file_factory(sqlite_path: Path) -> StoreFactory:
    """Stores over one real SQLite file per test (several stores share it)."""

    def make(config: SessionStoreConfig, clock: Clock) -> LocalStorageSessionStore:
        return LocalStorageSessionStore(sqlite_path, config, clock=clock)

    return make


@pytest.fixture
def mapping_factory(shared_mapping: dict[str, str]) -> StoreFactory:
    """Stores over one plain dict per test (several stores share it)."""

    def make(config: SessionStoreConfig, clock: Clock) -> LocalStorageSessionStore:
        return LocalStorageSessionStore(shared_mapping, config, clock=clock)

    return make


# Keys that share a store's storage without belonging to it. Several would match if the prefix
# were used as a LIKE or glob pattern, and carry valid, expired records to tempt a sloppy scan.
def _expired_record() -> str:
    return encode_record(SessionData("x", "https://foreign.example"), 1)


FOREIGN_KEYS = {
    "theme": "dark",
    "wm_session": "shorter than the prefix",
    "wm_Session_a": "differs in case",
    "xwm_session_a": "prefix not at the start",
    "wmXsession_a": _expired_record(),  # LIKE 'wm_session_%' matches this
    "wm_sessionXa": _expired_record(),  # ... and this
    "wm_session\\_a": _expired_record(),  # an escaped LIKE pattern read as text
    "other_prefix_a": _expired_record(),
}


class MappingForeignData:
    """Foreign keys planted in the dict the mapping stores share."""

    def __init__(self, storage: dict[str, str]) -> None:
        self.storage = storage

    async def plant(self) -> None:
        self.storage.update(FOREIGN_KEYS)

    async def intact(self) -> bool:
        return all(self.storage.get(key) == value for key, value in FOREIGN_KEYS.items())


class SqliteForeignData:
    """Foreign rows planted in the SQLite file with the sqlite3 module, as another program would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self) -> dict[str, str]:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return dict(conn.execute(f"SELECT key, value FROM {TABLE}").fetchall())

    async def plant(self) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?)", FOREIGN_KEYS.items())

    async def intact(self) -> bool:
        rows = self._rows()
        return all(rows.get(key) == value for key, value in FOREIGN_KEYS.items())


class MemoryForeignData:
    """A memory store's storage is its own: another store instance must be unaffected."""

    def __init__(self) -> None:
        self.other = MemorySessionStore()
        self.data = SessionData("x", "https://foreign.example")

    async def plant(self) -> None:
        await self.other.set("mine", self.data)

    async def intact(self) -> bool:
        return await self.other.get("mine") == self.data


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def shared_mapping() -> dict[str, str]:
    return {}


@pytest.fixture
def memory_foreign() -> ForeignData:
    return MemoryForeignData()


@pytest.fixture
def sqlite_file_foreign(sqlite_path: Path) -> ForeignData:
    return SqliteForeignData(sqlite_path)


@pytest.fixture
def mapping_foreign(shared_mapping: dict[str, str]) -> ForeignData:
    return MappingForeignData(shared_mapping)
