"""RedisSessionStore next to raw redis clients sending the same commands, one task, sequential.

Starts its own redis-server on a free port (no persistence), then measures ops/s of
set (SET PX), get (plain GET), validate_and_refresh with refresh_on_access (one EVALSHA of
the read-and-slide script, each call sliding) and delete (DEL) for:

- raw redis.asyncio on asyncio (the baseline: same commands, no JSON decoding),
- RedisSessionStore on asyncio (redis.asyncio),
- RedisSessionStore on trio (synchronous client in worker threads),
- raw redis.Redis in anyio worker threads on trio (what the thread hop alone costs).

Rounds are interleaved (every variant once per round) and the median is printed.

Run: python benchmarks/bench_redis.py [--ops 3000] [--rounds 5]

With ``--tasks N``: that many concurrent tasks in one asyncio loop, each awaiting its own
calls over 1,000 sessions, the store (auto-pipelining on, and off) next to raw redis.asyncio
with a connection pool, interleaved per round:
python benchmarks/bench_redis.py --tasks 100 --ops 20000 --rounds 5 [--uvloop]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import redis
import redis.asyncio
from harness import timed

from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._redis.scripts import READ_AND_SLIDE
from walletmesh_sessions.redis import RedisSessionStore

DATA = SessionData(
    "s", "https://app.example.com", {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
)
LIFETIME_S = 3600
TTL_MS = LIFETIME_S * 1000 + LIFETIME_S * 100
OPERATIONS = ("set", "get", "validate_and_refresh", "delete")
COMMANDS = {
    "set": "SET PX",
    "get": "GET",
    "validate_and_refresh": "EVALSHA read-and-slide",
    "delete": "DEL",
}
VARIANTS = (
    ("raw redis.asyncio", "asyncio"),
    ("store asyncio", "asyncio"),
    ("store trio", "trio"),
    ("raw redis.Redis thread, trio", "trio"),
)


def start_server(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    command = [executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
               "--save", "", "--appendonly", "no", "--logfile", ""]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    probe = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.02)
    probe.close()
    return process, port


async def measure_store(url: str, ops: int) -> dict[str, float]:
    plain = RedisSessionStore.from_url(url, SessionStoreConfig(lifetime=LIFETIME_S))
    refreshing = RedisSessionStore.from_url(
        url, SessionStoreConfig(lifetime=LIFETIME_S, refresh_on_access=True)
    )
    async with plain, refreshing:
        results = {"set": await timed(ops, lambda n: plain.set(f"id{n}", DATA))}
        results["get"] = await timed(ops, lambda n: plain.get(f"id{n}"))
        results["validate_and_refresh"] = await timed(
            ops, lambda n: refreshing.validate_and_refresh(f"id{n}")
        )
        results["delete"] = await timed(ops, lambda n: plain.delete(f"id{n}"))
    return results


def _slide_args() -> list[Any]:
    # What the store passes: now, lifetime, no max_lifetime, the TTL of a slide.
    return [round(time.time() * 1000), LIFETIME_S * 1000, "", TTL_MS]


async def measure_raw_asyncio(url: str, ops: int) -> dict[str, float]:
    client = redis.asyncio.Redis.from_url(url)
    script = client.register_script(READ_AND_SLIDE.source)
    text = encode_record(DATA, 1_700_000_000_000)

    async def refresh(n: int) -> None:
        await script(keys=[f"wm_session_id{n}"], args=_slide_args())

    try:
        results = {
            "set": await timed(ops, lambda n: client.set(f"wm_session_id{n}", text, px=TTL_MS))
        }
        results["get"] = await timed(ops, lambda n: client.get(f"wm_session_id{n}"))
        results["validate_and_refresh"] = await timed(ops, refresh)
        results["delete"] = await timed(ops, lambda n: client.delete(f"wm_session_id{n}"))
    finally:
        await client.aclose()
    return results


async def measure_raw_threads(url: str, ops: int) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    script = client.register_script(READ_AND_SLIDE.source)
    text = encode_record(DATA, 1_700_000_000_000)

    def refresh(n: int) -> None:
        script(keys=[f"wm_session_id{n}"], args=_slide_args())

    def hop(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return anyio.to_thread.run_sync(lambda: fn(*args))

    try:
        results = {
            "set": await timed(
                ops, lambda n: hop(client.set, f"wm_session_id{n}", text, None, TTL_MS)
            )
        }
        results["get"] = await timed(ops, lambda n: hop(client.get, f"wm_session_id{n}"))
        results["validate_and_refresh"] = await timed(ops, lambda n: hop(refresh, n))
        results["delete"] = await timed(ops, lambda n: hop(client.delete, f"wm_session_id{n}"))
    finally:
        client.close()
    return results


async def paired_ratios(url: str, block: int, pairs: int) -> dict[str, list[float]]:
    """Per operation, the store's time over raw redis.asyncio's in adjacent blocks.

    Both run in one event loop, alternating blocks of `block` calls (raw, store, raw, ...),
    so a burst of load elsewhere on the machine hits both sides of a pair alike.
    """
    client = redis.asyncio.Redis.from_url(url)
    script = client.register_script(READ_AND_SLIDE.source)
    text = encode_record(DATA, 1_700_000_000_000)
    plain = RedisSessionStore.from_url(url, SessionStoreConfig(lifetime=LIFETIME_S))
    refreshing = RedisSessionStore.from_url(
        url, SessionStoreConfig(lifetime=LIFETIME_S, refresh_on_access=True)
    )
    calls: dict[str, tuple[Callable[[int], Awaitable[Any]], Callable[[int], Awaitable[Any]]]] = {
        "set": (
            lambda n: client.set(f"wm_session_id{n}", text, px=TTL_MS),
            lambda n: plain.set(f"id{n}", DATA),
        ),
        "get": (lambda n: client.get(f"wm_session_id{n}"), lambda n: plain.get(f"id{n}")),
        "validate_and_refresh": (
            lambda n: script(keys=[f"wm_session_id{n}"], args=_slide_args()),
            lambda n: refreshing.validate_and_refresh(f"id{n}"),
        ),
        "delete": (
            lambda n: client.delete(f"wm_session_id{n}"),
            lambda n: plain.delete(f"id{n}"),
        ),
    }
    ratios: dict[str, list[float]] = {}
    try:
        async with plain, refreshing:
            for operation, (raw, store) in calls.items():
                for _ in range(pairs):
                    if operation in ("get", "validate_and_refresh"):
                        for n in range(block):
                            await plain.set(f"id{n}", DATA)
                    raw_rate = await timed(block, raw)
                    if operation in ("get", "validate_and_refresh"):
                        for n in range(block):
                            await plain.set(f"id{n}", DATA)
                    ratios.setdefault(operation, []).append(raw_rate / await timed(block, store))
    finally:
        await client.aclose()
    return ratios


MEASURE = {
    "raw redis.asyncio": measure_raw_asyncio,
    "store asyncio": measure_store,
    "store trio": measure_store,
    "raw redis.Redis thread, trio": measure_raw_threads,
}


def collect(ops: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    """ops/s samples per (variant, operation), rounds interleaved, on a server of our own."""
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_server(directory)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for _ in range(rounds):
                for name, backend in VARIANTS:
                    measured = anyio.run(MEASURE[name], url, ops, backend=backend)
                    for operation, value in measured.items():
                        results.setdefault((name, operation), []).append(value)
            results[("round trips", "get_all 10000")] = [anyio.run(get_all_round_trips, url)]
        finally:
            process.terminate()
            process.wait(10)
    return results


async def get_all_round_trips(url: str, sessions: int = 10_000) -> float:
    """Commands Redis received for one get_all of `sessions` sessions (INFO commandstats)."""
    client = redis.asyncio.Redis.from_url(url)
    await client.flushdb()
    text = encode_record(DATA, None)
    for start in range(0, sessions, 1000):
        await client.mset({f"wm_session_id{n}": text for n in range(start, start + 1000)})
    store = RedisSessionStore.from_url(url)
    async with store:
        await store.get("warm-up")
        before = await client.info("commandstats")
        found = await store.get_all()
        after = await client.info("commandstats")
    await client.aclose()
    assert len(found) == sessions
    calls = sum(v["calls"] for v in after.values()) - sum(v["calls"] for v in before.values())
    return float(calls - 1)  # less the INFO itself


def suite_rows(ops: int, rounds: int) -> dict[str, dict[str, float]]:
    """Rows for benchmarks/suite.py: the store on asyncio next to raw redis.asyncio."""
    results = collect(ops, rounds)
    rows = {}
    for operation in OPERATIONS:
        store = statistics.median(results["store asyncio", operation])
        floor = statistics.median(results["raw redis.asyncio", operation])
        trio = statistics.median(results["store trio", operation])
        rows[operation] = {"store_ops": store, "floor_ops": floor, "ratio": floor / store,
                           "store_trio_ops": trio}  # fmt: skip
    rows["get_all 10000 (commands)"] = {
        "store_ops": results["round trips", "get_all 10000"][0], "floor_ops": 0.0, "ratio": 0.0,
    }  # fmt: skip
    return rows


SESSIONS = 1000
CONCURRENT = ("raw redis.asyncio pool", "store", "store auto_pipeline=false")
CONCURRENT_OPS = ("set", "get", "validate_and_refresh")


async def _in_tasks(
    tasks: int, ops: int, call: Callable[[int], Awaitable[Any]]
) -> tuple[float, float]:
    """ops/s of `ops` calls made by `tasks` concurrent tasks, each awaiting its own in turn,
    and this process's CPU µs per call (what a busy machine's wall time hides less)."""
    share = ops // tasks

    async def worker(first: int) -> None:
        for n in range(first, first + share):
            await call(n % SESSIONS)

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for t in range(tasks):
            group.start_soon(worker, t * share)
    done = share * tasks
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1e6


def _switched_off(url: str, config: SessionStoreConfig) -> RedisSessionStore:
    try:
        return RedisSessionStore.from_url(url, config, auto_pipeline=False)
    except ValueError:  # a tree from before the switch (an A/B run): it never pipelines
        return RedisSessionStore.from_url(url, config)


async def concurrent_rates(
    url: str, tasks: int, ops: int, rounds: int
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """ops/s and CPU µs per call per (variant, operation): every variant once per round, in
    one event loop."""
    pool = redis.asyncio.ConnectionPool.from_url(url)
    client = redis.asyncio.Redis(connection_pool=pool)
    script = client.register_script(READ_AND_SLIDE.source)
    text = encode_record(DATA, 1_700_000_000_000)
    config = SessionStoreConfig(lifetime=LIFETIME_S)
    sliding = SessionStoreConfig(lifetime=LIFETIME_S, refresh_on_access=True)
    stores = {
        "store": (
            RedisSessionStore.from_url(url, config),
            RedisSessionStore.from_url(url, sliding),
        ),
        "store auto_pipeline=false": (_switched_off(url, config), _switched_off(url, sliding)),
    }

    def calls(variant: str) -> dict[str, Callable[[int], Awaitable[Any]]]:
        if variant == CONCURRENT[0]:
            return {
                "set": lambda n: client.set(f"wm_session_id{n}", text, px=TTL_MS),
                "get": lambda n: client.get(f"wm_session_id{n}"),
                "validate_and_refresh": lambda n: script(
                    keys=[f"wm_session_id{n}"], args=_slide_args()
                ),
            }
        plain, refreshing = stores[variant]
        return {
            "set": lambda n: plain.set(f"id{n}", DATA),
            "get": lambda n: plain.get(f"id{n}"),
            "validate_and_refresh": lambda n: refreshing.validate_and_refresh(f"id{n}"),
        }

    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        plain = stores["store"][0]
        for n in range(SESSIONS):
            await plain.set(f"id{n}", DATA)
        for variant in CONCURRENT:  # warm-up: connections opened, scripts loaded
            for call in calls(variant).values():
                await _in_tasks(tasks, tasks * 10, call)
        for _ in range(rounds):
            for operation in CONCURRENT_OPS:
                for variant in CONCURRENT:
                    rate, used = await _in_tasks(tasks, ops, calls(variant)[operation])
                    results.setdefault((variant, operation), []).append(rate)
                    cpu.setdefault((variant, operation), []).append(used)
    finally:
        for pair in stores.values():
            for store in pair:
                await store.aclose()
        await client.aclose()
    return results, cpu


def print_concurrent(tasks: int, ops: int, rounds: int, use_uvloop: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_server(directory)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            options = {"use_uvloop": True} if use_uvloop else {}
            results, cpu = anyio.run(
                concurrent_rates,
                url,
                tasks,
                ops,
                rounds,
                backend="asyncio",
                backend_options=options,
            )
        finally:
            process.terminate()
            process.wait(10)
    loop = " --uvloop" if use_uvloop else ""
    print(f"python benchmarks/bench_redis.py --tasks {tasks} --ops {ops} --rounds {rounds}{loop}")
    print(f"ops/s, {tasks} concurrent tasks, {SESSIONS} sessions, median of {rounds} rounds")
    print("x raw: the variant's ops/s over raw redis.asyncio's (pool), per round: median, range")
    header = f"| {'operation':22} |" + "".join(f" {name:>26} |" for name in CONCURRENT)
    print(header + f" {'store x raw':>11} | {'range':>11} |")
    print(
        "|"
        + "-" * 24
        + "|"
        + ("-" * 27 + ":|") * len(CONCURRENT)
        + "-" * 12
        + ":|"
        + "-" * 12
        + ":|"
    )
    for operation in CONCURRENT_OPS:
        medians = [statistics.median(results[name, operation]) for name in CONCURRENT]
        ratios = [
            store / raw
            for raw, store in zip(
                results[CONCURRENT[0], operation], results[CONCURRENT[1], operation], strict=True
            )
        ]
        print(
            f"| {operation:22} |"
            + "".join(f" {value:>26,.0f} |" for value in medians)
            + f" {statistics.median(ratios):>11.2f} | {min(ratios):.2f} - {max(ratios):.2f} |"
        )
    print("client CPU µs per call (this process), median")
    for operation in CONCURRENT_OPS:
        used = [statistics.median(cpu[name, operation]) for name in CONCURRENT]
        print(f"| {operation:22} |" + "".join(f" {value:>26.1f} |" for value in used))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="operations per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pairs", type=int, default=0, help="also: this many adjacent raw/store block pairs"
    )
    parser.add_argument(
        "--tasks", type=int, default=0, help="instead: this many concurrent tasks (asyncio)"
    )
    parser.add_argument("--uvloop", action="store_true", help="with --tasks: on uvloop")
    args = parser.parse_args()
    if args.tasks:
        print_concurrent(args.tasks, args.ops, args.rounds, args.uvloop)
        return
    command = f"python benchmarks/bench_redis.py --ops {args.ops} --rounds {args.rounds}"
    if args.pairs:
        with tempfile.TemporaryDirectory() as directory:
            process, port = start_server(directory)
            try:
                paired = anyio.run(paired_ratios, f"redis://127.0.0.1:{port}/0", 500, args.pairs)
            finally:
                process.terminate()
                process.wait(10)
        print(command + f" --pairs {args.pairs}")
        print(f"store / raw redis.asyncio, time per call, {args.pairs} adjacent pairs of 500 calls")
        print("| operation              | command                | median | quartiles   |")
        print("|------------------------|------------------------|-------:|------------:|")
        for operation, ratios in paired.items():
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            print(
                f"| {operation:22} | {COMMANDS[operation]:22} | "
                f"{statistics.median(ratios):6.2f} | {q1:.2f} - {q3:.2f} |"
            )
    results = collect(args.ops, args.rounds)
    print(command)
    print(f"ops/s, median of {args.rounds} interleaved rounds of {args.ops} sequential ops")
    print("ratio: time per call of the store on asyncio / of raw redis.asyncio (1.00 = raw)")
    header = f"| {'operation':22} | {'command':22} |"
    header += "".join(f" {name:>28} |" for name, _ in VARIANTS)
    print(header + f" {'ratio':>6} | {'ratio range':>12} |")
    print("|" + "-" * 24 + "|" + "-" * 24 + "|" + ("-" * 29 + ":|") * len(VARIANTS), end="")
    print("-" * 7 + ":|" + "-" * 13 + ":|")
    for operation in OPERATIONS:
        medians = [statistics.median(results[name, operation]) for name, _ in VARIANTS]
        # Each round's own ratio too: rounds are interleaved, so their spread is the noise.
        pairs = zip(
            results[VARIANTS[0][0], operation], results[VARIANTS[1][0], operation], strict=True
        )
        ratios = [raw / store for raw, store in pairs]
        print(
            f"| {operation:22} | {COMMANDS[operation]:22} |"
            + "".join(f" {value:>28,.0f} |" for value in medians)
            + f" {medians[0] / medians[1]:>6.2f} | {min(ratios):.2f} - {max(ratios):.2f} |"
        )
    print(f"get_all of 10,000 sessions: {results['round trips', 'get_all 10000'][0]:.0f} commands")


if __name__ == "__main__":
    main()


async def _scale_one(url: str, size: int) -> dict[str, float]:
    from suite import timed as timed_with_stall  # the suite's heartbeat-measured timer

    client = redis.asyncio.Redis.from_url(url)
    await client.flushdb()
    now_ms = 1_700_000_000_000
    expired = max(1, size // 100)
    live = encode_record(DATA, now_ms + 3_600_000)
    old = encode_record(DATA, now_ms - 1)
    for start in range(0, size, 10_000):
        batch = {
            f"wm_session_{'old' if n < expired else 'id'}{n}": old if n < expired else live
            for n in range(start, min(size, start + 10_000))
        }
        await client.mset(batch)
    await client.aclose()
    store = RedisSessionStore.from_url(
        url, SessionStoreConfig(lifetime=LIFETIME_S), clock=lambda: now_ms / 1000
    )
    async with store:
        await store.get("warm-up")
        clean_s, clean_stall, removed = await timed_with_stall(store.clean_expired)
        get_all_s, get_all_stall, found = await timed_with_stall(store.get_all)
    return {
        "store": "redis",
        "sessions": size,
        "clean_expired_s": clean_s,
        "clean_expired_removed": removed,
        "clean_expired_max_stall_ms": clean_stall * 1000,
        "get_all_s": get_all_s,
        "get_all_found": len(found),
        "get_all_max_stall_ms": get_all_stall * 1000,
    }


def scaling(sizes: list[int]) -> list[dict[str, float]]:
    """get_all and clean_expired (1 % expired) at each size, on asyncio, on a server of our own."""
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_server(directory)
        try:
            for size in sizes:
                rows.append(anyio.run(_scale_one, f"redis://127.0.0.1:{port}/0", size))
        finally:
            process.terminate()
            process.wait(10)
    return rows
