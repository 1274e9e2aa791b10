"""Rules for many concurrent tasks and cancellation."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from .._core.data import SessionData
from .._core.protocol import SessionStore
from ._clock import FakeClock
from ._kit_base import LIFETIME_MS, StoreFixtures, session

__all__ = ("ConcurrencyRules",)


class ConcurrencyRules(StoreFixtures):
    """Concurrency: no lost update, no resurrection, consistent after cancellation."""

    async def test_many_tasks(self, store: SessionStore) -> None:
        """Hundreds of concurrent tasks lose no write and see no error."""
        results: dict[str, SessionData | None] = {}

        async def worker(n: int) -> None:
            sid = f"task-{n}"
            await store.set(sid, session(n))
            results[sid] = await store.get(sid)
            if n % 3 == 0:
                await store.delete(sid)

        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(worker, n)
        assert all(results[f"task-{n}"] == session(n) for n in range(200)), "a write was lost"
        expected = {f"task-{n}": session(n) for n in range(200) if n % 3}
        assert dict(await store.get_all()) == expected

    async def test_concurrent_refresh_never_revives_deleted(
        self, refreshing_store: SessionStore
    ) -> None:
        """Reads racing a delete never bring the session back."""
        store = refreshing_store
        for n in range(50):
            await store.set(f"id{n}", session(n))

        async def reader(n: int) -> None:
            for _ in range(3):
                await store.get(f"id{n}")
                await store.get_all()

        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(reader, n)
                tg.start_soon(store.delete, f"id{n}")
        assert dict(await store.get_all()) == {}, "a refresh brought back a deleted session"

    async def test_refresh_never_undoes_a_set(self, refreshing_store: SessionStore) -> None:
        """A set racing sliding reads is never replaced by the data those reads saw."""
        store = refreshing_store
        await store.set("id", session(0))
        stop = anyio.Event()

        async def reader() -> None:
            while not stop.is_set():
                await store.get("id")
                await store.get_all()
                await anyio.lowlevel.checkpoint()  # a store that never yields must not starve us

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(reader)
            for version in range(1, 40):
                await store.set("id", session(version))
                await anyio.lowlevel.checkpoint()
                got = await store.validate_and_refresh("id")
                assert got == session(version), (
                    f"a refresh wrote back stale data: set version {version}, then read {got}"
                )
            stop.set()
        assert await store.get("id") == session(39)

    async def test_one_writer_many_readers(self, refreshing_store: SessionStore) -> None:
        """Per id, the last write wins: no lost update and no resurrection under load."""
        store = refreshing_store
        ids = [f"id{n}" for n in range(10)]

        async def writer(sid: str) -> None:
            for version in range(5):
                await store.set(sid, session(version))
                if version == 3:
                    await store.delete(sid)
            if sid.endswith(("1", "3", "5")):
                await store.delete(sid)

        async def reader(n: int) -> None:
            for _ in range(5):
                await store.get(ids[n % len(ids)])
                if n % 7 == 0:
                    await store.get_all()

        async with anyio.create_task_group() as tg:
            for n in range(300):
                tg.start_soon(reader, n)
            for sid in ids:
                tg.start_soon(writer, sid)
        expected = {sid: session(4) for sid in ids if not sid.endswith(("1", "3", "5"))}
        assert dict(await store.get_all()) == expected, "a write was lost or a delete undone"

    @pytest.mark.parametrize(
        "method",
        ["set", "get", "get_all", "delete", "clear", "validate_and_refresh", "clean_expired"],
    )
    async def test_cancellation_leaves_store_consistent(
        self, refreshing_store: SessionStore, clock: FakeClock, method: str
    ) -> None:
        """A call cancelled at any point leaves every session whole, and the store usable."""
        store = refreshing_store
        originals = {f"id{n}": session(n) for n in range(20)}
        for delay in range(8):
            for sid, data in originals.items():
                await store.set(sid, data)
            clock.advance(ms=LIFETIME_MS // 2)
            await store.set("young", session("young"))
            clock.advance(ms=LIFETIME_MS // 2 + 1)  # the twenty are now expired
            args = {"set": ("id1", session("new")), "clear": (), "get_all": ()}.get(
                method, () if method in ("clean_expired",) else ("id1",)
            )
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(getattr(store, method), *args)
                    for _ in range(delay):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()
            everything = dict(await store.get_all())
            allowed = {"young": session("young"), "id1": session("new")}
            for sid, data in everything.items():
                assert allowed.get(sid) == data, f"{method} cancelled left {sid!r} as {data}"
                assert await store.get(sid) == data
            await store.set("after", session("after"))
            assert await store.get("after") == session("after"), f"{method} cancelled broke it"
            await store.clear()
