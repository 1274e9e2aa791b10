"""Several stores on one SQLite file in one process keep that process's locks on the file.

POSIX record locks belong to a process and an inode: closing any descriptor of the file drops
all of them, whichever descriptor took them. SQLite holds a shared lock on the database file
for as long as a connection in WAL mode is open; another process that finds no such lock when
its last connection closes believes it is alone, and deletes the WAL and the shared-memory
index under live connections, whose later writes then go to a file no one else reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio.to_thread
import pytest

from walletmesh_sessions import LocalStorageSessionStore, SessionData

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example.com"


def count_of(data: SessionData) -> int:
    count = data.app_data.get("count", 0)
    assert isinstance(count, int)
    return count


def add_one(data: SessionData) -> SessionData:
    return data.with_app_data({"count": count_of(data) + 1})


def companions(path: Path) -> set[str]:
    """Which of the WAL and the shared-memory index exist beside the database file."""
    return {suffix for suffix in ("-wal", "-shm") if os.path.exists(f"{path}{suffix}")}


async def in_another_process(path: Path, code: str) -> None:
    """Run `code` in a fresh interpreter, `store` open on `path` for it, then closed."""
    script = textwrap.dedent(
        f"""
        import anyio
        from walletmesh_sessions import LocalStorageSessionStore, SessionData

        def add_one(data):
            return data.with_app_data({{"count": data.app_data.get("count", 0) + 1}})

        async def main():
            async with LocalStorageSessionStore({str(path)!r}) as store:
        {textwrap.indent(textwrap.dedent(code), " " * 16)}

        anyio.run(main)
        """
    )
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
    )
    assert done.returncode == 0, done.stderr


class TestTwoStoresInOneProcess:
    """A second store opening the file must not drop the locks the first one holds."""

    async def test_wal_outlives_another_process(self, tmp_path: Path) -> None:
        """The WAL stays while our stores are open, after another process opened and closed."""
        path = tmp_path / "s.db"
        async with (
            LocalStorageSessionStore(path) as first,
            LocalStorageSessionStore(path) as second,
        ):
            await first.set("a", SessionData("a", ORIGIN))
            assert await second.get("a") is not None
            await in_another_process(path, "assert await store.get('a') is not None")
            assert companions(path) == {"-wal", "-shm"}

    async def test_no_update_lost_between_processes(self, tmp_path: Path) -> None:
        """Updates here and in another process, after a third one came and went, all count."""
        path = tmp_path / "s.db"
        async with (
            LocalStorageSessionStore(path) as first,
            LocalStorageSessionStore(path) as second,
        ):
            await first.set("a", SessionData("a", ORIGIN))
            assert await second.get("a") is not None
            await in_another_process(path, "assert await store.get('a') is not None")
            assert await first.update("a", add_one) is not None
            await in_another_process(path, "assert await store.update('a', add_one)")
            assert await second.update("a", add_one) is not None
        async with LocalStorageSessionStore(path) as store:
            found = await store.get("a")
        assert found is not None
        assert count_of(found) == 3
