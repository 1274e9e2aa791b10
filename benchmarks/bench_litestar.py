"""RedisSessionStore next to litestar's RedisStore doing the comparable operation, on asyncio.

The same redis-server (started here on a free port, as bench_redis.py does), one task,
sequential calls, rounds interleaved, medians printed:

- set: our `set` (SET PX of the JSON record) and litestar's `set(key, bytes, expires_in)`;
- get: our `get` of a store that does not slide, and litestar's `get(key)` (a plain GET);
- sliding read: our `validate_and_refresh` with `refresh_on_access` (one script that reads,
  decides and slides) and litestar's `get(key, renew_for=...)` (one script: GET, then EXPIRE);
- delete: both a DEL.

Litestar stores opaque bytes: it decodes nothing and checks nothing, so this compares the
round trips and the client work around them.

Run: pip install litestar; python benchmarks/bench_litestar.py [--ops 3000] [--rounds 5]
    [--breakdown]

With --breakdown, the sliding read's time per call is split into what the server spends
running each script (`INFO commandstats`), the client thread's CPU time, and the rest (the
round trip over loopback and waking the loop), and our decoding of the record is timed alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import redis.asyncio
from bench_redis import DATA, LIFETIME_S, start_server
from harness import cpu_log, timed
from litestar.stores.redis import RedisStore

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._core.codec import decode_record, encode_record
from walletmesh_sessions.redis import RedisSessionStore

OPERATIONS = ("set", "get", "sliding read", "delete")


async def measure(args: argparse.Namespace) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per side and operation: median ops/s, median client CPU µs per call, and the median of
    each round's time ratio, ours over this side's. Each round runs every operation once per side,
    the two sides back to back, so a burst of load elsewhere hits both alike."""
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_server(directory)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.asyncio.Redis.from_url(url)
        theirs = RedisStore(client, namespace="litestar_bench", handle_client_shutdown=False)
        plain = RedisSessionStore.from_url(url, SessionStoreConfig(lifetime=LIFETIME_S))
        sliding = RedisSessionStore.from_url(
            url, SessionStoreConfig(lifetime=LIFETIME_S, refresh_on_access=True)
        )
        value = encode_record(DATA, 1_700_000_000_000).encode()
        calls: dict[str, dict[str, Callable[[int], Awaitable[Any]]]] = {
            "walletmesh-sessions": {
                "set": lambda n: plain.set(f"id{n}", DATA),
                "get": lambda n: plain.get(f"id{n}"),
                "sliding read": lambda n: sliding.validate_and_refresh(f"id{n}"),
                "delete": lambda n: plain.delete(f"id{n}"),
            },
            "litestar": {
                "set": lambda n: theirs.set(f"id{n}", value, expires_in=LIFETIME_S),
                "get": lambda n: theirs.get(f"id{n}"),
                "sliding read": lambda n: theirs.get(f"id{n}", renew_for=LIFETIME_S),
                "delete": lambda n: theirs.delete(f"id{n}"),
            },
        }
        try:
            async with plain, sliding:
                for _ in range(args.rounds):
                    for op in OPERATIONS:
                        for who, side in calls.items():
                            cpu_log.clear()
                            rate = await timed(args.ops, side[op])
                            samples.setdefault((who, op), []).append((rate, cpu_log[0]))
        finally:
            await client.aclose()
            server.terminate()
            server.wait()
    result: dict[str, dict[str, tuple[float, float, float]]] = {}
    for (who, op), rows in samples.items():
        mine = samples["walletmesh-sessions", op]
        ratio = statistics.median(
            other[0] / ours[0] for ours, other in zip(mine, rows, strict=True)
        )
        result.setdefault(who, {})[op] = (
            statistics.median(rate for rate, _ in rows),
            statistics.median(cpu for _, cpu in rows),
            ratio,
        )
    return result


async def per_call(
    client: redis.asyncio.Redis, ops: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, float, float]:
    """Wall, client CPU and server script time per call, in microseconds."""
    await client.config_resetstat()
    wall, cpu = time.perf_counter(), time.thread_time()
    for n in range(ops):
        await call(n)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    stats = await client.info("commandstats")
    server = float(stats["cmdstat_evalsha"]["usec_per_call"])
    return wall / ops * 1e6, cpu / ops * 1e6, server


async def breakdown(args: argparse.Namespace) -> None:
    """Where a sliding read's time goes, ours and litestar's, medians over the rounds."""
    rows: dict[str, list[tuple[float, float, float]]] = {
        "walletmesh-sessions": [],
        "walletmesh-sessions, auto_pipeline=false": [],
        "litestar": [],
    }
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_server(directory)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.asyncio.Redis.from_url(url)
        sliding_config = SessionStoreConfig(lifetime=LIFETIME_S, refresh_on_access=True)
        sliding = RedisSessionStore.from_url(url, sliding_config)
        unpiped = RedisSessionStore.from_url(url, sliding_config, auto_pipeline=False)
        theirs = RedisStore(client, namespace="litestar_bench", handle_client_shutdown=False)
        value = encode_record(DATA, 1_700_000_000_000).encode()
        try:
            async with sliding, unpiped:
                for n in range(args.ops):
                    await sliding.set(f"id{n}", DATA)
                    await theirs.set(f"id{n}", value, expires_in=LIFETIME_S)
                for _ in range(args.rounds):
                    rows["walletmesh-sessions"].append(
                        await per_call(
                            client, args.ops, lambda n: sliding.validate_and_refresh(f"id{n}")
                        )
                    )
                    rows["walletmesh-sessions, auto_pipeline=false"].append(
                        await per_call(
                            client, args.ops, lambda n: unpiped.validate_and_refresh(f"id{n}")
                        )
                    )
                    rows["litestar"].append(
                        await per_call(
                            client, args.ops, lambda n: theirs.get(f"id{n}", renew_for=LIFETIME_S)
                        )
                    )
        finally:
            await client.aclose()
            server.terminate()
            server.wait()
    print("| sliding read, us per call | wall | client CPU | server script | the rest |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for who, samples in rows.items():
        wall, cpu, script = (statistics.median(column) for column in zip(*samples, strict=True))
        print(f"| {who} | {wall:.1f} | {cpu:.1f} | {script:.1f} | {wall - cpu - script:.1f} |")
    text = encode_record(DATA, 1_700_000_000_000)
    started = time.perf_counter()
    for _ in range(args.ops):
        decode_record(text, "s")
    decoding = (time.perf_counter() - started) / args.ops * 1e6
    print(f"decoding one record (part of our client CPU): {decoding:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    if args.breakdown:
        anyio.run(breakdown, args)
        return
    result: Any = anyio.run(measure, args)
    print(f"python benchmarks/bench_litestar.py --ops {args.ops} --rounds {args.rounds}")
    print("ratio: our time per call over litestar's, the median of the rounds' own ratios;")
    print("CPU: this process's CPU µs per call (what a busy machine's wall time hides less)")
    print("| operation | ours ops/s | litestar ops/s | ratio | ours CPU µs | litestar CPU µs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for op in OPERATIONS:
        mine, theirs = result["walletmesh-sessions"][op], result["litestar"][op]
        print(
            f"| {op} | {mine[0]:,.0f} | {theirs[0]:,.0f} | {theirs[2]:.2f} | "
            f"{mine[1]:.1f} | {theirs[1]:.1f} |"
        )


if __name__ == "__main__":
    main()
