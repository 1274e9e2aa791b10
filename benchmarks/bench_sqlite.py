"""LocalStorageSessionStore on a SQLite file next to raw `sqlite3` at the same durability.

Run: python benchmarks/bench_sqlite.py [--ops 2000] [--rounds 5] [--backend asyncio|trio]

For each durability ("process": WAL + synchronous=NORMAL; "power": synchronous=FULL) it times
the per-session methods against the `sqlite3` module running the same statements inline on
the calling thread (the floor), and `clean_expired` of 5,000 expired sessions among 10,000
against the one ``DELETE ... WHERE expires_at < ?`` the floor needs. Rounds are interleaved
(store, floor, store, floor, ...); the table shows medians and the ratio store time / floor.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from walletmesh_sessions import LocalStorageSessionStore, SessionData, SessionStoreConfig
from walletmesh_sessions._core.codec import encode_record, record_with_expiry
from walletmesh_sessions._local.sqlite import DURABILITY, SCHEMA, TABLE
from walletmesh_sessions.testing import FakeClock

DATA = SessionData(
    "s", "https://app.example.com", {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
)
LIFETIME_MS = 3_600_000
KEYS = 10_000
UPSERT = (
    f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def fill(path: Path, count: int, expires_at: int, prefix: str = "wm_session_") -> None:
    """`count` distinct records (each its own id, so no two texts are alike)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            f"INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (?, ?)",
            (
                (
                    f"{prefix}id{n}",
                    encode_record(
                        SessionData(f"{prefix}{n}", DATA.origin, DATA.permissions), expires_at
                    ),
                )
                for n in range(count)
            ),
        )


def raw_connection(path: Path, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
    return conn


async def per_session(durability: str, ops: int, directory: Path) -> dict[str, tuple[float, float]]:
    """Seconds per op (store, floor) for each method, one round."""
    clock = FakeClock()
    path = directory / f"per-op-{durability}.db"
    fill(path, KEYS, clock.now_ms + LIFETIME_MS)
    plain = LocalStorageSessionStore(
        path,
        SessionStoreConfig(lifetime=3600),
        clock=clock,
        durability=durability,  # type: ignore[arg-type]
    )
    sliding = LocalStorageSessionStore(
        path,
        SessionStoreConfig(lifetime=3600, refresh_on_access=True),
        clock=clock,
        durability=durability,  # type: ignore[arg-type]
    )
    raw = raw_connection(path, durability)
    keys = [f"wm_session_id{n}" for n in range(KEYS)]
    ids = [f"id{n}" for n in range(KEYS)]
    record = encode_record(DATA, clock.now_ms + LIFETIME_MS)

    async def floor_set(n: int) -> None:
        raw.execute(UPSERT, (keys[n], record))

    async def floor_get(n: int) -> Any:
        return raw.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (keys[n],)).fetchone()

    async def floor_refresh(n: int) -> Any:
        clock.advance(ms=1)  # each read slides the expiry: a real write every time
        row = raw.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (keys[n],)).fetchone()
        raw.execute(
            f"UPDATE {TABLE} SET value = :new WHERE key = :key AND value = :old",
            {
                "new": record_with_expiry(row[0], clock.now_ms + LIFETIME_MS),
                "key": keys[n],
                "old": row[0],
            },
        )
        return row

    async def floor_delete(n: int) -> None:
        raw.execute(f"DELETE FROM {TABLE} WHERE key = ?", (keys[n],))
        await floor_set(n)

    async def floor_create(n: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (keys[n] + "c",)).fetchall()
        raw.execute(UPSERT, (keys[n] + "c", record))
        raw.execute("COMMIT")

    async def store_refresh(n: int) -> Any:
        clock.advance(ms=1)
        return await sliding.validate_and_refresh(ids[n])

    async def store_delete(n: int) -> None:
        await plain.delete(ids[n])
        await plain.set(ids[n], DATA)

    methods: dict[str, tuple[Callable[[int], Awaitable[Any]], Callable[[int], Awaitable[Any]]]] = {
        "set": (lambda n: plain.set(ids[n], DATA), floor_set),
        "get": (lambda n: plain.get(ids[n]), floor_get),
        "validate_and_refresh (sliding)": (store_refresh, floor_refresh),
        "delete + set": (store_delete, floor_delete),
        "create": (lambda n: plain.create(ids[n] + "c", DATA), floor_create),
    }
    result: dict[str, tuple[float, float]] = {}
    try:
        for name, (store_op, floor_op) in methods.items():
            timings = []
            for op in (store_op, floor_op):
                start = time.perf_counter()
                for n in range(ops):
                    await op(n)
                timings.append((time.perf_counter() - start) / ops)
            result[name] = (timings[0], timings[1])
    finally:
        raw.close()
        await plain.aclose()
        await sliding.aclose()
    return result


async def clean(durability: str, directory: Path) -> tuple[float, float]:
    """Seconds of clean_expired (store, floor) with 5,000 of 10,000 sessions expired."""
    clock = FakeClock()
    seconds = []
    for who in ("store", "floor"):
        path = directory / f"clean-{durability}-{who}.db"
        fill(path, KEYS // 2, clock.now_ms + LIFETIME_MS)
        fill(path, KEYS // 2, clock.now_ms - 1, prefix="wm_session_old")
        if who == "store":
            async with LocalStorageSessionStore(
                path,
                SessionStoreConfig(lifetime=3600),
                clock=clock,
                durability=durability,  # type: ignore[arg-type]
            ) as store:
                await store.get("warm")  # open the file outside the measurement
                start = time.perf_counter()
                removed = await store.clean_expired()
                seconds.append(time.perf_counter() - start)
        else:
            raw = raw_connection(path, durability)
            start = time.perf_counter()
            removed = raw.execute(
                f"DELETE FROM {TABLE} WHERE expires_at < ?", (clock.now_ms,)
            ).rowcount
            seconds.append(time.perf_counter() - start)
            raw.close()
        assert removed == KEYS // 2, removed
    return seconds[0], seconds[1]


async def measure(args: argparse.Namespace) -> None:
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for durability in DURABILITY:
            with tempfile.TemporaryDirectory() as tmp:
                for name, pair in (await per_session(durability, args.ops, Path(tmp))).items():
                    rows.setdefault((durability, name), []).append(pair)
                rows.setdefault((durability, "clean_expired (5k of 10k)"), []).append(
                    await clean(durability, Path(tmp))
                )
    print(
        f"backend={args.backend} ops={args.ops} rounds={args.rounds}"
        f" sqlite={sqlite3.sqlite_version}"
    )
    print("| durability | method | store | raw sqlite3 | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (durability, name), pairs in rows.items():
        store = statistics.median(p[0] for p in pairs)
        floor = statistics.median(p[1] for p in pairs)
        unit = "ms" if name.startswith("clean") else "µs/op"
        scale = 1e3 if unit == "ms" else 1e6
        print(
            f"| {durability} | {name} | {store * scale:.1f} {unit} | {floor * scale:.1f} {unit}"
            f" | {store / floor:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    anyio.run(measure, args, backend=args.backend)


if __name__ == "__main__":
    main()
