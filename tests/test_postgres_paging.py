"""PostgreSQL bulk calls walk the table in pages, each page a call of its own: a walk longer
than the timeout completes, no row that stays is skipped or repeated while rows come and go
around the cursor, unreadable rows stay, and clean_expired finds its candidates through the
indexes on expires_at and on the record's createdAt."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from typing import Any

import attrs
import psycopg
import pytest

from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._core.session_map import SessionMap
from walletmesh_sessions._postgres import bulk, sql
from walletmesh_sessions._postgres.steps import Plan
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.testing import FakeClock

PAGE = 37  # small and odd: page ends fall everywhere
ROWS = 2_000
LIFETIME_S = 600
DATA = SessionData("s", "https://app.example", {"eip155:1": ["eth_accounts"]})
# Unreadable records: the first two are expiry candidates (their expiresAt reads as 1).
UNREADABLE = ('{"data":5,"expiresAt":1}', '{"data":{"id":1,"origin":"o"},"expiresAt":1}', "[]")


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "PAGE_ROWS", PAGE)


def _key(n: int) -> str:
    return f"k{n:05}"


def _record(n: int, expires_at: int | None, created_at: int | None = None) -> str:
    return encode_record(attrs.evolve(DATA, id=_key(n), created_at=created_at), expires_at)


def _plant(conn: psycopg.Connection[Any], table: str, rows: list[tuple[bytes, str]]) -> None:
    with conn.cursor().copy(f"COPY {table} (id, value) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _ids(conn: psycopg.Connection[Any], table: str) -> set[bytes]:
    return {bytes(raw) for (raw,) in conn.execute(f"SELECT id FROM {table}")}


def _store(url: str, table: str, clock: FakeClock, **config: Any) -> PostgresSessionStore:
    config = {"lifetime": LIFETIME_S, **config}
    return PostgresSessionStore.from_url(
        url, SessionStoreConfig(**config), table=table, clock=clock
    )


def calls_of(
    store: PostgresSessionStore, between: Callable[[Any], object] = lambda _result: None
) -> list[str]:
    """The names of the calls `store` makes from now on (each page is one), with `between`
    run on the result of each, as another connection would."""
    calls: list[str] = []
    run = store._run

    async def run_then_act(plan: Plan) -> Any:
        result = await run(plan)
        calls.append(plan.name)
        between(result)
        return result

    store._run = run_then_act  # type: ignore[method-assign]
    return calls


class TestEachPageItsOwnCall:
    @pytest.mark.anyio
    async def test_a_walk_longer_than_the_timeout_completes(
        self, postgres_url: str, postgres_table: str, postgres_conn: psycopg.Connection[Any]
    ) -> None:
        """Each page sleeps 0.2 s on the server: ten pages take twice the 1 s timeout, and
        get_all, inspect and clear still complete, since each page has a deadline of its own."""
        store = PostgresSessionStore.from_url(postgres_url, table=postgres_table, timeout=1.0)
        async with store:
            await store.create_schema()
            _plant(
                postgres_conn,
                postgres_table,
                [(_key(n).encode(), _record(n, None)) for n in range(10 * PAGE - 1)],
            )
            slow = ", pg_sleep(0.2) WHERE"
            statements = store._statements
            statements.page = statements.page.replace(b" WHERE", slow.encode(), 1)
            statements.first_page = statements.first_page.replace(
                b" ORDER BY", b", pg_sleep(0.2) ORDER BY", 1
            )
            assert len(await store.get_all()) == 10 * PAGE - 1
            assert len(await store.inspect()) == 10 * PAGE - 1

    @pytest.mark.anyio
    async def test_every_walk_is_paged(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """get_all, inspect, clean_expired (both walks) and clear run one call per page."""
        store = _store(postgres_url, postgres_table, clock, max_lifetime=3600)
        async with store:
            await store.create_schema()
            now = clock.now_ms
            _plant(
                postgres_conn,
                postgres_table,
                [(_key(n).encode(), _record(n, now - 1, now)) for n in range(3 * PAGE)]
                + [
                    (_key(n).encode(), _record(n, now + 1, now - 3_600_001))
                    for n in range(3 * PAGE, 5 * PAGE)
                ]
                + [(_key(n).encode(), _record(n, now + 1, now)) for n in range(5 * PAGE, 7 * PAGE)],
            )
            calls = calls_of(store)
            assert len(await store.get_all()) == 2 * PAGE
            assert calls == ["get_all"] * 8  # the last page finds fewer than a page: the end
            calls.clear()
            assert len(await store.inspect()) == 7 * PAGE
            assert calls == ["inspect"] * 8
            calls.clear()
            assert await store.clean_expired() == 5 * PAGE
            # The expired walk (3 pages and the end), then the createdAt walk (2 and the end).
            assert calls == ["clean_expired"] * (3 + 1 + 2 + 1)
            _plant(
                postgres_conn,
                postgres_table,
                [(_key(n).encode(), "[]") for n in range(2 * PAGE)],
            )
            calls.clear()
            await store.clear()
            assert calls == ["clear"] * 5
        assert _ids(postgres_conn, postgres_table) == set()


class Churn:
    """Between two pages of a walk in id order, another connection adds and removes a row
    behind the cursor and a row ahead of it. Rows are even keys; added ones odd."""

    def __init__(self, conn: psycopg.Connection[Any], table: str, now: int) -> None:
        self.conn, self.table, self.now = conn, table, now
        self.stays = {_key(n) for n in range(0, ROWS, 2)}
        self.gone_ahead: set[str] = set()
        self.added_ahead: set[str] = set()

    def plant(self) -> None:
        rows = [(sid.encode(), _record(int(sid[1:]), self.now + 1_000)) for sid in self.stays]
        _plant(self.conn, self.table, rows)

    def __call__(self, result: Any) -> None:
        cursor = result[1]
        if cursor is None:
            return
        at = int(bytes(cursor).decode()[1:])
        behind, ahead = _key(at - at % 2 - 2), _key(at - at % 2 + 2 * PAGE)
        for sid in (behind, ahead):
            if sid in self.stays:
                self.conn.execute(f"DELETE FROM {self.table} WHERE id = %s", (sid.encode(),))
                self.stays.discard(sid)
                if sid == ahead:
                    self.gone_ahead.add(sid)
        for n in (at - at % 2 - 3, at - at % 2 + PAGE + 1):
            if n >= 0:
                sid = _key(n)
                self.conn.execute(
                    f"INSERT INTO {self.table} (id, value) VALUES (%s, %s)"
                    " ON CONFLICT (id) DO NOTHING",
                    (sid.encode(), _record(n, self.now + 1_000)),
                )
                if n > at:
                    self.added_ahead.add(sid)

    def check(self, seen: list[str]) -> None:
        """Every row that stayed seen exactly once, none removed ahead of the cursor, every
        one added ahead of it seen."""
        assert len(seen) == len(set(seen)), "a row was repeated"
        assert self.stays <= set(seen), "a row that stayed was skipped"
        assert not self.gone_ahead & set(seen)
        assert self.added_ahead - self.gone_ahead <= set(seen)
        assert self.gone_ahead
        assert self.added_ahead


class TestConsistency:
    @pytest.mark.anyio
    @pytest.mark.parametrize("walk", ["get_all", "inspect", "iter_sessions"])
    async def test_rows_come_and_go_around_the_cursor(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
        walk: str,
    ) -> None:
        """No row that stays is skipped or repeated while rows are added and removed behind
        and ahead of the cursor between pages; rows removed ahead are not seen."""
        store = _store(postgres_url, postgres_table, clock)
        async with store:
            await store.create_schema()
            churn = Churn(postgres_conn, postgres_table, clock.now_ms)
            churn.plant()
            calls_of(store, churn)
            if walk == "get_all":
                seen = list(await store.get_all())
            elif walk == "inspect":
                seen = [record.session_id for record in await store.inspect()]
            else:
                seen = [sid async for sid, _data in store.iter_sessions(PAGE)]
        churn.check(seen)


class TestCleanAndClear:
    @pytest.mark.anyio
    async def test_clean_expired_across_pages_keeps_unreadable_candidates(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """Expired rows sharing a few expiries (ties across page ends) are all removed, once
        each; unreadable candidates and live rows stay; new ones found by the next walk."""
        store = _store(postgres_url, postgres_table, clock)
        async with store:
            await store.create_schema()
            now = clock.now_ms
            expired = [(_key(n).encode(), _record(n, now - 1 - n % 3)) for n in range(0, ROWS, 2)]
            live = [(_key(n).encode(), _record(n, now + 1)) for n in range(1, ROWS, 2)]
            bad = [(f"bad{n:04}".encode(), UNREADABLE[n % 2]) for n in range(3 * PAGE)]
            _plant(postgres_conn, postgres_table, expired + live + bad)
            calls = calls_of(store)
            assert await store.clean_expired() == len(expired)
            assert len(calls) > len(expired) // PAGE
            assert _ids(postgres_conn, postgres_table) == {row for row, _ in live + bad}
            assert await store.clean_expired() == 0

    @pytest.mark.anyio
    async def test_max_lifetime_candidates_through_the_created_at_index(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """Records created longer ago than the absolute timeout, whose expiresAt is later, are
        removed, found through the index on the record's createdAt (which the planner uses)."""
        store = _store(postgres_url, postgres_table, clock, max_lifetime=3600)
        async with store:
            await store.create_schema()
            now = clock.now_ms
            old = [
                (_key(n).encode(), _record(n, now + 9, now - 3_600_001)) for n in range(ROWS // 2)
            ]
            young = [
                (_key(n).encode(), _record(n, now + 9, now - 3_599_000))
                for n in range(ROWS // 2, ROWS)
            ]
            _plant(postgres_conn, postgres_table, old + young)
            assert await store.clean_expired() == len(old)
            assert _ids(postgres_conn, postgres_table) == {row for row, _ in young}
            with postgres_conn.transaction():
                postgres_conn.execute("SET LOCAL enable_seqscan = off")
                plan = postgres_conn.execute(
                    b"EXPLAIN " + store._statements.created_page,
                    {"before": now, "key": bulk.FIRST_KEY[0], "id": b"", "n": PAGE},
                ).fetchall()
            assert f"{postgres_table}_created_at" in " ".join(line for (line,) in plan)

    @pytest.mark.anyio
    async def test_create_schema_adds_the_created_at_index_to_an_older_table(
        self, postgres_url: str, postgres_table: str, postgres_conn: psycopg.Connection[Any]
    ) -> None:
        """A table made before the index existed gains it from create_schema, not from a
        store's first call (building it reads every row)."""
        async with PostgresSessionStore.from_url(postgres_url, table=postgres_table) as store:
            await store.set("a", DATA)
            postgres_conn.execute(f"DROP INDEX {postgres_table}_created_at")
        index = f"SELECT count(*) FROM pg_indexes WHERE indexname = '{postgres_table}_created_at'"
        async with PostgresSessionStore.from_url(postgres_url, table=postgres_table) as store:
            await store.set("b", DATA)
            assert postgres_conn.execute(index).fetchone() == (0,)
            await store.create_schema()
            assert postgres_conn.execute(index).fetchone() == (1,)

    @pytest.mark.anyio
    async def test_clear_across_pages_removes_every_row(
        self, postgres_url: str, postgres_table: str, postgres_conn: psycopg.Connection[Any]
    ) -> None:
        """Readable, unreadable, empty and non-UTF-8 ids alike."""
        async with PostgresSessionStore.from_url(postgres_url, table=postgres_table) as store:
            await store.create_schema()
            rows = [(_key(n).encode(), _record(n, None)) for n in range(5 * PAGE)]
            rows += [(b"", "[]"), (b"\xff\xfe", _record(0, None)), (b"bad", UNREADABLE[0])]
            _plant(postgres_conn, postgres_table, rows)
            records = await store.inspect()
            assert len(records) == len(rows)
            await store.clear()
        assert _ids(postgres_conn, postgres_table) == set()


class TestResult:
    @pytest.mark.anyio
    async def test_get_all_holds_nothing_the_collector_walks(
        self,
        postgres_url: str,
        postgres_table: str,
        postgres_conn: psycopg.Connection[Any],
        clock: FakeClock,
    ) -> None:
        """get_all's map keeps record texts in untracked dicts; values equal what was set."""
        async with _store(postgres_url, postgres_table, clock) as store:
            for n in range(3 * PAGE):
                await store.set(_key(n), attrs.evolve(DATA, id=_key(n)))
            found = await store.get_all()
        assert found == {_key(n): attrs.evolve(DATA, id=_key(n)) for n in range(3 * PAGE)}
        assert isinstance(found, SessionMap)
        assert not any(gc.is_tracked(shard) for shard in found._shards if shard)


# The number test of the expression before it skipped bounded repetitions for short texts.
_OLD_NUMBER = r"^-?[0-9]{1,255}(?:\.[0-9]{1,255})?(?:[eE][+-]?[0-9]{1,3})?$"


def test_the_expiry_expression_reads_numbers_as_before(
    postgres_conn: psycopg.Connection[Any],
) -> None:
    """The generated column's expression gives what its earlier, slower form gave, at the
    255-digit bounds and around them."""
    old = sql.EXPIRES_AT.replace(
        re.search(r"COALESCE\(\(CASE .*? END\)", sql.EXPIRES_AT).group(0),  # type: ignore[union-attr]
        "COALESCE(substring((replace(value, E'\\\\u0000', E'\\\\u0001')::json -> 'expiresAt')"
        f"::text FROM '{_OLD_NUMBER}')",
    )
    assert old != sql.EXPIRES_AT
    digits = ["1", "9" * 255, "9" * 256, "1" * 250 + "." + "5" * 4, "1" * 200 + "." + "2" * 200]
    numbers = [*digits, "-" + "9" * 254, "-" + "9" * 255, "1" * 255 + "." + "1" * 256]
    numbers += ["1e5", "1.5E+3", "1e1000", "-0.5", "1e-300", '"12"', "null", "true", "-0"]
    values = [f'{{"data":{{}},"expiresAt":{number}}}' for number in numbers]
    rows = postgres_conn.execute(
        f"SELECT {sql.EXPIRES_AT}, {old} FROM unnest(%s::text[]) AS v(value)", (values,)
    ).fetchall()
    assert [new for new, _old in rows] == [was for _new, was in rows]
    assert len({new for new, _old in rows}) > 5  # the inputs are told apart
