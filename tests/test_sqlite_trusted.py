"""Which rows of a SQLite file the store wrote itself, and what clean_expired does with the rest.

A row the store stamped is deleted in SQL without a decode; a row anyone else wrote is decoded
first, and kept when unreadable.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio.to_thread
import pytest

from walletmesh_sessions import LocalStorageSessionStore, SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._core.decode_cache import DecodeCache
from walletmesh_sessions._local.sqlite import SCHEMA, TABLE
from walletmesh_sessions._local.sqlite.file import EXPIRES_AT, TRUSTED, stamp
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio


ORIGIN = "https://app.example.com"
MINUTE = SessionStoreConfig(lifetime=60)
# JSON whose expiresAt the column reads, but not a session record: the codec refuses it.
UNREADABLE = '{"data":5,"expiresAt":1}'


def data(n: int) -> SessionData:
    return SessionData(f"id{n}", ORIGIN, {"eip155:1": ["eth_accounts"]})


class CountingCache(DecodeCache):
    """A decode cache that counts the records it is asked to decode."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def decode(self, text: object, session_id: str) -> tuple[SessionData, int | None]:
        self.decoded += 1
        return super().decode(text, session_id)


def counting(store: LocalStorageSessionStore) -> CountingCache:
    """Make `store` count its decodes, and return the counter."""
    backend = store._sqlite
    assert backend is not None
    cache = CountingCache()
    backend._cache = cache
    return cache


def trusted(path: Path) -> dict[str, bool]:
    """Each key of the file and whether its row carries the store's stamp."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f"SELECT key, coalesce({TRUSTED}, 0) FROM {TABLE}").fetchall()
    return {key: bool(flag) for key, flag in rows}


def execute(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """One committed statement on another connection, as another program would run it."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn, conn:
        conn.execute(sql, params)


def raw_keys(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {key for (key,) in conn.execute(f"SELECT key FROM {TABLE}")}


class TestOwnWrites:
    """Every write of the store stamps the row; a stamped expired row needs no decode."""

    async def test_every_write_stamps(self, tmp_path: Path) -> None:
        """set, create, update, rotate and a sliding read leave their rows trusted."""
        path = tmp_path / "s.db"
        clock = FakeClock()
        sliding = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(path, sliding, clock=clock) as store:
            await store.set("set", data(1))
            assert await store.create("created", data(2))
            await store.set("updated", data(3))
            await store.update("updated", lambda d: d.with_app_data({"n": 1}))
            await store.set("old", data(4))
            assert await store.rotate("old", "rotated") == "rotated"
            await store.set("slid", data(5))
            before = raw_rows_of(path)["wm_session_slid"]
            clock.advance(seconds=10)
            assert await store.get("slid") == data(5)
            assert raw_rows_of(path)["wm_session_slid"] != before  # the read slid it
        names = ("set", "created", "updated", "rotated", "slid")
        assert trusted(path) == {f"wm_session_{name}": True for name in names}

    async def test_stamped_rows_are_deleted_without_a_decode(self, tmp_path: Path) -> None:
        """clean_expired removes the store's own expired records in SQL alone."""
        clock = FakeClock()
        async with LocalStorageSessionStore(tmp_path / "s.db", MINUTE, clock=clock) as store:
            for n in range(5):
                await store.set(f"old{n}", data(n))
            clock.advance(seconds=30)
            await store.set("live", data(9))
            clock.advance(seconds=31)
            cache = counting(store)
            assert await store.clean_expired() == 5
            assert cache.decoded == 0
            assert await store.get("live") == data(9)

    async def test_stamped_rows_past_max_lifetime_need_no_decode(self, tmp_path: Path) -> None:
        """With an absolute timeout, a stamped record past it goes without a decode too."""
        clock = FakeClock()
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True, max_lifetime=100)
        async with LocalStorageSessionStore(tmp_path / "s.db", config, clock=clock) as store:
            await store.set("old", data(1))
            for _ in range(2):
                clock.advance(seconds=50)
                assert await store.get("old") is not None  # slid: its expiresAt stays ahead
            await store.set("young", data(2))
            clock.advance(seconds=1)
            cache = counting(store)
            assert await store.clean_expired() == 1
            assert cache.decoded == 0
            assert set(await store.get_all()) == {"young"}


def raw_rows_of(path: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute(f"SELECT key, value FROM {TABLE}").fetchall())


# The foreign writes that add a row rather than overwrite the victim.
NEW_ROW = {"insert", "insert copying another row's stamp"}
# How another program may write a row over one the store wrote (`wm_session_victim`), with
# `value`; `wm_session_donor` is another of the store's rows.
FOREIGN_WRITES: dict[str, str] = {
    "insert": f"INSERT INTO {TABLE} (key, value) VALUES ('wm_session_new', ?)",
    "update of the value": f"UPDATE {TABLE} SET value = ? WHERE key = 'wm_session_victim'",
    "update keeping the stamp": (
        f"UPDATE {TABLE} SET value = ?, written = written WHERE key = 'wm_session_victim'"
    ),
    "insert or replace": (
        f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES ('wm_session_victim', ?)"
    ),
    "upsert of an older release": (
        f"INSERT INTO {TABLE} (key, value) VALUES ('wm_session_victim', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ),
    "update copying another row's stamp": (
        f"UPDATE {TABLE} SET value = ?,"
        f" written = (SELECT written FROM {TABLE} WHERE key = 'wm_session_donor')"
        " WHERE key = 'wm_session_victim'"
    ),
    "insert copying another row's stamp": (
        f"INSERT INTO {TABLE} (key, value, written) SELECT 'wm_session_new', ?, written"
        f" FROM {TABLE} WHERE key = 'wm_session_donor'"
    ),
}


class TestOthersWrites:
    """A row another program wrote is decoded before clean_expired deletes it."""

    @pytest.mark.parametrize("how", FOREIGN_WRITES)
    async def test_unreadable_is_kept(self, tmp_path: Path, how: str) -> None:
        """An unreadable record past its expiresAt stays, whoever's stamp it carries."""
        path = tmp_path / "s.db"
        clock = FakeClock()
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            await store.set("victim", data(1))
            await store.set("donor", data(2))
            execute(path, FOREIGN_WRITES[how], (UNREADABLE,))
            key = "wm_session_new" if how in NEW_ROW else None
            changed = key or "wm_session_victim"
            assert trusted(path)[changed] is False
            clock.advance(seconds=61)
            removed = await store.clean_expired()
            assert changed in raw_keys(path)
            assert raw_rows_of(path)[changed] == UNREADABLE
            assert removed == (3 if key else 2) - 1

    @pytest.mark.parametrize("how", FOREIGN_WRITES)
    async def test_readable_is_decoded_then_deleted(self, tmp_path: Path, how: str) -> None:
        """A readable expired record another program wrote goes, after a decode."""
        path = tmp_path / "s.db"
        clock = FakeClock()
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            await store.set("victim", data(1))
            await store.set("donor", data(2))
            execute(path, FOREIGN_WRITES[how], (encode_record(data(3), clock.now_ms + 1),))
            clock.advance(seconds=61)
            cache = counting(store)
            assert await store.clean_expired() == (3 if how in NEW_ROW else 2)
            assert cache.decoded == 1
            assert raw_keys(path) == set()

    async def test_a_read_that_slides_keeps_a_foreign_row_untrusted(self, tmp_path: Path) -> None:
        """A sliding read rewrites only the expiry: a row the store did not encode stays
        untrusted."""
        path = tmp_path / "s.db"
        clock = FakeClock()
        sliding = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(path, sliding, clock=clock) as store:
            await store.get("open")
            execute(
                path,
                f"INSERT INTO {TABLE} (key, value) VALUES ('wm_session_a', ?)",
                (encode_record(data(1), clock.now_ms + 1000),),
            )
            clock.advance(seconds=1)
            assert await store.get("a") == data(1)
        assert trusted(path) == {"wm_session_a": False}


OLD_TABLE = (
    f"CREATE TABLE {TABLE} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    f" expires_at INTEGER GENERATED ALWAYS AS ({EXPIRES_AT}) VIRTUAL) WITHOUT ROWID"
)


class TestOlderFiles:
    """A file written before the stamp existed gains the column; its rows are untrusted."""

    async def test_migrated_rows_are_decoded(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        clock = FakeClock()
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(OLD_TABLE)
            conn.executemany(
                f"INSERT INTO {TABLE} VALUES (?, ?)",
                [
                    ("wm_session_a", encode_record(data(1), clock.now_ms - 1)),
                    ("wm_session_bad", UNREADABLE),
                    ("wm_session_live", encode_record(data(2), clock.now_ms + 1000)),
                ],
            )
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            cache = counting(store)
            assert await store.clean_expired() == 1
            assert cache.decoded == 2  # the two expired candidates
            assert await store.get("live") == data(2)
        assert trusted(path) == {"wm_session_bad": False, "wm_session_live": False}
        with contextlib.closing(sqlite3.connect(path)) as conn:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_xinfo({TABLE})")]
            triggers = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")
            assert columns == ["key", "value", "expires_at", "written"]
            assert [name for (name,) in triggers] == [f"{TABLE}_untrust"]


class TestSharedFile:
    """Stores in other objects and other processes trust each other's rows."""

    async def test_another_store_object(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        clock = FakeClock()
        async with (
            LocalStorageSessionStore(path, MINUTE, clock=clock) as first,
            LocalStorageSessionStore(path, MINUTE, clock=clock) as second,
        ):
            await first.set("a", data(1))
            clock.advance(seconds=61)
            cache = counting(second)
            assert await second.clean_expired() == 1
            assert cache.decoded == 0

    async def test_another_process(self, tmp_path: Path) -> None:
        """A row set by a store in another process is trusted here."""
        path = tmp_path / "s.db"
        script = textwrap.dedent(
            f"""
            import anyio
            from walletmesh_sessions import LocalStorageSessionStore, SessionData
            from walletmesh_sessions import SessionStoreConfig

            async def main():
                config = SessionStoreConfig(lifetime=60)
                async with LocalStorageSessionStore({str(path)!r}, config) as store:
                    await store.set("a", SessionData("id1", {ORIGIN!r}, {{}}))

            anyio.run(main)
            """
        )
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
        )
        assert done.returncode == 0
        clock = FakeClock(round(time.time() * 1000) + 3_600_000)
        async with LocalStorageSessionStore(path, MINUTE, clock=clock) as store:
            cache = counting(store)
            assert await store.clean_expired() == 1
            assert cache.decoded == 0


class TestBatches:
    """clean_expired deletes at most DELETE_BATCH rows per write transaction, and every one."""

    @pytest.mark.parametrize("max_lifetime", [False, True], ids=["expiry", "max_lifetime"])
    async def test_batches(self, tmp_path: Path, max_lifetime: bool) -> None:
        """2,500 stamped expired rows, unreadable ones among them: three transactions."""
        path = tmp_path / "s.db"
        clock = FakeClock()
        config = SessionStoreConfig(lifetime=60, max_lifetime=3600 if max_lifetime else None)
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.executemany(
                f"INSERT INTO {TABLE} (key, value, written) VALUES (?1, ?2, {stamp('?1')})",
                [
                    (f"wm_session_{n:04}", encode_record(data(n), clock.now_ms - 1))
                    for n in range(2500)
                ],
            )
            conn.executemany(
                f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)",
                [(f"wm_session_{n:04}x", UNREADABLE) for n in range(0, 2500, 500)],
            )
        async with LocalStorageSessionStore(path, config, clock=clock) as store:
            await store.get("open")
            backend = store._sqlite
            assert backend is not None
            deleted: list[int] = []
            writer = backend.connections._conn
            assert writer is not None
            writer.set_trace_callback(lambda sql: deleted.append(0) if sql == "COMMIT" else None)
            assert await store.clean_expired() == 2500
            writer.set_trace_callback(None)
            assert len(deleted) == 3
        assert sorted(raw_keys(path)) == [f"wm_session_{n:04}x" for n in range(0, 2500, 500)]

    async def test_settings_given_back(self, tmp_path: Path) -> None:
        """The page cache and the checkpoint threshold clean_expired changes are restored."""
        clock = FakeClock()
        async with LocalStorageSessionStore(tmp_path / "s.db", MINUTE, clock=clock) as store:
            for n in range(1500):
                await store.set(f"s{n}", data(n))
            backend = store._sqlite
            assert backend is not None
            writer = backend.connections._conn
            assert writer is not None
            settings = "PRAGMA cache_size", "PRAGMA wal_autocheckpoint"
            before = [writer.execute(pragma).fetchall() for pragma in settings]
            clock.advance(seconds=61)
            assert await store.clean_expired() == 1500
            assert [writer.execute(pragma).fetchall() for pragma in settings] == before
