"""Redis get_all keeps record texts, decoding a session when it is read; `sweep_texts`."""

from __future__ import annotations

import gc

import pytest
import redis

from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import decode_record, encode_record, record_times
from walletmesh_sessions._core.decode_cache import DecodeCache
from walletmesh_sessions._core.expiry import sweep, sweep_texts
from walletmesh_sessions._core.session_map import SessionMap
from walletmesh_sessions._redis import bulk_ops
from walletmesh_sessions._redis.ops import StoreSpec
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock

from .test_redis_ops import DATA, OTHER, PREFIX, FakeRedis, plant, spec

CONFIG = SessionStoreConfig(lifetime=60, refresh_on_access=True)


def _tracked_sessions() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is SessionData)


class TestSweepKeepsTexts:
    """`sweep_texts` puts each live record's text where `sweep` puts its data."""

    def test_texts_go_in_and_decide_the_same(self) -> None:
        """Same removals and slides; the map reads back the data from the texts it holds."""
        now = 1_000_000
        texts = {"a": encode_record(DATA, now + 5), "b": encode_record(OTHER, now - 1)}
        records = [
            (sid, (sid, text), data, at)
            for sid, text, data, at in (
                ("a", texts["a"], DATA, now + 5),
                ("b", texts["b"], OTHER, now - 1),
            )
        ]
        by_data = sweep(CONFIG, now, records, collect=True)
        by_text = sweep_texts(
            CONFIG,
            now,
            [(sid, text, *record_times(text, sid)) for sid, (_, text), _data, _at in records],
            collect=True,
            into=SessionMap.of_records(decode_record),
        )
        assert (by_text.removals, by_text.slides) == (by_data.removals, by_data.slides)
        assert by_text.found == by_data.found == {"a": DATA}


class TestGetAllKeepsTexts:
    """get_all's map holds texts: no `SessionData` lives on until a session is read."""

    def test_no_session_data_is_kept(self) -> None:
        """After get_all over many records, no decoded session is left alive by the map."""
        fake = FakeRedis()
        clock = FakeClock()
        for n in range(300):
            plant(fake, f"s{n}", SessionData(f"s{n}", "o", {"c": ["m"]}), clock.now_ms + 5)
        gc.collect()
        before = _tracked_sessions()
        found = fake.run(bulk_ops.get_all(spec(clock)))
        gc.collect()
        assert len(found) == 300
        assert _tracked_sessions() - before < 300 // 2  # the decode cache may hold a few
        assert found["s7"] == SessionData("s7", "o", {"c": ["m"]})

    def test_the_decode_cache_is_left_alone(self) -> None:
        """get_all's single-use decodes do not push out what `get` caches; iteration's do go
        through the cache, as before."""
        fake = FakeRedis()
        clock = FakeClock()
        plant(fake, "a", DATA, None)
        cache = DecodeCache()
        store_spec = StoreSpec(PREFIX, SessionStoreConfig(lifetime=60), clock, cache.decode)
        assert fake.run(bulk_ops.get_all(store_spec)) == {"a": DATA}
        assert len(cache) == 0
        fake.run(bulk_ops.iterate_page(store_spec, None, 10))
        assert len(cache) == 1

    def test_iter_sessions_pages_still_hold_data(self) -> None:
        """`iterate_page` returns decoded sessions, as before."""
        fake = FakeRedis()
        clock = FakeClock()
        plant(fake, "a", DATA, None)
        items, _, done = fake.run(bulk_ops.iterate_page(spec(clock), None, 10))
        assert items == [("a", DATA)]
        assert done


class TestOnRedis:
    """On a real server, on both event loops: what get_all returns reads as stored."""

    @pytest.mark.anyio
    async def test_get_all_reads_back(self, redis_client: redis.Redis, redis_url: str) -> None:
        """Sessions read from the map equal those set, slid ones included, texts untouched."""
        async with RedisSessionStore.from_url(redis_url, CONFIG) as store:
            sessions = {f"s{n}": SessionData(f"s{n}", "o", app_data={"n": n}) for n in range(50)}
            for sid, data in sessions.items():
                await store.set(sid, data)
            found = await store.get_all()
            assert dict(found) == sessions
            assert found["s3"].app_data == {"n": 3}
            assert len(redis_client.keys("wm_session_*")) == 50
