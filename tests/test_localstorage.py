"""LocalStorageSessionStore specifics: the wire format in storage, SQLite durability and sharing."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from walletmesh_sessions import (
    CorruptRecordError,
    InvalidConfigError,
    LocalStorageSessionStore,
    SessionData,
    SessionStoreConfig,
    StoreClosedError,
)
from walletmesh_sessions._codec import encode_record
from walletmesh_sessions._protocol import DEFERRED
from walletmesh_sessions._sqlite_backend import SCHEMA, TABLE, prefix_upper_bound
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
    with sqlite3.connect(path) as conn:
        return dict(conn.execute(f"SELECT key, value FROM {TABLE}").fetchall())


def plant(path: Path, rows: dict[str, str]) -> None:
    """Write raw rows into the file as another program would (schema as the store makes it)."""
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        for key, value in rows.items():
            expires = None
            with contextlib.suppress(ValueError, AttributeError):
                expires = json.loads(value).get("expiresAt")
            conn.execute(
                f"INSERT OR REPLACE INTO {TABLE} (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires),
            )


@pytest.fixture(params=["file", "mapping"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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
        """Every set acknowledged before SIGKILL is there when the file is reopened."""
        path = tmp_path / "crash.db"
        proc = spawn_writer(path, "hang", 200)
        assert proc.stdout is not None
        acknowledged = [proc.stdout.readline().strip() for _ in range(120)]
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
        """A heartbeat task ticks while get_all and clean_expired walk 100,000 sessions."""
        path = tmp_path / "big.db"
        clock = FakeClock()
        expires = clock.now_ms + 60_000
        rows = [
            (f"wm_session_id{n}", encode_record(data(n), expires), expires) for n in range(100_000)
        ]
        with sqlite3.connect(path) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?)", rows)
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
            assert len(await store.get_all()) == 100_000
            ticks_during_get_all = ticks
            clock.advance(seconds=61)
            assert await store.clean_expired() == 100_000
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
        """Removing an expired session or sliding an expiry goes to the worker thread."""
        config = SessionStoreConfig(lifetime=60, refresh_on_access=True)
        async with LocalStorageSessionStore(tmp_path / "s.db", config, clock=clock) as store:
            await store.set("a", data(1))
            sqlite = store._sqlite
            assert sqlite is not None
            clock.advance(ms=1)
            assert sqlite.get(False, "a") is DEFERRED
            assert await store.get("a") == data(1)
            clock.advance(seconds=61)
            assert sqlite.get(False, "a") is DEFERRED
            assert await store.get("a") is None

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


WRITER_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)
