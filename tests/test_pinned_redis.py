"""Redis: an update waiting for its turn keeps to its deadline; a cluster scan of a small node
reads the first slot of each page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

from walletmesh_sessions import SessionData, SessionStoreConfig, StoreUnavailableError
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._redis.cluster_steps import SLOTS, slot_of
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock
from walletmesh_sessions.testing._rules_lifecycle import counter, increment

from .redis_cluster import RedisClusterNodes

PREFIX = "wm_session_"
CONFIG = SessionStoreConfig(lifetime=60)
TIMEOUT = 0.5
# Far more than TIMEOUT: a call that waits without its deadline is caught, never a slow one.
GUARD = 10.0


class TestUpdateTurnKeepsTheDeadline:
    """Updates of one id through one store take turns; waiting for the turn counts against the
    call's own timeout, so a call queued behind a long holder fails in time."""

    @pytest.mark.anyio
    async def test_waiting_for_the_turn_fails_by_the_deadline(
        self, redis_url: str, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """While another update of the id holds its turn for longer than the timeout, updates
        of that id fail with StoreUnavailableError, written nothing; then they work again."""
        store = RedisSessionStore.from_url(
            redis_url, CONFIG, clock=clock, timeout=TIMEOUT, retries=0
        )
        async with store:
            await store.set("id", counter(0))
            failures: list[StoreUnavailableError] = []

            async def queued() -> None:
                with pytest.raises(StoreUnavailableError) as info:
                    await store.update("id", increment)
                failures.append(info.value)

            holder_deadline = anyio.current_time() + 3600
            with anyio.fail_after(GUARD):
                async with (
                    store._turns.turn("id", holder_deadline, "update"),
                    anyio.create_task_group() as tg,
                ):
                    for _ in range(3):
                        tg.start_soon(queued)
            assert len(failures) == 3
            assert all("turn" in str(failure) for failure in failures)
            assert await store.get("id") == counter(0)
            with anyio.fail_after(GUARD):
                assert await store.update("id", increment) == counter(1)
            assert store._turns._turns == {}

    @pytest.mark.anyio
    async def test_other_ids_do_not_wait(
        self, redis_url: str, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """A held turn on one id leaves updates of another id free to run."""
        store = RedisSessionStore.from_url(
            redis_url, CONFIG, clock=clock, timeout=TIMEOUT, retries=0
        )
        async with store:
            await store.set("other", counter(5))
            with anyio.fail_after(GUARD):
                async with store._turns.turn("id", anyio.current_time() + 3600, "update"):
                    assert await store.update("other", increment) == counter(6)


def page_starts(cluster: RedisClusterNodes) -> set[int]:
    """Every slot a scan page can begin at: slot 0 and each slot whose owner differs from the
    owner of the slot before it (each start of a primary's run of slots)."""
    owner: dict[int, int] = {}
    for port, _node_id in cluster.primaries():
        for slot in cluster.slots_of(port):
            owner[slot] = port
    assert len(owner) == SLOTS, "the cluster does not serve every slot"
    return {0} | {slot for slot in range(1, SLOTS) if owner[slot] != owner[slot - 1]}


def ids_in(slots: set[int]) -> dict[int, str]:
    """A session id whose key hashes to each of `slots`."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(slots):
        sid = f"edge{n}"
        slot = slot_of(PREFIX + sid)
        if slot in slots and slot not in found:
            found[slot] = sid
        n += 1
    return found


class TestClusterScanFirstSlot:
    """A small cluster node is scanned with one KEYS per page: the page's first slot (slot 0,
    and the first slot of each primary's run) is read as well as the rest."""

    @pytest.mark.anyio
    async def test_sessions_in_the_first_slot_of_a_page(
        self,
        redis_cluster_factory: Callable[..., RedisSessionStore],
        redis_cluster: RedisClusterNodes,
        redis_cluster_client: Any,
    ) -> None:
        """Sessions in each page's first slot, and a few elsewhere: get_all, iter_sessions,
        inspect, clean_expired and clear each see every one."""
        clock = FakeClock()
        starts = page_starts(redis_cluster)
        assert len(starts) >= 3
        ids = sorted([*ids_in(starts).values(), *(f"elsewhere{n}" for n in range(10))])
        expires = clock.now_ms + 60_000
        pipe = redis_cluster_client.pipeline()
        for sid in ids:
            pipe.set(PREFIX + sid, encode_record(SessionData(sid, "https://app.example"), expires))
        pipe.execute()
        async with redis_cluster_factory(CONFIG, clock) as store:
            assert set(await store.get_all()) == set(ids)
            assert sorted([sid async for sid, _ in store.iter_sessions(100)]) == ids
            assert sorted(r.session_id for r in await store.inspect()) == ids
            clock.advance(ms=60_001)
            assert await store.clean_expired() == len(ids)
            assert await store.get_all() == {}
            pipe = redis_cluster_client.pipeline()
            for sid in ids:
                pipe.set(PREFIX + sid, encode_record(SessionData(sid, "https://app.example"), None))
            pipe.execute()
            await store.clear()
        assert not any(redis_cluster_client.exists(PREFIX + sid) for sid in ids)
