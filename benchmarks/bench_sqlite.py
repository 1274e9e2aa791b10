"""LocalStorageSessionStore on a SQLite file holding N sessions: set/get/clean_expired/get_all.

Run: python benchmarks/bench_sqlite.py [--sessions 100000] [--ops 2000] [--backend asyncio|trio]
Prints one line per measurement; medians of --rounds rounds.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from walletmesh_sessions import LocalStorageSessionStore, SessionData, SessionStoreConfig
from walletmesh_sessions._codec import encode_record
from walletmesh_sessions._sqlite_backend import SCHEMA, TABLE
from walletmesh_sessions.testing import FakeClock

DATA = SessionData(
    "s", "https://app.example.com", {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
)


def fill(path: Path, count: int, expires_at: int, prefix: str = "wm_session_") -> None:
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (?, ?)",
            ((f"{prefix}id{n}", encode_record(DATA, expires_at)) for n in range(count)),
        )


async def measure(args: argparse.Namespace) -> None:
    clock = FakeClock()
    config = SessionStoreConfig(lifetime=3600)
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            fill(path, args.sessions, clock.now_ms + 3_600_000)
            expired = args.sessions // 100
            fill(path, expired, clock.now_ms - 1, prefix="wm_session_old")
            async with LocalStorageSessionStore(path, config, clock=clock) as store:
                await store.get("warm")
                start = time.perf_counter()
                for n in range(args.ops):
                    await store.set(f"new{n}", DATA)
                results.setdefault("set ops/s", []).append(args.ops / (time.perf_counter() - start))
                start = time.perf_counter()
                for n in range(args.ops):
                    await store.get(f"id{n}")
                results.setdefault("get ops/s", []).append(args.ops / (time.perf_counter() - start))
                start = time.perf_counter()
                count = len(await store.get_all())
                results.setdefault(f"get_all of {count} s", []).append(time.perf_counter() - start)
                start = time.perf_counter()
                removed = await store.clean_expired()
                results.setdefault(f"clean_expired ({removed} expired) s", []).append(
                    time.perf_counter() - start
                )
    print(f"backend={args.backend} sessions={args.sessions} ops={args.ops} rounds={args.rounds}")
    for name, values in results.items():
        print(f"  {name:40} {statistics.median(values):12.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    anyio.run(measure, args, backend=args.backend)


if __name__ == "__main__":
    main()
