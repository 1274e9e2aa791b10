"""LocalStorageSessionStore specifics: the wire format in storage, SQLite durability and sharing."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typing_extensions import assert_type

from walletmesh_sessions import (
    CorruptRecordError,
    InvalidConfigError,
    LocalStorageSessionStore,
    SessionData,
    SessionStoreConfig,
    StoreClosedError,
    StoreUnavailableError,
)
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._core.data import SessionRecord
from walletmesh_sessions._core.protocol import DEFERRED
from walletmesh_sessions._local.sqlite import SCHEMA, TABLE, Durability
from walletmesh_sessions._local.sqlite.backend import prefix_upper_bound
from walletmesh_sessions._local.sqlite.connections import CHECKPOINT_EVERY
from walletmesh_sessions._local.sqlite.file import open_existing
from walletmesh_sessions.testing import FakeClock

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "ts-localstorage-records.json"
ROOT = Path(__file__).parent.parent
FOREIGN = {
    "theme": "dark",
    "wm_sessionX": "not ours",
    "wm_session": "not ours either",
    "wm_Session_a": "case differs",
    "xwm_session_a": "prefix not at start",
}


def data(n: int) -> SessionData:
    return SessionData(f"s{n}", "https://app.example", {"eip155:1": ["eth_accounts"]})


def raw_rows(path: Path) -> dict[str, str]:
    """Every key/value in the SQLite file, read with the sqlite3 module directly."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute(f"SELECT key, value FROM {TABLE}").fetchall())


def plant(path: Path, rows: dict[str, str]) -> None:
    """Write raw rows into the file as another program would (schema as the store makes it)."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (?, ?)", rows.items())


def largest_file(*paths: Path) -> int:
    """The size in bytes of the largest of `paths`."""
    return max(os.stat(p).st_size for p in paths)


@pytest.fixture(params=["file", "mapping"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_async_with_gives_a_subclass_its_own_type() -> None:
    """``async with`` on a subclass gives the subclass, to type checkers too."""

    class Mine(LocalStorageSessionStore):
        pass

    async with Mine({}) as store:
        assert_type(store, Mine)
        assert type(store) is Mine


class Storage:
    """One storage of either kind, with raw access for planting and inspecting records."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "sessions.db"
        self.mapping: dict[str, str] = {}

    @property
    def target(self) -> Path | MutableMapping[str, str]:
        return self.path if self.kind == "file" else self.mapping

    def plant(self, rows: dict[str, str]) -> None:
        if self.kind == "file":
            plant(self.path, rows)
        else:
            self.mapping.update(rows)

    def raw(self) -> dict[str, str]:
        return raw_rows(self.path) if self.kind == "file" else dict(self.mapping)


@pytest.fixture
def storage(storage_kind: str, tmp_path: Path) -> Storage:
    return Storage(storage_kind, tmp_path)


def load_fixture() -> tuple[int, dict[str, str]]:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return raw["written_at_ms"], {r["key"]: r["value"] for r in raw["records"]}


class TestTypeScriptRecords:
    """Records the TypeScript store wrote read here as they read there, and vice versa."""

    async def test_reads_fixture(self, storage: Storage) -> None:
        """At written_at_ms: three live sessions, s-old expired and removed, theme untouched."""
        written_at, records = load_fixture()
        storage.plant(records)
        clock = FakeClock(written_at)
        async with LocalStorageSessionStore(
            storage.target, SessionStoreConfig(lifetime=60), clock=clock
        ) as store:
            sessions = await store.get_all()
            assert set(sessions) == {
                "https://app.example.com_s-basic",
                "https://dapp.example.org_s-multi",
                "https://wallet.example_s-noexp",
            }
            assert sessions["https://dapp.example.org_s-multi"].permissions["eip155:137"] == (
                "eth_sendTransaction",
                "personal_sign",
            )
            assert await store.get("https://old.example.com_s-old") is None
            assert await store.clean_expired() == 0  # get removed the only expired one
            clock.advance(ms=60_000)
            assert await store.get("https://app.example.com_s-basic") is not None
            clock.advance(ms=1)
            assert await store.clean_expired() == 2
            assert set(await store.get_all()) == {"https://wallet.example_s-noexp"}
        assert storage.raw()["theme"] == "dark"

    async def test_writes_what_typescript_writes(self, storage: Storage) -> None:
        """The stored value is byte-for-byte the TypeScript store's record."""
        written_at, records = load_fixture()
        key = "wm_session_https://app.example.com_s-basic"
        clock = FakeClock(written_at)
        async with LocalStorageSessionStore(
            storage.target, SessionStoreConfig(lifetime=60), clock=clock
        ) as store:
            await store.set(
                "https://app.example.com_s-basic",
                SessionData(
                    "s-basic",
                    "https://app.example.com",
                    {"eip155:1": ["eth_accounts", "eth_sendTransaction"]},
                ),
            )
        assert storage.raw()[key] == records[key]

    async def test_refresh_gives_expiry_to_unexpiring(self, storage: Storage) -> None:
        """With refresh and a lifetime, reading a session stored without expiry gives it one."""
        written_at, records = load_fixture()
        storage.plant(records)
        clock = FakeClock(written_at)
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(storage.target, config, clock=clock) as store:
            assert await store.get("https://wallet.example_s-noexp") is not None
            record = json.loads(storage.raw()["wm_session_https://wallet.example_s-noexp"])
            assert record["expiresAt"] == written_at + 60_000
            clock.advance(ms=60_001)
            assert await store.get("https://wallet.example_s-noexp") is None

    async def test_refresh_changes_only_expiry(self, storage: Storage) -> None:
        """Sliding keeps unknown fields, in data and beside it, exactly."""
        value = (
            '{"data":{"id":"a","origin":"o","permissions":{},"futureField":{"x":[1,2]}},'
            '"expiresAt":1700000001000,"version":3}'
        )
        storage.plant({"wm_session_a": value})
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        clock = FakeClock()
        async with LocalStorageSessionStore(storage.target, config, clock=clock) as store:
            for read in (store.get("a"), store.get_all()):
                await read
                record = json.loads(storage.raw()["wm_session_a"])
                assert record == {
                    "data": {
                        "id": "a",
                        "origin": "o",
                        "permissions": {},
                        "futureField": {"x": [1, 2]},
                    },
                    "expiresAt": clock.now_ms + 60_000,
                    "version": 3,
                }
                clock.advance(ms=5)


class TestPrefix:
    """Only keys that start with the prefix, as plain text, belong to the store."""

    @pytest.mark.parametrize("prefix", ["wm_session_", "wm_%_", "a*[?]\\", "\U0010ffff", "z\ud7ff"])
    async def test_foreign_keys_untouched(self, storage: Storage, prefix: str) -> None:
        """clear, get_all and clean_expired never see or touch keys outside the prefix."""
        if not prefix.isascii() and "\ud7ff" in prefix:
            prefix = "z\ud7ff"
        foreign = dict(FOREIGN)
        foreign[prefix[:-1] + "X" + "a"] = "near miss"
        foreign[prefix[:-1]] = "shorter"
        foreign[prefix[:-1] + chr(ord(prefix[-1]) - 1) + "z"] = "just below"
        foreign["wm_xsession_a"] = encode_record(data(9), 1)  # a LIKE "wm_session_" would match
        storage.plant(foreign)
        clock = FakeClock()
        async with LocalStorageSessionStore(
            storage.target, SessionStoreConfig(lifetime=60), prefix=prefix, clock=clock
        ) as store:
            await store.set("a", data(1))
            await store.set("b", data(2))
            assert set(await store.get_all()) == {"a", "b"}
            clock.advance(seconds=61)
            assert await store.clean_expired() == 2
            await store.set("c", data(3))
            await store.clear()
            assert await store.get_all() == {}
        assert storage.raw() == foreign

    @given(st.text(min_size=1), st.text())
    def test_upper_bound(self, prefix: str, rest: str) -> None:
        """prefix <= key < bound exactly when key starts with prefix (UTF-8 byte order)."""
        key = rest
        bound = prefix_upper_bound(prefix)
        inside = enc(prefix) <= enc(key) and (bound is None or enc(key) < enc(bound))
        assert inside == key.startswith(prefix) or any(0xD800 <= ord(c) <= 0xDFFF for c in key)
        inside = enc(prefix) <= enc(prefix + rest) and (
            bound is None or enc(prefix + rest) < enc(bound)
        )
        assert inside

    def test_bad_prefix(self) -> None:
        """An empty or non-str prefix is refused."""
        for prefix in ("", 5, None):
            with pytest.raises(InvalidConfigError, match="prefix"):
                LocalStorageSessionStore({}, prefix=prefix)  # type: ignore[arg-type]


def enc(text: str) -> bytes:
    """UTF-8 bytes, the order SQLite compares TEXT in (surrogates passed through)."""
    return text.encode("utf-8", "surrogatepass")


class TestCorruptRecords:
    """A record that is not a valid session never hides the others and is never deleted."""

    CORRUPT: ClassVar[dict[str, str]] = {
        "wm_session_notjson": "{oops",
        "wm_session_noid": '{"data":{"origin":"o"}}',
        "wm_session_array": "[1,2]",
        "wm_session_badexp": '{"data":{"id":"x","origin":"o"},"expiresAt":"soon"}',
    }

    async def test_skipped_and_kept(
        self, storage: Storage, caplog: pytest.LogCaptureFixture
    ) -> None:
        """get_all and clean_expired skip them with a warning; get raises naming the id."""
        storage.plant(self.CORRUPT)
        clock = FakeClock()
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(storage.target, config, clock=clock) as store:
            await store.set("good", data(1))
            with caplog.at_level(logging.WARNING, logger="walletmesh_sessions"):
                assert dict(await store.get_all()) == {"good": data(1)}
            assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 4
            assert "notjson" not in caplog.text  # ids are shortened in logs
            clock.advance(seconds=61)
            assert await store.clean_expired() == 1
            for key in self.CORRUPT:
                session_id = key.removeprefix("wm_session_")
                with pytest.raises(CorruptRecordError) as info:
                    await store.get(session_id)
                assert info.value.session_id == session_id
                assert repr(session_id) in str(info.value)
        assert storage.raw() == self.CORRUPT

    async def test_clear_removes_corrupt(self, storage: Storage) -> None:
        """clear removes every key under the prefix, unreadable ones included."""
        storage.plant({**self.CORRUPT, "theme": "dark"})
        async with LocalStorageSessionStore(storage.target) as store:
            await store.clear()
        assert storage.raw() == {"theme": "dark"}

    async def test_delete_removes_corrupt(self, storage: Storage) -> None:
        """delete works on an unreadable record, so an operator can fix it."""
        storage.plant(self.CORRUPT)
        async with LocalStorageSessionStore(storage.target) as store:
            await store.delete("notjson")
        assert "wm_session_notjson" not in storage.raw()


class TestLifecycle:
    """Construction, closing and sharing one file."""

    async def test_closed_store_raises(self, storage: Storage) -> None:
        """Every method of a closed store raises StoreClosedError; closing twice is fine."""
        store = LocalStorageSessionStore(storage.target)
        await store.set("a", data(1))
        await store.aclose()
        await store.aclose()
        for call in (store.get("a"), store.get_all(), store.clear(), store.clean_expired()):
            with pytest.raises(StoreClosedError):
                await call

    async def test_creates_file_and_shares_it(self, tmp_path: Path) -> None:
        """Two store objects over one file see each other's writes at once."""
        path = tmp_path / "new" / "sessions.db"
        path.parent.mkdir()
        async with (
            LocalStorageSessionStore(path) as one,
            LocalStorageSessionStore(str(path)) as two,
        ):
            await one.set("a", data(1))
            assert await two.get("a") == data(1)
            await two.delete("a")
            assert await one.get("a") is None
        assert path.exists()

    def test_bad_storage(self) -> None:
        """Storage that is neither a path nor a mapping is refused at construction."""
        for bad in (5, None, b"sessions.db", ""):
            with pytest.raises(InvalidConfigError):
                LocalStorageSessionStore(bad)  # type: ignore[arg-type]

    async def test_unopenable_file(self, tmp_path: Path) -> None:
        """A path in a missing directory gives a SessionStoreError naming the path."""
        store = LocalStorageSessionStore(tmp_path / "missing" / "s.db")
        with pytest.raises(Exception, match="missing") as info:
            await store.get("a")
        from walletmesh_sessions import SessionStoreError

        assert isinstance(info.value, SessionStoreError)
        await store.aclose()


WRITER = textwrap.dedent(
    """
    import sys, anyio
    from walletmesh_sessions import LocalStorageSessionStore, SessionData, SessionStoreConfig

    async def main(path, tag, count):
        async with LocalStorageSessionStore(path, SessionStoreConfig(lifetime=3600)) as store:
            for n in range(count):
                await store.set(f"{tag}-{n}", SessionData(f"{tag}{n}", "https://p.example"))
                print(f"{tag}-{n}", flush=True)
            if tag == "hang":
                await anyio.sleep(3600)

    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


def spawn_writer(path: Path, tag: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), tag, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


class TestProcesses:
    """Real OS processes sharing one file, and one killed mid-stream."""

    async def test_two_processes_write_concurrently(self, tmp_path: Path) -> None:
        """Two processes writing one file at once lose nothing and never see 'locked'."""
        path = tmp_path / "shared.db"
        procs = [spawn_writer(path, tag, 300) for tag in ("p1", "p2")]
        async with LocalStorageSessionStore(path, SessionStoreConfig(lifetime=3600)) as store:
            for n in range(300):
                await store.set(f"me-{n}", data(n))
            for proc in procs:
                out, _ = await anyio.to_thread.run_sync(proc.communicate)
                assert proc.returncode == 0
                assert len(out.split()) == 300
            sessions = await store.get_all()
        assert len(sessions) == 900
        assert {f"{tag}-{n}" for tag in ("p1", "p2", "me") for n in range(300)} == set(sessions)

    def test_sigkill_keeps_acknowledged_writes(self, tmp_path: Path) -> None:
        """Every set acknowledged before SIGKILL, mid-run and past the first background
        checkpoint, is there when the file is reopened (durability "process", the default)."""
        path = tmp_path / "crash.db"
        proc = spawn_writer(path, "hang", 20 * CHECKPOINT_EVERY)
        assert proc.stdout is not None
        acknowledged = [proc.stdout.readline().strip() for _ in range(3 * CHECKPOINT_EVERY)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        async def reopen() -> dict[str, Any]:
            async with LocalStorageSessionStore(path) as store:
                return dict(await store.get_all())

        sessions = anyio.run(reopen)
        assert set(acknowledged) <= set(sessions)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


class TestEventLoopNotBlocked:
    """Disk work runs off the event loop: other tasks keep running during big scans."""

    async def test_heartbeat_during_big_scans(self, tmp_path: Path) -> None:
        """A heartbeat task ticks while get_all and clean_expired walk 30,000 sessions."""
        path = tmp_path / "big.db"
        clock = FakeClock()
        expires = clock.now_ms + 60_000
        rows = [(f"wm_session_id{n}", encode_record(data(n), expires)) for n in range(30_000)]
        with sqlite3.connect(path) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.executemany(f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)", rows)
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.001)
                ticks += 1

        async with (
            LocalStorageSessionStore(path, SessionStoreConfig(lifetime=60), clock=clock) as store,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(heartbeat)
            assert len(await store.get_all()) == 30_000
            ticks_during_get_all = ticks
            clock.advance(seconds=61)
            assert await store.clean_expired() == 30_000
            tg.cancel_scope.cancel()
        assert ticks_during_get_all >= 3
        assert ticks >= ticks_during_get_all + 3


class TestReadsOnTheCallingThread:
    """Plain lookups skip the worker thread, and fall back to it whenever they would wait."""

    async def test_plain_get_skips_the_thread(self, tmp_path: Path) -> None:
        """A live session without refresh is read without a worker thread."""
        async with LocalStorageSessionStore(tmp_path / "s.db") as store:
            await store.set("a", data(1))
            sqlite = store._sqlite
            assert sqlite is not None
            assert sqlite.get(False, "a") == data(1)
            assert sqlite.get(False, "missing") is None

    async def test_writes_are_deferred(self, tmp_path: Path, clock: FakeClock) -> None:
        """With durability "power", removing or sliding (a synced commit) goes to the thread."""
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(
            tmp_path / "s.db", config, clock=clock, durability="power"
        ) as store:
            await store.set("a", data(1))
            sqlite = store._sqlite
            assert sqlite is not None
            clock.advance(ms=1)
            assert sqlite.get(False, "a") is DEFERRED
            assert await store.get("a") == data(1)
            clock.advance(seconds=61)
            assert sqlite.get(False, "a") is DEFERRED
            assert await store.get("a") is None
            for write in (
                lambda: sqlite.set(False, "b", data(2)),
                lambda: sqlite.delete(False, "a"),
                lambda: sqlite.create(False, "b", data(2)),
                lambda: sqlite.update(False, "a", lambda d: d),
                lambda: sqlite.rotate(False, "a", "c"),
            ):
                assert write() is DEFERRED
        assert raw_rows(tmp_path / "s.db") == {}

    async def test_other_writer_does_not_block_reads(self, tmp_path: Path) -> None:
        """While another process holds the write lock, lookups still answer at once."""
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(path) as store:
            await store.set("a", data(1))
            holder = subprocess.Popen(  # noqa: ASYNC220 - a helper process, started once
                [sys.executable, "-c", WRITER_LOCK, str(path), "5"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdout is not None
            holder.stdout.readline()
            try:
                sqlite = store._sqlite
                assert sqlite is not None
                assert sqlite.get(False, "a") == data(1)
            finally:
                holder.kill()
                holder.wait()
                holder.stdout.close()

    async def test_first_lookup_opens_the_file_in_a_thread(self, tmp_path: Path) -> None:
        """Opening (and creating) the file is disk work: the first lookup defers it."""
        async with LocalStorageSessionStore(tmp_path / "s.db") as store:
            sqlite = store._sqlite
            assert sqlite is not None
            assert sqlite.get(False, "a") is DEFERRED
            assert await store.get("a") is None
            assert sqlite.get(False, "a") is None


class TestDurability:
    """The durability option: its values, and the synchronous setting each one gives."""

    @pytest.mark.parametrize(("durability", "synchronous"), [("process", 1), ("power", 2)])
    async def test_sets_synchronous(
        self, tmp_path: Path, durability: Durability, synchronous: int
    ) -> None:
        """Both connections of the store run with NORMAL (process) or FULL (power)."""
        async with LocalStorageSessionStore(tmp_path / "s.db", durability=durability) as store:
            await store.set("a", data(1))
            sqlite = store._sqlite
            assert sqlite is not None
            assert sqlite.connections.durability == durability
            for conn in (sqlite.connections._conn, sqlite.connections._reader):
                assert conn is not None
                assert conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)
                assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    def test_default_and_bad_values(self) -> None:
        """The default is "process"; anything but "process" or "power" is refused."""
        store = LocalStorageSessionStore("unused.db")
        assert store._sqlite is not None
        assert store._sqlite.connections.durability == "process"
        for bad in ("full", "", None, 1, b"power", "POWER"):
            with pytest.raises(InvalidConfigError, match="durability"):
                LocalStorageSessionStore("unused.db", durability=bad)  # type: ignore[arg-type]

    def test_mapping_takes_no_durability(self) -> None:
        """A mapping has no disk: asking it for "power" is refused, the default is fine."""
        with pytest.raises(InvalidConfigError, match="SQLite files only"):
            LocalStorageSessionStore({}, durability="power")
        assert LocalStorageSessionStore({}).durability is None

    def test_checkpoint_never_creates_the_file(self, tmp_path: Path) -> None:
        """The checkpoint's connection opens an existing file only, whatever its name."""
        path = tmp_path / "gone 100% #1?.db"
        with pytest.raises(sqlite3.OperationalError):
            open_existing(str(path))
        assert not path.exists()
        sqlite3.connect(path).close()
        open_existing(str(path)).close()

    async def test_no_thread_for_a_checkpoint_is_no_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When no thread can start (interpreter shutdown), a committed write still succeeds."""
        async with LocalStorageSessionStore(tmp_path / "s.db") as store:
            await store.get("open")

            def refuse(_thread: threading.Thread) -> None:
                raise RuntimeError("can't create new thread at interpreter shutdown")

            monkeypatch.setattr(threading.Thread, "start", refuse)
            for n in range(CHECKPOINT_EVERY + 5):
                await store.set(f"s{n}", data(n))
            monkeypatch.undo()
            assert len(await store.get_all()) == CHECKPOINT_EVERY + 5
            sqlite = store._sqlite
            assert sqlite is not None
            assert not sqlite.connections._checkpointing.locked()


class TestWritesOnTheCallingThread:
    """With "process", writes run on the calling thread unless a lock is taken."""

    async def test_inline_when_free(self, tmp_path: Path, clock: FakeClock) -> None:
        """Each per-session write answers at once, without a worker thread."""
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(path, config, clock=clock) as store:
            await store.get("open")
            sqlite = store._sqlite
            assert sqlite is not None
            assert sqlite.set(False, "a", data(1)) is None
            assert sqlite.create(False, "b", data(2)) is True
            assert sqlite.update(False, "b", lambda d: d) == data(2)
            clock.advance(ms=1)
            assert sqlite.get(False, "a") == data(1)  # and slid, on this thread
            assert sqlite.rotate(False, "b", "c") == "c"
            assert sqlite.delete(False, "a") is None
        assert set(raw_rows(path)) == {"wm_session_c"}

    async def test_deferred_while_another_process_holds_the_lock(self, tmp_path: Path) -> None:
        """A held write lock defers writes unchanged, and the event loop runs while one waits.

        How long the loop may stall is a speed target, measured by the benchmark suite; this
        test checks the loop keeps turning (a write that blocked it would allow one tick).
        """
        path = tmp_path / "s.db"
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.001)
                ticks += 1

        async with LocalStorageSessionStore(path) as store:
            await store.set("a", data(1))
            sqlite = store._sqlite
            assert sqlite is not None
            with write_lock_held(path, seconds=1):
                assert sqlite.set(False, "b", data(2)) is DEFERRED
                assert sqlite.delete(False, "a") is DEFERRED
                assert sqlite.create(False, "b", data(2)) is DEFERRED
                async with anyio.create_task_group() as tg:
                    tg.start_soon(heartbeat)
                    await anyio.sleep(0.05)
                    ticks = 0
                    start = time.monotonic()
                    await store.set("b", data(2))  # waits in a worker for the lock
                    waited = time.monotonic() - start
                    tg.cancel_scope.cancel()
            assert await store.get("b") == data(2)
        assert waited > 0.5
        assert ticks >= 50, ticks
        assert raw_rows(path) == {
            "wm_session_a": raw_rows(path)["wm_session_a"],
            "wm_session_b": raw_rows(path)["wm_session_b"],
        }

    @pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
    @pytest.mark.parametrize("durability", ["process", "power"])
    async def test_update_whose_commit_fails_runs_change_once(
        self, tmp_path: Path, durability: Durability
    ) -> None:
        """A commit that fails (the disk is full) fails the update; `change` ran only once."""
        import resource

        path = tmp_path / "s.db"
        calls = 0

        def change(current: SessionData) -> SessionData:
            nonlocal calls
            calls += 1
            return SessionData(current.id, current.origin + "x" * 20_000)

        async with LocalStorageSessionStore(path, durability=durability) as store:
            await store.set("a", data(1))
            full = largest_file(path, path.with_name(path.name + "-wal"))
            limits = resource.getrlimit(resource.RLIMIT_FSIZE)
            handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (full, limits[1]))
            try:
                with pytest.raises(StoreUnavailableError):
                    await store.update("a", change)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, limits)
                signal.signal(signal.SIGXFSZ, handler)
            assert calls == 1
            assert await store.get("a") == data(1)
            await store.set("b", data(2))  # no transaction left open on either connection
            assert await store.get("b") == data(2)


WRITER_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def plant_bytes(path: Path, rows: dict[bytes, bytes]) -> None:
    """Write raw bytes as TEXT, as a tool that does not check UTF-8 would."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            f"INSERT OR REPLACE INTO {TABLE} (key, value)"
            " VALUES (CAST(? AS TEXT), CAST(? AS TEXT))",
            rows.items(),
        )


def raw_bytes(path: Path) -> dict[bytes, bytes]:
    """Every key/value in the file as the bytes stored, whatever they are."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.text_factory = bytes
        return dict(conn.execute(f"SELECT key, value FROM {TABLE}").fetchall())


def open_files_under(directory: Path) -> list[str]:
    """What this process's file descriptors point at inside `directory`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)):
                found.append(target)
    return found


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


@contextlib.contextmanager
def write_lock_held(path: Path, seconds: float = 30) -> Iterator[None]:
    """Another process holds the file's write lock for the duration."""
    holder = subprocess.Popen(
        [sys.executable, "-c", WRITER_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


class TestNotUtf8:
    """Bytes that are not UTF-8, in a value or in a key, make an unreadable record, no crash."""

    BAD_VALUE = b'{"data":{"id":"v","origin":"\xff"},"expiresAt":1}'
    BAD_KEY = b"wm_session_\xff\xfe"

    async def test_unreadable_like_any_other(
        self, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Skipped with a warning, shown by inspect, refused by get, removed by delete and clear."""
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(
            path, SessionStoreConfig(lifetime=60), clock=clock
        ) as store:
            await store.set("good", data(1))
            plant_bytes(
                path,
                {
                    b"wm_session_badvalue": self.BAD_VALUE,
                    self.BAD_KEY: encode_record(data(2), 1).encode(),
                    b"theme": b"dark\xff",
                },
            )
            with caplog.at_level(logging.WARNING, logger="walletmesh_sessions"):
                assert dict(await store.get_all()) == {"good": data(1)}
                assert len(caplog.records) == 2
                caplog.clear()
                assert await store.clean_expired() == 0
                assert len(caplog.records) >= 1
            records = {r.session_id: r for r in await store.inspect()}
            assert set(records) == {"good", "badvalue", "\ufffd\ufffd"}
            assert records["badvalue"].data is None
            assert records["badvalue"].error
            assert records["\ufffd\ufffd"] == SessionRecord("\ufffd\ufffd", data(2), 1)
            for _ in range(2):  # on the calling thread, then from the worker's cache-free path
                with pytest.raises(CorruptRecordError) as info:
                    await store.get("badvalue")
                assert info.value.session_id == "badvalue"
            [shown] = await store.inspect("badvalue")
            assert shown.data is None
            await store.delete("badvalue")
            assert b"wm_session_badvalue" not in raw_bytes(path)
            assert self.BAD_KEY in raw_bytes(path)
            await store.clear()
            assert await store.inspect() == []
        assert raw_bytes(path) == {b"theme": b"dark\xff"}

    async def test_foreign_bytes_inside_the_range(
        self, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Bytes that sort between the prefix and its bound without starting with it are foreign."""
        path = tmp_path / "s.db"
        prefix = "\u00ff"  # C3 BF; its bound is U+0100, C4 80
        foreign = {b"\xc3\xc0x": encode_record(data(9), 1).encode(), b"\xc3\xffy": b"\xff"}
        plant_bytes(path, foreign)
        async with LocalStorageSessionStore(path, prefix=prefix, clock=clock) as store:
            await store.set("a", data(1))
            with caplog.at_level(logging.WARNING, logger="walletmesh_sessions"):
                assert set(await store.get_all()) == {"a"}
                assert await store.clean_expired() == 0
            assert caplog.records == []
            assert [r.session_id for r in await store.inspect()] == ["a"]
            await store.clear()
        assert raw_bytes(path) == foreign

    async def test_refreshing_store_reads_around_it(self, tmp_path: Path, clock: FakeClock) -> None:
        """A refreshing get_all slides the readable sessions and leaves the bytes as they were."""
        path = tmp_path / "s.db"
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(path, config, clock=clock) as store:
            await store.set("good", data(1))
            plant_bytes(path, {b"wm_session_badvalue": self.BAD_VALUE})
            clock.advance(seconds=1)
            assert dict(await store.get_all()) == {"good": data(1)}
            with pytest.raises(CorruptRecordError):
                await store.get("badvalue")
        assert raw_bytes(path)[b"wm_session_badvalue"] == self.BAD_VALUE


class TestFilesReleased:
    """After a failed call, aclose still lets go of the database, its WAL and its SHM."""

    @needs_proc
    async def test_after_failed_calls(self, tmp_path: Path) -> None:
        """Corrupt reads (both threads) and a timed-out write fail; aclose closes every file."""
        path = tmp_path / "s.db"
        store = LocalStorageSessionStore(path, timeout=0.5)
        await store.set("good", data(1))
        plant_bytes(path, {b"wm_session_bad": b"\xff"})
        failures: list[BaseException] = []  # kept alive: their tracebacks hold frames
        with pytest.raises(CorruptRecordError) as on_loop:
            await store.get("bad")
        failures.append(on_loop.value)
        sqlite = store._sqlite
        assert sqlite is not None
        with pytest.raises(CorruptRecordError) as in_worker:
            await anyio.to_thread.run_sync(sqlite.get, True, "bad")
        failures.append(in_worker.value)
        with write_lock_held(path), pytest.raises(StoreUnavailableError) as timed_out:
            await store.set("late", data(2))
        failures.append(timed_out.value)
        assert open_files_under(tmp_path)
        await store.aclose()
        assert open_files_under(tmp_path) == []
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):  # the WAL and SHM go on a clean close
                os.rename(f"{path}{suffix}", f"{path}{suffix}.moved")
        assert len(failures) == 3

    @needs_proc
    async def test_while_a_checkpoint_runs(self, tmp_path: Path) -> None:
        """aclose right after the commit that starts a background checkpoint waits for it."""
        path = tmp_path / "s.db"
        big = SessionData("s", "https://app.example", {"eip155:1": ["m" * 100_000]})
        store = LocalStorageSessionStore(path)
        await store.get("open")
        for n in range(CHECKPOINT_EVERY):  # on the calling thread, the last one starts it
            await store.set(f"s{n}", big)
        await store.aclose()
        assert open_files_under(tmp_path) == []


OLD_SCHEMA = (
    f"CREATE TABLE {TABLE} ("
    " key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at INTEGER"
    ") WITHOUT ROWID",
    f"CREATE INDEX {TABLE}_expiry ON {TABLE} (expires_at) WHERE expires_at IS NOT NULL",
)


def dump(path: Path) -> list[tuple[Any, ...]]:
    """Every row exactly as stored: key and value bytes and storage classes."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            f"SELECT hex(key), typeof(key), hex(value), typeof(value) FROM {TABLE} ORDER BY key"
        ).fetchall()


class TestExpiryColumn:
    """The indexed expiry is computed from the record, so it can never disagree with it."""

    async def test_bare_key_value_rows(self, tmp_path: Path, clock: FakeClock) -> None:
        """Rows inserted as bare key/value pairs are cleaned and hidden once expired."""
        path = tmp_path / "s.db"
        live_until = clock.now_ms + 1000
        plant(
            path,
            {
                "wm_session_old": encode_record(data(1), clock.now_ms - 1),
                "wm_session_float": '{"data":{"id":"f","origin":"o"},"expiresAt":1.5}',
                "wm_session_live": encode_record(data(2), live_until),
                "wm_session_zero": '{"data":{"id":"z","origin":"o"},"expiresAt":0}',
                "wm_session_null": '{"data":{"id":"n","origin":"o"},"expiresAt":null}',
                "theme": "dark",
            },
        )
        async with LocalStorageSessionStore(path, clock=clock) as store:
            assert set(await store.get_all()) == {"live", "zero", "null"}
            assert await store.clean_expired() == 2
            assert set(raw_rows(path)) == {
                "wm_session_live",
                "wm_session_zero",
                "wm_session_null",
                "theme",
            }
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert dict(conn.execute(f"SELECT key, expires_at FROM {TABLE}").fetchall()) == {
                "wm_session_live": live_until,
                "wm_session_zero": None,
                "wm_session_null": None,
                "theme": None,
            }

    async def test_writes_cannot_set_the_column(self, tmp_path: Path) -> None:
        """The column is generated: nobody can write a value that disagrees with the JSON."""
        path = tmp_path / "s.db"
        plant(path, {})
        with (
            contextlib.closing(sqlite3.connect(path)) as conn,
            pytest.raises(sqlite3.OperationalError),
        ):
            conn.execute(f"INSERT INTO {TABLE} (key, value, expires_at) VALUES ('k', 'v', 1)")

    async def test_migrates_old_files(self, tmp_path: Path, clock: FakeClock) -> None:
        """Stores opening an old-schema file at once migrate it once, keeping every row's bytes."""
        path = tmp_path / "old.db"
        past, future = clock.now_ms - 1, clock.now_ms + 60_000
        rows: list[tuple[Any, Any, Any]] = [
            ("wm_session_live", encode_record(data(1), future), future),
            ("wm_session_null", encode_record(data(2), past), None),  # the column disagrees
            ("wm_session_zero", encode_record(data(3), past), 0),  # ... and here
            ("wm_session_lies", encode_record(data(4), future), 5),  # ... and here
            ("wm_session_corrupt", "{oops", None),
            ("theme", "dark", None),
            ("blob", b"\x00\xff", None),
        ]
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            for statement in OLD_SCHEMA:
                conn.execute(statement)
            conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?)", rows)
            conn.execute(
                f"INSERT INTO {TABLE} VALUES (CAST(? AS TEXT), CAST(? AS TEXT), NULL)",
                (b"wm_session_\xff", b"\xfe"),
            )
        before = dump(path)
        stores = [LocalStorageSessionStore(path, clock=clock) for _ in range(4)]
        found: list[set[str]] = []

        async def read(store: LocalStorageSessionStore) -> None:
            found.append(set(await store.get_all()))

        async with anyio.create_task_group() as tg:
            for store in stores:
                tg.start_soon(read, store)
        assert found == [{"live", "lies"}] * 4
        assert dump(path) == before
        with contextlib.closing(sqlite3.connect(path)) as conn:
            columns = {row[1]: row[6] for row in conn.execute(f"PRAGMA table_xinfo({TABLE})")}
            assert columns == {"key": 0, "value": 0, "expires_at": 2, "written": 0}  # 2: generated
            tables = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall()
            assert tables == [(TABLE,)]
        assert await stores[0].clean_expired() == 2
        for store in stores:
            await store.aclose()
        assert [row for row in dump(path) if row not in before] == []
        assert len(dump(path)) == len(before) - 2


class TestFileGone:
    """A file deleted or replaced under an open store: an error, never a lost write."""

    @needs_proc
    async def test_deleted(self, tmp_path: Path) -> None:
        """Writes and reads fail naming the path; the next call opens (creates) the path again."""
        path = tmp_path / "s.db"
        store = LocalStorageSessionStore(path)
        await store.set("a", data(1))
        for suffix in ("", "-wal", "-shm"):
            os.remove(f"{path}{suffix}")
        with pytest.raises(StoreUnavailableError, match="deleted") as info:
            await store.set("b", data(2))
        assert str(path) in str(info.value)
        assert not path.exists()
        await store.set("b", data(2))
        assert await store.get("a") is None  # the deleted file is gone for good
        assert set(raw_rows(path)) == {"wm_session_b"}
        for suffix in ("", "-wal", "-shm"):
            os.remove(f"{path}{suffix}")
        with pytest.raises(StoreUnavailableError, match="deleted"):
            await store.get("b")  # a lookup never answers from a deleted file either
        await store.aclose()
        assert open_files_under(tmp_path) == []

    async def test_replaced_then_closed(self, tmp_path: Path) -> None:
        """Closing a store whose file was replaced leaves no WAL for the new file to replay."""
        path = tmp_path / "s.db"
        other = tmp_path / "other.db"
        async with LocalStorageSessionStore(other) as writer:
            await writer.set("x", data(9))
        async with LocalStorageSessionStore(path) as store:
            await store.set("a", data(1))
            os.replace(other, path)  # our WAL and SHM stay, as a careless restore leaves them
        async with LocalStorageSessionStore(path) as store:
            assert dict(await store.get_all()) == {"x": data(9)}
        assert set(raw_rows(path)) == {"wm_session_x"}

    async def test_replaced(self, tmp_path: Path) -> None:
        """A file renamed over ours: the call fails; later calls use the new file."""
        path = tmp_path / "s.db"
        other = tmp_path / "other.db"
        async with LocalStorageSessionStore(other) as writer:
            await writer.set("x", data(9))
        async with LocalStorageSessionStore(path) as store:
            await store.set("a", data(1))
            os.replace(other, path)
            with pytest.raises(StoreUnavailableError, match="replaced") as info:
                await store.set("b", data(2))
            assert str(path) in str(info.value)
            assert await store.get("x") == data(9)
            assert await store.get("a") is None
            await store.set("b", data(2))
        assert set(raw_rows(path)) == {"wm_session_x", "wm_session_b"}


class TestBoundedWaiting:
    """Every call fails within its timeout from when it was made, however many are queued."""

    async def test_queued_writes_fail_on_time(self, tmp_path: Path) -> None:
        """Ten writes behind another process's lock each fail within ~1 s; lookups still answer."""
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(path, timeout=1) as store:
            await store.set("a", data(1))
            took: list[float] = []
            messages: list[str] = []

            async def write(n: int) -> None:
                start = time.monotonic()
                with pytest.raises(StoreUnavailableError) as info:
                    await store.set(f"queued-session-{n}", data(n))
                took.append(time.monotonic() - start)
                messages.append(str(info.value))

            with write_lock_held(path):
                async with anyio.create_task_group() as tg:
                    for n in range(10):
                        tg.start_soon(write, n)
                    await anyio.sleep(0.2)
                    start = time.monotonic()
                    assert await store.get("a") == data(1)
                    assert time.monotonic() - start < 0.5
        assert len(took) == 10
        assert max(took) < 3, took
        assert all("1 s" in m and "queued-session" not in m for m in messages), messages

    async def test_busy_store_lock_fails_on_time(self, tmp_path: Path, clock: FakeClock) -> None:
        """A call queued behind a slow call on the same store fails when its own time is up."""
        release = threading.Event()
        loop_thread = threading.current_thread()

        def slow_clock() -> float:
            if threading.current_thread() is not loop_thread:
                release.wait(10)  # the worker holds the store's lock meanwhile
            return clock()

        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        store = LocalStorageSessionStore(tmp_path / "s.db", config, clock=clock, timeout=0.5)
        await store.set("a", data(1))
        sqlite = store._sqlite
        assert sqlite is not None
        sqlite._clock = slow_clock
        clock.advance(ms=1)
        try:
            async with anyio.create_task_group() as tg:
                # The sliding get as its worker thread runs it (on the loop it would not wait).
                tg.start_soon(anyio.to_thread.run_sync, sqlite.get, True, "a")
                await anyio.sleep(0.1)
                start = time.monotonic()
                with pytest.raises(StoreUnavailableError, match="other calls on this store"):
                    await store.delete("a")
                assert time.monotonic() - start < 2
                release.set()
        finally:
            release.set()
            await store.aclose()

    async def test_lock_waits_share_one_deadline(self, tmp_path: Path) -> None:
        """Time spent queued on the store is not given again to the wait for the file's lock."""
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(path, timeout=2) as store:
            await store.set("a", data(1))
            sqlite = store._sqlite
            assert sqlite is not None
            sqlite.connections._lock.acquire()  # as a slow call on this store would, for 1.5 s
            releaser = threading.Timer(1.5, sqlite.connections._lock.release)
            with write_lock_held(path):
                releaser.start()
                start = time.monotonic()
                with pytest.raises(StoreUnavailableError, match=r"2 s.*lock on the file"):
                    await store.delete("a")
                took = time.monotonic() - start
            releaser.join(5)
        assert 1.4 < took < 3.0  # a fresh timeout for the file's lock would make it about 3.5 s

    async def test_first_open_waits_for_a_rollback_journal_lock(self, tmp_path: Path) -> None:
        """A file not yet in WAL whose write lock another program holds: the first call waits
        for it within the timeout (SQLite answers "busy" at once there, without waiting)."""
        path = tmp_path / "s.db"
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("CREATE TABLE other_program (x)")  # journal_mode stays "delete"
        async with LocalStorageSessionStore(path, timeout=5) as store:
            with write_lock_held(path, seconds=0.3):
                start = time.monotonic()
                await store.set("a", data(1))
                waited = time.monotonic() - start
            assert await store.get("a") == data(1)
        assert 0.1 < waited < 4, waited

    async def test_every_kind_of_write_waits_out_a_lock(self, tmp_path: Path) -> None:
        """Hundreds of set/create/update/rotate calls queued behind another process's lock all
        complete once it is released: each applied once, none lost or half done."""
        path = tmp_path / "s.db"
        ran: dict[int, int] = {}

        def change(n: int) -> Callable[[SessionData], SessionData]:
            def bump(current: SessionData) -> SessionData:
                ran[n] = ran.get(n, 0) + 1
                return SessionData(current.id, current.origin + "+")

            return bump

        async with LocalStorageSessionStore(path, timeout=10) as store:
            for n in range(50):
                await store.set(f"u{n}", SessionData(f"u{n}", "o"))
                await store.set(f"r{n}", SessionData(f"r{n}", "o"))
            async with anyio.create_task_group() as tg:
                with write_lock_held(path):
                    for n in range(50):
                        tg.start_soon(store.set, f"s{n}", data(n))
                        tg.start_soon(store.create, f"c{n}", data(n))
                        tg.start_soon(store.update, f"u{n}", change(n))
                        tg.start_soon(store.rotate, f"r{n}", f"R{n}")
                    await anyio.sleep(0.3)
                    assert await store.get("s0") is None  # all still waiting
            sessions = await store.get_all()
        assert ran == dict.fromkeys(range(50), 1)
        for n in range(50):
            assert sessions[f"s{n}"] == sessions[f"c{n}"] == data(n)
            assert sessions[f"u{n}"].origin == "o+"
            assert f"r{n}" not in sessions
            assert sessions[f"R{n}"].id == f"R{n}"
        assert len(sessions) == 200

    async def test_waiting_for_a_worker_thread_counts(self, tmp_path: Path) -> None:
        """A call that cannot get a worker thread in time fails, naming the timeout."""
        # With "power" every write needs a worker thread (its commit syncs to disk).
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(path, timeout=0.5, durability="power") as store:
            await store.set("a", data(1))
            limiter = anyio.to_thread.current_default_thread_limiter()
            tokens = limiter.total_tokens
            release = threading.Event()
            limiter.total_tokens = 1
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.to_thread.run_sync, release.wait, 10)
                    await anyio.sleep(0.05)
                    start = time.monotonic()
                    with pytest.raises(StoreUnavailableError, match=r"0\.5 s.*worker thread"):
                        await store.set("b", data(2))
                    assert time.monotonic() - start < 2
                    release.set()
            finally:
                release.set()
                limiter.total_tokens = tokens
            await store.set("b", data(2))

    def test_bad_timeout(self) -> None:
        """A timeout that is not a positive, finite number of seconds is refused."""
        for bad in (0, -1, float("inf"), float("nan"), True, "1"):
            with pytest.raises(InvalidConfigError, match="timeout"):
                LocalStorageSessionStore({}, timeout=bad)  # type: ignore[arg-type]
        assert LocalStorageSessionStore({}).timeout == 30.0
        assert LocalStorageSessionStore({}, timeout=2).timeout == 2.0


class TestPermissions:
    """New files are the owner's only; an existing file's mode is never changed."""

    @staticmethod
    def modes(path: Path) -> dict[str, int]:
        return {
            suffix: stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
            for suffix in ("", "-wal", "-shm")
        }

    async def test_new_files_owner_only(self, tmp_path: Path) -> None:
        """The database, its WAL and its SHM are created 0600, whatever the umask allows."""
        path = tmp_path / "s.db"
        umask = os.umask(0o022)
        try:
            async with LocalStorageSessionStore(path) as store:
                await store.set("a", data(1))
                modes = self.modes(path)
        finally:
            os.umask(umask)
        assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}

    async def test_existing_file_keeps_its_mode(self, tmp_path: Path) -> None:
        """A file the operator made group-readable stays so, and its WAL and SHM follow it."""
        path = tmp_path / "s.db"
        plant(path, {"theme": "dark"})
        os.chmod(path, 0o640)
        umask = os.umask(0o022)
        try:
            async with LocalStorageSessionStore(path) as store:
                await store.set("a", data(1))
                modes = self.modes(path)
        finally:
            os.umask(umask)
        assert modes == {"": 0o640, "-wal": 0o640, "-shm": 0o640}


class _WriteOnFirstDecode:
    """A decode cache that lets another connection write once, right after the scan read."""

    def __init__(self, inner: Any, write: Callable[[], None]) -> None:
        self._inner = inner
        self._write: Callable[[], None] | None = write

    def decode(self, text: object, session_id: str) -> Any:
        if self._write is not None:
            write, self._write = self._write, None
            write()
        return self._inner.decode(text, session_id)

    def clear(self) -> None:
        self._inner.clear()


def write_raw(path: Path, key: str, value: str) -> None:
    """Another connection's committed write."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn, conn:
        conn.execute(f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (?, ?)", (key, value))


class TestConcurrentWriters:
    """Writes by other connections between our read and our write are never undone."""

    async def test_set_between_clean_expired_read_and_delete(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """A session set again after clean_expired read it as expired survives the delete."""
        path = tmp_path / "s.db"
        async with LocalStorageSessionStore(
            path, SessionStoreConfig(lifetime=60), clock=clock
        ) as store:
            await store.set("a", data(1))
            # Written by another connection: clean_expired decodes it before deleting.
            write_raw(path, "wm_session_a", encode_record(data(1), clock.now_ms + 60_000))
            clock.advance(seconds=61)
            fresh = encode_record(data(2), clock.now_ms + 60_000)
            sqlite = store._sqlite
            assert sqlite is not None
            sqlite._cache = _WriteOnFirstDecode(  # type: ignore[assignment]
                sqlite._cache, lambda: write_raw(path, "wm_session_a", fresh)
            )
            assert await store.clean_expired() == 0
            assert await store.get("a") == data(2)
        assert raw_rows(path)["wm_session_a"] == fresh

    @pytest.mark.parametrize("durability", ["process", "power"])
    async def test_set_between_get_read_and_slide(
        self, tmp_path: Path, clock: FakeClock, durability: Durability
    ) -> None:
        """New data written after a refreshing get read the old stays: the slide is skipped."""
        path = tmp_path / "s.db"
        new = encode_record(SessionData("a", "https://new.example"), clock.now_ms + 5_000)
        # With "process" the slide runs on the calling thread, with "power" in the worker.
        slides_on = threading.current_thread() if durability == "process" else None
        armed = [False]

        def clock_that_writes() -> float:
            # The get reads the clock after reading the record and before sliding it.
            here = threading.current_thread()
            if armed[0] and (here is slides_on or (slides_on is None and here is not loop)):
                armed[0] = False
                write_raw(path, "wm_session_a", new)
            return clock()

        loop = threading.current_thread()
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(
            path, config, clock=clock_that_writes, durability=durability
        ) as store:
            await store.set("a", data(1))
            clock.advance(seconds=1)
            armed[0] = True
            assert await store.get("a") == data(1)
            assert not armed[0]
        assert raw_rows(path)["wm_session_a"] == new

    @pytest.mark.parametrize("prefix", ["wm_session_", "a\U0010ffff", "\u00ff"])
    async def test_key_at_the_upper_bound_is_foreign(
        self, tmp_path: Path, clock: FakeClock, prefix: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The first key past the prefix range is not ours: not read, cleaned or cleared."""
        bound = prefix_upper_bound(prefix)
        assert bound is not None
        path = tmp_path / "s.db"
        expired = encode_record(data(9), 1)
        plant(path, {bound: expired, bound + "x": expired})
        async with LocalStorageSessionStore(path, prefix=prefix, clock=clock) as store:
            await store.set("a", data(1))
            with caplog.at_level(logging.WARNING, logger="walletmesh_sessions"):
                assert set(await store.get_all()) == {"a"}
                assert await store.clean_expired() == 0
            assert caplog.records == []  # not even seen, so not skipped as unreadable
            assert [r.session_id for r in await store.inspect()] == ["a"]
            await store.clear()
        assert raw_rows(path) == {bound: expired, bound + "x": expired}


def plant_typed(path: Path, rows: list[tuple[str | bytes, str | bytes]]) -> None:
    """Write rows with the types the sqlite3 module gives them: bytes become BLOBs."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)", rows)


class TestRowsOtherProgramsWrite:
    """Rows written by other programs, as Python's sqlite3 writes them, follow the same rules."""

    async def test_blob_value_is_cleaned_like_text(self, tmp_path: Path, clock: FakeClock) -> None:
        """A record stored as a BLOB is read as its text: expired, it is cleaned."""
        path = tmp_path / "s.db"
        expired = f'{{"data":{{"id":"b","origin":"o"}},"expiresAt":{clock.now_ms - 1}}}'
        plant_typed(path, [("wm_session_b", expired.encode())])
        async with LocalStorageSessionStore(path, clock=clock) as store:
            assert await store.get_all() == {}
            assert await store.clean_expired() == 1
        assert raw_rows(path) == {}

    async def test_repeated_key_is_unreadable(self, tmp_path: Path, clock: FakeClock) -> None:
        """A record that repeats expiresAt is ambiguous: skipped, kept, and get says so."""
        path = tmp_path / "s.db"
        ambiguous = '{"data":{"id":"d","origin":"o"},"expiresAt":null,"expiresAt":5}'
        plant_typed(path, [("wm_session_d", ambiguous)])
        async with LocalStorageSessionStore(path, clock=clock) as store:
            assert await store.get_all() == {}
            assert await store.clean_expired() == 0
            with pytest.raises(CorruptRecordError, match="repeats a key"):
                await store.get("d")
        assert raw_rows(path) == {"wm_session_d": ambiguous}

    async def test_absolute_timeout_cleans_old_records(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """Records older than max_lifetime are cleaned, whatever expiresAt they carry."""
        path = tmp_path / "s.db"
        old = clock.now_ms - 10 * 3_600_000
        rows: list[tuple[str | bytes, str | bytes]] = [
            ("wm_session_none", f'{{"data":{{"id":"n","origin":"o","createdAt":{old}}}}}'),
            (
                "wm_session_later",
                f'{{"data":{{"id":"l","origin":"o","createdAt":{old}}},'
                f'"expiresAt":{clock.now_ms + 3_600_000}}}',
            ),
            (
                "wm_session_young",
                f'{{"data":{{"id":"y","origin":"o","createdAt":{clock.now_ms}}}}}',
            ),
            ("wm_session_bad", "not json"),
        ]
        plant_typed(path, rows)
        config = SessionStoreConfig(lifetime=60, max_lifetime=3600)
        async with LocalStorageSessionStore(path, config, clock=clock) as store:
            assert list(await store.get_all()) == ["young"]
            assert await store.clean_expired() == 2
        assert sorted(raw_rows(path)) == ["wm_session_bad", "wm_session_young"]

    async def test_blob_key_is_an_unreadable_record(self, tmp_path: Path, clock: FakeClock) -> None:
        """A key stored as a BLOB under the prefix: get says corrupt, delete and clear remove it."""
        path = tmp_path / "s.db"
        record = '{"data":{"id":"x","origin":"o"}}'
        plant_typed(path, [(b"wm_session_blob", record), (b"wm_session_gone", record)])
        plant_typed(path, [(b"other_blob", record)])
        async with LocalStorageSessionStore(path, clock=clock) as store:
            with pytest.raises(CorruptRecordError, match="BLOB"):
                await store.get("blob")
            assert await store.get_all() == {}
            assert sorted(r.session_id for r in await store.inspect()) == ["blob", "gone"]
            await store.delete("gone")
            assert [r.session_id for r in await store.inspect()] == ["blob"]
            await store.clear()
            assert await store.inspect() == []
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute(f"SELECT key FROM {TABLE}").fetchall() == [(b"other_blob",)]
