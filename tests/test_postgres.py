"""What only `PostgresSessionStore` does: URLs, tables, schema, faults, processes, raw rows."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import attrs
import psycopg
import psycopg_pool
import pytest

from tests.postgres_proxy import CuttingProxy
from tests.postgres_server import PostgresServer, own_server
from tests.redis_server import free_port
from walletmesh_sessions import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidSessionIdError,
    SessionData,
    SessionStoreConfig,
    StoreUnavailableError,
    open_store,
)
from walletmesh_sessions._core.codec import encode_record, record_with_expiry
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.testing import FakeClock

FIXTURES = Path(__file__).parent / "fixtures" / "ts-localstorage-records.json"
SECRET = "s3cr#t/pa?ss@word"
DATA = SessionData("s1", "https://app.example", {"eip155:1": ["eth_accounts"]})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def _shows_secret(exc: BaseException) -> bool:
    pieces = ("s3cr", "pa?ss", "#t/", "ss@w", SECRET)
    return any(p in str(e) or p in repr(e) for e in _chain(exc) for p in pieces)


class TestModule:
    """The public module: where the class says it lives, and what a missing extra raises."""

    def test_class_reports_the_public_module(self) -> None:
        """The class names walletmesh_sessions.postgres, the path users import it from."""
        assert PostgresSessionStore.__module__ == "walletmesh_sessions.postgres"

    def test_missing_extra_raises_missing_dependency_error(self) -> None:
        """Without psycopg_pool the import raises MissingDependencyError, an ImportError too,
        naming the extra to install."""
        script = textwrap.dedent(
            """
            import sys
            sys.modules["psycopg_pool"] = None  # as if the extra were not installed
            import walletmesh_sessions
            try:
                import walletmesh_sessions.postgres
            except ImportError as exc:
                assert isinstance(exc, walletmesh_sessions.MissingDependencyError), type(exc)
                assert "walletmesh-sessions[postgres]" in str(exc), exc
                assert exc.name == "psycopg_pool", exc.name
                print("ok")
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.stdout.strip() == "ok", done.stderr


class TestUrls:
    """open_store and from_url: schemes, the table option, refused options, masked secrets."""

    def test_open_store_schemes(self) -> None:
        """postgresql:// and postgres:// both give a PostgresSessionStore on the named table."""
        for scheme in ("postgresql", "postgres"):
            store = open_store(f"{scheme}://u@127.0.0.1:5432/db?table=app.sessions&timeout=2")
            assert isinstance(store, PostgresSessionStore)
            assert store.table == "app.sessions"
            assert store.timeout == 2.0

    @pytest.mark.parametrize(
        "query",
        ["sslmode=verify-full", "port=5433", "keepalives=0", "target_session_attrs=read-write"],
    )
    def test_good_libpq_values_pass(self, query: str) -> None:
        """The values libpq takes are taken."""
        assert isinstance(open_store(f"postgresql://127.0.0.1/db?{query}"), PostgresSessionStore)

    def test_connect_options(self) -> None:
        """psycopg's own connect keywords pass; an unknown libpq keyword is refused."""
        PostgresSessionStore.from_url("postgresql://127.0.0.1/db", prepare_threshold=None)
        PostgresSessionStore.from_url("postgresql://127.0.0.1/db", application_name="app")
        with pytest.raises(InvalidConfigError):
            PostgresSessionStore.from_url("postgresql://127.0.0.1/db", colour="red")

    def test_config_from_the_url(self) -> None:
        """lifetime and refresh_on_access in the query configure the store."""
        store = open_store("postgresql://127.0.0.1/db?lifetime=60&refresh_on_access=true")
        assert isinstance(store, PostgresSessionStore)
        assert store.config == SessionStoreConfig(lifetime=60, refresh_on_access=True)

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://127.0.0.1/db?table=bad-name",
            "postgresql://127.0.0.1/db?table=a.b.c",
            "postgresql://127.0.0.1/db?table=1abc",
            "postgresql://127.0.0.1/db?table=pg_temp.sessions",
            "postgresql://127.0.0.1/db?table=PG_TEMP_3.sessions",
            "postgresql://127.0.0.1/db?prefix=x_",
            "postgresql://127.0.0.1/db?no_such_option=1",
            "postgresql://127.0.0.1/db?timeout=-1",
            "postgresql://127.0.0.1/db?timeout=soon",
            "postgresql://127.0.0.1/db?max_connections=0",
            "postgresql://127.0.0.1/db?sslmode=bogus",
            "postgresql://127.0.0.1/db?connect_timeout=x",
            "postgresql://127.0.0.1/db?keepalives=maybe",
            "postgresql://127.0.0.1/db?target_session_attrs=bogus",
            "postgresql://127.0.0.1/db?gssencmode=bogus",
            "postgresql://127.0.0.1/db?port=x",
            "postgresql://127.0.0.1:x/db",
        ],
    )
    def test_bad_options_refused(self, url: str) -> None:
        """A bad table (one in a connection's own temporary schema too), a prefix, an unknown
        libpq parameter, a libpq value libpq would refuse only when connecting, or a bad
        number: refused now."""
        with pytest.raises(InvalidConfigError):
            open_store(url)

    def test_password_never_shown(self) -> None:
        """repr and refusals mask the password, also one with '#', '/', '?' and '@' in it."""
        url = f"postgresql://user:{SECRET}@127.0.0.1:5432/db?table=t"
        with pytest.raises(InvalidConfigError, match="percent-encode") as info:
            open_store(url)
        assert not _shows_secret(info.value)
        with pytest.raises(InvalidConfigError, match="percent-encode") as info:
            PostgresSessionStore.from_url(url)
        assert not _shows_secret(info.value)
        encoded = f"postgresql://user:{quote(SECRET, safe='')}@127.0.0.1:5432/db?table=t"
        store = open_store(encoded)
        assert "s3cr" not in repr(store)
        assert "***" in repr(store)
        with pytest.raises(InvalidConfigError) as info:
            open_store(encoded + "&bogus=1")
        assert not _shows_secret(info.value)

    @pytest.mark.anyio
    async def test_unreachable_server_masks_the_password(self) -> None:
        """Calls on a dead port fail in time with StoreUnavailableError; no secret anywhere."""
        url = f"postgresql://user:{quote(SECRET, safe='')}@127.0.0.1:{free_port()}/db"
        store = PostgresSessionStore.from_url(url, timeout=0.5)
        async with store:
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                await store.get("id")
            assert time.monotonic() - start < 2.5
        assert not _shows_secret(info.value)
        assert "s3cr" not in repr(store)


@pytest.fixture
def url(postgres_url: str, postgres_table: str) -> str:
    return f"{postgres_url}?table={postgres_table}"


class TestCommandLine:
    """The command line reaches the store through open_store."""

    def test_list(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        """--store postgresql://...?table=... lists what the table holds."""
        from walletmesh_sessions._tools import cli as _cli

        async def plant() -> None:
            async with open_store(url) as store:
                await store.set("abc", DATA)

        anyio.run(plant)
        assert _cli.main(["--store", url, "list"]) == 0
        assert "abc" in capsys.readouterr().out


class TestTables:
    """The table: created on first use or on demand, checked, one per store."""

    @pytest.mark.anyio
    async def test_tables_isolate_stores(self, postgres_url: str, postgres_table: str) -> None:
        """Two stores on two tables of one database share nothing, ids included."""
        a = PostgresSessionStore.from_url(postgres_url, table=f"{postgres_table}_a")
        b = PostgresSessionStore.from_url(postgres_url, table=f"{postgres_table}_b")
        async with a, b:
            await a.set("id", DATA)
            await b.set("id", SessionData("other", "https://b.example"))
            await a.clear()
            assert await a.get("id") is None
            assert await b.get("id") == SessionData("other", "https://b.example")

    @pytest.mark.anyio
    async def test_wrong_shape_refused(
        self, postgres_conn: psycopg.Connection[Any], postgres_url: str, postgres_table: str
    ) -> None:
        """A table of another shape is refused with InvalidConfigError, and left alone."""
        postgres_conn.execute(f"CREATE TABLE {postgres_table} (id text PRIMARY KEY, value text)")
        postgres_conn.execute(f"INSERT INTO {postgres_table} VALUES ('k', 'v')")
        async with PostgresSessionStore.from_url(postgres_url, table=postgres_table) as store:
            with pytest.raises(InvalidConfigError, match="not a session table"):
                await store.create_schema()
            with pytest.raises(InvalidConfigError, match="not a session table"):
                await store.get("k")
        rows = postgres_conn.execute(f"SELECT * FROM {postgres_table}").fetchall()
        assert rows == [("k", "v")]

    @pytest.mark.anyio
    async def test_schema_qualified_table(
        self, postgres_conn: psycopg.Connection[Any], postgres_url: str, postgres_table: str
    ) -> None:
        """schema.table puts the table in that schema."""
        postgres_conn.execute(f"CREATE SCHEMA {postgres_table}_s")
        table = f"{postgres_table}_s.sessions"
        async with PostgresSessionStore.from_url(postgres_url, table=table) as store:
            await store.create_schema()
            await store.set("id", DATA)
        row = postgres_conn.execute(f"SELECT value, expires_at FROM {table}").fetchone()
        assert row == (encode_record(DATA, None), None)

    @pytest.mark.anyio
    async def test_table_dropped_under_the_store(
        self, postgres_conn: psycopg.Connection[Any], url: str, postgres_table: str
    ) -> None:
        """A dropped table fails one call, then is made again."""
        async with open_store(url) as store:
            await store.set("id", DATA)
            postgres_conn.execute(f"DROP TABLE {postgres_table}")
            with pytest.raises(StoreUnavailableError):
                await store.get("id")
            await store.set("id", DATA)
            assert await store.get("id") == DATA


class TestCallersConnections:
    """A pool or connection the caller made: used, never closed."""

    @pytest.mark.anyio
    async def test_sync_pool_and_connection(self, postgres_url: str, postgres_table: str) -> None:
        """A ConnectionPool and a Connection work on both backends, and stay open."""
        with psycopg_pool.ConnectionPool(
            postgres_url, min_size=1, max_size=4, kwargs={"autocommit": True}
        ) as pool:
            store = PostgresSessionStore(pool, table=postgres_table)
            async with store:
                await store.set("a", DATA)
                assert await store.get("a") == DATA
            assert not pool.closed
        with psycopg.connect(postgres_url) as conn:  # not autocommit: calls commit anyway
            store = PostgresSessionStore(conn, table=postgres_table)
            async with store:
                async with anyio.create_task_group() as tg:
                    for n in range(20):
                        tg.start_soon(store.set, f"c{n}", DATA)
                assert len(await store.get_all()) == 21
            assert not conn.closed

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_async_pool_and_connection(self, postgres_url: str, postgres_table: str) -> None:
        """An AsyncConnectionPool and an AsyncConnection work on asyncio, and stay open."""
        async with psycopg_pool.AsyncConnectionPool(
            postgres_url, min_size=1, max_size=4, open=False
        ) as pool:
            store = PostgresSessionStore(pool, table=postgres_table)
            async with store:
                await store.set("a", DATA)
                assert await store.get("a") == DATA
            assert not pool.closed
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            async with PostgresSessionStore(conn, table=postgres_table) as store:
                assert await store.get("a") == DATA
            assert not conn.closed

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_async_pool_refused_on_trio(self, postgres_url: str) -> None:
        """An asyncio pool on trio: a clear InvalidConfigError, not a hang."""
        pool = psycopg_pool.AsyncConnectionPool(postgres_url, open=False)
        store = PostgresSessionStore(pool)
        with pytest.raises(InvalidConfigError, match="asyncio only"):
            await store.get("id")

    def test_not_a_connection(self) -> None:
        with pytest.raises(InvalidConfigError, match="psycopg"):
            PostgresSessionStore("postgresql://x/y")  # type: ignore[arg-type]


class TestRecords:
    """Rows as PostgreSQL holds them: the wire format byte for byte, and corrupt ones."""

    @pytest.mark.anyio
    async def test_typescript_records_read_and_slide_byte_for_byte(
        self, postgres_conn: psycopg.Connection[Any], url: str, postgres_table: str
    ) -> None:
        """Records the TypeScript store wrote read as it reads them; a slide changes only
        the expiresAt digits; set writes exactly the TypeScript bytes."""
        fixture = json.loads(FIXTURES.read_text())
        clock = FakeClock(fixture["written_at_ms"])
        records = {
            r["key"].removeprefix("wm_session_"): r["value"]
            for r in fixture["records"]
            if r["key"].startswith("wm_session_")
        }
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with PostgresSessionStore.from_url(url, config, clock=clock) as store:
            await store.create_schema()
            for key, value in records.items():
                postgres_conn.execute(
                    f"INSERT INTO {postgres_table} (id, value) VALUES (%s, %s)",
                    (key.encode(), value),
                )
            live = await store.get_all()
            assert sorted(data.id for data in live.values()) == ["s-basic", "s-multi", "s-noexp"]
            rows = dict(postgres_conn.execute(f"SELECT id, value FROM {postgres_table}"))
            for key, data in live.items():
                text = records[key]
                assert rows[key.encode()] == record_with_expiry(text, clock.now_ms + 60_000)
                assert json.loads(text)["data"] == data.to_json()
            for key, data in live.items():
                await store.set(key, data)
            clock.advance(ms=0)
            rows = dict(postgres_conn.execute(f"SELECT id, value FROM {postgres_table}"))
            for key in live:
                assert rows[key.encode()] == record_with_expiry(records[key], clock.now_ms + 60_000)

    @pytest.mark.anyio
    async def test_one_statement_slide_matches_the_codec(
        self, postgres_conn: psycopg.Connection[Any], url: str, postgres_table: str
    ) -> None:
        """The server-side slide leaves every record as record_with_expiry would, whatever its
        layout; an unreadable record is left as it was."""
        clock = FakeClock()
        data = '{"id":"x","origin":"o","permissions":{"expiresAt":["m"]},"expiresAt":5}'
        live = clock.now_ms + 1000
        readable = [
            f'{{"data":{data},"expiresAt":{live}}}',
            f' {{ "data" : {data} ,\n "expiresAt" :\t{live}.75 }} ',
            f'{{"expiresAt":{live},"data":{data}}}',
            f'{{"data":{data},"expiresAt":{live / 1000}e3}}',
            f'{{"data":{data}}}',
            f'{{"data":{data},"expiresAt":null}}',
            f'{{"data":{data},"a\\"expiresAt":1,"expiresAt":{live}}}',
            f'{{"data":{data},"expiresAt":{clock.now_ms - 1}}}',
        ]
        corrupt = [f'{{"data":{{"id":1}},"expiresAt":{live}}}', f'{{"expiresAt":{live}}}']
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with PostgresSessionStore.from_url(url, config, clock=clock) as store:
            await store.create_schema()
            for n, text in enumerate(readable + corrupt):
                postgres_conn.execute(
                    f"INSERT INTO {postgres_table} (id, value) VALUES (%s, %s)",
                    (f"{n}".encode(), text),
                )
            for n, text in enumerate(readable):
                got = await store.get(f"{n}")
                row = postgres_conn.execute(
                    f"SELECT value FROM {postgres_table} WHERE id = %s", (f"{n}".encode(),)
                ).fetchone()
                if n == len(readable) - 1:
                    assert got is None
                    assert row is None
                else:
                    assert got is not None
                    assert row == (record_with_expiry(text, clock.now_ms + 60_000),), text
            for n, text in enumerate(corrupt, start=len(readable)):
                with pytest.raises(CorruptRecordError):
                    await store.get(f"{n}")
                row = postgres_conn.execute(
                    f"SELECT value FROM {postgres_table} WHERE id = %s", (f"{n}".encode(),)
                ).fetchone()
                assert row == (text,)

    @pytest.mark.anyio
    async def test_corrupt_records_never_hide_others(
        self,
        postgres_conn: psycopg.Connection[Any],
        url: str,
        postgres_table: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Unreadable rows are skipped with a warning, kept, and named by get."""
        clock = FakeClock()
        bad = {
            b"str": '"just a string"',
            b"shape": '{"data":5,"expiresAt":1}',
            b"types": '{"data":{"id":1,"origin":"o"},"expiresAt":1}',
            b"expiry": '{"data":{"id":"x","origin":"o"},"expiresAt":"soon"}',
            b"dupes": '{"data":{"id":"x","origin":"o"},"expiresAt":1,"expiresAt":2}',
            b"huge": '{"data":{"id":"x","origin":"o"},"expiresAt":1e999}',
            b"\xff\xfe": encode_record(DATA, 1),
            b"": encode_record(DATA, 1),
        }
        async with PostgresSessionStore.from_url(url, SessionStoreConfig(60), clock=clock) as s:
            await s.create_schema()
            for key, value in bad.items():
                postgres_conn.execute(
                    f"INSERT INTO {postgres_table} (id, value) VALUES (%s, %s)", (key, value)
                )
            await s.set("good", DATA)
            with caplog.at_level(logging.WARNING, "walletmesh_sessions"):
                assert dict(await s.get_all()) == {"good": DATA}
                assert [sid async for sid, _ in s.iter_sessions(2)] == ["good"]
                clock.advance(seconds=61)
                assert await s.clean_expired() == 1
            assert "skipping" in caplog.text
            for key in (b"str", b"shape", b"types", b"expiry", b"dupes", b"huge"):
                with pytest.raises(CorruptRecordError, match=key.decode()):
                    await s.get(key.decode())
            with pytest.raises(CorruptRecordError):
                await s.create("types", DATA)
            records = {r.session_id: r for r in await s.inspect()}
            assert len(records) == len(bad)
            assert all(records[key.decode()].error for key in bad if key.isalpha())
            await s.clear()
            assert await s.inspect() == []

    @pytest.mark.anyio
    async def test_what_postgres_refuses(
        self, postgres_conn: psycopg.Connection[Any], url: str, postgres_table: str
    ) -> None:
        """A value that is not JSON cannot be written (the expiry column is computed from it);
        a NUL inside the record's strings can; a session id too long to index is refused."""
        async with open_store(url) as store:
            assert isinstance(store, PostgresSessionStore)
            await store.create_schema()
            with pytest.raises(psycopg.errors.InvalidTextRepresentation):
                postgres_conn.execute(
                    f"INSERT INTO {postgres_table} (id, value) VALUES ('x', 'not json')"
                )
            nul = SessionData("a\x00b", "https://nul\x00.example", {"c\x00": ["m\x00"]})
            await store.set("nul\x00", nul)
            assert await store.get("nul\x00") == nul
            long_id = os.urandom(3000).hex()
            with pytest.raises(InvalidSessionIdError):
                await store.set(long_id, DATA)
            assert await store.get(long_id) is None


_RACER = textwrap.dedent(
    """
    import sys, time, anyio
    from walletmesh_sessions import SessionData
    from walletmesh_sessions.postgres import PostgresSessionStore

    async def main() -> None:
        url, at = sys.argv[1], float(sys.argv[2])
        async with PostgresSessionStore.from_url(url, timeout=20, max_connections=20) as store:
            await anyio.sleep(max(0.0, at - time.time()))
            await store.create_schema()
            wins = []

            async def create(n: int) -> None:
                if await store.create("contested", SessionData(f"s{n}", "https://o.example")):
                    wins.append(n)

            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(create, n)
        print(len(wins))

    anyio.run(main)
    """
)


class TestProcesses:
    """Two OS processes on one database."""

    def test_two_processes_race_schema_and_creates(self, url: str) -> None:
        """Both create the schema at once, then 200 creates of one id: exactly one wins."""
        at = time.time() + 1.5  # both are running (and imported) by then
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, url, str(at)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for _ in range(2)
        ]
        outputs = [racer.communicate(timeout=60) for racer in racers]
        for racer, (_out, err) in zip(racers, outputs, strict=True):
            assert racer.returncode == 0, err.decode()
        assert sum(int(out) for out, _err in outputs) == 1


@pytest.fixture(scope="module")
def fault_server() -> Iterator[PostgresServer]:
    """A server of this module's own, to stop, restart and freeze."""
    with own_server() as server:
        yield server


class TestFaults:
    """A server that goes away or hangs: every call fails within its timeout, then recovers."""

    @pytest.mark.anyio
    async def test_restart(self, fault_server: PostgresServer) -> None:
        """Calls during the downtime fail in time; after a restart on the same port they work."""
        store = PostgresSessionStore.from_url(fault_server.url, timeout=1.0)
        async with store:
            await store.set("id", DATA)
            fault_server.stop()
            try:
                for call in (store.get("id"), store.set("id", DATA)):
                    start = time.monotonic()
                    with pytest.raises(StoreUnavailableError):
                        await call
                    assert time.monotonic() - start < 2.0
            finally:
                fault_server.start()
            give_up = time.monotonic() + 15
            while True:
                try:
                    assert await store.get("id") == DATA
                    break
                except StoreUnavailableError:
                    if time.monotonic() > give_up:
                        raise
                    await anyio.sleep(0.1)

    @pytest.mark.anyio
    async def test_hung_server(self, fault_server: PostgresServer) -> None:
        """Hundreds of calls on a frozen server all fail within the timeout; then it recovers."""
        if not fault_server.running:
            fault_server.start()
        store = PostgresSessionStore.from_url(fault_server.url, timeout=1.0, max_connections=5)
        async with store:
            await store.set("id", DATA)
            late: list[float] = []
            errors: list[BaseException] = []

            async def call(n: int) -> None:
                start = time.monotonic()
                try:
                    await (store.set(f"id{n}", DATA) if n % 2 else store.get("id"))
                except StoreUnavailableError as exc:
                    errors.append(exc)
                late.append(time.monotonic() - start)

            fault_server.pause()
            try:
                async with anyio.create_task_group() as tg:
                    for n in range(300):
                        tg.start_soon(call, n)
            finally:
                fault_server.resume()
            assert len(errors) == 300
            # The timeout, plus the event loop's own lateness on a busy two-core host.
            assert max(late) < 2.5, f"slowest call took {max(late):.2f} s"
            give_up = time.monotonic() + 15
            while True:
                try:
                    assert await store.get("id") == DATA
                    break
                except StoreUnavailableError:
                    if time.monotonic() > give_up:
                        raise
                    await anyio.sleep(0.1)


@pytest.fixture
def proxy(fault_server: PostgresServer) -> Iterator[CuttingProxy]:
    """A proxy to the fault server that can lose a connection just after the server acted."""
    if not fault_server.running:
        fault_server.start()
    cutting = CuttingProxy(fault_server.port)
    try:
        yield cutting
    finally:
        cutting.close()


A = attrs.evolve(DATA, id="a")


def _granting(calls: list[str]) -> Callable[[SessionData], SessionData]:
    def grant(data: SessionData) -> SessionData:
        calls.append(data.id)
        return attrs.evolve(data, permissions={**data.permissions, "eip155:10": ["eth_chainId"]})

    return grant


class TestRetries:
    """create, update and rotate after a lost connection: retried when the outcome is known."""

    @pytest.mark.anyio
    async def test_retried_after_a_restart(
        self, fault_server: PostgresServer, postgres_table: str
    ) -> None:
        """A connection cut by a restart before the call: each succeeds on a new one."""
        if not fault_server.running:
            fault_server.start()
        store = PostgresSessionStore.from_url(fault_server.url, table=postgres_table)
        calls: list[str] = []
        async with store:
            await store.set("a", A)
            fault_server.restart()
            assert await store.create("b", DATA) is True
            fault_server.restart()
            updated = await store.update("a", _granting(calls))
            assert updated is not None
            assert calls == ["a"]
            fault_server.restart()
            assert await store.rotate("a", "c") == "c"
            assert await store.get("a") is None
            assert await store.get("c") == attrs.evolve(updated, id="c")
            assert await store.get("b") == DATA

    @pytest.mark.anyio
    async def test_create_recognises_its_own_insert(
        self, proxy: CuttingProxy, postgres_table: str
    ) -> None:
        """The answer to a create's INSERT is lost: the retry finds its record, True."""
        store = PostgresSessionStore.from_url(proxy.url, table=postgres_table)
        async with store:
            await store.create_schema()
            proxy.cut_after(b"DO NOTHING")
            assert await store.create("b", DATA) is True
            assert proxy.cuts == 1
            assert await store.get("b") == DATA
            assert await store.create("b", DATA) is False

    @pytest.mark.anyio
    async def test_update_and_rotate_recognise_their_commit(
        self, proxy: CuttingProxy, postgres_table: str
    ) -> None:
        """The answer to the COMMIT is lost: the retry sees it done; change ran once."""
        store = PostgresSessionStore.from_url(proxy.url, table=postgres_table)
        calls: list[str] = []
        async with store:
            await store.set("a", A)
            proxy.cut_after(b"COMMIT")
            updated = await store.update("a", _granting(calls))
            assert proxy.cuts == 1
            assert calls == ["a"]
            assert updated is not None
            assert await store.get("a") == updated
            proxy.cut_after(b"COMMIT")
            assert await store.rotate("a", "c") == "c"
            assert proxy.cuts == 2
            assert await store.get("a") is None
            assert await store.get("c") == attrs.evolve(updated, id="c")

    @pytest.mark.anyio
    async def test_changed_since_is_reported_not_guessed(
        self, proxy: CuttingProxy, fault_server: PostgresServer, postgres_table: str
    ) -> None:
        """The row changed between the lost COMMIT and the retry: an error that says so, and
        the other writer's record stays."""
        store = PostgresSessionStore.from_url(proxy.url, table=postgres_table)
        other = attrs.evolve(A, origin="https://other.example")

        def overwrite() -> None:
            with fault_server.connect() as conn:
                conn.execute(
                    f'UPDATE "{postgres_table}" SET value = %s WHERE id = %s',
                    (encode_record(other, None), b"a"),
                )

        async with store:
            await store.set("a", A)
            proxy.cut_after(b"COMMIT", then=overwrite)
            with pytest.raises(StoreUnavailableError, match="may or may not have taken effect"):
                await store.update("a", _granting([]))
            assert await store.get("a") == other

    @pytest.mark.anyio
    async def test_create_taken_since_is_reported_not_guessed(
        self, proxy: CuttingProxy, fault_server: PostgresServer, postgres_table: str
    ) -> None:
        """Another live record under the id when a create retries after a lost answer: it
        cannot tell whether its own insert happened first, and says so."""
        store = PostgresSessionStore.from_url(proxy.url, table=postgres_table)
        other = attrs.evolve(DATA, id="b", origin="https://other.example")

        def overwrite() -> None:
            with fault_server.connect() as conn:
                conn.execute(
                    f'UPDATE "{postgres_table}" SET value = %s WHERE id = %s',
                    (encode_record(other, None), b"b"),
                )

        async with store:
            await store.create_schema()
            proxy.cut_after(b"DO NOTHING", then=overwrite)
            with pytest.raises(StoreUnavailableError, match="may or may not have taken effect"):
                await store.create("b", attrs.evolve(DATA, id="b"))
            assert await store.get("b") == other


class TestReconnect:
    """The store's own pool after the server was down a while."""

    @pytest.mark.anyio
    async def test_calls_work_once_the_server_is_back(
        self, fault_server: PostgresServer, postgres_table: str
    ) -> None:
        """After about 3.5 s down, the first call made once the server answers succeeds within
        its own 2 s timeout (psycopg_pool's own policy tries at about 1, 3 and then 7 s: its
        call would wait past its timeout)."""
        if not fault_server.running:
            fault_server.start()
        store = PostgresSessionStore.from_url(fault_server.url, table=postgres_table, timeout=2.0)
        async with store:
            await store.set("a", A)
            fault_server.stop()
            try:
                with pytest.raises(StoreUnavailableError):
                    await store.get("a")  # the pool finds its connection lost, and reconnects
                await anyio.sleep(2)  # failed attempts meanwhile: the pool's wait grows
            finally:
                fault_server.start()
            assert await store.get("a") == A
