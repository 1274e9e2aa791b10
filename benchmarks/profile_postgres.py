"""Profile PostgresSessionStore calls on asyncio: what each part of a call costs the client.

Starts its own PostgreSQL (as bench_postgres.py does), stores `--calls` sessions, then
profiles `--calls` sequential calls of one method (each `get` reads another session, as
bench_postgres.py's do, so each record is decoded rather than found in the store's cache)
with cProfile timed by CPU time, so that waiting for the server and a busy machine do not
count. It prints the CPU time per call of the parts the store adds to psycopg's own
statement (the call's deadline, the connection checkout, the decoding of the record) and of
psycopg's execute itself, then the top functions by own time. Figures under the profiler
are larger than without it: compare them with each other.

With ``--method get_all`` it profiles one `get_all` over `--calls` distinct sessions instead,
per row: where the time of a bulk read goes.

Run: python benchmarks/profile_postgres.py [--method get] [--calls 3000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import anyio
from bench_postgres import DATA, TABLE, fill, prepare, server

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions.postgres import PostgresSessionStore

# (shown as, file name ending, function name): the parts of a call, by where they run.
PARTS = (
    ("the whole call", "_postgres/store.py", "_run"),
    ("psycopg execute (the statement)", "cursor_async.py", "execute"),
    ("psycopg fetching rows", "cursor_async.py", "fetchmany"),
    ("connection checkout (acquire)", "_postgres/sources.py", "acquire"),
    ("connection check-in (release)", "_postgres/sources.py", "release"),
    ("cancel scope entry", "_asyncio.py", "__enter__"),
    ("cancel scope exit", "_asyncio.py", "__exit__"),
    ("deadline watch", "_core/timers.py", "watch"),
    ("decoding the record (cached)", "_core/decode_cache.py", "decode"),
    ("decoding the record", "_core/codec.py", "decode_record"),
    ("the operation's own steps", "_postgres/ops.py", "read"),
    ("get_all's page, decoding included", "_postgres/bulk.py", "live_page"),
    ("the expiry rule", "_core/expiry.py", "after_read"),
    ("adding a page to the result", "_core/session_map.py", "_put_all"),
)


async def profiled_get_all(url: str, rows: int) -> pstats.Stats:
    """One get_all over `rows` distinct sessions (after one to warm up)."""
    now_ms = round(time.time() * 1000)
    fill(url, rows, now_ms, expired=0)
    async with PostgresSessionStore.from_url(url, table=TABLE) as store:
        assert len(await store.get_all()) == rows
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        await store.get_all()
        profile.disable()
    return pstats.Stats(profile)


async def profiled(url: str, method: str, calls: int) -> pstats.Stats:
    if method == "get_all":
        return await profiled_get_all(url, calls)
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
    parser.add_argument(
        "--method", default="get", choices=("get", "set", "delete", "create", "get_all")
    )
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with server(None) as url:
        prepare(url)
        stats = anyio.run(profiled, url, args.method, args.calls)
    print(f"python benchmarks/profile_postgres.py --method {args.method} --calls {args.calls}")
    each = "row of one get_all" if args.method == "get_all" else f"{args.method} call"
    print(f"CPU µs per {each} under cProfile (cumulative)")
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
