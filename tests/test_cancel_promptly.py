"""A caller's cancel scope ends a network store's call at once, never after the store's timeout.

The store's `timeout` is long (10 s) and the server does not answer; the caller's scope gives up
after 0.2 s. The call must end soon after that (bounds are generous: only "long before the
timeout" is asserted), leave no statement running on the server, and leave the store usable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from tests.redis_server import RedisServer
from walletmesh_sessions import LocalStorageSessionStore, SessionData
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.redis import RedisSessionStore

TIMEOUT = 10.0
PATIENCE = 0.2
# Long before the timeout, on a loaded machine too.
PROMPT = 3.0
DATA = SessionData("id", "https://dapp.example")


async def cancelled_after(call: Callable[[], Any], patience: float = PATIENCE) -> float:
    """Run `call` in a scope cancelled after `patience`; the seconds until it returned."""
    start = time.monotonic()
    with anyio.move_on_after(patience) as scope:
        await call()
    elapsed = time.monotonic() - start
    assert scope.cancelled_caught, "the call ended before it was cancelled"
    return elapsed


class TestRedis:
    @pytest.mark.anyio
    async def test_cancelled_call_to_a_frozen_server_returns_at_once(
        self, dedicated_redis: Callable[..., RedisServer]
    ) -> None:
        """get and set on a frozen server: the caller's scope, not the timeout, ends them."""
        server = dedicated_redis()
        store = RedisSessionStore.from_url(f"{server.url}?timeout={TIMEOUT}")
        try:
            await store.set("id", DATA)
            server.pause()
            try:
                for call in (lambda: store.get("id"), lambda: store.set("id", DATA)):
                    assert await cancelled_after(call) < PROMPT
            finally:
                server.resume()
            with anyio.fail_after(TIMEOUT):
                assert await store.get("id") == DATA
        finally:
            with anyio.fail_after(TIMEOUT):
                await store.aclose()


@pytest.fixture
def locker(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second connection, to hold locks the store's statements then wait for."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def _waiting_statements(conn: psycopg.Connection[Any], table: str) -> int:
    """Statements on `table` that the server is still running or waiting to run."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
        " AND pid <> pg_backend_pid()",
        (f"%{table}%",),
    ).fetchone()
    assert row is not None
    return int(row[0])


class TestPostgres:
    @pytest.mark.anyio
    async def test_cancelled_statement_is_cancelled_on_the_server(
        self, postgres_url: str, postgres_table: str, locker: psycopg.Connection[Any]
    ) -> None:
        """A get blocked by a lock: the call returns at once, its statement does not linger."""
        store = PostgresSessionStore.from_url(
            f"{postgres_url}?table={postgres_table}&timeout={TIMEOUT}"
        )
        try:
            await store.set("id", DATA)
            with locker.transaction():
                locker.execute(f"LOCK TABLE {postgres_table} IN ACCESS EXCLUSIVE MODE")
                for call in (lambda: store.get("id"), lambda: store.set("id", DATA)):
                    assert await cancelled_after(call) < PROMPT
                with anyio.fail_after(PROMPT):
                    while True:  # the server reports a cancelled statement gone soon after
                        if not _waiting_statements(locker, postgres_table):
                            break
                        await anyio.sleep(0.05)
            with anyio.fail_after(TIMEOUT):
                assert await store.get("id") == DATA
        finally:
            with anyio.fail_after(TIMEOUT):
                await store.aclose()

    @pytest.mark.anyio
    async def test_cancelled_write_is_whole_or_absent(
        self, postgres_url: str, postgres_table: str, locker: psycopg.Connection[Any]
    ) -> None:
        """An update cancelled while it waits: afterwards the session is old or new, not torn."""
        store = PostgresSessionStore.from_url(
            f"{postgres_url}?table={postgres_table}&timeout={TIMEOUT}"
        )
        changed = DATA.granted("eip155:1", "eth_accounts")
        try:
            await store.set("id", DATA)
            with locker.transaction():
                locker.execute(f"LOCK TABLE {postgres_table} IN ACCESS EXCLUSIVE MODE")

                async def change() -> Any:
                    return await store.update("id", lambda _: changed)

                assert await cancelled_after(change) < PROMPT
            with anyio.fail_after(TIMEOUT):
                assert await store.get("id") in (DATA, changed)
                assert await store.update("id", lambda _: changed) == changed
        finally:
            with anyio.fail_after(TIMEOUT):
                await store.aclose()


class TestSqlite:
    @pytest.mark.anyio
    async def test_cancelled_write_waiting_for_the_file_never_runs_later(
        self, tmp_path: Path
    ) -> None:
        """Another connection holds the write lock: a set cancelled while it waits returns at
        once, and once the lock is free it does not write after all."""
        path = tmp_path / "sessions.db"
        store = LocalStorageSessionStore(path, timeout=TIMEOUT)
        changed = DATA.granted("eip155:1", "eth_accounts")
        try:
            await store.set("id", DATA)
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")

                async def change() -> None:
                    await store.set("id", changed)

                assert await cancelled_after(change) < PROMPT
            finally:
                other.execute("ROLLBACK")
                other.close()
            with anyio.fail_after(TIMEOUT):
                await store.set("after", DATA)  # queued behind the cancelled call, if it runs
                assert await store.get("id") == DATA
        finally:
            with anyio.fail_after(TIMEOUT):
                await store.aclose()
