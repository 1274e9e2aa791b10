"""The benchmark suite: every store's per-session methods next to the floor, and scaling.

Run from the repository root:

    python benchmarks/suite.py [--quick] [--output PATH]

The tables go to stdout. The JSON results are written only to the `--output` path (``-`` for
stdout); the tracked ``benchmarks/results.json`` is rewritten only by a full run that names it.

For each store and method it prints ops/s of the store, ops/s of the floor doing the same work
in the same run, and their ratio (store time / floor time: 1.0 is the floor). Floors:

- memory: an ``async def`` doing the bare dict operation and the expiry comparison;
- sqlite: the ``sqlite3`` module running the same statements in the calling thread;
- redis: ``redis.asyncio`` sending the same commands (see bench_redis.py);
- postgres: ``psycopg.AsyncConnection`` running the same statements (see bench_postgres.py).

Rounds are interleaved (store, floor, store, floor, ...) so machine noise hits both alike, and
medians are reported. Then `clean_expired` with 1 % expired and `get_all` at growing sizes, and
the longest event-loop stall seen by a heartbeat task while SQLite works.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from walletmesh_sessions import (
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
)
from walletmesh_sessions._core.codec import encode_record, record_with_expiry
from walletmesh_sessions._local.sqlite import DURABILITY, SCHEMA, TABLE, Durability
from walletmesh_sessions._local.sqlite.file import stamp
from walletmesh_sessions.testing import FakeClock

DATA = SessionData(
    "s", "https://app.example.com", {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
)
LIFETIME = 3600
DURABILITY_LEVELS: tuple[Durability, ...] = ("process", "power")
KEYS = 1000  # distinct ids cycled through by the per-session loops

Call = Callable[[int], Awaitable[Any]]


async def ops_per_second(ops: int, call: Call) -> float:
    start = time.perf_counter()
    for n in range(ops):
        await call(n % KEYS)
    return ops / (time.perf_counter() - start)


async def interleave(rounds: int, ops: int, pairs: dict[str, tuple[Call, Call]]) -> dict[str, Any]:
    """Median ops/s of (store, floor) per method, rounds interleaved."""
    samples: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in pairs}
    for _ in range(rounds):
        for method, (store_call, floor_call) in pairs.items():
            samples[method][0].append(await ops_per_second(ops, store_call))
            samples[method][1].append(await ops_per_second(ops, floor_call))
    result = {}
    for method, (store, floor) in samples.items():
        s, f = statistics.median(store), statistics.median(floor)
        result[method] = {"store_ops": s, "floor_ops": f, "ratio": f / s}
    return result


# -- memory ----------------------------------------------------------------------------------


async def bench_memory(rounds: int, ops: int) -> dict[str, Any]:
    clock = FakeClock()
    plain = MemorySessionStore(SessionStoreConfig(lifetime=LIFETIME), clock=clock)
    sliding = MemorySessionStore(
        SessionStoreConfig(lifetime=LIFETIME, refresh_on_access=True), clock=clock
    )
    ids = [f"id{n}" for n in range(KEYS)]
    for sid in ids:
        await plain.set(sid, DATA)
        await sliding.set(sid, DATA)
    floor: dict[str, tuple[SessionData, int]] = dict.fromkeys(ids, (DATA, clock.now_ms + 3600000))

    async def floor_set(n: int) -> None:
        floor[ids[n]] = (DATA, round(clock() * 1000) + 3_600_000)

    async def floor_get(n: int) -> SessionData | None:
        entry = floor.get(ids[n])
        if entry is None or round(clock() * 1000) > entry[1]:
            return None
        return entry[0]

    async def floor_refresh(n: int) -> SessionData | None:
        clock.advance(ms=1)
        entry = floor.get(ids[n])
        now = round(clock() * 1000)
        if entry is None or now > entry[1]:
            return None
        floor[ids[n]] = (entry[0], now + 3_600_000)
        return entry[0]

    async def memory_refresh(n: int) -> SessionData | None:
        clock.advance(ms=1)
        return await sliding.validate_and_refresh(ids[n])

    async def store_delete(n: int) -> None:
        await plain.delete(ids[n])
        await plain.set(ids[n], DATA)

    async def floor_delete_and_set(n: int) -> None:
        floor.pop(ids[n], None)
        await floor_set(n)

    return await interleave(
        rounds,
        ops,
        {
            "set": (lambda n: plain.set(ids[n], DATA), floor_set),
            "get": (lambda n: plain.get(ids[n]), floor_get),
            "validate_and_refresh": (memory_refresh, floor_refresh),
            "delete+set": (store_delete, floor_delete_and_set),
        },
    )


# -- sqlite ----------------------------------------------------------------------------------


def fill_sqlite(
    path: Path, count: int, expires_at: int, prefix: str = "wm_session_", start: int = 0
) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        record = encode_record(DATA, expires_at)
        # Stamped as the store stamps its own writes: these rows stand for sessions it wrote.
        conn.executemany(
            f"INSERT OR REPLACE INTO {TABLE} (key, value, written) VALUES (?1, ?2, {stamp('?1')})",
            ((f"{prefix}id{n}", record) for n in range(start, start + count)),
        )


async def bench_sqlite(
    rounds: int, ops: int, directory: Path, durability: Durability
) -> dict[str, Any]:
    """Per-session methods at one durability, next to raw `sqlite3` at the same durability."""
    clock = FakeClock()
    path = directory / f"per-op-{durability}.db"
    fill_sqlite(path, KEYS, clock.now_ms + 3_600_000)
    config = SessionStoreConfig(lifetime=LIFETIME)
    plain = LocalStorageSessionStore(path, config, clock=clock, durability=durability)
    sliding = LocalStorageSessionStore(
        path,
        SessionStoreConfig(lifetime=LIFETIME, refresh_on_access=True),
        clock=clock,
        durability=durability,
    )
    raw = sqlite3.connect(path, isolation_level=None, timeout=30)
    raw.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
    keys = [f"wm_session_id{n}" for n in range(KEYS)]
    ids = [f"id{n}" for n in range(KEYS)]
    record = encode_record(DATA, clock.now_ms + 3_600_000)

    async def floor_set(n: int) -> None:
        raw.execute(
            f"INSERT INTO {TABLE} (key, value) VALUES (?, ?) ON CONFLICT (key)"
            " DO UPDATE SET value = excluded.value",
            (keys[n], record),
        )

    async def floor_get(n: int) -> Any:
        return raw.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (keys[n],)).fetchone()

    async def floor_refresh(n: int) -> Any:
        clock.advance(ms=1)  # each read slides the expiry: a real write every time
        row = raw.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (keys[n],)).fetchone()
        raw.execute(
            f"UPDATE {TABLE} SET value = :new WHERE key = :key AND value = :old",
            {
                "new": record_with_expiry(row[0], clock.now_ms + 3_600_000),
                "key": keys[n],
                "old": row[0],
            },
        )
        return row

    async def floor_delete(n: int) -> None:
        raw.execute(f"DELETE FROM {TABLE} WHERE key = ?", (keys[n],))
        await floor_set(n)

    async def store_refresh(n: int) -> Any:
        clock.advance(ms=1)
        return await sliding.validate_and_refresh(ids[n])

    async def store_delete(n: int) -> None:
        await plain.delete(ids[n])
        await plain.set(ids[n], DATA)

    try:
        result = await interleave(
            rounds,
            ops,
            {
                "set": (lambda n: plain.set(ids[n], DATA), floor_set),
                "get": (lambda n: plain.get(ids[n]), floor_get),
                "validate_and_refresh": (store_refresh, floor_refresh),
                "delete+set": (store_delete, floor_delete),
            },
        )
    finally:
        raw.close()
        await plain.aclose()
        await sliding.aclose()
    return {f"{method} [{durability}]": row for method, row in result.items()}


async def bench_sqlite_clean(rounds: int, directory: Path) -> dict[str, Any]:
    """clean_expired of 5,000 expired among 10,000 next to raw `sqlite3`'s one DELETE."""
    import bench_sqlite  # a script beside this one, like bench_redis

    result: dict[str, Any] = {}
    for durability in DURABILITY_LEVELS:
        store, floor = await bench_sqlite.clean(durability, directory, rounds=rounds)
        result[durability] = {
            "store_ms": store * 1e3,
            "floor_ms": floor * 1e3,
            "ratio": store / floor,
        }
    return result


# -- scaling and stalls ------------------------------------------------------------------------


class Heartbeat:
    """Measures the longest gap between ticks of a task that asks to wake every millisecond."""

    def __init__(self) -> None:
        self.longest = 0.0
        # The most CPU time the loop's thread used between two ticks: the part of a stall
        # that is work on the loop, not the thread waiting for a core on a busy machine.
        self.longest_cpu = 0.0
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()

    def reset(self) -> None:
        self.longest = self.longest_cpu = 0.0

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.longest = max(self.longest, now - self.last - 0.001)
        self.longest_cpu = max(self.longest_cpu, cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    async def run(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        while True:
            await anyio.sleep(0.001)
            self._tick()

    def stop(self) -> None:
        """Count the gap since the last tick too: a stall that ends the call is never seen by
        a tick (the task is cancelled before it runs again)."""
        self._tick()


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """Seconds taken and the longest event-loop stall during `call`."""
    beat = Heartbeat()
    async with anyio.create_task_group() as tg:
        tg.start_soon(beat.run)
        await anyio.sleep(0.01)
        beat.reset()
        start = time.perf_counter()
        value = await call()
        elapsed = time.perf_counter() - start
        beat.stop()
        tg.cancel_scope.cancel()
    return elapsed, beat.longest, value


async def bench_scaling(sizes: list[int], directory: Path) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        expired = max(1, size // 100)
        for kind in ("memory", "sqlite"):
            clock = FakeClock()
            config = SessionStoreConfig(lifetime=LIFETIME)
            if kind == "memory":
                store: Any = MemorySessionStore(config, clock=clock)
                for n in range(expired):
                    await store.set(f"old{n}", DATA)
                clock.advance(ms=1)
                for n in range(size - expired):
                    await store.set(f"id{n}", DATA)
                clock.advance(seconds=LIFETIME)  # now only the first 1 % are past their expiry
            else:
                path = directory / f"scale-{size}.db"
                fill_sqlite(path, size - expired, clock.now_ms + 3_600_000)
                fill_sqlite(path, expired, clock.now_ms - 1, prefix="wm_session_old")
                clock.advance(ms=0)
                store = LocalStorageSessionStore(path, config, clock=clock)
            # The collector's debt from filling (a full collection made due by a million new
            # objects) is paid now, not billed to whichever call it happens to fall in.
            gc.collect()
            # clean_expired first: a memory store's get_all removes the expired sessions it meets.
            clean_s, clean_stall, removed = await timed(store.clean_expired)
            get_all_s, get_all_stall, found = await timed(store.get_all)
            rows.append(
                {
                    "store": kind,
                    "sessions": size,
                    "get_all_s": get_all_s,
                    "get_all_found": len(found),
                    "get_all_max_stall_ms": get_all_stall * 1000,
                    "clean_expired_s": clean_s,
                    "clean_expired_removed": removed,
                    "clean_expired_max_stall_ms": clean_stall * 1000,
                }
            )
            if kind == "sqlite":
                await store.aclose()
            print(f"  scaled {kind} to {size:>9,}", file=sys.stderr)
    return rows


async def bench_fixed_expired(sizes: list[int], directory: Path, expired: int = 100) -> list[Any]:
    """clean_expired with the same number of expired sessions in ever larger SQLite files."""
    rows = []
    for size in sizes:
        clock = FakeClock()
        path = directory / f"fixed-{size}.db"
        fill_sqlite(path, size - expired, clock.now_ms + 3_600_000)
        fill_sqlite(path, expired, clock.now_ms - 1, prefix="wm_session_old")
        async with LocalStorageSessionStore(
            path, SessionStoreConfig(lifetime=LIFETIME), clock=clock
        ) as store:
            await store.get("warm-up")
            seconds, stall, removed = await timed(store.clean_expired)
        rows.append(
            {
                "sessions": size,
                "expired": removed,
                "clean_expired_s": seconds,
                "max_stall_ms": stall * 1000,
            }
        )
        path.unlink()
    return rows


async def bench_thread_hop(ops: int) -> float:
    """ops/s of a bare anyio.to_thread.run_sync round trip: what any worker-thread call pays."""
    start = time.perf_counter()
    for _ in range(ops):
        await anyio.to_thread.run_sync(int)
    return ops / (time.perf_counter() - start)


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def bench_lock_stall(directory: Path) -> dict[str, Any]:
    """Longest loop stall while another process holds the write lock for 2 seconds."""
    path = directory / "locked.db"
    fill_sqlite(path, 1000, FakeClock().now_ms + 3_600_000)
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [sys.executable, "-c", HOLD_LOCK, str(path), "2"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    async with LocalStorageSessionStore(path, SessionStoreConfig(lifetime=LIFETIME)) as store:

        async def write_and_read() -> None:
            await store.set("blocked", DATA)  # waits for the lock, in a worker thread
            await store.get("blocked")

        elapsed, stall, _ = await timed(write_and_read)
    proc.wait()
    return {"waited_s": elapsed, "max_stall_ms": stall * 1000}


# -- main ------------------------------------------------------------------------------------


async def bench_footprint(sessions: int) -> dict[str, float]:
    """Bytes per session a memory store allocates, next to a dict of (data, expiry) tuples.

    Measured with tracemalloc over storing `sessions` sessions whose data objects (one per
    session) exist before the measurement: only what the store itself keeps is counted.
    """
    ids = [f"id{n:07d}" for n in range(sessions)]
    datas = [SessionData(sid, DATA.origin, DATA.permissions) for sid in ids]
    clock = FakeClock()
    expiry = clock.now_ms + LIFETIME * 1000

    async def memory_store() -> object:
        store = MemorySessionStore(SessionStoreConfig(lifetime=LIFETIME), clock=clock)
        for sid, data in zip(ids, datas, strict=True):
            await store.set(sid, data)
        return store

    async def floor() -> object:
        table: dict[str, tuple[SessionData, int]] = {}
        for sid, data in zip(ids, datas, strict=True):
            table[sid] = (data, expiry + len(table))  # distinct ints, as real expiries are
        return table

    result = {}
    for name, build in (("memory", memory_store), ("floor", floor)):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = await build()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        result[name] = (after - before) / sessions
        del kept
    return result


class GcPauses:
    """The longest garbage-collector pause while the block runs (gc.callbacks)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)


async def bench_big_stalls(sessions: int, runs: int, directory: Path) -> list[dict[str, Any]]:
    """The longest event-loop stall, over `runs` runs, of get_all and of iterating every
    session, on memory and SQLite stores holding `sessions` sessions."""

    async def iterate(store: Any) -> int:
        count = 0
        async for _ in store.iter_sessions():
            count += 1
        return count

    rows = []
    clock = FakeClock()
    config = SessionStoreConfig(lifetime=LIFETIME)
    memory = MemorySessionStore(config, clock=clock)
    for n in range(sessions):
        await memory.set(f"id{n}", DATA)
    path = directory / "stall.db"
    fill_sqlite(path, sessions, clock.now_ms + 3_600_000)
    sqlite = LocalStorageSessionStore(path, config, clock=clock)
    gc.collect()  # the fill's debt, as in bench_scaling
    for kind, store in (("memory", memory), ("sqlite", sqlite)):
        calls = (("get_all", store.get_all), ("iter_sessions", functools.partial(iterate, store)))
        for method, call in calls:
            stalls, seconds, pauses = [], [], []
            for _ in range(runs):
                with GcPauses() as gc_pauses:
                    elapsed, stall, value = await timed(call)
                count = len(value) if method == "get_all" else value
                assert count == sessions, (kind, method, count)
                del value
                stalls.append(stall * 1000)
                seconds.append(elapsed)
                pauses.append(gc_pauses.longest * 1000)
            rows.append(
                {
                    "store": kind,
                    "method": method,
                    "sessions": sessions,
                    "runs": runs,
                    "max_stall_ms": max(stalls),
                    "stalls_ms": stalls,
                    "max_gc_pause_ms": max(pauses),
                    "median_s": statistics.median(seconds),
                }
            )
    await sqlite.aclose()
    return rows


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


async def run(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        result: dict[str, Any] = {"backend": backend}
        result["memory"] = await bench_memory(args.rounds, args.ops)
        result["sqlite"] = {}
        for durability in DURABILITY_LEVELS:
            result["sqlite"].update(
                await bench_sqlite(args.rounds, args.sqlite_ops, directory, durability)
            )
        result["thread_hop_ops"] = await bench_thread_hop(args.sqlite_ops)
        if backend == "asyncio":
            result["scaling"] = await bench_scaling(args.sizes, directory)
            result["lock_stall"] = await bench_lock_stall(directory)
            result["fixed_expired"] = await bench_fixed_expired(args.sizes[1:], directory)
            result["sqlite_clean"] = await bench_sqlite_clean(args.rounds, directory)
            result["footprint"] = await bench_footprint(args.footprint_sessions)
            result["big_stalls"] = await bench_big_stalls(
                args.sizes[-1], args.stall_runs, directory
            )
        return result


def print_table(results: list[dict[str, Any]]) -> None:
    head = ("store", "method", "backend", "store ops/s", "floor ops/s", "ratio")
    print(f"{head[0]:8} {head[1]:32} {head[2]:8} {head[3]:>12} {head[4]:>12} {head[5]:>6}")
    for result in results:
        for kind in ("memory", "sqlite", "redis", "postgres"):
            for method, row in result.get(kind, {}).items():
                print(
                    f"{kind:8} {method:32} {result['backend']:8} {row['store_ops']:12,.0f}"
                    f" {row['floor_ops']:12,.0f} {row['ratio']:6.2f}"
                )
    for result in results:
        print(f"worker-thread round trip ({result['backend']}): {result['thread_hop_ops']:,.0f}/s")
    for result in results:
        if "scaling" in result:
            cols = ("sessions", "get_all s", "stall ms", "clean s", "removed", "stall ms")
            print(f"\n{'store':8} {cols[0]:>10} {cols[1]:>10} {cols[2]:>9} {cols[3]:>9}"
                  f" {cols[4]:>8} {cols[5]:>9}")  # fmt: skip
            for row in result["scaling"]:
                print(
                    f"{row['store']:8} {row['sessions']:10,} {row['get_all_s']:10.4f}"
                    f" {row['get_all_max_stall_ms']:9.1f} {row['clean_expired_s']:9.4f}"
                    f" {row['clean_expired_removed']:8,} {row['clean_expired_max_stall_ms']:9.1f}"
                )
            print("\nSQLite clean_expired with 100 expired sessions:")
            for row in result["fixed_expired"]:
                print(
                    f"  {row['sessions']:>9,} sessions: {row['clean_expired_s'] * 1000:7.2f} ms,"
                    f" removed {row['expired']}, longest stall {row['max_stall_ms']:.1f} ms"
                )
            for durability, row in result["sqlite_clean"].items():
                print(
                    f"SQLite clean_expired, 5,000 of 10,000 expired [{durability}]:"
                    f" {row['store_ms']:.2f} ms, raw DELETE {row['floor_ms']:.2f} ms,"
                    f" ratio {row['ratio']:.2f}"
                )
            footprint = result["footprint"]
            print(
                f"\nmemory per session: store {footprint['memory']:.0f} bytes,"
                f" dict of (data, expiry) tuples {footprint['floor']:.0f} bytes"
            )
            for row in result["big_stalls"]:
                print(
                    f"{row['store']:8} {row['method']:14} {row['sessions']:,} sessions:"
                    f" {row['median_s']:.2f} s, longest stall over {row['runs']} runs"
                    f" {row['max_stall_ms']:.1f} ms"
                    f" (longest GC pause {row['max_gc_pause_ms']:.1f} ms)"
                )
            lock = result["lock_stall"]
            print(
                f"\nSQLite write while another process holds the lock for 2 s: waited"
                f" {lock['waited_s']:.2f} s, longest event-loop stall {lock['max_stall_ms']:.1f} ms"
            )


TRACKED_RESULTS = (Path(__file__).parent / "results.json").resolve()
TRACKED_CHART = (Path(__file__).parent.parent / "docs" / "scaling.svg").resolve()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The suite's options; refuses to let a quick run overwrite the tracked results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    # --json: the option's earlier name, kept so existing commands still work.
    parser.add_argument(
        "--output",
        "--json",
        type=Path,
        default=None,
        help="write the JSON results here ('-' for stdout); without it they are not saved",
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis part")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL part")
    parser.add_argument(
        "--chart", type=Path, default=None, help="draw the scaling results as an SVG here"
    )
    args = parser.parse_args(argv)
    if args.quick and args.output is not None and args.output.resolve() == TRACKED_RESULTS:
        parser.error(
            f"--quick would overwrite the tracked {TRACKED_RESULTS.name} with rough numbers;"
            " give another --output path, or run the full suite"
        )
    if args.quick and args.chart is not None and args.chart.resolve() == TRACKED_CHART:
        parser.error(
            f"--quick would overwrite the tracked {TRACKED_CHART.name} (shown in the docs) with"
            " rough numbers; give another --chart path, or run the full suite"
        )
    args.rounds = 3 if args.quick else 7
    args.ops = 20_000 if args.quick else 100_000
    args.sqlite_ops = 1_000 if args.quick else 3_000
    args.sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    args.footprint_sessions = 10_000 if args.quick else 100_000
    args.stall_runs = 2 if args.quick else 5
    return args


def write_results(results: list[dict[str, Any]], output: Path | None) -> None:
    """Save the JSON results to `output` (``-``: stdout); with no `output`, save nothing."""
    if output is None:
        print("\nresults not saved (pass --output PATH to keep the JSON)")
        return
    text = json.dumps({"machine": machine(), "results": results}, indent=2)
    if str(output) == "-":
        print(text)
        return
    output.write_text(text)
    print(f"\nwrote {output}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results = [anyio.run(run, args, backend, backend=backend) for backend in ("asyncio", "trio")]
    if not args.no_redis:
        import bench_redis

        results[0]["redis"] = bench_redis.suite_rows(
            3_000 if not args.quick else 1_000, args.rounds
        )
        results[0]["scaling"] += bench_redis.scaling(args.sizes)
    if not args.no_postgres:
        import bench_postgres

        results[0]["postgres"] = bench_postgres.suite_rows(
            2_000 if not args.quick else 500, args.rounds
        )
        results[0]["scaling"] += bench_postgres.scaling(args.sizes)
    print_table(results)
    write_results(results, args.output)
    if args.chart is not None:
        import chart  # a script beside this one; needs matplotlib (the "bench" extra)

        chart.draw(results, args.chart)
        print(f"wrote {args.chart}")


if __name__ == "__main__":
    main()
