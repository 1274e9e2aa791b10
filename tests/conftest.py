"""Shared fixtures: both anyio backends, and one store factory per shipped store.

Also the fast lane: each test that needs a server is marked with its kind and `server`, so
``pytest -m "not server"`` runs every test that needs none.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

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

from .servers import set_running_test

T = TypeVar("T")

pytest_plugins = (
    "tests.redis_server",
    "tests.redis_cluster",
    "tests.redis_sentinel",
    "tests.postgres_server",
)

# What marks a test with a server kind: a fixture that starts or uses that server (the
# plugins' own and the test modules' wrappers around them) ...
SERVER_FIXTURES = {
    "redis": {
        "redis_server", "redis_url", "redis_client", "redis_factory", "redis_foreign",
        "dedicated_redis",
    },
    "redis_cluster": {
        "redis_cluster", "redis_cluster_client", "redis_cluster_factory",
        "redis_cluster_foreign", "dedicated_cluster",
    },
    "redis_sentinel": {
        "redis_sentinel", "redis_sentinel_primary", "redis_sentinel_factory",
        "redis_sentinel_foreign", "dedicated_sentinel",
    },
    "postgres": {
        "postgres_server", "postgres_url", "postgres_conn", "postgres_table",
        "postgres_factory", "postgres_foreign", "own_postgres", "outage_server",
        "fault_server",
    },
}  # fmt: skip
# ... a parameter that names the kind (``store_kind="redis"``, ``"postgres_factory"``), which a
# fixture turns into the server with `request.getfixturevalue` ...
PARAMETER_NAMES = re.compile(r"^(redis_cluster|redis_sentinel|redis|postgres)(ql)?(_\w+)?$")
# ... a docs example that reads a server's URL from the environment ...
URL_VARIABLES = {
    "WALLETMESH_REDIS_URL": "redis",
    "WALLETMESH_REDIS_CLUSTER_URL": "redis_cluster",
    "WALLETMESH_SENTINEL_URL": "redis_sentinel",
    "WALLETMESH_POSTGRES_URL": "postgres",
}
# ... or the module, where every test uses the server.
SERVER_MODULES = {"test_browser": "browser"}
SERVER_KINDS = ("redis", "redis_cluster", "redis_sentinel", "postgres", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("walletmesh", "servers for the walletmesh-sessions tests")
    group.addoption(
        "--redis-url",
        metavar="URL",
        help="run the Redis tests on this running server (127.0.0.1 only; its database is "
        "emptied) instead of one they start; tests needing their own servers are skipped",
    )
    group.addoption(
        "--postgres-url",
        metavar="URL",
        help="run the PostgreSQL tests on this running server (127.0.0.1 only; they create "
        "tables of their own) instead of one they start; tests needing their own are skipped",
    )


def server_kinds(item: pytest.Item) -> set[str]:
    """The kinds of server `item` needs, by the rules above."""
    fixtures = set(getattr(item, "fixturenames", ()))
    kinds = {kind for kind, names in SERVER_FIXTURES.items() if names & fixtures}
    for value in _parameters(item):
        text = value if isinstance(value, str) else repr(value)
        if match := PARAMETER_NAMES.match(text):
            kinds.add(match.group(1))
        kinds.update(kind for variable, kind in URL_VARIABLES.items() if variable in text)
    if item.path.stem in SERVER_MODULES:
        kinds.add(SERVER_MODULES[item.path.stem])
    return kinds


def _parameters(item: pytest.Item) -> Iterable[object]:
    if isinstance(item, pytest.Function) and hasattr(item, "callspec"):
        return item.callspec.params.values()
    return ()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kinds = server_kinds(item)
        for kind in kinds:
            item.add_marker(kind)
        if kinds:
            item.add_marker("server")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    set_running_test(item)


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
            conn.executemany(
                f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (?, ?)", FOREIGN_KEYS.items()
            )

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


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mypy cache for this test process (one per xdist worker), kept for the whole session:
    a mypy run after the first reads the standard library and the installed packages from it
    instead of checking them again. Give each set of mypy options its own subdirectory, since
    a module checked under other options is checked again and its cache entry overwritten."""
    return tmp_path_factory.mktemp("mypy-cache")


class RunOnce:
    """Results worked out once per test session and shared by its xdist workers, whichever
    worker's test asks first: a slow checker's report (mypy, pyright) that several tests read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str, compute: Callable[[], T]) -> T:
        """`compute()`'s result (JSON: lists come back for tuples), computed by one worker only."""
        result = self.directory / f"{name}.json"
        with (self.directory / f"{name}.lock").open("w") as lock:
            # A second worker waits here for the first one's result instead of computing it too.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not result.exists():
                result.write_text(json.dumps(compute()), encoding="utf-8")
        value: T = json.loads(result.read_text(encoding="utf-8"))
        return value


@pytest.fixture(scope="session")
def run_once(tmp_path_factory: pytest.TempPathFactory) -> RunOnce:
    """Shared by the session's workers: their base directories sit in the session's own one."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
    directory = shared / "run-once"
    directory.mkdir(exist_ok=True)
    return RunOnce(directory)
