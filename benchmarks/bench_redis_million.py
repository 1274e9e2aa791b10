"""RedisSessionStore.get_all over a million sessions next to the raw floor, interleaved.

Starts its own redis-server on 127.0.0.1 (no persistence), fills it with `--sessions`
distinct records (each its own id, so no two texts are alike) by pipelined MSET, then runs,
round after round, both of:

- the floor: redis.asyncio, ``SCAN 0.. MATCH <prefix>* COUNT 500`` and one ``MGET`` of each
  page's keys, every value kept as bytes in a dict keyed by the key's bytes; nothing decoded;
- the store: ``RedisSessionStore.get_all()`` on asyncio (the same SCAN and MGET pages, each
  value decoded once, to check it and read its expiry, swept, and kept as text in the map).

It prints each one's median seconds, the ratio, the longest event-loop stall and the longest
GC pause (gc.callbacks). The store's map decodes a session when it is read: the time to read
every value of one map is printed apart, after the rounds. With --profile, one more store call
runs under cProfile.

Run: python benchmarks/bench_redis_million.py [--sessions 1000000] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from typing import Any

import anyio
import redis.asyncio
from bench_redis import start_server
from suite import DATA, LIFETIME, GcPauses, timed

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._redis.steps import SCAN_BATCH
from walletmesh_sessions.redis import RedisSessionStore

PREFIX = "wm_session_"
FILL_CHUNK = 2000


async def fill(client: redis.asyncio.Redis, sessions: int) -> None:
    """`sessions` distinct records, pipelined MSETs of `FILL_CHUNK` each."""
    expires_at = int(time.time() * 1000) + 24 * 3600 * 1000
    start = time.perf_counter()
    async with client.pipeline(transaction=False) as pipe:
        for base in range(0, sessions, FILL_CHUNK):
            chunk = {}
            for n in range(base, min(base + FILL_CHUNK, sessions)):
                session_id = f"id{n:07d}"
                chunk[PREFIX + session_id] = encode_record(
                    DATA.__class__(session_id, DATA.origin, DATA.permissions), expires_at
                )
            pipe.mset(chunk)
            if len(pipe) >= 25:
                await pipe.execute()
        await pipe.execute()
    print(f"filled {sessions} sessions in {time.perf_counter() - start:.1f} s")


async def raw_get_all(client: redis.asyncio.Redis) -> dict[bytes, bytes]:
    """The floor: SCAN pages of the prefix, one MGET each, values kept as bytes."""
    found: dict[bytes, bytes] = {}
    pattern = PREFIX + "*"
    cursor: Any = 0
    while True:
        cursor, keys = await client.scan(cursor, match=pattern, count=SCAN_BATCH)
        if keys:
            values = await client.mget(keys)
            found.update((k, v) for k, v in zip(keys, values, strict=True) if v is not None)
        if int(cursor) == 0:
            return found


async def main(sessions: int, rounds: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_server(directory)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.asyncio.Redis.from_url(url)
            store = RedisSessionStore.from_url(url, SessionStoreConfig(lifetime=LIFETIME))
            try:
                await fill(client, sessions)
                await measure(client, store, sessions, rounds)
                if profile:
                    await profiled(store)
            finally:
                await store.aclose()
                await client.aclose()
        finally:
            process.terminate()
            process.wait(timeout=10)


async def measure(
    client: redis.asyncio.Redis, store: RedisSessionStore, sessions: int, rounds: int
) -> None:
    variants = {
        "raw SCAN+MGET": lambda: raw_get_all(client),
        "store get_all": store.get_all,
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            with GcPauses() as pauses:
                elapsed, stall, value = await timed(call)
            if len(value) != sessions:
                raise SystemExit(f"{name} found {len(value)} sessions, not {sessions}")
            del value
            results[name].append((elapsed, stall, pauses.longest))
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(r[0] for r in runs)
        print(
            f"{name}: {medians[name]:.2f} s (median of {rounds}), longest stall"
            f" {max(r[1] for r in runs) * 1000:.0f} ms, longest GC pause"
            f" {max(r[2] for r in runs) * 1000:.0f} ms"
        )
    print(f"ratio store/raw: {medians['store get_all'] / medians['raw SCAN+MGET']:.2f}")
    found = await store.get_all()
    start = time.perf_counter()
    for _data in found.values():
        pass
    print(f"then reading every value of the store's map: {time.perf_counter() - start:.2f} s")


async def profiled(store: RedisSessionStore) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await store.get_all()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.sessions, args.rounds, args.profile)
