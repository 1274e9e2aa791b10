"""PostgresSessionStore next to raw psycopg running the same statements, one task, sequential.

Starts its own PostgreSQL (initdb into a temporary directory, fsync off; as ``nobody`` when
run as root), or uses ``--url``. Measures ops/s of set (one upsert), get (one SELECT),
validate_and_refresh with refresh_on_access (the one statement that reads and slides,
compare-and-set), delete (one DELETE) and create (one INSERT ... ON CONFLICT DO NOTHING) for:

- raw psycopg.AsyncConnection on asyncio (the baseline: same statements, no JSON decoding),
- raw psycopg with an AsyncConnectionPool, a checkout per call (what pooling alone costs),
- PostgresSessionStore on asyncio (its own AsyncConnectionPool),
- PostgresSessionStore on trio (the synchronous pool in worker threads),
- raw psycopg.Connection in anyio worker threads on trio (what the thread hop alone costs).

Rounds are interleaved (every variant once per round) and the median is printed. Then
get_all and clean_expired over 100,000 sessions (1 % expired), store and raw statements.

Run: python benchmarks/bench_postgres.py [--ops 2000] [--rounds 5] [--sessions 100000]

With ``--stalls`` it measures instead the longest event-loop stall (a heartbeat task that
sleeps 1 ms in a loop records the largest gap) during clean_expired with 1,000 and 10,000
expired sessions and get_all of 100,000 sessions, on asyncio:

    python benchmarks/bench_postgres.py --stalls [--rounds 3] [--gc-off]

``--gc-off`` turns the garbage collector off during each call, to show its share.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import psycopg
import psycopg_pool

sys.path.insert(0, str(Path(__file__).parent.parent))

from harness import interleaved, timed

from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._postgres.sql import SLIDE_PATTERN, Statements
from walletmesh_sessions.postgres import PostgresSessionStore

DATA = SessionData(
    "s", "https://app.example.com", {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
)
LIFETIME_S = 3600
TABLE = "bench_sessions"
OPERATIONS = ("set", "get", "validate_and_refresh", "delete", "create")
STATEMENTS = {
    "set": "INSERT ON CONFLICT DO UPDATE",
    "get": "SELECT",
    "validate_and_refresh": "read-and-slide (CAS)",
    "delete": "DELETE",
    "create": "INSERT ON CONFLICT NOTHING",
}
VARIANTS = (
    ("raw psycopg async", "asyncio"),
    ("raw psycopg pool", "asyncio"),
    ("store asyncio", "asyncio"),
    ("store trio", "trio"),
    ("raw psycopg thread, trio", "trio"),
)
SQL = Statements((TABLE,))


@contextmanager
def server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from tests.postgres_server import make_server

    started = make_server()
    started.start()
    try:
        yield started.url
    finally:
        started.stop()
        shutil.rmtree(started.directory, ignore_errors=True)


def _key(n: int) -> bytes:
    return f"id{n}".encode()


async def measure_store(url: str, ops: int, run: int) -> dict[str, float]:
    config = SessionStoreConfig(lifetime=LIFETIME_S)
    plain = PostgresSessionStore.from_url(url, config, table=TABLE)
    refreshing = PostgresSessionStore.from_url(
        url, SessionStoreConfig(lifetime=LIFETIME_S, refresh_on_access=True), table=TABLE
    )
    async with plain, refreshing:
        results = {"set": await timed(ops, lambda n: plain.set(f"id{n}", DATA))}
        results["get"] = await timed(ops, lambda n: plain.get(f"id{n}"))
        results["validate_and_refresh"] = await timed(
            ops, lambda n: refreshing.validate_and_refresh(f"id{n}")
        )
        results["delete"] = await timed(ops, lambda n: plain.delete(f"id{n}"))
        results["create"] = await timed(ops, lambda n: plain.create(f"new{run}-{n}", DATA))
    return results


def _now_ms() -> int:
    return round(time.time() * 1000)


def _slide_params(n: int) -> dict[str, Any]:
    # What the store sends: now, and the expiry a live record gets.
    now = _now_ms()
    new = now + LIFETIME_S * 1000
    replacement = f"\\1{new}\\2"
    return {
        "id": _key(n),
        "pattern": SLIDE_PATTERN,
        "replacement": replacement,
        "now": now,
        "new": new,
    }


async def measure_raw_asyncio(url: str, ops: int, run: int) -> dict[str, float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def get(n: int) -> Any:
        cur = await conn.execute(SQL.get, (_key(n),))
        return await cur.fetchall()

    async def refresh(n: int) -> None:
        cur = await conn.execute(SQL.read_and_slide, _slide_params(n))
        await cur.fetchall()

    def record() -> str:
        return encode_record(DATA, _now_ms() + LIFETIME_S * 1000)

    try:
        results = {"set": await timed(ops, lambda n: conn.execute(SQL.upsert, (_key(n), record())))}
        results["get"] = await timed(ops, get)
        results["validate_and_refresh"] = await timed(ops, refresh)
        results["delete"] = await timed(ops, lambda n: conn.execute(SQL.delete, (_key(n),)))
        results["create"] = await timed(
            ops,
            lambda n: conn.execute(SQL.insert_if_absent, (f"raw{run}-{n}".encode(), record())),
        )
    finally:
        await conn.close()
    return results


async def measure_raw_threads(url: str, ops: int, run: int) -> dict[str, float]:
    conn = psycopg.connect(url, autocommit=True)

    def get(n: int) -> Any:
        return conn.execute(SQL.get, (_key(n),)).fetchall()

    def refresh(n: int) -> None:
        conn.execute(SQL.read_and_slide, _slide_params(n)).fetchall()

    def record() -> str:
        return encode_record(DATA, _now_ms() + LIFETIME_S * 1000)

    def hop(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return anyio.to_thread.run_sync(lambda: fn(*args))

    try:
        results = {
            "set": await timed(ops, lambda n: hop(conn.execute, SQL.upsert, (_key(n), record())))
        }
        results["get"] = await timed(ops, lambda n: hop(get, n))
        results["validate_and_refresh"] = await timed(ops, lambda n: hop(refresh, n))
        results["delete"] = await timed(ops, lambda n: hop(conn.execute, SQL.delete, (_key(n),)))
        results["create"] = await timed(
            ops,
            lambda n: hop(
                conn.execute, SQL.insert_if_absent, (f"rawt{run}-{n}".encode(), record())
            ),
        )
    finally:
        conn.close()
    return results


async def measure_raw_pool(url: str, ops: int, run: int) -> dict[str, float]:
    pool = psycopg_pool.AsyncConnectionPool(
        url, kwargs={"autocommit": True}, min_size=1, max_size=10, open=False
    )
    await pool.open(wait=True)

    async def execute(query: bytes, params: Any, fetch: bool = False) -> None:
        async with pool.connection(timeout=5) as conn:
            cur = await conn.execute(query, params)
            if fetch:
                await cur.fetchall()

    def record() -> str:
        return encode_record(DATA, _now_ms() + LIFETIME_S * 1000)

    try:
        results = {"set": await timed(ops, lambda n: execute(SQL.upsert, (_key(n), record())))}
        results["get"] = await timed(ops, lambda n: execute(SQL.get, (_key(n),), True))
        results["validate_and_refresh"] = await timed(
            ops, lambda n: execute(SQL.read_and_slide, _slide_params(n), True)
        )
        results["delete"] = await timed(ops, lambda n: execute(SQL.delete, (_key(n),)))
        results["create"] = await timed(
            ops, lambda n: execute(SQL.insert_if_absent, (f"rawp{run}-{n}".encode(), record()))
        )
    finally:
        await pool.close()
    return results


MEASURE = {
    "raw psycopg async": measure_raw_asyncio,
    "raw psycopg pool": measure_raw_pool,
    "store asyncio": measure_store,
    "store trio": measure_store,
    "raw psycopg thread, trio": measure_raw_threads,
}


def fill(url: str, sessions: int, now_ms: int, expired: int | None = None) -> None:
    """`sessions` rows, the first `expired` (default 1 %) expired at `now_ms`, with COPY.

    Each record holds its own id, as real ones do: no two texts are alike, so no decoding is
    saved by the store's cache of decoded records.
    """
    expired = max(1, sessions // 100) if expired is None else expired
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLE}")
        with conn.cursor().copy(f"COPY {TABLE} (id, value) FROM STDIN") as copy:
            for n in range(sessions):
                session_id = f"id{n:07}"
                data = attrs.evolve(DATA, id=session_id)
                expires_at = now_ms - 1 if n < expired else now_ms + LIFETIME_S * 1000
                copy.write_row((session_id.encode(), encode_record(data, expires_at)))
        conn.execute(f"VACUUM ANALYZE {TABLE}")


async def bulk(url: str, sessions: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Seconds (median of `rounds`) of get_all and clean_expired, store and raw statements."""
    now_ms = 1_700_000_000_000
    config = SessionStoreConfig(lifetime=LIFETIME_S)
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        fill(url, sessions, now_ms)
        async with PostgresSessionStore.from_url(
            url, config, table=TABLE, clock=lambda: now_ms / 1000, timeout=60
        ) as store:
            await store.create_schema()
            start = time.perf_counter()
            found = await store.get_all()
            samples.setdefault("get_all store", []).append(time.perf_counter() - start)
            assert len(found) == sessions - max(1, sessions // 100)
            start = time.perf_counter()
            removed = await store.clean_expired()
            samples.setdefault("clean_expired store", []).append(time.perf_counter() - start)
            assert removed == max(1, sessions // 100)
        fill(url, sessions, now_ms)
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            start = time.perf_counter()
            rows = await (await conn.execute(SQL.all)).fetchall()
            samples.setdefault("get_all raw", []).append(time.perf_counter() - start)
            assert len(rows) == sessions
            start = time.perf_counter()
            cur = await conn.execute(SQL.expired_candidates, (now_ms,))
            candidates = await cur.fetchall()
            await conn.execute(
                SQL.delete_many_unchanged, ([r[0] for r in candidates], [r[1] for r in candidates])
            )
            samples.setdefault("clean_expired raw", []).append(time.perf_counter() - start)
        finally:
            await conn.close()
    return {
        name: (
            statistics.median(samples[f"{name} store"]),
            statistics.median(samples[f"{name} raw"]),
        )
        for name in ("get_all", "clean_expired")
    }


def prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(SQL.create_table)
        conn.execute(SQL.create_index)


# Client CPU µs per call, per (variant, operation), filled by `collect`.
CPU_US: dict[tuple[str, str], list[float]] = {}


def collect(
    url: str, ops: int, rounds: int, variants: tuple[tuple[str, str], ...] = VARIANTS
) -> dict[tuple[str, str], list[float]]:
    """ops/s samples per (variant, operation), rounds interleaved (CPU samples in `CPU_US`)."""
    prepare(url)
    results, cpu = interleaved(rounds, variants, MEASURE, url, ops)
    CPU_US.update(cpu)
    return results


def suite_rows(ops: int, rounds: int) -> dict[str, dict[str, float]]:
    """Rows for benchmarks/suite.py: the store on asyncio next to raw psycopg async."""
    with server(None) as url:
        results = collect(url, ops, rounds)
    rows = {}
    for operation in OPERATIONS:
        store = statistics.median(results["store asyncio", operation])
        floor = statistics.median(results["raw psycopg async", operation])
        trio = statistics.median(results["store trio", operation])
        rows[operation] = {"store_ops": store, "floor_ops": floor, "ratio": floor / store,
                           "store_trio_ops": trio}  # fmt: skip
    return rows


async def _scale_one(url: str, size: int) -> dict[str, Any]:
    from suite import timed as timed_with_stall  # the suite's heartbeat-measured timer

    now_ms = 1_700_000_000_000
    fill(url, size, now_ms)
    store = PostgresSessionStore.from_url(
        url, SessionStoreConfig(lifetime=LIFETIME_S), table=TABLE, clock=lambda: now_ms / 1000,
        timeout=600,
    )  # fmt: skip
    async with store:
        await store.create_schema()
        clean_s, clean_stall, removed = await timed_with_stall(store.clean_expired)
        get_all_s, get_all_stall, found = await timed_with_stall(store.get_all)
    return {
        "store": "postgres",
        "sessions": size,
        "clean_expired_s": clean_s,
        "clean_expired_removed": removed,
        "clean_expired_max_stall_ms": clean_stall * 1000,
        "get_all_s": get_all_s,
        "get_all_found": len(found),
        "get_all_max_stall_ms": get_all_stall * 1000,
    }


def scaling(sizes: list[int]) -> list[dict[str, Any]]:
    """get_all and clean_expired (1 % expired) at each size, on asyncio, on a server of our own."""
    with server(None) as url:
        prepare(url)
        return [anyio.run(_scale_one, url, size) for size in sizes]


# (what, sessions, expired): the stalls `--stalls` measures.
STALL_CASES = (
    ("clean_expired", 11_000, 1_000),
    ("clean_expired", 20_000, 10_000),
    ("get_all", 100_000, 0),
)


class GcPauses:
    """The longest pause of the garbage collector while installed (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._start)


async def _stall_one(
    url: str, what: str, sessions: int, expired: int, gc_off: bool
) -> tuple[float, float, float, float]:
    """Seconds, the longest event-loop stall (wall clock, and CPU time of the loop's thread)
    and the longest GC pause of one call, on a freshly filled table."""
    import gc

    from suite import Heartbeat

    now_ms = 1_700_000_000_000
    fill(url, sessions, now_ms, expired)
    store = PostgresSessionStore.from_url(
        url, SessionStoreConfig(lifetime=LIFETIME_S), table=TABLE, clock=lambda: now_ms / 1000,
        timeout=600,
    )  # fmt: skip
    async with store:
        await store.create_schema()
        await store.delete("warm-up")  # the pool is open and a connection made
        gc.collect()
        if gc_off:
            gc.disable()
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        beat = Heartbeat()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(beat.run)
                await anyio.sleep(0.01)
                beat.reset()
                start = time.perf_counter()
                result = await getattr(store, what)()
                seconds = time.perf_counter() - start
                beat.stop()
                tg.cancel_scope.cancel()
        finally:
            gc.callbacks.remove(pauses)
            gc.enable()
    expected = expired if what == "clean_expired" else sessions - expired
    assert (result if what == "clean_expired" else len(result)) == expected
    return seconds, beat.longest, beat.longest_cpu, pauses.longest


def stalls(url: str, rounds: int, gc_off: bool) -> None:
    """Print the longest event-loop stall of each of `STALL_CASES`, over `rounds` runs."""
    prepare(url)
    gc_flag = " --gc-off" if gc_off else ""
    print(f"python benchmarks/bench_postgres.py --stalls --rounds {rounds}{gc_flag}")
    print(f"longest event-loop stall (ms) in each of {rounds} runs, asyncio: wall clock, and")
    print("the most CPU time the loop's thread used between two heartbeats (the part that is")
    print("work on the loop, not waiting for a core); the longest garbage-collector pause (ms)")
    print("in those runs; median seconds taken")
    print("| call | sessions | expired | stalls, wall (ms) | stalls, CPU (ms) | GC pause | s |")
    print("|---|---:|---:|---|---|---:|---:|")
    for what, sessions, expired in STALL_CASES:
        runs = [anyio.run(_stall_one, url, what, sessions, expired, gc_off) for _ in range(rounds)]
        wall = ", ".join(f"{run[1] * 1000:.1f}" for run in runs)
        cpu = ", ".join(f"{run[2] * 1000:.1f}" for run in runs)
        print(
            f"| {what} | {sessions:,} | {expired:,} | {wall} | {cpu} |"
            f" {max(run[3] for run in runs) * 1000:.1f} |"
            f" {statistics.median(run[0] for run in runs):.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--sessions", type=int, default=100_000, help="for get_all, clean_expired (0: skip them)"
    )
    parser.add_argument("--url", help="an existing database (default: start a server)")
    parser.add_argument(
        "--asyncio-only",
        action="store_true",
        help="measure only the store on asyncio and raw psycopg (async, and with a pool)",
    )
    parser.add_argument(
        "--stalls", action="store_true", help="measure event-loop stalls of the bulk calls only"
    )
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="with --stalls: the garbage collector off during each call, to see its share",
    )
    args = parser.parse_args()
    if args.stalls:
        with server(args.url) as url:
            stalls(url, args.rounds, args.gc_off)
        return
    with server(args.url) as url:
        # --asyncio-only: the store on asyncio and its two raw baselines, more rounds per minute.
        variants = VARIANTS[:3] if args.asyncio_only else VARIANTS
        results = collect(url, args.ops, args.rounds, variants)
        scaled = anyio.run(bulk, url, args.sessions, 3) if args.sessions else {}
    command = f"python benchmarks/bench_postgres.py --ops {args.ops} --rounds {args.rounds}"
    print(
        command + f" --sessions {args.sessions}" + (" --asyncio-only" if args.asyncio_only else "")
    )
    print(f"ops/s, median of {args.rounds} interleaved rounds of {args.ops} sequential ops")
    print("ratio: time per call of the store on asyncio / of raw psycopg async (1.00 = raw);")
    print("pool ratio: the same, over raw psycopg with a pool checkout per call")
    header = f"| {'operation':20} | {'statements':28} |"
    header += "".join(f" {name:>24} |" for name, _ in variants)
    print(header + f" {'ratio':>6} | {'ratio range':>12} | {'pool ratio':>10} |")
    print("|" + "-" * 22 + "|" + "-" * 30 + "|" + ("-" * 25 + ":|") * len(variants), end="")
    print("-" * 7 + ":|" + "-" * 13 + ":|" + "-" * 11 + ":|")
    for operation in OPERATIONS:
        medians = [statistics.median(results[name, operation]) for name, _ in variants]
        pairs = zip(
            results[VARIANTS[0][0], operation], results[VARIANTS[2][0], operation], strict=True
        )
        ratios = [raw / store for raw, store in pairs]
        print(
            f"| {operation:20} | {STATEMENTS[operation]:28} |"
            + "".join(f" {value:>24,.0f} |" for value in medians)
            + f" {medians[0] / medians[2]:>6.2f} | {min(ratios):.2f} - {max(ratios):.2f} |"
            + f" {medians[1] / medians[2]:>10.2f} |"
        )
    print()
    print("client CPU time per call (µs, this process, every thread), median of the rounds;")
    print("CPU ratio: store on asyncio / raw psycopg async")
    print("| operation | " + " | ".join(name for name, _ in variants) + " | CPU ratio |")
    print("|---|" + "---:|" * (len(variants) + 1))
    for operation in OPERATIONS:
        cpu = [statistics.median(CPU_US[name, operation]) for name, _ in variants]
        shown = " | ".join(f"{value:,.0f}" for value in cpu)
        print(f"| {operation} | {shown} | {cpu[2] / cpu[0]:.2f} |")
    print()
    print(f"{args.sessions:,} sessions (1 % expired), seconds, median of 3, asyncio")
    print("| operation     | store  | raw statements | ratio |")
    print("|---------------|-------:|---------------:|------:|")
    for name, (store_s, raw_s) in scaled.items():
        print(f"| {name:13} | {store_s:6.3f} | {raw_s:14.3f} | {store_s / raw_s:5.2f} |")


if __name__ == "__main__":
    main()
