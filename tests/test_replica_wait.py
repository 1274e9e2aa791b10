"""wait_for_replicas holds up only calls that write: a read that slides nothing never waits.

The test server has no replica, so every WAIT runs out (`replica_timeout`) and a call that
waited raises `NotReplicatedError`: what raises is exactly what waited.
"""

from __future__ import annotations

import itertools

import pytest
import redis

from walletmesh_sessions import NotReplicatedError, SessionData, SessionStoreConfig
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock

DATA = SessionData("id", "https://dapp.example")
_prefixes = itertools.count()


def _store(
    redis_url: str, clock: FakeClock, max_lifetime: float | None = None
) -> RedisSessionStore:
    config = SessionStoreConfig(lifetime=60, refresh_on_access=True, max_lifetime=max_lifetime)
    return RedisSessionStore.from_url(
        f"{redis_url}?wait_for_replicas=1&replica_timeout=0.05",
        config,
        prefix=f"replicas{next(_prefixes)}_",
        clock=clock,
    )


async def _set_despite_replicas(store: RedisSessionStore, session_id: str) -> None:
    """Store a session: the write is done, though no replica confirms it."""
    with pytest.raises(NotReplicatedError):
        await store.set(session_id, DATA)


class TestReadsThatWriteNothing:
    @pytest.mark.anyio
    async def test_get_of_a_missing_id(self, redis_url: str, clock: FakeClock) -> None:
        async with _store(redis_url, clock) as store:
            await _set_despite_replicas(store, "other")  # the connection has a write pending
            assert await store.get("missing") is None

    @pytest.mark.anyio
    async def test_get_whose_expiry_stays(self, redis_url: str, clock: FakeClock) -> None:
        async with _store(redis_url, clock) as store:
            await _set_despite_replicas(store, "id")
            assert await store.get("id") == DATA  # same millisecond: nothing to slide

    @pytest.mark.anyio
    async def test_get_at_the_max_lifetime_cap(self, redis_url: str, clock: FakeClock) -> None:
        async with _store(redis_url, clock, max_lifetime=90) as store:
            await _set_despite_replicas(store, "id")
            clock.advance(ms=40_000)
            with pytest.raises(NotReplicatedError):
                await store.get("id")  # slides to the cap: a write
            clock.advance(ms=5_000)
            found = await store.get("id")  # already at the cap: nothing moves
            assert found is not None
            assert found.origin == DATA.origin

    @pytest.mark.anyio
    async def test_a_get_that_slides_still_waits(
        self, redis_url: str, clock: FakeClock, redis_client: redis.Redis
    ) -> None:
        """The other side: a slide is a write, held up and reported like any other."""
        async with _store(redis_url, clock) as store:
            await _set_despite_replicas(store, "id")
            before = redis_client.get(f"{store.prefix}id")
            clock.advance(ms=1_000)
            with pytest.raises(NotReplicatedError, match=r"\(get\)"):
                await store.get("id")
            assert redis_client.get(f"{store.prefix}id") != before  # slid all the same
