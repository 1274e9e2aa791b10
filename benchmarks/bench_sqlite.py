"""LocalStorageSessionStore on a SQLite file next to raw `sqlite3` at the same durability.

Run: python benchmarks/bench_sqlite.py [--ops 2000] [--rounds 5] [--backend asyncio|trio|both]
     [--only all|per-op|get|clean]

For each durability ("process": WAL + synchronous=NORMAL; "power": synchronous=FULL) it times
the per-session methods against the `sqlite3` module running the same statements inline on
the calling thread (the floor); `get` alone, alternating with the floor's primary-key SELECT
many times; and `clean_expired` against the one statement the floor needs,
``DELETE FROM walletmesh_storage WHERE expires_at < ?`` in autocommit on one connection (the
file holds the store's keys only, so it deletes exactly the rows the store does): 10,000 and
100,000 sessions under random ids with 1 % and 100 % expired, written by the store (stamped),
and 10,000 all expired written by another program (unstamped: each decoded before its
delete). Rounds are interleaved (store, floor, store, floor, ...) on copies of one file; the
tables show medians and the ratio store time / floor.
"""

from __future__ import annotations

import argparse
import random
import shutil
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
from walletmesh_sessions._local.sqlite.file import stamp
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


def fill(
    path: Path, count: int, expires_at: int, prefix: str = "wm_session_", *, stamped: bool = True
) -> None:
    """`count` distinct records (each its own id, so no two texts are alike), stamped as the
    store's own writes are, or (`stamped` false) as another program writes them."""
    written = stamp("?1") if stamped else "NULL"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            f"INSERT OR REPLACE INTO {TABLE} (key, value, written) VALUES (?1, ?2, {written})",
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
    conn.close()


def fill_mixed(path: Path, total: int, expired: int, now: int, *, stamped: bool) -> None:
    """`total` sessions under random ids, `expired` of them expired at `now`, each with its own
    expiry within the last (or next) lifetime: expiry order is unrelated to key order."""
    rng = random.Random(total + expired)
    written = stamp("?1") if stamped else "NULL"
    rows = []
    for n in range(total):
        offset = rng.randrange(1, LIFETIME_MS)
        record = encode_record(
            SessionData(f"s{n}", DATA.origin, DATA.permissions),
            now - offset if n < expired else now + offset,
        )
        rows.append((f"wm_session_{rng.getrandbits(128):032x}", record))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            f"INSERT INTO {TABLE} (key, value, written) VALUES (?1, ?2, {written})", rows
        )
    conn.close()


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


async def clean(
    durability: str,
    directory: Path,
    total: int = KEYS,
    expired: int = KEYS // 2,
    *,
    stamped: bool = True,
    rounds: int = 1,
) -> tuple[float, float]:
    """Seconds of clean_expired (store, floor) with `expired` of `total` sessions expired:
    medians of `rounds` interleaved runs, each on a fresh copy of one file."""
    clock = FakeClock()
    template = directory / f"clean-{total}-{expired}-{stamped}.db"
    if not template.exists():  # the same file for every durability
        fill_mixed(template, total, expired, clock.now_ms, stamped=stamped)
    seconds: dict[str, list[float]] = {"store": [], "floor": []}
    path = directory / f"clean-{durability}.db"
    for _ in range(rounds):
        for who in ("store", "floor"):
            shutil.copyfile(template, path)
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
                    seconds[who].append(time.perf_counter() - start)
            else:
                raw = raw_connection(path, durability)
                raw.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchall()  # read the schema
                start = time.perf_counter()
                removed = raw.execute(
                    f"DELETE FROM {TABLE} WHERE expires_at < ?", (clock.now_ms,)
                ).rowcount
                seconds[who].append(time.perf_counter() - start)
                raw.close()
            assert removed == expired, removed
    return statistics.median(seconds["store"]), statistics.median(seconds["floor"])


# (sessions, expired, stamped): the clean_expired table's rows.
CLEAN_CASES = (
    (10_000, 100, True),
    (10_000, 10_000, True),
    (100_000, 1_000, True),
    (100_000, 100_000, True),
    (10_000, 10_000, False),
)


async def clean_table(args: argparse.Namespace) -> None:
    print("| durability | sessions | expired | written by | store | raw sqlite3 | ratio |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for total, expired, stamped in CLEAN_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            for durability in DURABILITY:
                store, floor = await clean(
                    durability, Path(tmp), total, expired, stamped=stamped, rounds=args.rounds
                )
                who = "the store" if stamped else "another program"
                print(
                    f"| {durability} | {total:,} | {expired:,} | {who} | {store * 1e3:.1f} ms"
                    f" | {floor * 1e3:.1f} ms | {store / floor:.2f} |",
                    flush=True,
                )


async def per_op_table(args: argparse.Namespace) -> None:
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for durability in DURABILITY:
            with tempfile.TemporaryDirectory() as tmp:
                for name, pair in (await per_session(durability, args.ops, Path(tmp))).items():
                    rows.setdefault((durability, name), []).append(pair)
    print("| durability | method | store | raw sqlite3 | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (durability, name), pairs in rows.items():
        store = statistics.median(p[0] for p in pairs)
        floor = statistics.median(p[1] for p in pairs)
        print(
            f"| {durability} | {name} | {store * 1e6:.1f} µs/op | {floor * 1e6:.1f} µs/op"
            f" | {store / floor:.2f} |"
        )


async def get_pair(durability: str, ops: int, rounds: int) -> tuple[float, float]:
    """Seconds per `get` of a live session (store, floor: the primary-key SELECT), both on the
    event loop's thread, alternating every `ops` calls for `rounds` rounds; medians."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        path = Path(tmp) / "get.db"
        fill(path, KEYS, clock.now_ms + LIFETIME_MS)
        raw = raw_connection(path, durability)
        sql = f"SELECT value FROM {TABLE} WHERE key = ?"
        ids = [f"id{n}" for n in range(KEYS)]
        keys = [f"wm_session_{i}" for i in ids]
        async with LocalStorageSessionStore(
            path,
            SessionStoreConfig(lifetime=3600),
            clock=clock,
            durability=durability,  # type: ignore[arg-type]
        ) as store:
            for session_id in ids[:ops]:
                await store.get(session_id)  # open the file, fill the decode cache

            async def floor(n: int) -> Any:
                return raw.execute(sql, (keys[n],)).fetchone()

            async def ours(n: int) -> Any:
                return await store.get(ids[n])

            seconds: dict[str, list[float]] = {"store": [], "floor": []}
            for _ in range(rounds):
                for name, op in (("store", ours), ("floor", floor)):
                    start = time.perf_counter()
                    for n in range(ops):
                        await op(n)
                    seconds[name].append((time.perf_counter() - start) / ops)
        raw.close()
    return statistics.median(seconds["store"]), statistics.median(seconds["floor"])


async def get_table(args: argparse.Namespace) -> None:
    print("| durability | get | raw sqlite3 SELECT | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for durability in DURABILITY:
        store, floor = await get_pair(durability, args.ops, 4 * args.rounds)
        print(
            f"| {durability} | {store * 1e6:.1f} µs | {floor * 1e6:.1f} µs | {store / floor:.2f} |",
            flush=True,
        )


async def measure(args: argparse.Namespace, backend: str) -> None:
    print(
        f"backend={backend} ops={args.ops} rounds={args.rounds} sqlite={sqlite3.sqlite_version}",
        flush=True,
    )
    if args.only in ("all", "per-op"):
        await per_op_table(args)
    if args.only in ("all", "get"):
        await get_table(args)
    if args.only in ("all", "clean"):
        await clean_table(args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio", "both"])
    parser.add_argument("--only", default="all", choices=["all", "per-op", "get", "clean"])
    args = parser.parse_args()
    for backend in ("asyncio", "trio") if args.backend == "both" else (args.backend,):
        anyio.run(measure, args, backend, backend=backend)


if __name__ == "__main__":
    main()
