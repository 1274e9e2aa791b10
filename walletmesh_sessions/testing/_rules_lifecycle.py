"""Rules for `LifecycleSessionStore`: atomic create, update and rotate, and the absolute timeout."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import cast

import anyio
import anyio.lowlevel
import attrs
import pytest

from .._core.data import SessionData
from .._core.errors import InvalidSessionDataError, InvalidSessionIdError, SessionIdTakenError
from .._core.protocol import SessionStore
from ._clock import FakeClock
from ._kit_base import LIFETIME_MS, MakeStore, lifecycle, race, session
from ._rules_model import LifecycleModelRules

__all__ = ("LifecycleRules", "counter", "increment")

CREATORS = 200
INCREMENTS = 500


def counter(n: int) -> SessionData:
    """A session whose permissions hold a count, for increment races."""
    return SessionData("counter", "https://count.example", {"count": [str(n)]})


def increment(data: SessionData) -> SessionData:
    """``update`` change that adds one to `counter`'s count."""
    count = int(data.permissions["count"][0])
    return attrs.evolve(data, permissions={"count": [str(count + 1)]})


def _grant(chain: str) -> Callable[[SessionData], SessionData]:
    def change(data: SessionData) -> SessionData:
        permissions = {**data.permissions, chain: ("eth_accounts",)}
        return attrs.evolve(data, permissions=permissions)

    return change


class LifecycleRules(LifecycleModelRules):
    """create, update, rotate: atomic under concurrency; max_lifetime as an absolute timeout."""

    async def test_create_only_when_absent(self, store: SessionStore, clock: FakeClock) -> None:
        """create stores a new id, refuses a live one unchanged, replaces an expired one."""
        s = lifecycle(store)
        assert await s.create("id", session(1)) is True
        assert await s.create("id", session(2)) is False, "create overwrote a live session"
        assert await s.get("id") == session(1)
        clock.advance(ms=LIFETIME_MS + 1)
        assert await s.create("id", session(3)) is True, "an expired session blocked create"
        assert await s.get("id") == session(3)

    async def test_create_race_has_one_winner(self, store: SessionStore) -> None:
        """Of many concurrent creators of one id, exactly one wins, and its data is stored."""
        s = lifecycle(store)
        winners = [n for n, _ in await race(CREATORS, lambda n: s.create("contested", session(n)))]
        assert len(winners) == 1, f"{len(winners)} of {CREATORS} concurrent creators won"
        assert await s.get("contested") == session(winners[0])

    async def test_create_refuses_bad_input(self, store: SessionStore) -> None:
        """create checks its arguments before writing anything."""
        s = lifecycle(store)
        with pytest.raises(InvalidSessionIdError):
            await s.create("", session())
        with pytest.raises(InvalidSessionDataError):
            await s.create("id", cast("SessionData", {"id": "x"}))
        assert dict(await s.get_all()) == {}

    async def test_update_replaces_data(self, store: SessionStore, clock: FakeClock) -> None:
        """update stores change(current) and returns it; None when missing or expired."""
        s = lifecycle(store)
        assert await s.update("missing", _grant("eip155:10")) is None
        await s.set("id", session(1))
        new = await s.update("id", _grant("eip155:10"))
        assert new is not None
        assert new.permissions["eip155:10"] == ("eth_accounts",)
        assert await s.get("id") == new
        clock.advance(ms=LIFETIME_MS + 1)
        assert await s.update("id", _grant("eip155:137")) is None, "updated an expired session"
        assert await s.get("id") is None

    async def test_update_slides_like_a_read(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """On a refreshing store, update slides the expiry as a read would."""
        s = lifecycle(refreshing_store)
        await s.set("id", session(1))
        clock.advance(ms=LIFETIME_MS - 1)
        assert await s.update("id", _grant("eip155:10")) is not None
        clock.advance(ms=LIFETIME_MS - 1)
        assert await s.get("id") is not None, "update did not slide the expiry"

    async def test_update_refuses_a_bad_change(self, store: SessionStore) -> None:
        """A change that returns something else than SessionData, or raises, changes nothing;
        its own exception propagates as it is."""
        s = lifecycle(store)
        await s.set("id", session(1))
        with pytest.raises(InvalidSessionDataError):
            await s.update("id", lambda data: cast("SessionData", None))
        assert await s.get("id") == session(1)

        def failing(data: SessionData) -> SessionData:
            raise LookupError("the application's own error")

        with pytest.raises(LookupError):
            await s.update("id", failing)
        assert await s.get("id") == session(1), "a failed change wrote something"

    async def test_concurrent_increments_are_not_lost(self, store: SessionStore) -> None:
        """Hundreds of concurrent increments through update: none is lost."""
        s = lifecycle(store)
        await s.set("counter", counter(0))
        async with anyio.create_task_group() as tg:
            for _ in range(INCREMENTS):
                tg.start_soon(s.update, "counter", increment)
        final = await s.get("counter")
        assert final == counter(INCREMENTS), f"lost increments: ended at {final}"

    async def test_update_never_revives_deleted(self, store: SessionStore) -> None:
        """Updates racing a delete never bring the session back."""
        s = lifecycle(store)
        for n in range(50):
            await s.set(f"id{n}", session(n))
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(s.update, f"id{n}", _grant("eip155:10"))
                tg.start_soon(s.delete, f"id{n}")
        assert dict(await s.get_all()) == {}, "an update brought back a deleted session"

    async def test_rotate_moves_the_session(self, store: SessionStore) -> None:
        """After rotate only the new id works; the data's id follows; None when missing."""
        s = lifecycle(store)
        assert await s.rotate("missing") is None
        await s.set("old", SessionData("old", "https://a.example", {"c": ["m"]}))
        new_id = await s.rotate("old")
        assert new_id is not None
        assert new_id != "old"
        assert await s.get("old") is None, "the old id still works after rotate"
        assert await s.get(new_id) == SessionData(new_id, "https://a.example", {"c": ["m"]})
        assert await s.rotate(new_id, "chosen") == "chosen"
        assert list(await s.get_all()) == ["chosen"]

    async def test_rotate_refuses_a_taken_id(self, store: SessionStore, clock: FakeClock) -> None:
        """A new id held by a live session is refused and nothing changes; an expired one not."""
        s = lifecycle(store)
        await s.set("a", session(1))
        clock.advance(ms=1)
        await s.set("b", session(2))
        with pytest.raises(SessionIdTakenError):
            await s.rotate("a", "b")
        with pytest.raises(SessionIdTakenError):
            await s.rotate("a", "a")
        assert dict(await s.get_all()) == {"a": session(1), "b": session(2)}
        clock.advance(ms=LIFETIME_MS)  # "a" has expired, "b" is valid at exactly its expiry
        assert await s.rotate("b", "a") == "a", "an expired session blocked rotate"
        assert dict(await s.get_all()) == {"a": session(2)}

    async def test_concurrent_rotates_have_one_winner(self, store: SessionStore) -> None:
        """Concurrent rotates of one id: exactly one moves it, the others find it gone."""
        s = lifecycle(store)
        await s.set("id", session(1))
        moved = [new_id for _, new_id in await race(50, lambda n: s.rotate("id", f"new-{n}"))]
        assert len(moved) == 1, f"{len(moved)} concurrent rotates of one id succeeded"
        assert list(await s.get_all()) == moved

    async def test_rotate_has_no_gap(self, store: SessionStore) -> None:
        """While a session rotates, a reader always finds it under the old or the new id."""
        s = lifecycle(store)
        gaps: list[int] = []
        for n in range(20):
            await s.set(f"old{n}", session(n))

        async def reader(n: int) -> None:
            for _ in range(10):
                # Old id first: once it is gone, the new one must already be there.
                if await s.get(f"old{n}") is None and await s.get(f"new{n}") is None:
                    gaps.append(n)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(reader, n)
                tg.start_soon(s.rotate, f"old{n}", f"new{n}")
        assert not gaps, f"rotate left {len(gaps)} moment(s) where neither id worked"

    async def test_rotate_racing_delete_and_clean(
        self, store: SessionStore, clock: FakeClock
    ) -> None:
        """Rotate racing delete or clean_expired: never two live copies, never a revival."""
        s = lifecycle(store)
        for n in range(30):
            await s.set(f"id{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2)
        async with anyio.create_task_group() as tg:
            for n in range(30):
                tg.start_soon(s.rotate, f"id{n}", f"new{n}")
                tg.start_soon(s.delete, f"id{n}" if n % 2 else f"new{n}")
                tg.start_soon(s.clean_expired)
        remaining = dict(await s.get_all())
        for n in range(30):
            assert not (f"id{n}" in remaining and f"new{n}" in remaining), "both ids live"
            if n % 2:  # the old id was deleted: rotated before, or gone for good
                assert f"id{n}" not in remaining, "a deleted session came back"

    async def test_absolute_timeout_boundary(self, make_store: MakeStore, clock: FakeClock) -> None:
        """Valid at exactly created_at + max_lifetime, expired 1 ms later, whatever refreshes."""
        s = lifecycle(
            make_store(timedelta(minutes=1), refresh=True, max_lifetime=timedelta(minutes=5))
        )
        created = clock.now_ms
        assert await s.create("id", session(1)) is True
        stored = await s.get("id")
        assert stored is not None
        assert stored.created_at == created, "the store did not stamp created_at"
        while clock.now_ms < created + 5 * 60_000:
            clock.advance(ms=min(50_000, created + 5 * 60_000 - clock.now_ms))
            assert await s.get("id") is not None, "expired before its absolute timeout"
        assert clock.now_ms == created + 5 * 60_000
        clock.advance(ms=1)
        assert await s.get("id") is None, "a refresh moved the session past max_lifetime"

    async def test_update_cannot_escape_the_absolute_timeout(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        """Data without created_at keeps the current one: the absolute timeout still holds."""
        s = lifecycle(make_store(timedelta(minutes=10), max_lifetime=timedelta(minutes=1)))
        await s.set("id", session(1))
        clock.advance(seconds=30)
        await s.update("id", lambda data: session(2))
        later = attrs.evolve(session(3), created_at=clock.now_ms)
        updated = await s.update("id", lambda data: later)
        assert updated is not None
        assert updated.created_at == clock.now_ms - 30_000, "update moved created_at"
        clock.advance(ms=30_001)
        assert await s.get("id") is None, "update reset the absolute timeout"
