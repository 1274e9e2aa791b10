"""PostgreSQL: a slide never overwrites a record changed since it was read, and a call's
statements get only the time its deadline has left."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import attrs
import psycopg
import pytest

from walletmesh_sessions import SessionData, SessionStoreConfig, StoreUnavailableError
from walletmesh_sessions._core.codec import decode_record, encode_record
from walletmesh_sessions._core.session_map import SessionMap
from walletmesh_sessions._postgres import bulk, ops, steps
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.testing import FakeClock

T = TypeVar("T")

LIFETIME_MS = 60_000
DATA = SessionData("id", "https://app.example", {"eip155:1": ["eth_accounts"]})
SLIDING = SessionStoreConfig(lifetime=LIFETIME_MS / 1000, refresh_on_access=True)


def before_statement(op: steps.Op[T], query: bytes, action: Callable[[], object]) -> steps.Op[T]:
    """`op`, with `action` run (as another connection would) just before its first statement
    of `query`; fails if `op` finished without one (the test would prove nothing)."""
    reply: Any = None
    ran = False
    while True:
        try:
            step = op.send(reply)
        except StopIteration as stop:
            assert ran, "the operation never reached the statement"
            result: T = stop.value
            return result
        if not ran and isinstance(step, steps.Statement) and step.query == query:
            action()
            ran = True
        reply = yield step


def rows(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    found = conn.execute(f"SELECT id, value FROM {table}").fetchall()
    return {bytes(raw).decode(): value for raw, value in found}


def written_by_another(sid: str) -> str:
    """A record another process wrote after the store's read: other data, a later expiry."""
    other = SessionData(sid, "https://other.example", {"eip155:10": ["eth_chainId"]})
    return encode_record(other, 1_800_000_000_000)


class TestSlidesAreCompareAndSet:
    """A slide is written only over the exact text read: a record another connection changed
    after the read keeps that change (no data written back, no write undone)."""

    @pytest.mark.anyio
    async def test_read_does_not_undo_a_later_write(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """A read slides the expiry; a write between its SELECT and its UPDATE survives."""
        theirs = written_by_another("id")

        def overwrite() -> None:
            sql = f"UPDATE {postgres_table} SET value = %s WHERE id = %s"
            assert postgres_conn.execute(sql, (theirs, b"id")).rowcount == 1

        store = PostgresSessionStore.from_url(
            postgres_url, SLIDING, table=postgres_table, clock=clock
        )
        async with store:
            await store.set("id", DATA)
            clock.advance(ms=1_000)
            op = before_statement(
                ops.read(store._spec, "id"), store._statements.replace_unchanged, overwrite
            )
            assert await store._run(steps.Plan("get", lambda: op)) == DATA
        assert rows(postgres_conn, postgres_table) == {"id": theirs}

    @pytest.mark.anyio
    async def test_read_slides_an_unchanged_record(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """Without a concurrent write, the same read does slide (the test above is not idle)."""
        store = PostgresSessionStore.from_url(
            postgres_url, SLIDING, table=postgres_table, clock=clock
        )
        async with store:
            await store.set("id", DATA)
            clock.advance(ms=1_000)
            op = ops.read(store._spec, "id")
            assert await store._run(steps.Plan("get", lambda: op)) == DATA
        stored = json.loads(rows(postgres_conn, postgres_table)["id"])
        assert stored["expiresAt"] == clock.now_ms + LIFETIME_MS

    @pytest.mark.anyio
    async def test_get_all_slides_only_unchanged_records(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """get_all's batched slide: records overwritten or deleted between the SELECT and the
        UPDATE keep what the other connection did; the rest slide."""
        ids = [f"s{n}" for n in range(6)]
        theirs = {sid: written_by_another(sid) for sid in ids[:2]}

        def interfere() -> None:
            sql = f"UPDATE {postgres_table} SET value = %s WHERE id = %s"
            for sid, text in theirs.items():
                assert postgres_conn.execute(sql, (text, sid.encode())).rowcount == 1
            deleted = f"DELETE FROM {postgres_table} WHERE id = %s"
            assert postgres_conn.execute(deleted, (b"s2",)).rowcount == 1

        store = PostgresSessionStore.from_url(
            postgres_url, SLIDING, table=postgres_table, clock=clock
        )
        async with store:
            for sid in ids:
                await store.set(sid, attrs.evolve(DATA, id=sid))
            clock.advance(ms=1_000)
            found = SessionMap.of_records(decode_record)
            op = before_statement(
                bulk.live_page(store._spec, None, 100, into=found),
                store._statements.slide_many_unchanged,
                interfere,
            )
            await store._run(steps.Plan("get_all", lambda: op))
            assert set(found) == set(ids)
        after = rows(postgres_conn, postgres_table)
        assert set(after) == set(ids) - {"s2"}
        for sid in ids[:2]:
            assert after[sid] == theirs[sid]
        for sid in ids[3:]:
            assert json.loads(after[sid])["expiresAt"] == clock.now_ms + LIFETIME_MS


TIMEOUT = 3.0
# Spent waiting for the first step (the schema check) before the call's statement starts.
EATEN = 2.4
# A call given a fresh timeout after that step would end near EATEN + TIMEOUT: halfway.
BOUND = TIMEOUT + EATEN / 2


class TestDeadlineLeftOver:
    """Every step of a call is bounded by what is left of the call's one deadline: time spent
    on an earlier step is not given back to the next one."""

    @pytest.mark.anyio
    async def test_statement_gets_only_the_time_left(
        self, postgres_url: str, postgres_table: str, postgres_conn: psycopg.Connection[Any]
    ) -> None:
        """A first call waits most of its timeout for the schema lock, then its statement
        blocks on a locked row: it fails at its deadline, not a full timeout after the lock."""
        async with PostgresSessionStore.from_url(postgres_url, table=postgres_table) as setup:
            await setup.set("id", DATA)
        lock_key = f"walletmesh_sessions:{postgres_table}"
        with psycopg.connect(postgres_url) as holder:  # one transaction, until the end
            holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key,))
            locked = f"SELECT value FROM {postgres_table} WHERE id = %s FOR UPDATE"
            holder.execute(locked, (b"id",))
            store = PostgresSessionStore.from_url(
                postgres_url, table=postgres_table, timeout=TIMEOUT
            )
            took: list[float] = []
            errors: list[StoreUnavailableError] = []

            async def call() -> None:
                start = time.monotonic()
                try:
                    await store.update("id", lambda data: attrs.evolve(data, origin="x"))
                except StoreUnavailableError as exc:
                    errors.append(exc)
                took.append(time.monotonic() - start)

            async with store:
                with anyio.fail_after(TIMEOUT + EATEN + 10):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(call)
                        await anyio.sleep(EATEN)
                        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key,))
            holder.rollback()
        assert len(errors) == 1, "the call did not fail: the row was not locked"
        assert took[0] >= TIMEOUT - 0.1
        assert took[0] < BOUND, f"the call took {took[0]:.2f} s, its timeout is {TIMEOUT} s"
        assert rows(postgres_conn, postgres_table) == {"id": encode_record(DATA, None)}
