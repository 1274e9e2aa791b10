"""A real PostgreSQL server for the tests, loaded as a pytest plugin by conftest.py.

One server per test session: `initdb` into a temporary directory, then `postgres` on
127.0.0.1 and a free port (and a private Unix socket directory), without durability (fsync
off: the data is thrown away). When the tests run as root, the server runs as ``nobody``
(PostgreSQL refuses to run as root), in a directory handed over to that user. Each test that
asks for `postgres_factory` gets a table of its own, so tests never see each other's rows.

No PostgreSQL binaries (on PATH or in /usr/lib/postgresql/*/bin): the PostgreSQL tests are
skipped with the reason, except in CI (``CI=true``), where that fails the run.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._core.expiry import Clock
from walletmesh_sessions._postgres.sql import Statements
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.testing import StoreFactory

from .servers import ServerProcess, given_url, starting

__all__ = ("PostgresForeignData", "PostgresServer", "find_binaries")

START_TIMEOUT = 30.0
UNPRIVILEGED = "nobody"
_tables = itertools.count()


def find_binaries() -> Path | None:
    """The directory holding initdb and postgres: on PATH, else the newest Debian install."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        directory = Path(os.path.realpath(initdb)).parent
        if (directory / "postgres").exists():
            return directory
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name.split(".")[0]),
    )
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer(ServerProcess):
    """A postgres process that can be stopped, started again on the same port, or frozen.

    With `given_url`, it is a server someone else runs (``--postgres-url``).
    """

    def __init__(self, binaries: Path, directory: Path, *, given_url: str | None = None) -> None:
        self.binaries = binaries
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0 and given_url is None:
            import pwd

            entry = pwd.getpwnam(UNPRIVILEGED)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        super().__init__(
            "postgres",
            directory,
            self._command,
            self._answers,
            start_timeout=START_TIMEOUT,
            whole_group=True,
            popen=self._as,
            given_port=None if given_url is None else urlsplit(given_url).port or 5432,
        )
        self._given_url = given_url

    @property
    def url(self) -> str:
        return self._given_url or f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection, with short timeouts, for planting and inspecting."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def initdb(self) -> None:
        self.sockets.mkdir()
        if self._as:
            os.chown(self.sockets, self._as["user"], self._as["group"])
        command = [
            str(self.binaries / "initdb"), "-D", str(self.data), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, check=False, **self._as)
        if result.returncode != 0:
            pytest.fail(f"initdb failed:\n{result.stdout.decode()}\n{result.stderr.decode()}")

    def stop(self, stop_signal: signal.Signals = signal.SIGINT) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and wait until it has exited."""
        super().stop(stop_signal)

    def _command(self, port: int) -> list[str]:
        return [
            str(self.binaries / "postgres"), "-D", str(self.data),
            "-c", "listen_addresses=127.0.0.1", "-p", str(port),
            "-c", f"unix_socket_directories={self.sockets}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300", "-c", "shared_buffers=64MB",
        ]  # fmt: skip

    def _answers(self, port: int, pid: int) -> bool:
        """True once the server on `port` is this one: it serves this data directory."""
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.OperationalError:
            return False
        return row is not None and Path(row[0]).resolve() == self.data.resolve()


def _binaries_or_skip() -> Path:
    binaries = find_binaries()
    if binaries is None:
        reason = (
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin);"
            " install it, for example with `apt-get install postgresql`, to run these tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binaries


def make_server() -> PostgresServer:
    """A new, initialized, stopped server in a directory of its own (the caller stops it)."""
    directory = Path(tempfile.mkdtemp(prefix="walletmesh-pg-"))
    server = PostgresServer(_binaries_or_skip(), directory)
    server.initdb()
    return server


@contextlib.contextmanager
def own_server(*, started: bool = True) -> Iterator[PostgresServer]:
    """A server of the caller's own (to stop, restart or freeze), removed afterwards."""
    starting("postgres", "postgres-url")
    server = make_server()
    try:
        if started:
            server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A running PostgreSQL for the whole test session (the ``--postgres-url`` one if given)."""
    url = given_url(request.config, "postgres-url")
    if url is not None:
        yield PostgresServer(Path(), Path(), given_url=url)
        return
    with own_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


@pytest.fixture
def postgres_conn(postgres_server: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """A raw autocommit connection, for planting and inspecting."""
    if not postgres_server.running:
        postgres_server.start()
    with postgres_server.connect() as conn:
        yield conn


@pytest.fixture
def postgres_table(postgres_conn: psycopg.Connection[Any]) -> str:
    """A table name no other test uses (created by the first store that uses it)."""
    return f"t{os.getpid()}_{next(_tables)}"


@pytest.fixture
def postgres_factory(postgres_url: str, postgres_table: str) -> StoreFactory:
    """``(config, clock) -> store`` over the test's own table; the contract kit closes them."""

    def make(config: SessionStoreConfig, clock: Clock) -> PostgresSessionStore:
        return PostgresSessionStore.from_url(
            postgres_url, config, table=postgres_table, clock=clock
        )

    return make


def _expired(n: int) -> str:
    return encode_record(SessionData("x", f"https://foreign{n}.example"), 1)


class PostgresForeignData:
    """Rows in another store's table and in an unrelated table of the same database."""

    def __init__(self, conn: psycopg.Connection[Any], table: str) -> None:
        self.conn = conn
        self.other = f"{table}_other"
        self.rows = {b"mine": _expired(1), b"other": _expired(2), b"wm_session_mine": '"dark"'}

    async def plant(self) -> None:
        statements = Statements((self.other,))
        self.conn.execute(statements.create_table)
        for key, value in self.rows.items():
            self.conn.execute(statements.upsert, (key, value))
        self.conn.execute(f"CREATE TABLE {self.other}_kv (key text PRIMARY KEY, value text)")
        self.conn.execute(f"INSERT INTO {self.other}_kv VALUES ('mine', 'theirs')")

    async def intact(self) -> bool:
        rows = self.conn.execute(f"SELECT id, value FROM {self.other}").fetchall()
        kv = self.conn.execute(f"SELECT key, value FROM {self.other}_kv").fetchall()
        return {bytes(k): v for k, v in rows} == self.rows and kv == [("mine", "theirs")]


@pytest.fixture
def postgres_foreign(
    postgres_conn: psycopg.Connection[Any], postgres_table: str
) -> PostgresForeignData:
    return PostgresForeignData(postgres_conn, postgres_table)
