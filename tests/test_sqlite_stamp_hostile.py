"""Hostile checks of the SQLite store's stamp on its own rows and of clean_expired.

Nothing stored may be lost by clean_expired: a row rewritten live while it runs survives (by
another store object, another process, or a raw connection), an unreadable record is kept, a
record the store did not write is decoded first, and what is removed is exactly what the codec
calls expired. A cancelled call leaves the file whole and the connection's settings as before.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest

from walletmesh_sessions import (
    CorruptRecordError,
    LocalStorageSessionStore,
    SessionData,
    SessionStoreConfig,
    StoreUnavailableError,
)
from walletmesh_sessions._core.codec import decode_record, encode_record
from walletmesh_sessions._core.expiry import EXPIRED, after_read
from walletmesh_sessions._local.sqlite import TABLE
from walletmesh_sessions._local.sqlite import backend as backend_module
from walletmesh_sessions._local.sqlite.backend import SqliteBackend
from walletmesh_sessions._local.sqlite.file import EXPIRES_AT, TRUSTED
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example.com"
PREFIX = "wm_session_"
MINUTE = SessionStoreConfig(lifetime=60)
UNREADABLE = '{"data":5,"expiresAt":1}'
# The table as releases before the stamp created it (no written column, no trigger).
OLD_TABLE = (
    f"CREATE TABLE {TABLE} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    f" expires_at INTEGER GENERATED ALWAYS AS ({EXPIRES_AT}) VIRTUAL) WITHOUT ROWID"
)
OLD_INDEX = f"CREATE INDEX {TABLE}_expiry ON {TABLE} (expires_at) WHERE expires_at IS NOT NULL"
# The upsert of the release before the stamp.
OLD_UPSERT = (
    f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def data(n: int, created_at: int | None = None) -> SessionData:
    return SessionData(f"id{n}", ORIGIN, {"eip155:1": ["eth_accounts"]}, created_at=created_at)


def backend_of(store: LocalStorageSessionStore) -> SqliteBackend:
    backend = store._sqlite
    assert backend is not None
    return backend


def writer_of(store: LocalStorageSessionStore) -> sqlite3.Connection:
    writer = backend_of(store).connections._conn
    assert writer is not None
    return writer


def connect(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None))


def execute(path: Path, sql: str, params: Any = ()) -> None:
    """One committed statement on a connection of its own, as another program runs it."""
    with connect(path) as conn:
        conn.execute(sql, params)


def snapshot(path: Path) -> dict[str, tuple[Any, Any]]:
    """Each key of the file with its (value, written)."""
    with connect(path) as conn:
        conn.text_factory = bytes
        rows = conn.execute(f"SELECT key, value, written FROM {TABLE}").fetchall()
    return {bytes(key).decode(): (value, written) for key, value, written in rows}


def integrity(path: Path) -> str:
    with connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def settings(conn: sqlite3.Connection) -> list[Any]:
    return [
        conn.execute(p).fetchone()[0] for p in ("PRAGMA cache_size", "PRAGMA wal_autocheckpoint")
    ]


def decodes_expired(config: SessionStoreConfig, now: int, text: Any) -> bool | None:
    """What the codec says of a stored text at `now`: expired, live, or None (unreadable)."""
    try:
        record, stored = decode_record(text, "x")
    except CorruptRecordError:
        return None
    return after_read(config, now, stored, record.created_at) is EXPIRED


def ends_of_clean_expired(
    monkeypatch: pytest.MonkeyPatch, backend: SqliteBackend
) -> threading.Event:
    """An event set each time a clean_expired of `backend` in a worker thread has ended."""
    ended = threading.Event()
    original = backend.clean_expired

    def clean_expired(wait: bool) -> Any:
        try:
            return original(wait)
        finally:
            if wait:
                ended.set()

    monkeypatch.setattr(backend, "clean_expired", clean_expired)
    return ended


async def popen(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running `script`, its output piped (started in a worker thread)."""
    command = [sys.executable, "-c", script, *args]
    return await anyio.to_thread.run_sync(
        functools.partial(subprocess.Popen, command, stdout=subprocess.PIPE, text=True)
    )


class TestCacheGivenBack:
    """clean_expired leaves the writing connection's settings (its page cache) as they were."""

    async def test_overlapping_calls(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two clean_expired calls on one store, the second started while the first runs."""
        clock = FakeClock()
        async with LocalStorageSessionStore(tmp_path / "s.db", MINUTE, clock=clock) as store:
            for n in range(20):
                await store.set(f"s{n}", data(n))
            before = settings(writer_of(store))
            clock.advance(seconds=61)
            backend = backend_of(store)
            second_in = threading.Event()
            calls: list[int] = []
            clean = backend._clean_expired

            first_in = anyio.Event()

            def overlapping(now: int, params: dict[str, object]) -> int:
                calls.append(len(calls))
                if len(calls) == 1:
                    anyio.from_thread.run_sync(first_in.set)
                    assert second_in.wait(10)  # the second call has begun too
                else:
                    second_in.set()
                return clean(now, params)

            monkeypatch.setattr(backend, "_clean_expired", overlapping)
            counts: list[int] = []

            async def clean_expired() -> None:
                counts.append(await store.clean_expired())

            async with anyio.create_task_group() as tg:
                tg.start_soon(clean_expired)
                with anyio.fail_after(10):
                    await first_in.wait()
                tg.start_soon(clean_expired)
            assert sorted(counts) == [0, 20]
            monkeypatch.undo()
            after = settings(writer_of(store))
            assert after == before, "the page cache stays widened after overlapping calls"

    async def test_timed_out_behind_another_call(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """clean_expired widens the cache, then waits for an update in progress past its
        timeout; once both are done the cache is back to its size."""
        clock = FakeClock()
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(
            path, MINUTE, clock=clock, timeout=0.5, durability="power"
        ) as store:
            for n in range(20):
                await store.set(f"s{n}", data(n))
            before = settings(writer_of(store))
            clock.advance(seconds=61)
            await store.set("keep", data(99))
            backend = backend_of(store)
            ended = ends_of_clean_expired(monkeypatch, backend)
            updating = threading.Event()
            clean = backend._clean_expired

            def slow_change(current: SessionData) -> SessionData:
                updating.set()
                assert ended.wait(10)
                return current.with_app_data({"n": 1})

            widened = anyio.Event()

            def after_update_began(now: int, params: dict[str, object]) -> int:
                anyio.from_thread.run_sync(widened.set)  # the cache is widened: update now
                assert updating.wait(10)  # the update holds the writer from here
                return clean(now, params)

            monkeypatch.setattr(backend, "_clean_expired", after_update_began)
            outcome: list[object] = []

            async def update() -> None:
                await widened.wait()
                outcome.append(await store.update("keep", slow_change))

            async with anyio.create_task_group() as tg:
                tg.start_soon(update)
                with pytest.raises(StoreUnavailableError):
                    await store.clean_expired()
            assert outcome == [data(99).with_app_data({"n": 1})]
            monkeypatch.undo()
            assert settings(writer_of(store)) == before, "the page cache stays widened"

    async def test_cancelled_call(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A clean_expired cancelled midway: the file whole, nothing live or unreadable lost,
        the rest removed by the next call, the connection's settings as before."""
        path = tmp_path / "s.db"
        clock = FakeClock()
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            await store.get("open")
            writer = writer_of(store)
            before = settings(writer)
            expired = [
                (f"{PREFIX}old{n:05}", encode_record(data(n), clock.now_ms - 1))
                for n in range(6000)
            ]
            with connect(path) as conn:
                conn.execute("BEGIN")
                conn.executemany(
                    f"INSERT INTO {TABLE} (key, value, written) VALUES"
                    " (?1, ?2, hex(randomblob(8)) || ?1)",
                    expired,
                )
                conn.executemany(
                    f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)",
                    [(f"{PREFIX}bad{n}", UNREADABLE) for n in range(5)],
                )
                conn.execute("COMMIT")
            for n in range(50):
                await store.set(f"live{n}", data(n))
            ended = ends_of_clean_expired(monkeypatch, backend_of(store))
            with anyio.CancelScope(deadline=anyio.current_time() + 0.02) as scope:
                await store.clean_expired()
            assert scope.cancelled_caught
            # The worker thread left behind finishes its step, then gives the settings back.
            assert await anyio.to_thread.run_sync(ended.wait, 10)
            assert settings(writer) == before
            assert integrity(path) == "ok"
            rows = snapshot(path)
            for n in range(50):
                assert await store.get(f"live{n}") == data(n)
            for n in range(5):
                assert rows[f"{PREFIX}bad{n}"][0] == UNREADABLE.encode()
            left = sum(1 for key in rows if key.startswith(f"{PREFIX}old"))
            assert await store.clean_expired() == left
            assert not [key for key in snapshot(path) if key.startswith(f"{PREFIX}old")]


# How something else rewrites a row clean_expired has read as an expired candidate, with a
# live record: each must survive the call.
RAW_REWRITES = {
    "update of the value": f"UPDATE {TABLE} SET value = :value WHERE key = :key",
    "update keeping the stamp": (
        f"UPDATE {TABLE} SET value = :value, written = written WHERE key = :key"
    ),
    "insert or replace": f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (:key, :value)",
    "upsert of an older release": (
        f"INSERT INTO {TABLE} (key, value) VALUES (:key, :value)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ),
    "delete then insert": None,
}


class TestRewrittenWhileCleaning:
    """A row rewritten live between clean_expired's read and its delete survives."""

    @pytest.mark.parametrize("how", [*RAW_REWRITES, "another store object", "another store slides"])
    @pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "foreign"])
    async def test_survives(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, stamped: bool
    ) -> None:
        path = tmp_path / "s.db"
        clock = FakeClock()
        sliding = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        config = sliding if how == "another store slides" else MINUTE
        async with (
            LocalStorageSessionStore(path, MINUTE, clock=clock) as store,
            LocalStorageSessionStore(path, config, clock=clock) as other,
        ):
            await other.get("open")
            old = clock.now_ms
            for n in range(2500):
                if stamped:
                    await store.set(f"s{n}", data(n))
                else:
                    execute(
                        path,
                        f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)",
                        (f"{PREFIX}s{n}", encode_record(data(n), old + 60_000)),
                    )
            clock.advance(seconds=61)
            rewritten = list(range(0, 2500, 7))
            hook = "delete_stamped" if stamped else "_delete_unchanged"
            original = getattr(backend_module, hook)
            done: list[bool] = []

            def rewrite() -> None:
                for n in rewritten:
                    key = f"{PREFIX}s{n}"
                    live = encode_record(data(n + 10_000), clock.now_ms + 60_000)
                    if how == "another store object":
                        anyio.from_thread.run(other.set, f"s{n}", data(n + 10_000))
                    elif how == "another store slides":
                        # Back in time for the other store: the row is live there, and slides.
                        clock.advance(seconds=-30)
                        try:
                            assert anyio.from_thread.run(other.get, f"s{n}") == data(n)
                        finally:
                            clock.advance(seconds=30)
                    elif how == "delete then insert":
                        with connect(path) as conn:
                            conn.execute("BEGIN IMMEDIATE")
                            conn.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,))
                            conn.execute(
                                f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)", (key, live)
                            )
                            conn.execute("COMMIT")
                    else:
                        sql = RAW_REWRITES[how]
                        assert sql is not None
                        execute(path, sql, {"key": key, "value": live})

            def hooked(conn: sqlite3.Connection, *args: Any, **kwargs: Any) -> int:
                if not done:
                    done.append(True)
                    rewrite()
                result: int = original(conn, *args, **kwargs)
                return result

            monkeypatch.setattr(backend_module, hook, hooked)
            removed = await store.clean_expired()
            monkeypatch.undo()
            assert done
            rows = snapshot(path)
            survivors = {f"{PREFIX}s{n}" for n in rewritten}
            assert set(rows) == survivors
            assert removed == 2500 - len(rewritten)
            now = clock.now_ms
            for key in survivors:
                assert decodes_expired(MINUTE, now, rows[key][0]) is False

    async def test_another_process_rewriting(self, tmp_path: Path) -> None:
        """Another process writes each key expired, then live, while this one cleans in a
        loop: every key is there at the end."""
        path = tmp_path / "s.db"
        now = round(time.time() * 1000)
        script = textwrap.dedent(
            f"""
            import anyio
            from walletmesh_sessions import LocalStorageSessionStore, SessionData
            from walletmesh_sessions import SessionStoreConfig
            from walletmesh_sessions.testing import FakeClock

            async def main():
                config = SessionStoreConfig(lifetime=60)
                past, present = FakeClock({now} - 3_600_000), FakeClock({now} + 600_000)
                async with (
                    LocalStorageSessionStore({str(path)!r}, config, clock=past) as old,
                    LocalStorageSessionStore({str(path)!r}, config, clock=present) as new,
                ):
                    print("ready", flush=True)
                    for n in range(3000):
                        data = SessionData(f"id{{n}}", {ORIGIN!r}, {{}})
                        await old.set(f"k{{n}}", data)
                        await new.set(f"k{{n}}", data)

            anyio.run(main)
            """
        )
        clock = FakeClock(now)
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            await store.get("open")
            with await popen(script) as child:
                try:
                    assert child.stdout is not None
                    line = await anyio.to_thread.run_sync(child.stdout.readline)
                    assert line.strip() == "ready"
                    cleaned = 0
                    while child.poll() is None:
                        cleaned += await store.clean_expired()
                        await anyio.lowlevel.checkpoint()
                    assert await anyio.to_thread.run_sync(child.wait) == 0
                finally:
                    if child.poll() is None:
                        child.kill()
            await store.clean_expired()
            assert cleaned > 0  # the calls overlapped the other process's writes
            rows = snapshot(path)
            assert {f"{PREFIX}k{n}" for n in range(3000)} == set(rows)
            for value, _ in rows.values():
                assert decodes_expired(MINUTE, clock.now_ms, value) is False


# Records another program wrote: fractions, 0, null, absent, and ones the codec refuses.
def foreign_records(now: int) -> dict[str, str]:
    d = '"data":{"id":"x","origin":"https://a.example"'
    return {
        "frac_past": f'{{{d}}},"expiresAt":{now - 1}.5}}',
        "frac_now": f'{{{d}}},"expiresAt":{now}.5}}',
        "frac_just_under": f'{{{d}}},"expiresAt":{now - 1}.999}}',
        "half": f'{{{d}}},"expiresAt":0.5}}',
        "neg_half": f'{{{d}}},"expiresAt":-0.5}}',
        "neg_zero": f'{{{d}}},"expiresAt":-0.0}}',
        "zero": f'{{{d}}},"expiresAt":0}}',
        "null": f'{{{d}}},"expiresAt":null}}',
        "absent": f"{{{d}}}}}",
        "exp_form": f'{{{d}}},"expiresAt":{now - 1000}e0}}',
        "at_now": f'{{{d}}},"expiresAt":{now}}}',
        "one_before": f'{{{d}}},"expiresAt":{now - 1}}}',
        "huge": f'{{{d}}},"expiresAt":1e300}}',
        "neg_huge": f'{{{d}}},"expiresAt":-1e300}}',
        "old_created": f'{{{d},"createdAt":{now - 10_000_000}}},"expiresAt":{now + 1000}}}',
        "old_created_frac": f'{{{d},"createdAt":{now - 100_000}.5}},"expiresAt":{now + 1000}}}',
        "created_edge": f'{{{d},"createdAt":{now - 100_000}}},"expiresAt":{now + 1000}}}',
        "created_zero": f'{{{d},"createdAt":0}},"expiresAt":{now + 1000}}}',
        "created_string": f'{{{d},"createdAt":"1"}},"expiresAt":{now + 1000}}}',
        "created_null": f'{{{d},"createdAt":null}},"expiresAt":{now + 1000}}}',
        "string_expiry": f'{{{d}}},"expiresAt":"1"}}',
        "bool_expiry": f'{{{d}}},"expiresAt":true}}',
        "no_origin": '{"data":{"id":"x"},"expiresAt":1}',
        "repeated": f'{{{d}}},"expiresAt":1,"expiresAt":1}}',
        "not_json": "{oops",
        "array": "[1]",
        "nan": f'{{{d}}},"expiresAt":NaN}}',
        "unreadable": UNREADABLE,
    }


class TestExactlyWhatTheCodecSays:
    """After clean_expired, a record is gone exactly when the codec calls it expired (and it
    is readable), however it was written and whatever the clock did."""

    @pytest.mark.parametrize("max_lifetime", [None, 100], ids=["lifetime", "max_lifetime"])
    async def test_oracle(self, tmp_path: Path, max_lifetime: int | None) -> None:
        path = tmp_path / "s.db"
        rng = random.Random(7)
        clock = FakeClock()
        configs = [
            SessionStoreConfig(lifetime=60),
            SessionStoreConfig(lifetime=60, refresh_on_access=True),
            SessionStoreConfig(lifetime=60, max_lifetime=100),
            SessionStoreConfig(lifetime=60, refresh_on_access=True, max_lifetime=100),
            SessionStoreConfig(),
            SessionStoreConfig(max_lifetime=100),
        ]
        start = clock.now_ms
        async with contextlib.AsyncExitStack() as stack:
            stores = [
                await stack.enter_async_context(LocalStorageSessionStore(path, config, clock=clock))
                for config in configs
            ]
            for n in range(400):
                # The clock jumps back and forth by up to three minutes.
                clock.now_ms = start + rng.randrange(-180_000, 180_000)
                store = rng.choice(stores)
                created = rng.choice([None, None, clock.now_ms - rng.randrange(0, 200_000), 0])
                what = rng.randrange(4)
                if what == 0:
                    await store.set(f"s{n}", data(n, created))
                elif what == 1:
                    await store.create(f"s{n}", data(n, created))
                else:
                    await store.set(f"s{n}", data(n, created))
                    clock.advance(ms=rng.randrange(-90_000, 90_000))
                    if what == 2:
                        await store.get(f"s{n}")
                    else:
                        await store.rotate(f"s{n}", f"r{n}")
            clock.now_ms = start
            for name, text in foreign_records(start).items():
                execute(
                    path, f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)", (PREFIX + name, text)
                )
            execute(
                path,
                f"INSERT INTO {TABLE} (key, value) VALUES (?, CAST(? AS BLOB))",
                (
                    f"{PREFIX}blob_value",
                    f'{{"data":{{"id":"x","origin":"o"}},"expiresAt":{start - 5}}}',
                ),
            )
            execute(
                path,
                f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)",
                (f"{PREFIX}latin1", b'{"data":{"id":"\xe9","origin":"o"},"expiresAt":1}'),
            )
            cleaner_config = SessionStoreConfig(lifetime=60, max_lifetime=max_lifetime)
            before = snapshot(path)
            expected_gone = {
                key
                for key, (value, _) in before.items()
                if decodes_expired(cleaner_config, start, value) is True
            }
            assert len(expected_gone) > 50
            cleaner = await stack.enter_async_context(
                LocalStorageSessionStore(path, cleaner_config, clock=clock)
            )
            removed = await cleaner.clean_expired()
            after = snapshot(path)
        assert set(before) - set(after) == expected_gone
        assert removed == len(expected_gone)
        for key, row in after.items():
            assert row == before[key], key


class TestOlderFiles:
    """A file from before the stamp, opened by several processes at once while another
    program holds it open and goes on writing as the earlier release did."""

    async def test_migrated_under_load(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        now = round(time.time() * 1000)
        rows = {
            f"{PREFIX}expired": encode_record(data(1), now - 1),
            f"{PREFIX}live": encode_record(data(2), now + 3_600_000),
            f"{PREFIX}bad": UNREADABLE,
            "other_key": "not ours",
        }
        with connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(OLD_TABLE)
            conn.execute(OLD_INDEX)
            conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?)", list(rows.items()))
        script = textwrap.dedent(
            f"""
            import sys
            import anyio
            from walletmesh_sessions import LocalStorageSessionStore, SessionData
            from walletmesh_sessions import SessionStoreConfig

            async def main():
                config = SessionStoreConfig(lifetime=3600)
                async with LocalStorageSessionStore({str(path)!r}, config) as store:
                    name = sys.argv[1]
                    await store.set(name, SessionData(name, {ORIGIN!r}, {{}}))
                    print(await store.clean_expired())

            anyio.run(main)
            """
        )
        # Another program holds the file open, a read pinned and its upsert prepared.
        with connect(path) as other:
            other.execute(OLD_UPSERT, (f"{PREFIX}early", encode_record(data(3), now + 3_600_000)))
            other.execute("BEGIN")
            assert other.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == 5
            children = [await popen(script, f"p{n}") for n in range(3)]
            outputs = [
                await anyio.to_thread.run_sync(functools.partial(child.communicate, timeout=60))
                for child in children
            ]
            assert [child.returncode for child in children] == [0, 0, 0]
            assert sorted(int(out.strip()) for out, _ in outputs) == [0, 0, 1]
            other.execute("COMMIT")
            # The earlier release writes on, its statement prepared before the migration.
            other.execute(OLD_UPSERT, (f"{PREFIX}bad2", UNREADABLE))
            other.execute(OLD_UPSERT, (f"{PREFIX}p0", UNREADABLE))
        with connect(path) as conn:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_xinfo({TABLE})")]
            triggers = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")
            assert columns == ["key", "value", "expires_at", "written"]
            assert [name for (name,) in triggers] == [f"{TABLE}_untrust"]
            trusted = dict(conn.execute(f"SELECT key, coalesce({TRUSTED}, 0) FROM {TABLE}"))
        assert trusted == {
            f"{PREFIX}live": 0,
            f"{PREFIX}bad": 0,
            f"{PREFIX}bad2": 0,
            f"{PREFIX}early": 0,
            f"{PREFIX}p0": 0,
            f"{PREFIX}p1": 1,
            f"{PREFIX}p2": 1,
            "other_key": 0,
        }
        clock = FakeClock(now + 7_200_000)
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            # Everything of ours is past its expiry now; the three unreadable ones stay.
            assert await store.clean_expired() == 4
        assert set(snapshot(path)) == {
            f"{PREFIX}bad",
            f"{PREFIX}bad2",
            f"{PREFIX}p0",
            "other_key",
        }
        assert integrity(path) == "ok"


class TestUnreadableNeighbours:
    """A value that is not UTF-8 next to live ones: refused by get, kept by clean_expired."""

    async def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        clock = FakeClock()
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            await store.set("live", data(1))
            await store.set("victim", data(2))
            bad = b'{"data":{"id":"\xff","origin":"o"},"expiresAt":1}'
            execute(
                path,
                f"UPDATE {TABLE} SET value = CAST(? AS TEXT) WHERE key = ?",
                (bad, f"{PREFIX}victim"),
            )
            for _ in range(3):
                with pytest.raises(CorruptRecordError):
                    await store.get("victim")
                assert await store.get("live") == data(1)
            clock.advance(seconds=61)
            assert await store.clean_expired() == 1
            assert snapshot(path)[f"{PREFIX}victim"] == (bad, None)


class TestReadersDuringClean:
    """Lookups on the calling thread and in workers go on answering while clean_expired
    deletes thousands of rows, widens the cache and shrinks it again."""

    async def test_lookups_answer(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        clock = FakeClock()
        async with (
            LocalStorageSessionStore(path, MINUTE, clock=clock) as store,
            LocalStorageSessionStore(path, MINUTE, clock=clock) as other,
        ):
            await store.get("open")
            before = settings(writer_of(store))
            with connect(path) as conn:
                conn.execute("BEGIN")
                conn.executemany(
                    f"INSERT INTO {TABLE} (key, value, written) VALUES"
                    " (?1, ?2, hex(randomblob(8)) || ?1)",
                    [
                        (f"{PREFIX}old{n:05}", encode_record(data(n), clock.now_ms - 1))
                        for n in range(8000)
                    ],
                )
                conn.execute("COMMIT")
            for n in range(40):
                await store.set(f"live{n}", data(n))
            finished = anyio.Event()
            misses: list[str] = []
            reads = 0

            async def clean() -> None:
                try:
                    assert await store.clean_expired() == 8000
                finally:
                    finished.set()

            async def read(reader: LocalStorageSessionStore) -> None:
                nonlocal reads
                while not finished.is_set():
                    for n in range(40):
                        if await reader.get(f"live{n}") != data(n):
                            misses.append(f"live{n}")
                        reads += 1
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tg:
                tg.start_soon(clean)
                tg.start_soon(read, store)
                tg.start_soon(read, other)
            assert misses == []
            assert reads > 0
            for n in range(40):
                assert await store.get(f"live{n}") == data(n)
            assert settings(writer_of(store)) == before
        assert integrity(path) == "ok"


class TestCrash:
    """A process killed in the middle of clean_expired leaves the file whole: live and
    unreadable records all there, expired ones gone or not, nothing half-deleted."""

    async def test_killed_midway(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        now = 1_700_000_000_000
        script = textwrap.dedent(
            f"""
            import anyio
            from walletmesh_sessions import LocalStorageSessionStore, SessionStoreConfig
            from walletmesh_sessions.testing import FakeClock

            async def main():
                config = SessionStoreConfig(lifetime=60)
                clock = FakeClock({now})
                async with LocalStorageSessionStore({str(path)!r}, config, clock=clock) as store:
                    await store.get("open")
                    print("cleaning", flush=True)
                    while True:
                        await store.clean_expired()

            anyio.run(main)
            """
        )
        clock = FakeClock(now)
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            for n in range(30):
                await store.set(f"live{n}", data(n))
        with connect(path) as conn:
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO {TABLE} (key, value, written) VALUES"
                " (?1, ?2, hex(randomblob(8)) || ?1)",
                [(f"{PREFIX}old{n:05}", encode_record(data(n), now - 1)) for n in range(40_000)],
            )
            conn.executemany(
                f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)",
                [(f"{PREFIX}bad{n}", UNREADABLE) for n in range(5)],
            )
            conn.execute("COMMIT")
        with await popen(script) as child:
            try:
                assert child.stdout is not None
                line = await anyio.to_thread.run_sync(child.stdout.readline)
                assert line.strip() == "cleaning"
                await anyio.sleep(0.15)
            finally:
                child.kill()
        assert child.returncode not in (None, 0)
        assert integrity(path) == "ok"
        rows = snapshot(path)
        assert {f"{PREFIX}live{n}" for n in range(30)} <= set(rows)
        assert {f"{PREFIX}bad{n}" for n in range(5)} <= set(rows)
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            left = sum(1 for key in rows if key.startswith(f"{PREFIX}old"))
            assert await store.clean_expired() == left
            for n in range(30):
                assert await store.get(f"live{n}") == data(n)


class TestBlobValues:
    """A readable record another program stored as a BLOB."""

    async def test_sliding_get(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        clock = FakeClock()
        sliding = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(path, sliding, clock=clock) as store:
            await store.get("open")
            record = encode_record(SessionData("b", ORIGIN, {}), clock.now_ms + 1000)
            execute(
                path,
                f"INSERT INTO {TABLE} (key, value) VALUES (?, CAST(? AS BLOB))",
                (f"{PREFIX}b", record),
            )
            assert await store.get("b") == SessionData("b", ORIGIN, {})


class TestHandEdits:
    """The docs count a hand edit among the writes that leave a row untrusted."""

    @pytest.mark.xfail(
        strict=True,
        reason="a documented limit: a file dumped, edited by hand and loaded again (sqlite3"
        " .dump / .read) keeps each row's stamp, so an edited, unreadable record counts as"
        " the store's own and clean_expired deletes it without a decode",
    )
    async def test_dump_edited_and_loaded(self, tmp_path: Path) -> None:
        path, edited = tmp_path / "s.db", tmp_path / "edited.db"
        clock = FakeClock()
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            await store.set("a", data(1))
            await store.set("b", data(2))
        # An operator's edit in the dump: the origin is dropped (the codec refuses the record).
        with connect(path) as conn:
            dump = "\n".join(conn.iterdump())
        assert '"origin":"https://app.example.com","permissions"' in dump
        dump = dump.replace('"id":"id1","origin":"https://app.example.com",', '"id":"id1",')
        with connect(edited) as conn:
            conn.executescript(dump)
        text = snapshot(edited)[f"{PREFIX}a"][0]
        assert decodes_expired(MINUTE, clock.now_ms + 61_000, text) is None  # unreadable
        clock.advance(seconds=61)
        async with LocalStorageSessionStore(edited, MINUTE, clock=clock) as store:
            await store.clean_expired()
        assert f"{PREFIX}a" in snapshot(edited)
