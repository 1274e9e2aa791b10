"""PostgresSessionStore's bulk calls over a table of 1,000,000 sessions, with the default timeout.

Starts its own PostgreSQL (as bench_postgres.py does) or uses ``--url``, fills a table with
`--sessions` distinct sessions in one ``INSERT ... SELECT generate_series`` (1 % expired, 1 %
created longer ago than the absolute timeout), then, for `--rounds` interleaved rounds:

- the floor: raw psycopg reading the same rows in the same keyset pages and ``json.loads``-ing
  each value, on asyncio;
- ``get_all``, and ``get_all`` then reading every value (each decoded on access);
- ``iter_sessions`` (every session, a batch per call);
- ``clean_expired`` (the expired rows are put back before each round), plain and with an
  absolute timeout (``max_lifetime``);

each with the longest event-loop stall (a heartbeat task asking to wake every millisecond)
and the longest garbage-collection pause (``gc.callbacks``). Then ``walletmesh-sessions stats``
(the command line, its own process) and ``clear`` once. Every store call runs with the
default timeout. The heartbeat's own floor on this machine: ``get_all_stall.py --noise 10``.

Run: python benchmarks/bench_million.py [--sessions 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import psycopg

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench_postgres import server
from suite import GcPauses, Heartbeat

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._postgres import bulk
from walletmesh_sessions._postgres.sql import Statements
from walletmesh_sessions.postgres import PostgresSessionStore

TABLE = "million_sessions"
NOW_MS = 1_700_000_000_000
LIFETIME_S = 3600
MAX_LIFETIME_S = 86_400
SQL = Statements((TABLE,))


def _record_sql(expired: str, old: str) -> str:
    """SQL for the record of row `n`, as `encode_record` writes it: `expired` and `old` are
    SQL conditions on `n` (expired now; created before the absolute timeout's reach)."""
    return (
        """'{"data":{"id":"id' || lpad(n::text, 7, '0') || '","origin":"https://app.example.com",'"""
        """ || '"permissions":{"eip155:1":["eth_accounts","eth_sendTransaction"]},"createdAt":'"""
        f" || (CASE WHEN {old} THEN {NOW_MS - 2 * MAX_LIFETIME_S * 1000}"
        f" ELSE {NOW_MS - 1000} END)::text"
        """ || '},"expiresAt":' ||"""
        f" (CASE WHEN {expired} THEN {NOW_MS - 1} ELSE {NOW_MS + LIFETIME_S * 1000} END)::text"
        " || '}'"
    )


EXPIRED = "n % 100 = 0"
OLD = "n % 100 = 1"


def fill(url: str, sessions: int) -> float:
    """Seconds to make the table and fill it with `sessions` rows (indexes included)."""
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(SQL.create_table)
        conn.execute(
            f"INSERT INTO {TABLE} (id, value) SELECT convert_to('id' || lpad(n::text, 7, '0'),"
            f" 'UTF8'), {_record_sql(EXPIRED, OLD)} FROM generate_series(0, {sessions - 1}) n"
        )
        conn.execute(SQL.create_index)
        conn.execute(SQL.create_created_index)
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.perf_counter() - start


def put_back(url: str, sessions: int, condition: str) -> None:
    """Put back the rows `condition` selects (those a clean_expired removed), as filled."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {TABLE} (id, value) SELECT convert_to('id' || lpad(n::text, 7, '0'),"
            f" 'UTF8'), {_record_sql(EXPIRED, OLD)} FROM generate_series(0, {sessions - 1}) n"
            f" WHERE {condition} ON CONFLICT (id) DO NOTHING"
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")


async def raw_floor(url: str) -> int:
    """Raw psycopg: every row in the store's keyset pages, each value json.loads-ed."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    count = 0
    try:
        cursor: bytes | None = None
        n = bulk.PAGE_ROWS
        while True:
            if cursor is None:
                cur = await conn.execute(SQL.first_page, (n,))
            else:
                cur = await conn.execute(SQL.page, (cursor, n))
            rows = await cur.fetchall()
            for _id, value in rows:
                json.loads(value)
            count += len(rows)
            if len(rows) < n:
                return count
            cursor = rows[-1][0]
    finally:
        await conn.close()


async def with_heartbeat(call: Callable[[], Awaitable[Any]]) -> tuple[float, Heartbeat, Any]:
    """Seconds taken, and the heartbeat that ran beside `call` (its longest stall, by the
    wall clock and by the loop thread's CPU time, which a busy machine does not inflate)."""
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
    return elapsed, beat, value


async def measure(
    name: str, call: Callable[[], Awaitable[Any]], samples: dict[str, list[tuple[float, ...]]]
) -> Any:
    gc.collect()  # the previous call's debt is not this one's
    cpu = time.process_time()
    with GcPauses() as pauses:
        elapsed, beat, value = await with_heartbeat(call)
    cpu = time.process_time() - cpu
    stall, stall_cpu, gc_pause = beat.longest * 1000, beat.longest_cpu * 1000, pauses.longest * 1000
    samples.setdefault(name, []).append((elapsed, cpu, stall, stall_cpu, gc_pause))
    shown = f"stall {stall:.1f} ms (CPU {stall_cpu:.1f} ms), GC {gc_pause:.1f} ms"
    print(f"  {name}: {elapsed:.2f} s (CPU {cpu:.2f} s), {shown}")
    return value


def _store(url: str, config: SessionStoreConfig) -> PostgresSessionStore:
    return PostgresSessionStore.from_url(url, config, table=TABLE, clock=lambda: NOW_MS / 1000)


async def rounds(url: str, sessions: int, count: int) -> dict[str, list[tuple[float, ...]]]:
    samples: dict[str, list[tuple[float, ...]]] = {}
    plain = _store(url, SessionStoreConfig(lifetime=LIFETIME_S))
    bounded = _store(url, SessionStoreConfig(lifetime=LIFETIME_S, max_lifetime=MAX_LIFETIME_S))
    live = sessions - len(range(0, sessions, 100))
    async with plain, bounded:
        assert plain.timeout == 5.0
        for number in range(count):
            print(f"round {number + 1} (load average {os.getloadavg()[0]:.1f})")
            assert await measure("raw psycopg + json.loads", lambda: raw_floor(url), samples)
            found = await measure("get_all", plain.get_all, samples)
            assert len(found) == live
            del found

            async def read_all() -> int:
                """get_all, then every value read, letting other tasks run every 200 (as
                a caller on an event loop would): each value is decoded on access."""
                count = 0
                for _data in (await plain.get_all()).values():
                    count += 1
                    if not count % 200:
                        await anyio.lowlevel.checkpoint()
                return count

            assert await measure("get_all + every value", read_all, samples) == live

            async def iterate() -> int:
                return sum([1 async for _ in plain.iter_sessions(bulk.PAGE_ROWS)])

            assert await measure("iter_sessions", iterate, samples) == live
            put_back(url, sessions, EXPIRED)
            assert await measure("clean_expired", plain.clean_expired, samples) > 0
            put_back(url, sessions, f"{EXPIRED} OR {OLD}")
            assert await measure("clean_expired max_lifetime", bounded.clean_expired, samples)
            put_back(url, sessions, f"{EXPIRED} OR {OLD}")
    return samples


def cli_stats(url: str) -> float:
    """Seconds `walletmesh-sessions stats` takes on the table, in its own process."""
    command = Path(sys.executable).parent / "walletmesh-sessions"
    start = time.perf_counter()
    subprocess.run(
        [str(command), "--store", f"{url}?table={TABLE}", "stats", "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


async def clear_once(url: str) -> None:
    samples: dict[str, list[tuple[float, ...]]] = {}
    async with _store(url, SessionStoreConfig(lifetime=LIFETIME_S)) as store:
        await measure("clear", store.clear, samples)
        assert await store.inspect() == []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--url", help="a PostgreSQL to use instead of starting one")
    args = parser.parse_args()
    print(f"python benchmarks/bench_million.py --sessions {args.sessions} --rounds {args.rounds}")
    with server(args.url) as url:
        print(f"fill: {fill(url, args.sessions):.1f} s")
        samples = anyio.run(rounds, url, args.sessions, args.rounds)
        print(f"walletmesh-sessions stats: {cli_stats(url):.2f} s")
        anyio.run(clear_once, url)
    floor = statistics.median(s[0] for s in samples["raw psycopg + json.loads"])
    floor_cpu = statistics.median(s[1] for s in samples["raw psycopg + json.loads"])
    print(f"\nmedian of {args.rounds} rounds, {args.sessions:,} rows, page {bulk.PAGE_ROWS}")
    print(
        "| call | s | vs floor | CPU µs/row | CPU vs floor | longest stall ms (CPU)"
        " | longest GC pause ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in samples.items():
        seconds = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(
            f"| {name} | {seconds:.2f} | {seconds / floor:.2f}x |"
            f" {cpu / args.sessions * 1e6:.1f} | {cpu / floor_cpu:.2f}x |"
            f" {max(v[2] for v in values):.1f} ({max(v[3] for v in values):.1f}) |"
            f" {max(v[4] for v in values):.1f} |"
        )


if __name__ == "__main__":
    main()
