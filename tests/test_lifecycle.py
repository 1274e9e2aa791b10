"""Lifecycle operations beyond the kit: processes racing on one file, and what records say."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from walletmesh_sessions import LocalStorageSessionStore, SessionData, SessionStoreConfig
from walletmesh_sessions.testing import FakeClock
from walletmesh_sessions.testing._rules_lifecycle import counter, increment

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
PROCESSES = 4
PER_PROCESS = 100
IN_PROCESS = 100

INCREMENTER = textwrap.dedent(
    """
    import sys, anyio
    from walletmesh_sessions import LocalStorageSessionStore
    from walletmesh_sessions.testing._rules_lifecycle import increment

    async def main(path, count):
        async with LocalStorageSessionStore(path) as store:
            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(store.update, "counter", increment)
        print("done", flush=True)

    anyio.run(main, sys.argv[1], int(sys.argv[2]))
    """
)


class TestProcesses:
    """update, create and rotate are atomic across OS processes on one SQLite file."""

    async def test_increments_from_processes_and_tasks(self, tmp_path: Path) -> None:
        """4 processes and this one increment one counter at once: no increment is lost."""
        path = tmp_path / "shared.db"
        async with LocalStorageSessionStore(path) as store:
            await store.set("counter", counter(0))
            procs = [
                subprocess.Popen(  # noqa: ASYNC220 - helper processes, started once
                    [sys.executable, "-c", INCREMENTER, str(path), str(PER_PROCESS)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                for _ in range(PROCESSES)
            ]
            async with anyio.create_task_group() as tg:
                for _ in range(IN_PROCESS):
                    tg.start_soon(store.update, "counter", increment)
            for proc in procs:
                out, _ = await anyio.to_thread.run_sync(proc.communicate)
                assert proc.returncode == 0
                assert out.strip() == "done"
            assert await store.get("counter") == counter(PROCESSES * PER_PROCESS + IN_PROCESS)


class TestRecords:
    """What lifecycle operations write is a record the TypeScript store reads the same way."""

    async def test_absolute_timeout_is_in_the_record(self, clock: FakeClock) -> None:
        """createdAt is stamped and expiresAt is already capped, so both sides agree."""
        storage: dict[str, str] = {}
        config = SessionStoreConfig(
            lifetime=60, refresh_on_access=True, max_lifetime=timedelta(seconds=90)
        )
        store = LocalStorageSessionStore(storage, config, clock=clock)
        created = clock.now_ms
        assert await store.create("s", SessionData("s", "https://a.example"))
        clock.advance(seconds=50)
        assert await store.get("s") is not None
        record = json.loads(storage["wm_session_s"])
        assert record["data"]["createdAt"] == created
        assert record["expiresAt"] == created + 90_000, "the slide was not capped"

    async def test_rotate_moves_the_record(self, clock: FakeClock) -> None:
        """The record moves to the new key with data.id changed and everything else kept."""
        storage: dict[str, str] = {}
        store = LocalStorageSessionStore(storage, SessionStoreConfig(lifetime=60), clock=clock)
        await store.set("old", SessionData("old", "https://a.example", created_at=5))
        assert await store.rotate("old", "new") == "new"
        assert list(storage) == ["wm_session_new"]
        assert json.loads(storage["wm_session_new"]) == {
            "data": {"id": "new", "origin": "https://a.example", "permissions": {}, "createdAt": 5},
            "expiresAt": clock.now_ms + 60_000,
        }

    async def test_rotate_keeps_a_foreign_data_id(self, clock: FakeClock) -> None:
        """A TypeScript-style key (origin + id) keeps its data's id: only matching ids follow."""
        storage: dict[str, str] = {}
        store = LocalStorageSessionStore(storage, clock=clock)
        await store.set("https://a.example_s1", SessionData("s1", "https://a.example"))
        new_id = await store.rotate("https://a.example_s1")
        assert new_id is not None
        assert json.loads(storage[f"wm_session_{new_id}"])["data"]["id"] == "s1"
