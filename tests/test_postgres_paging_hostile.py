"""PostgreSQL walks in pages under pressure: rows and locks of other connections during a
walk, odd ids at page ends, ties of the sort keys, timeouts and cancellation mid-walk, tables
made by the previous release, the lazy map get_all returns, and the command line."""

from __future__ import annotations

import copy
import pickle
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walletmesh_sessions import (
    CorruptRecordError,
    SessionData,
    SessionStoreConfig,
    StoreUnavailableError,
)
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._postgres import bulk, sql
from walletmesh_sessions._postgres.steps import Plan
from walletmesh_sessions._tools import cli as _cli
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.testing import FakeClock

PAGE = 7  # small and odd: page ends fall everywhere
DATA = SessionData("s", "https://app.example", {"eip155:1": ["eth_accounts"]})


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "PAGE_ROWS", PAGE)


def _key(n: int) -> str:
    return f"k{n:05}"


def _record(sid: str, expires_at: int | None, created_at: int | None = None) -> str:
    return encode_record(attrs.evolve(DATA, id=sid, created_at=created_at), expires_at)


def _plant(conn: psycopg.Connection[Any], table: str, rows: list[tuple[bytes, str]]) -> None:
    with conn.cursor().copy(f"COPY {table} (id, value) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _ids(conn: psycopg.Connection[Any], table: str) -> set[bytes]:
    return {bytes(raw) for (raw,) in conn.execute(f"SELECT id FROM {table}")}


def _store(
    url: str, table: str, clock: FakeClock, *, timeout: float = 5.0, **config: Any
) -> PostgresSessionStore:
    config = {"lifetime": 600, **config}
    return PostgresSessionStore.from_url(
        url, SessionStoreConfig(**config), table=table, clock=clock, timeout=timeout
    )


def _between_pages(store: PostgresSessionStore, act: Callable[[Any], object]) -> list[str]:
    """Run `act` on each page's result after the page's call, as another connection would."""
    calls: list[str] = []
    run = store._run

    async def run_then_act(plan: Plan) -> Any:
        result = await run(plan)
        calls.append(plan.name)
        act(result)
        return result

    store._run = run_then_act  # type: ignore[method-assign]
    return calls


def _other(url: str) -> psycopg.Connection[Any]:
    """A connection of another program, in a transaction of its own (not autocommit)."""
    return psycopg.connect(url, connect_timeout=5)


def _wait_for_lock_wait(conn: psycopg.Connection[Any], seconds: float = 5.0) -> None:
    """Until some backend waits on a lock (the store's page, blocked)."""
    end = time.monotonic() + seconds
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    while time.monotonic() < end:
        row = conn.execute(query).fetchone()
        if row is not None and row[0] > 0:
            return
        time.sleep(0.02)
    raise AssertionError("no statement ever waited for the lock")


async def _release_when_blocked(
    watcher: psycopg.Connection[Any], holder: psycopg.Connection[Any], *, commit: bool
) -> None:
    """In a thread: wait until a statement waits for `holder`'s lock, then end `holder`'s
    transaction (commit or roll back)."""

    def work() -> None:
        _wait_for_lock_wait(watcher)
        if commit:
            holder.commit()
        else:
            holder.rollback()

    await anyio.to_thread.run_sync(work)


# ---------------------------------------------------------------------------------------------
# clear under other connections' writes


class TestClearUnderConcurrentWrites:
    @pytest.mark.anyio
    async def test_a_row_deleted_by_another_transaction_does_not_end_the_walk(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """Another program deletes one row of clear's first page (a logout, a rotate, another
        process's clean_expired) and commits while clear's DELETE waits for that row: every
        other row that existed when clear started must still be gone when it returns."""
        async with _store(postgres_url, postgres_table, clock) as store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), None)) for n in range(6 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            with _other(postgres_url) as holder:
                holder.execute(f"DELETE FROM {postgres_table} WHERE id = %s", (_key(3).encode(),))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(store.clear)
                    await _release_when_blocked(postgres_conn, holder, commit=True)
            left = _ids(postgres_conn, postgres_table)
        assert left == set(), f"{len(left)} rows that existed at clear's start are left"

    @pytest.mark.anyio
    async def test_a_row_updated_by_another_transaction_is_still_removed(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """A row of the page rewritten by another transaction while the DELETE waits for it is
        removed once that commits, and the walk goes on."""
        async with _store(postgres_url, postgres_table, clock) as store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), None)) for n in range(6 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            with _other(postgres_url) as holder:
                holder.execute(
                    f"UPDATE {postgres_table} SET value = %s WHERE id = %s",
                    (_record("x", None), _key(3).encode()),
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(store.clear)
                    await _release_when_blocked(postgres_conn, holder, commit=True)
            assert _ids(postgres_conn, postgres_table) == set()

    @pytest.mark.anyio
    async def test_two_clears_at_once_leave_nothing(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """Two processes clearing the same table at once: both complete, nothing is left."""
        async with (
            _store(postgres_url, postgres_table, clock) as one,
            _store(postgres_url, postgres_table, clock) as two,
        ):
            await one.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), None)) for n in range(40 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.clear)
                tg.start_soon(two.clear)
        assert _ids(postgres_conn, postgres_table) == set()


# ---------------------------------------------------------------------------------------------
# walks by id: odd ids at page ends, rows coming and going


ALPHABET = ["a", "b", "\x00", "\x01", "é", "\uffff", "\U0001f600", "\x7f", "z"]


def _odd_ids(rng: random.Random, count: int) -> list[str]:
    """Short ids over an alphabet that makes many of them prefixes of others (NUL after a
    prefix, multi-byte characters whose first byte sorts after ASCII)."""
    found: set[str] = set()
    while len(found) < count:
        found.add("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4))))
    return sorted(found)


class OddChurn:
    """Between pages: delete a random row, add a random new id; all rows readable and live,
    plus non-UTF-8 and empty raw ids planted at the start (only some walks show them)."""

    def __init__(self, conn: psycopg.Connection[Any], table: str, now: int, seed: int) -> None:
        self.conn, self.table, self.now = conn, table, now
        self.rng = random.Random(seed)
        ids = _odd_ids(self.rng, 12 * PAGE)
        self.start = {sid.encode() for sid in ids}
        self.foreign = {b"", b"\xff", b"a\xff", b"\xc3", b"a\x00\xfe"}
        self.deleted: set[bytes] = set()
        self.added: set[bytes] = set()
        self.free = [sid.encode() for sid in _odd_ids(self.rng, 30 * PAGE) if sid not in ids]

    def plant(self) -> None:
        rows = [(raw, _record(raw.decode(), self.now + 60_000)) for raw in self.start]
        rows += [(raw, _record("f", self.now + 60_000)) for raw in self.foreign]
        _plant(self.conn, self.table, rows)

    def __call__(self, result: Any) -> None:
        if result[1] is None:
            return
        alive = sorted(self.start - self.deleted)
        gone = self.rng.choice(alive)
        self.conn.execute(f"DELETE FROM {self.table} WHERE id = %s", (gone,))
        self.deleted.add(gone)
        new = self.free.pop(self.rng.randrange(len(self.free)))
        self.conn.execute(
            f"INSERT INTO {self.table} (id, value) VALUES (%s, %s)",
            (new, _record(new.decode(), self.now + 60_000)),
        )
        self.added.add(new)

    def check(self, seen: list[bytes], *, foreign: bool) -> None:
        assert len(seen) == len(set(seen)), "a row was seen twice"
        stayed = self.start - self.deleted
        if foreign:
            stayed |= self.foreign
        assert stayed <= set(seen), f"rows that stayed were skipped: {stayed - set(seen)!r}"
        assert set(seen) <= stayed | self.added | self.deleted
        assert self.deleted
        assert self.added


class TestWalksByIdWithOddIds:
    @pytest.mark.anyio
    @pytest.mark.parametrize("walk", ["get_all", "inspect", "iter_sessions", "iter_records"])
    @pytest.mark.parametrize("seed", [1, 2])
    async def test_each_staying_row_once(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
        walk: str,
        seed: int,
    ) -> None:
        store = _store(postgres_url, postgres_table, clock)
        async with store:
            await store.create_schema()
            churn = OddChurn(postgres_conn, postgres_table, clock.now_ms, seed)
            churn.plant()
            _between_pages(store, churn)
            if walk == "get_all":
                found = await store.get_all()
                seen = [sid.encode() for sid in found]
                assert len(found) == len(seen)
                churn.check(seen, foreign=False)
            elif walk == "iter_sessions":
                seen = [sid.encode() async for sid, _data in store.iter_sessions(PAGE)]
                churn.check(seen, foreign=False)
            else:
                records = (
                    await store.inspect()
                    if walk == "inspect"
                    else [r async for r in store.iter_records(PAGE)]
                )
                # Non-UTF-8 ids are shown with U+FFFD (no planted UTF-8 id has it): apart.
                ids = [r.session_id for r in records]
                foreign = [sid for sid in ids if not sid or "\ufffd" in sid]
                assert len(foreign) == len(churn.foreign)
                churn.check(
                    [sid.encode() for sid in ids if sid and "\ufffd" not in sid], foreign=False
                )

    @pytest.mark.anyio
    async def test_clear_removes_every_odd_id_while_rows_come_and_go(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        store = _store(postgres_url, postgres_table, clock)
        async with store:
            await store.create_schema()
            churn = OddChurn(postgres_conn, postgres_table, clock.now_ms, 3)
            churn.plant()
            _between_pages(store, churn)
            await store.clear()
        left = _ids(postgres_conn, postgres_table)
        assert not left & (churn.start | churn.foreign), "a row that existed at the start is left"


# ---------------------------------------------------------------------------------------------
# clean_expired: ties of the sort keys at page ends, slides and writes between pages


class TestCleanExpiredUnderChurn:
    @pytest.mark.anyio
    @pytest.mark.parametrize("max_lifetime", [None, 3600])
    async def test_ties_slides_and_writes_between_pages(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
        max_lifetime: int | None,
    ) -> None:
        """Every row expired at the start (by expiresAt, or by createdAt under max_lifetime,
        many sharing a key across page ends) is removed; no live row and no unreadable one is;
        live rows slid by another connection between pages stay."""
        config: dict[str, Any] = {} if max_lifetime is None else {"max_lifetime": max_lifetime}
        store = _store(postgres_url, postgres_table, clock, **config)
        now = clock.now_ms
        async with store:
            await store.create_schema()
            rows: list[tuple[bytes, str]] = []
            expired: set[bytes] = set()
            live: set[bytes] = set()
            for n in range(20 * PAGE):
                sid = _key(n)
                kind = n % 4
                if kind == 0:  # expired by expiresAt: three keys only, ties across pages
                    rows.append((sid.encode(), _record(sid, now - 1 - n % 3, now - 10)))
                    expired.add(sid.encode())
                elif kind == 1 and max_lifetime is not None:  # old createdAt, later expiresAt
                    rows.append(
                        (sid.encode(), _record(sid, now + 600_000, now - 3_600_001 - n % 2))
                    )
                    expired.add(sid.encode())
                else:  # live; created just within the absolute timeout
                    rows.append((sid.encode(), _record(sid, now + 1 + n % 2, now - 3_599_000)))
                    live.add(sid.encode())
            bad = {f"bad{n:03}".encode() for n in range(2 * PAGE)}
            rows += [(raw, '{"data":5,"expiresAt":1}') for raw in bad]
            _plant(postgres_conn, postgres_table, rows)
            order = sorted(live)
            moved: set[bytes] = set()

            def between(result: Any) -> None:
                # A slide by another connection: a live row's expiry moves later (the digits
                # of expiresAt rewritten); and a new expired row behind every cursor.
                if not order:
                    return
                raw = order.pop()
                value = _record(raw.decode(), now + 900_000, now - 3_599_000)
                postgres_conn.execute(
                    f"UPDATE {postgres_table} SET value = %s WHERE id = %s", (value, raw)
                )
                moved.add(raw)

            _between_pages(store, between)
            removed = await store.clean_expired()
        left = _ids(postgres_conn, postgres_table)
        assert removed == len(expired)
        assert left == live | bad
        assert moved

    @pytest.mark.anyio
    @pytest.mark.parametrize("by_created", [False, True])
    async def test_all_keys_tied_odd_ids_rows_coming_and_going(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
        by_created: bool,
    ) -> None:
        """Every candidate shares one sort key (the walk goes by id alone), ids are prefixes of
        each other with NUL and multi-byte characters; between pages an expired row ahead is
        deleted and a new expired one added anywhere. Each expired row that stayed is removed,
        once; live and non-UTF-8 ones stay."""
        config: dict[str, Any] = {"max_lifetime": 3600} if by_created else {}
        store = _store(postgres_url, postgres_table, clock, **config)
        now = clock.now_ms
        rng = random.Random(11 + by_created)
        ids = _odd_ids(rng, 20 * PAGE)
        spare = [sid for sid in _odd_ids(rng, 40 * PAGE) if sid not in ids]

        def expired(sid: str) -> str:
            if by_created:
                return _record(sid, now + 60_000, now - 3_600_001)
            return _record(sid, now - 5, now - 10)

        start = {sid.encode() for sid in ids[::2]}
        live = {sid.encode() for sid in ids[1::2]}
        foreign = {b"\xff", b"a\xfe", b""}
        async with store:
            await store.create_schema()
            rows = [(raw, expired(raw.decode())) for raw in start]
            rows += [(raw, _record(raw.decode(), now + 60_000, now - 10)) for raw in live]
            rows += [(raw, expired("f")) for raw in foreign]
            _plant(postgres_conn, postgres_table, rows)
            deleted: set[bytes] = set()

            def between(result: Any) -> None:
                if result[1] is None:
                    return
                gone = rng.choice(sorted(start - deleted))
                postgres_conn.execute(f"DELETE FROM {postgres_table} WHERE id = %s", (gone,))
                deleted.add(gone)
                new = spare.pop(rng.randrange(len(spare)))
                postgres_conn.execute(
                    f"INSERT INTO {postgres_table} (id, value) VALUES (%s, %s)",
                    (new.encode(), expired(new)),
                )

            calls = _between_pages(store, between)
            removed = await store.clean_expired()
        left = _ids(postgres_conn, postgres_table)
        assert not left & start, "an expired row that stayed was left"
        assert live | foreign <= left
        assert removed >= len(start - deleted)
        assert deleted
        assert len(calls) > 3

    @pytest.mark.anyio
    async def test_two_cleans_at_once(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """Two processes cleaning at once: each expired row removed by exactly one of them,
        every live row kept."""
        now = clock.now_ms
        async with (
            _store(postgres_url, postgres_table, clock, max_lifetime=3600) as one,
            _store(postgres_url, postgres_table, clock, max_lifetime=3600) as two,
        ):
            await one.create_schema()
            rows = [
                (_key(n).encode(), _record(_key(n), now - 1 - n % 2, now - 3_600_001 - n % 3))
                if n % 3
                else (_key(n).encode(), _record(_key(n), now + 1, now))
                for n in range(30 * PAGE)
            ]
            _plant(postgres_conn, postgres_table, rows)
            counts: list[int] = []

            async def clean(store: PostgresSessionStore) -> None:
                counts.append(await store.clean_expired())

            async with anyio.create_task_group() as tg:
                tg.start_soon(clean, one)
                tg.start_soon(clean, two)
        live = {raw for raw, _ in rows[::3]}
        assert _ids(postgres_conn, postgres_table) == live
        assert sum(counts) == len(rows) - len(live)


# ---------------------------------------------------------------------------------------------
# every page within the timeout, even when another transaction holds a lock


WALKS: dict[str, Callable[[PostgresSessionStore], Any]] = {
    "get_all": lambda store: store.get_all(),
    "inspect": lambda store: store.inspect(),
    "clean_expired": lambda store: store.clean_expired(),
    "clear": lambda store: store.clear(),
}


async def _iterate(store: PostgresSessionStore) -> None:
    async for _item in store.iter_sessions(PAGE):
        pass


class TestLocksAndTimeouts:
    @pytest.mark.anyio
    async def test_a_table_lock_fails_each_walk_within_the_timeout_and_leaves_nothing(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """LOCK TABLE by another transaction: each walk fails with StoreUnavailableError within
        its timeout; once the lock is gone, nothing the failed walks started runs after all
        (no row removed), and the store works."""
        timeout = 0.5
        store = _store(postgres_url, postgres_table, clock, timeout=timeout)
        now = clock.now_ms
        async with store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), now - 1)) for n in range(3 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            with _other(postgres_url) as holder:
                holder.execute(f"LOCK TABLE {postgres_table} IN ACCESS EXCLUSIVE MODE")
                for name, walk in [*WALKS.items(), ("iter_sessions", _iterate)]:
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailableError):
                        await walk(store)
                    elapsed = time.monotonic() - started
                    assert elapsed < timeout + 1.5, (name, elapsed)
                holder.rollback()
            await anyio.sleep(0.3)
            assert len(_ids(postgres_conn, postgres_table)) == 3 * PAGE
            assert len(await store.inspect()) == 3 * PAGE
            assert await store.clean_expired() == 3 * PAGE

    @pytest.mark.anyio
    async def test_a_locked_row_in_a_later_page_of_clear(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """SELECT ... FOR UPDATE on a row of clear's third page: the first two pages are
        removed, the third fails within the timeout and removes nothing, not even later; a
        clear after the lock is gone empties the table."""
        store = _store(postgres_url, postgres_table, clock, timeout=0.5)
        async with store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), None)) for n in range(5 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            with _other(postgres_url) as holder:
                holder.execute(
                    f"SELECT 1 FROM {postgres_table} WHERE id = %s FOR UPDATE",
                    (_key(2 * PAGE + 3).encode(),),
                )
                with pytest.raises(StoreUnavailableError):
                    await store.clear()
                holder.rollback()
            await anyio.sleep(0.3)
            assert _ids(postgres_conn, postgres_table) == {raw for raw, _ in rows[2 * PAGE :]}
            await store.clear()
            assert _ids(postgres_conn, postgres_table) == set()


# ---------------------------------------------------------------------------------------------
# cancellation by the caller mid-walk


def _idle_in_transaction(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        " AND pid <> pg_backend_pid()"
    ).fetchone()
    return 0 if row is None else int(row[0])


class TestCancellation:
    @pytest.mark.anyio
    @pytest.mark.parametrize("walk", sorted(WALKS))
    async def test_cancelled_between_pages(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
        walk: str,
    ) -> None:
        """Cancelled after its second page: what the pages did stays, whole pages only; no
        connection is left in a transaction; the store works after."""
        store = _store(postgres_url, postgres_table, clock)
        now = clock.now_ms
        async with store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), now - 1)) for n in range(5 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            with anyio.CancelScope() as scope:

                def cancel_after_two(_result: Any) -> None:
                    if len(calls) >= 2:
                        scope.cancel()

                calls = _between_pages(store, cancel_after_two)
                await WALKS[walk](store)
            assert scope.cancelled_caught
            left = _ids(postgres_conn, postgres_table)
            if walk in ("clear", "clean_expired"):
                # Two whole pages, or three: the third page's statement may have run before
                # the cancellation reached it (autocommit), but never part of a page.
                assert left in ({raw for raw, _ in rows[k * PAGE :]} for k in (2, 3))
            else:
                assert len(left) == 5 * PAGE
            assert _idle_in_transaction(postgres_conn) == 0
            del store._run  # the hook
            assert len(await store.inspect()) == len(left)
            await store.clear()
            assert _ids(postgres_conn, postgres_table) == set()

    @pytest.mark.anyio
    @pytest.mark.parametrize("walk", ["clear", "clean_expired"])
    async def test_cancelled_while_a_page_waits_for_a_lock(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
        walk: str,
    ) -> None:
        """A page blocked on a row lock is cancelled by its caller: the statement is cancelled
        on the server too (when the lock goes, it removes nothing), within the call's timeout,
        and the store works after."""
        timeout = 1.0
        store = _store(postgres_url, postgres_table, clock, timeout=timeout)
        now = clock.now_ms
        async with store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(_key(n), now - 1)) for n in range(3 * PAGE)]
            _plant(postgres_conn, postgres_table, rows)
            with _other(postgres_url) as holder:
                holder.execute(
                    f"SELECT 1 FROM {postgres_table} WHERE id = %s FOR UPDATE",
                    (_key(1).encode(),),
                )
                started = time.monotonic()
                with anyio.move_on_after(0.2) as scope:
                    await WALKS[walk](store)
                assert scope.cancelled_caught
                assert time.monotonic() - started < timeout + 1.5
                holder.rollback()
            await anyio.sleep(0.3)
            assert len(_ids(postgres_conn, postgres_table)) == 3 * PAGE
            assert _idle_in_transaction(postgres_conn) == 0
            await store.clear()
            assert _ids(postgres_conn, postgres_table) == set()

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    @pytest.mark.anyio
    async def test_a_page_out_of_time_says_so_on_trio(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """A page waiting for a lock past the timeout fails naming the timeout, not a crash
        of a server that is up."""
        store = PostgresSessionStore.from_url(
            postgres_url, table=postgres_table, timeout=0.4, options="-c search_path=public"
        )
        async with store:
            await store.create_schema()
            with _other(postgres_url) as holder:
                holder.execute(f"LOCK TABLE {postgres_table} IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(StoreUnavailableError) as info:
                    await store.get_all()
                holder.rollback()
            assert "within the timeout" in str(info.value), str(info.value)
            assert "terminated abnormally" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# the generated expression against the previous one, on the server


def _old_number(path: str, absent: str) -> str:
    """The previous release's `sql._number`: bounded repetitions for every text."""
    pattern = r"^-?[0-9]{1,255}(?:\.[0-9]{1,255})?(?:[eE][+-]?[0-9]{1,3})?$"
    json_value = f"(replace(value, E'\\\\u0000', E'\\\\u0001')::json {path})::text"
    numeric = f"COALESCE(substring({json_value} FROM '{pattern}')::numeric, {absent})"
    double = f"floor(LEAST(GREATEST({numeric}, -1e300), 1e300)::float8)"
    return f"LEAST(GREATEST({double}, -9e18), 9e18)::bigint"


OLD_EXPIRES_AT = "NULLIF(" + _old_number("-> 'expiresAt'", "0") + ", 0)"
OLD_CREATED_AT = _old_number("-> 'data' -> 'createdAt'", "9e18")


@st.composite
def json_numbers(draw: st.DrawFn) -> str:
    """JSON number texts, their digit runs and length often around the 255 bounds."""
    runs = st.one_of(st.integers(1, 6), st.integers(245, 262))
    first = draw(st.sampled_from("123456789"))
    whole = "0" if draw(st.booleans()) and draw(st.booleans()) else first + "7" * (draw(runs) - 1)
    text = ("-" if draw(st.booleans()) else "") + whole
    if draw(st.booleans()):
        text += "." + draw(st.text("0123456789", min_size=1, max_size=1)) * draw(runs)
    if draw(st.booleans()):
        sign = draw(st.sampled_from(["", "+", "-"]))
        exponent = draw(st.sampled_from(["0", "1", "12", "123", "99", "300", "0001", "1234"]))
        if sign == "-" and len(exponent.lstrip("0")) >= 3:
            exponent = "99"  # no underflow here: see the createdAt test below
        text += draw(st.sampled_from("eE")) + sign + exponent
    return text


class TestExpression:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(numbers=st.lists(json_numbers(), min_size=1, max_size=25))
    def test_new_expressions_read_every_number_as_the_old_ones(
        self, postgres_conn: psycopg.Connection[Any], numbers: list[str]
    ) -> None:
        values = [f'{{"data":{{"createdAt":{n}}},"expiresAt":{n}}}' for n in numbers]
        rows = postgres_conn.execute(
            f"SELECT {sql.EXPIRES_AT}, {OLD_EXPIRES_AT}, {sql.CREATED_AT}, {OLD_CREATED_AT}"
            " FROM unnest(%s::text[]) AS v(value)",
            (values,),
        ).fetchall()
        for number, (new, old, new_created, old_created) in zip(numbers, rows, strict=True):
            assert (new, new_created) == (old, old_created), number

    def test_the_expressions_differ_only_in_the_short_pattern(self) -> None:
        assert sql.EXPIRES_AT != OLD_EXPIRES_AT
        assert re.sub(r"CASE WHEN .*? END", "X", sql.CREATED_AT).count("X") == 1

    @pytest.mark.anyio
    async def test_a_tiny_created_at_is_stored(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """A record another program wrote with a createdAt the float cast underflows on is a
        row like any other: the new createdAt index must not refuse it."""
        async with _store(postgres_url, postgres_table, clock) as store:
            await store.create_schema()
            text = '{"data":{"id":"x","origin":"o","createdAt":1e-999},"expiresAt":1}'
            postgres_conn.execute(
                f"INSERT INTO {postgres_table} (id, value) VALUES (%s, %s)", (b"tiny", text)
            )
            assert len(await store.inspect()) == 1


# ---------------------------------------------------------------------------------------------
# a table made by the previous release: the previous expression, no createdAt index


def _make_old_table(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        f"CREATE TABLE {table} (id bytea PRIMARY KEY, value text NOT NULL,"
        f" expires_at bigint GENERATED ALWAYS AS ({OLD_EXPIRES_AT}) STORED)"
    )
    conn.execute(
        f"CREATE INDEX {table}_expires_at ON {table} (expires_at) WHERE expires_at IS NOT NULL"
    )


class TestOlderTable:
    @pytest.mark.anyio
    async def test_clean_expired_under_max_lifetime_without_the_index(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """On an older table the store works as is (no index built on its first call), and
        clean_expired under max_lifetime finds every old record, createdAt ties across page
        ends included, a page per call; create_schema then adds the index, and the result is
        the same."""
        _make_old_table(postgres_conn, postgres_table)
        now = clock.now_ms
        rows: list[tuple[bytes, str]] = []
        old: set[bytes] = set()
        for n in range(12 * PAGE):
            sid = _key(n)
            if n % 3 == 0:
                rows.append((sid.encode(), _record(sid, now + 60_000, now - 3_600_001 - n % 2)))
                old.add(sid.encode())
            elif n % 3 == 1:
                rows.append((sid.encode(), _record(sid, now - 5, now - 10)))
                old.add(sid.encode())
            else:
                rows.append((sid.encode(), _record(sid, now + 60_000, now - 3_000_000)))
        rows.append((b"nocreated", _record("n", now + 60_000)))
        rows.append((b"bad", '{"data":5,"expiresAt":1}'))
        _plant(postgres_conn, postgres_table, rows)
        keep = {raw for raw, _ in rows} - old
        store = _store(postgres_url, postgres_table, clock, max_lifetime=3600)
        async with store:
            await store.set("fresh", attrs.evolve(DATA, id="fresh"))
            keep.add(b"fresh")
            calls = _between_pages(store, lambda _r: None)
            assert await store.clean_expired() == len(old)
            assert len(calls) >= len(old) // PAGE
            assert _ids(postgres_conn, postgres_table) == keep
            index = (
                f"SELECT count(*) FROM pg_indexes WHERE indexname = '{postgres_table}_created_at'"
            )
            assert postgres_conn.execute(index).fetchone() == (0,)
            assert len(await store.get_all()) == len(keep) - 1  # all but the unreadable
            # Old records again, now through the index create_schema adds.
            _plant(postgres_conn, postgres_table, [r for r in rows if r[0] in old])
            await store.create_schema()
            assert postgres_conn.execute(index).fetchone() == (1,)
            assert await store.clean_expired() == len(old)
            assert _ids(postgres_conn, postgres_table) == keep
            # The generated column of the older table still reads as the new expression.
            same = postgres_conn.execute(
                f"SELECT count(*) FROM {postgres_table}"
                f" WHERE expires_at IS DISTINCT FROM ({sql.EXPIRES_AT})"
            ).fetchone()
            assert same == (0,)

    @pytest.mark.anyio
    async def test_create_schema_on_an_older_table_with_a_tiny_created_at(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        _make_old_table(postgres_conn, postgres_table)
        text = '{"data":{"id":"x","origin":"o","createdAt":1e-999},"expiresAt":1}'
        postgres_conn.execute(
            f"INSERT INTO {postgres_table} (id, value) VALUES (%s, %s)", (b"tiny", text)
        )
        async with _store(postgres_url, postgres_table, clock) as store:
            await store.create_schema()
            assert len(await store.inspect()) == 1


# ---------------------------------------------------------------------------------------------
# the lazy mapping get_all returns


def _variants(data: SessionData, expires_at: int) -> Iterator[str]:
    """The record as this library writes it, and as other programs might lay it out."""
    import json

    text = encode_record(data, expires_at)
    yield text
    parsed = json.loads(text)
    yield json.dumps(parsed, indent=2)
    yield json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    yield json.dumps(dict(reversed(list(parsed.items()))))


class TestLazyMap:
    @pytest.mark.anyio
    async def test_values_equal_get_and_the_mapping_contract(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        store = _store(postgres_url, postgres_table, clock)
        now = clock.now_ms
        odd = [
            attrs.evolve(DATA, id="nul\x00id", origin="https://a.example/\x00"),
            attrs.evolve(DATA, id="emoji", origin="https://\U0001f600.example"),
            attrs.evolve(DATA, id="perm", permissions={"eip155:1": ["a\u2028b", "\ud7ff"]}),
            attrs.evolve(DATA, id="big", created_at=2**53 - 1),
        ]
        async with store:
            await store.create_schema()
            rows: list[tuple[bytes, str]] = []
            for n, data in enumerate(odd * 3):
                for m, text in enumerate(_variants(data, now + 60_000)):
                    rows.append((f"v{n}-{m}\x00{data.id}".encode(), text))
            rows.append((b"expired", _record("e", now - 1)))
            rows.append((b"bad", '{"data":{"id":1},"expiresAt":1}'))
            _plant(postgres_conn, postgres_table, rows)
            found = await store.get_all()
            expected = {}
            for raw, _text in rows:
                try:
                    got = await store.get(raw.decode())
                except CorruptRecordError:
                    continue
                if got is not None:
                    expected[raw.decode()] = got
            assert len(expected) >= len(odd) * 3  # the library's own layout, at least
            # Reading every value: no CorruptRecordError for an admitted record.
            assert dict(found) == expected
            assert found == expected
            assert expected == found
            assert found == found
            assert (found != expected) is False
            assert len(found) == len(expected) == len(list(found))
            assert all(sid in found for sid in expected)
            assert "expired" not in found
            assert "bad" not in found
            others: list[object] = [5, [], None, b"perm"]
            assert not any(other in found for other in others)
            assert set(found.keys()) == set(expected)
            assert sorted(found.items(), key=lambda kv: kv[0]) == sorted(expected.items())
            assert found.get("nope") is None
            with pytest.raises(TypeError):
                hash(found)
            for clone in (
                copy.copy(found),
                copy.deepcopy(found),
                pickle.loads(pickle.dumps(found)),
            ):
                assert clone == expected
            # The map is what the walk read: later writes and removals do not change it.
            await store.clear()
            assert found == expected
            assert found[next(iter(expected))] == expected[next(iter(expected))]


# ---------------------------------------------------------------------------------------------
# the command line on PostgreSQL, walking in small pages


class TestCommandLine:
    def test_stats_list_clean_clear(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """More rows than the command line's batch of 500 and many pages of clean and clear:
        counts are exact, clean removes the expired, clear everything."""
        import json

        url = f"{postgres_url}?table={postgres_table}"
        now = int(time.time() * 1000)
        live = [(f"live{n:04}".encode(), _record(f"l{n}", now + 3_600_000)) for n in range(700)]
        expired = [(f"old{n:04}".encode(), _record(f"o{n}", now - 3_600_000)) for n in range(300)]
        bad = [(f"bad{n:02}".encode(), '{"data":5,"expiresAt":1}') for n in range(9)]
        store = PostgresSessionStore.from_url(postgres_url, table=postgres_table)
        anyio.run(store.create_schema)
        anyio.run(store.aclose)
        _plant(postgres_conn, postgres_table, live + expired + bad)
        capsys.readouterr()
        assert _cli.main(["--store", url, "stats", "--json"]) == 0
        stats = json.loads(capsys.readouterr().out)
        assert (stats["sessions"], stats["expired"], stats["unreadable"]) == (700, 300, 9), stats
        assert _cli.main(["--store", url, "list", "--jsonl"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1009
        assert _cli.main(["--store", url, "clean"]) == 0
        assert "removed 300 expired session(s)" in capsys.readouterr().out
        assert _ids(postgres_conn, postgres_table) == {raw for raw, _ in live + bad}
        assert _cli.main(["--store", url, "clear", "--yes"]) == 0
        assert "removed 709 record(s)" in capsys.readouterr().out
        assert _ids(postgres_conn, postgres_table) == set()
