"""Profile PostgresSessionStore calls on asyncio: what each part of a call costs the client.

Starts its own PostgreSQL (as bench_postgres.py does), stores `--calls` sessions, then
profiles `--calls` sequential calls of one method (each `get` reads another session, as
bench_postgres.py's do, so each record is decoded rather than found in the store's cache)
with cProfile timed by CPU time, so that waiting for the server and a busy machine do not
count. It prints the CPU time per call of the parts the store adds to psycopg's own
statement (the call's deadline, the connection checkout, the decoding of the record) and of
psycopg's execute itself, then the top functions by own time. Figures under the profiler
are larger than without it: compare them with each other.

Run: python benchmarks/profile_postgres.py [--method get] [--calls 3000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import anyio
from bench_postgres import DATA, TABLE, prepare, server

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions.postgres import PostgresSessionStore

# (shown as, file name ending, function name): the parts of a call, by where they run.
PARTS = (
    ("the whole call", "_postgres_store.py", "_run"),
    ("psycopg execute (the statement)", "cursor_async.py", "execute"),
    ("connection checkout (acquire)", "_postgres_io.py", "acquire"),
    ("connection check-in (release)", "_postgres_io.py", "release"),
    ("cancel scope entry", "_asyncio.py", "__enter__"),
    ("cancel scope exit", "_asyncio.py", "__exit__"),
    ("deadline watch", "_postgres_io.py", "watch"),
    ("decoding the record", "_decode_cache.py", "decode"),
    ("the operation's own steps", "_postgres_ops.py", "read"),
)


async def profiled(url: str, method: str, calls: int) -> pstats.Stats:
    config = SessionStoreConfig(lifetime=3600)
    async with PostgresSessionStore.from_url(url, config, table=TABLE) as store:
        for n in range(calls + 200):
            await store.set(f"id{n}", DATA)
        run: dict[str, Any] = {
            "get": lambda n: store.get(f"id{n}"),
            "set": lambda n: store.set(f"id{n}", DATA),
            "delete": lambda n: store.delete(f"gone{n}"),
            "create": lambda n: store.create(f"new{n}", DATA),
        }
        call = run[method]
        for n in range(calls, calls + 200):  # warm: statements prepared
            await call(n)
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for n in range(calls):
            await call(n)
        profile.disable()
    return pstats.Stats(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="get", choices=("get", "set", "delete", "create"))
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with server(None) as url:
        prepare(url)
        stats = anyio.run(profiled, url, args.method, args.calls)
    print(f"python benchmarks/profile_postgres.py --method {args.method} --calls {args.calls}")
    print(f"CPU µs per {args.method} call under cProfile (cumulative, per call)")
    table: Any = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    for shown, ending, name in PARTS:
        total = sum(
            cumulative
            for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in table.items()
            if filename.endswith(ending) and function == name
        )
        print(f"  {shown:34} {total / args.calls * 1e6:8.1f}")
    stats.sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
