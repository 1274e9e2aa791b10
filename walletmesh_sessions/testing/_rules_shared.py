"""Rules for two store objects over one storage (a SQLite file, a Redis database, a PostgreSQL
table): what two processes sharing a store must see. Run when `shares_storage` says so."""

from __future__ import annotations

import anyio
import pytest

from .._core.protocol import LifecycleSessionStore
from ._kit_base import LIFETIME_MS, MakeStore, StoreFixtures, lifecycle, race, session
from ._rules_lifecycle import counter, increment

__all__ = ("SharedStorageRules",)

RACERS = 100


class SharedStorageRules(StoreFixtures):
    """Writes through one store object are seen by the other, and their races have one winner."""

    @pytest.fixture
    def twins(
        self, make_store: MakeStore, shares_storage: bool
    ) -> tuple[LifecycleSessionStore, LifecycleSessionStore]:
        """Two store objects, same config, over the same storage."""
        if not shares_storage:
            pytest.skip("the factory's stores do not share their storage")
        return lifecycle(make_store(LIFETIME_MS / 1000)), lifecycle(make_store(LIFETIME_MS / 1000))

    async def test_each_sees_the_others_writes(
        self, twins: tuple[LifecycleSessionStore, LifecycleSessionStore]
    ) -> None:
        """A set, an update and a delete through one store object show through the other."""
        one, two = twins
        await one.set("id", session(1))
        assert await two.get("id") == session(1)
        await two.update("id", lambda _: session(2))
        assert await one.get("id") == session(2)
        await two.delete("id")
        assert await one.get("id") is None

    async def test_racing_creates_have_one_winner(
        self, twins: tuple[LifecycleSessionStore, LifecycleSessionStore]
    ) -> None:
        """Creators of one id on both store objects: exactly one wins, and its data stays."""
        won = await race(RACERS, lambda n: twins[n % 2].create("contested", session(n)))
        winners = [n for n, _ in won]
        assert len(winners) == 1, f"{len(winners)} of {RACERS} creators on two stores won"
        assert await twins[0].get("contested") == session(winners[0])
        assert await twins[1].get("contested") == session(winners[0])

    async def test_racing_increments_are_not_lost(
        self, twins: tuple[LifecycleSessionStore, LifecycleSessionStore]
    ) -> None:
        """Increments through update on both store objects at once: none is lost."""
        await twins[0].set("counter", counter(0))
        async with anyio.create_task_group() as tg:
            for n in range(RACERS):
                tg.start_soon(twins[n % 2].update, "counter", increment)
        final = await twins[1].get("counter")
        assert final == counter(RACERS), f"increments lost across two stores: ended at {final}"

    async def test_racing_rotates_have_one_winner(
        self, twins: tuple[LifecycleSessionStore, LifecycleSessionStore]
    ) -> None:
        """Rotates of one id on both store objects: exactly one moves it."""
        await twins[0].set("id", session(1))
        won = await race(RACERS // 2, lambda n: twins[n % 2].rotate("id", f"new-{n}"))
        moved = [new_id for _, new_id in won]
        assert len(moved) == 1, f"{len(moved)} rotates of one id on two stores succeeded"
        assert list(await twins[0].get_all()) == moved
        assert list(await twins[1].get_all()) == moved

    async def test_rotate_racing_updates_keeps_one_session(
        self, twins: tuple[LifecycleSessionStore, LifecycleSessionStore]
    ) -> None:
        """A rotate on one store object while the other updates: one session, never two."""
        await twins[0].set("counter", counter(0))
        new_ids: list[str | None] = []

        async def rotate() -> None:
            new_ids.append(await twins[0].rotate("counter", "moved"))

        async with anyio.create_task_group() as tg:
            for n in range(RACERS // 2):
                tg.start_soon(twins[1].update, "counter", increment)
                if n == RACERS // 4:
                    tg.start_soon(rotate)
        assert new_ids == ["moved"]
        everything = dict(await twins[1].get_all())
        assert list(everything) == ["moved"], f"after rotate racing updates: {sorted(everything)}"
        assert everything["moved"].id == "moved"
