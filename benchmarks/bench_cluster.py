"""RedisSessionStore on a Redis Cluster next to a raw cluster client, and a big get_all.

Starts its own cluster (3 primaries, 3 replicas, no persistence) on free ports, then:

- per-session methods, one task, sequential, on asyncio: set (SET PX), get (GET) and delete
  (DEL) through the store and through a raw `redis.asyncio.RedisCluster` sending the same
  commands; rounds interleaved, the median ops/s and the store's cost relative to raw;
- `get_all` of `--sessions` sessions spread over the 3 primaries: its time, and how many
  round trips it took (runner sends, and node script calls within them).

With ``--tasks N``, the per-session methods run in N concurrent tasks (each awaiting its own
calls), the store with auto-pipelining (a batch per node) and without it next to raw.

Run: python benchmarks/bench_cluster.py [--ops 3000] [--rounds 5] [--sessions 100000]
    [--tasks 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio

from tests.redis_cluster import SHARED_NODE_TIMEOUT_MS, RedisClusterNodes
from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._redis.cluster_steps import At
from walletmesh_sessions._redis.runners import ClusterAsyncioRunner
from walletmesh_sessions.redis import RedisSessionStore

DATA = SessionData(
    "s", "https://app.example.com", {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
)
LIFETIME_S = 3600
TTL_MS = LIFETIME_S * 1000 + LIFETIME_S * 100
OPERATIONS = ("set", "get", "delete")


async def timed(ops: int, call: Callable[[int], Awaitable[Any]], tasks: int = 1) -> float:
    """ops/s of `ops` calls, made by `tasks` concurrent tasks, each awaiting its own."""
    share = ops // tasks

    async def worker(first: int) -> None:
        for n in range(first, first + share):
            await call(n)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t * share) for t in range(tasks)))
    return share * tasks / (time.perf_counter() - start)


async def per_session(url: str, port: int, ops: int, rounds: int, tasks: int = 1) -> None:
    config = SessionStoreConfig(lifetime=LIFETIME_S)
    record = encode_record(DATA, 2_000_000_000_000)
    raw = redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
    store = RedisSessionStore.from_url(url, config, prefix="b_")
    unpiped = RedisSessionStore.from_url(url, config, prefix="b_", auto_pipeline=False)
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(rounds):
            for op in OPERATIONS:
                raw_calls: dict[str, Callable[[int], Awaitable[Any]]] = {
                    "set": lambda n: raw.set(f"b_{n}", record, px=TTL_MS),
                    "get": lambda n: raw.get(f"b_{n}"),
                    "delete": lambda n: raw.delete(f"b_{n}"),
                }
                if op != "set":
                    for n in range(ops):
                        await raw.set(f"b_{n}", record, px=TTL_MS)
                rate = await timed(ops, raw_calls[op], tasks)
                results.setdefault(("raw", op), []).append(rate)
                for name, subject in (("store", store), ("store unpiped", unpiped)):
                    store_calls: dict[str, Callable[[int], Awaitable[Any]]] = {
                        "set": lambda n, s=subject: s.set(str(n), DATA),
                        "get": lambda n, s=subject: s.get(str(n)),
                        "delete": lambda n, s=subject: s.delete(str(n)),
                    }
                    if op != "set":
                        for n in range(ops):
                            await raw.set(f"b_{n}", record, px=TTL_MS)
                    rate = await timed(ops, store_calls[op], tasks)
                    results.setdefault((name, op), []).append(rate)
    finally:
        await store.aclose()
        await unpiped.aclose()
        await raw.aclose()
    print(f"per-session methods, {ops} ops x {rounds} rounds, {tasks} task(s), median ops/s:")
    for op in OPERATIONS:
        raw_rate = statistics.median(results["raw", op])
        store_rate = statistics.median(results["store", op])
        unpiped_rate = statistics.median(results["store unpiped", op])
        print(
            f"  {op:7} raw {raw_rate:8.0f}  store {store_rate:8.0f}  "
            f"auto_pipeline=false {unpiped_rate:8.0f}  store costs {raw_rate / store_rate:.2f}x raw"
        )


async def big_get_all(url: str, port: int, sessions: int) -> None:
    raw = redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
    try:
        expires = round(time.time() * 1000) + LIFETIME_S * 1000
        for first in range(0, sessions, 5000):
            pipe = raw.pipeline()
            for n in range(first, min(first + 5000, sessions)):
                pipe.set(f"g_{n}", encode_record(SessionData(str(n), "o"), expires), px=TTL_MS)
            await pipe.execute()
    finally:
        await raw.aclose()
    config = SessionStoreConfig(lifetime=LIFETIME_S)
    counts = {"sends": 0, "node calls": 0}
    send = ClusterAsyncioRunner._round_trip

    def counting(self: ClusterAsyncioRunner, commands: list[Any]) -> Any:
        counts["sends"] += 1
        counts["node calls"] += sum(1 for c in commands if isinstance(c[0], At))
        return send(self, commands)

    ClusterAsyncioRunner._round_trip = counting  # type: ignore[method-assign,assignment]
    try:
        async with RedisSessionStore.from_url(url, config, prefix="g_") as store:
            start = time.perf_counter()
            found = await store.get_all()
            elapsed = time.perf_counter() - start
    finally:
        ClusterAsyncioRunner._round_trip = send  # type: ignore[method-assign]
    assert len(found) == sessions, len(found)
    print(
        f"get_all of {sessions} sessions over 3 primaries: {elapsed:.2f} s, "
        f"{counts['sends']} runner sends, {counts['node calls']} node script calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        cluster = RedisClusterNodes(Path(directory), SHARED_NODE_TIMEOUT_MS)
        cluster.start()
        try:
            url = cluster.url
            port = cluster.ports[0]
            asyncio.run(per_session(url, port, args.ops, args.rounds, args.tasks))
            asyncio.run(big_get_all(url, port, args.sessions))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
