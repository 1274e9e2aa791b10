"""Soak test of `update` on one SQLite file from many processes: is any acknowledged update lost?

Run from the repository root:

    python benchmarks/soak_sqlite.py [--processes 8] [--stores 2] [--rounds 300] [--runs 5]
        [--sessions 4] [--load 0] [--reopen-every 0] [--lifecycle-every 25] [--dir DIR]

Each run makes a fresh file and starts `--processes` OS processes (spawned; even ones on
asyncio, odd ones on trio), each with `--stores` store objects on that one file
(``open_store("sqlite:///...")``). Every store object is a writer with a counter of its own in
the `app_data` of each of `--sessions` shared sessions; for `--rounds` rounds it calls
``update(session, +1 to my counter)`` on the sessions in turn, all writers at once. Only the
writer changes its counter, so the value `update` returns shows at once whether an earlier
acknowledged update of this writer was lost (the counter went back) or applied twice (it
jumped further than the errors since could explain); after the run the final records are
checked the same way against each writer's last acknowledged value. Beside the updates, every
`--lifecycle-every` rounds a writer runs create / update / rotate / delete on a session of
its own; with `--reopen-every` each store object is closed and a new one opened that often;
`--load` processes burn CPU meanwhile. The file's integrity is checked at the end of each run.

One line per run, then the totals; exit status 1 if any update was lost or duplicated or any
check failed (errors such as a timeout are counted, by type, but are not failures: an update
that raised is not acknowledged).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from walletmesh_sessions import FullSessionStore, SessionData, open_store

BACKENDS = ("asyncio", "trio")
ORIGIN = "https://soak.example.com"
QUERY = "?lifetime=3600&refresh_on_access=true"
ATTEMPTS = 100  # failed calls of one update in a row before the writer gives up


@dataclass
class Tally:
    """What one writer, one process or the whole soak saw."""

    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    applied_despite_error: int = 0
    lifecycle: int = 0
    anomalies: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.acknowledged += other.acknowledged
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.applied_despite_error += other.applied_despite_error
        self.lifecycle += other.lifecycle
        self.anomalies += other.anomalies
        self.errors.update(other.errors)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.anomalies)


@dataclass
class Counted:
    """A writer's view of its counter in one session: last value acknowledged, errors since."""

    last: int = 0
    errors_since: int = 0


def settle(seen: Counted, stored_before: int, tally: Tally, where: str) -> None:
    """Account for the counter found at `stored_before` (the value our change started from,
    or the final value): below the last one acknowledged is a loss, above it by more than the
    failed calls since is a duplicate; in between, failed calls that were applied anyway."""
    if stored_before < seen.last:
        tally.lost += seen.last - stored_before
        tally.anomalies.append(
            f"{where}: lost {seen.last - stored_before} (counter back to"
            f" {stored_before} after {seen.last} acknowledged)"
        )
    elif stored_before > seen.last + seen.errors_since:
        extra = stored_before - seen.last - seen.errors_since
        tally.duplicated += extra
        tally.anomalies.append(f"{where}: {extra} applied twice")
    else:
        tally.applied_despite_error += stored_before - seen.last


def shared_ids(sessions: int) -> list[str]:
    return [f"shared-{n}" for n in range(sessions)]


def increment(key: str) -> Callable[[SessionData], SessionData]:
    """The change: add one to this writer's counter."""

    def change(data: SessionData) -> SessionData:
        count = data.app_data.get(key, 0)
        assert isinstance(count, int)
        return data.with_app_data({key: count + 1})

    return change


@dataclass
class Worker:
    """One process's parameters (plain data: it crosses into a spawned process)."""

    url: str
    index: int
    stores: int
    rounds: int
    sessions: int
    reopen_every: int
    lifecycle_every: int


async def write(worker: Worker, slot: int, tally: Tally) -> dict[str, int]:
    """One store object's rounds; its last acknowledged counter per session."""
    key = f"w{worker.index}.{slot}"
    change = increment(key)
    ids = shared_ids(worker.sessions)
    seen = {session_id: Counted() for session_id in ids}
    store = open_store(worker.url)
    try:
        for n in range(worker.rounds):
            if worker.reopen_every and n and n % worker.reopen_every == 0:
                await store.aclose()
                store = open_store(worker.url)
            if worker.lifecycle_every and n % worker.lifecycle_every == worker.index % 7:
                await lifecycle(store, f"{key}.r{n}", tally)
            session_id = ids[(n + slot) % len(ids)]
            await update_once(store, session_id, key, change, seen[session_id], tally)
    finally:
        await store.aclose()
    for session_id, counted in seen.items():
        if counted.errors_since:
            tally.anomalies.append(f"{key} {session_id}: unsettled {counted.errors_since}")
    return {session_id: counted.last for session_id, counted in seen.items()}


async def update_once(
    store: FullSessionStore,
    session_id: str,
    key: str,
    change: Callable[[SessionData], SessionData],
    seen: Counted,
    tally: Tally,
) -> None:
    """One update, checked against what this writer saw last; retried until acknowledged, so
    that each writer ends with no call of unknown outcome."""
    for _attempt in range(ATTEMPTS):
        try:
            new = await store.update(session_id, change)
        except Exception as exc:
            tally.errors[type(exc).__name__] += 1
            seen.errors_since += 1
            continue
        if new is None:
            tally.anomalies.append(f"{key} {session_id}: the session is gone")
            return
        count = new.app_data.get(key, 0)
        assert isinstance(count, int)
        tally.acknowledged += 1
        settle(seen, count - 1, tally, f"{key} {session_id} in flight")
        seen.last, seen.errors_since = count, 0
        return
    tally.anomalies.append(f"{key} {session_id}: {ATTEMPTS} failed attempts in a row")


async def lifecycle(store: FullSessionStore, session_id: str, tally: Tally) -> None:
    """create / update / rotate / get / delete of a session no one else touches."""
    data = SessionData(session_id, ORIGIN)
    try:
        checks = [await store.create(session_id, data)]
        updated = await store.update(session_id, lambda d: d.granted("eip155:1", "eth_accounts"))
        checks.append(updated is not None and updated.allows("eip155:1", "eth_accounts"))
        moved = await store.rotate(session_id)
        checks.append(moved is not None and await store.get(session_id) is None)
        if moved is not None:
            found = await store.get(moved)
            checks.append(found is not None and found.allows("eip155:1", "eth_accounts"))
            await store.delete(moved)
            checks.append(await store.get(moved) is None)
    except Exception as exc:
        tally.errors[f"lifecycle {type(exc).__name__}"] += 1
        return
    tally.lifecycle += 1
    if not all(checks):
        tally.anomalies.append(f"lifecycle {session_id}: {checks}")


async def process_main(worker: Worker) -> tuple[Tally, dict[str, dict[str, int]]]:
    tally = Tally()
    last: dict[str, dict[str, int]] = {}

    async def one(slot: int) -> None:
        last[f"w{worker.index}.{slot}"] = await write(worker, slot, tally)

    async with anyio.create_task_group() as tg:
        for slot in range(worker.stores):
            tg.start_soon(one, slot)
    return tally, last


def run_worker(worker: Worker, start: multiprocessing.synchronize.Barrier, results: Any) -> None:
    """A spawned process: wait for the others, write, send back the tally."""
    backend = BACKENDS[worker.index % len(BACKENDS)]
    start.wait()
    try:
        results.put((worker.index, anyio.run(process_main, worker, backend=backend)))
    except BaseException as exc:
        tally = Tally(anomalies=[f"process {worker.index} crashed: {exc!r}"])
        results.put((worker.index, (tally, {})))
        raise


def burn(stop: multiprocessing.synchronize.Event) -> None:
    """A CPU burner: pure Python arithmetic until told to stop."""
    n = 0
    while not stop.is_set():
        for _ in range(100_000):
            n = (n * 31 + 7) % 1_000_003


async def prepare(url: str, sessions: int) -> None:
    async with open_store(url) as store:
        for session_id in shared_ids(sessions):
            assert await store.create(session_id, SessionData(session_id, ORIGIN))


async def final_counters(url: str, sessions: int) -> dict[str, dict[str, int]]:
    """Each shared session's counters as the file holds them once every process is gone."""
    found: dict[str, dict[str, int]] = {}
    async with open_store(url) as store:
        for session_id in shared_ids(sessions):
            data = await store.get(session_id)
            counters = {} if data is None else dict(data.app_data)
            found[session_id] = {k: v for k, v in counters.items() if isinstance(v, int)}
    return found


def check_file(path: Path, sessions: int, tally: Tally) -> list[str]:
    """SQLite's integrity check, and no session left but the shared ones (unless a lifecycle
    failed half way)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        rows = conn.execute("SELECT count(*) FROM walletmesh_storage").fetchone()[0]
    lifecycle_failed = any(name.startswith("lifecycle") for name in tally.errors)
    if rows != sessions and not lifecycle_failed:
        problems.append(f"{rows} records in the file, expected {sessions}")
    return problems


def run_once(args: argparse.Namespace, number: int, directory: Path) -> Tally:
    """One run on a fresh file; its tally, the final records checked."""
    path = directory / f"soak-{os.getpid()}-{number}.db"
    url = f"sqlite:///{path}{QUERY}"
    anyio.run(prepare, url, args.sessions)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    burners = [ctx.Process(target=burn, args=(stop,), daemon=True) for _ in range(args.load)]
    for burner in burners:
        burner.start()
    start, results = ctx.Barrier(args.processes), ctx.Queue()
    workers = [
        ctx.Process(
            target=run_worker,
            args=(
                Worker(
                    url,
                    index,
                    args.stores,
                    args.rounds,
                    args.sessions,
                    args.reopen_every,
                    args.lifecycle_every,
                ),
                start,
                results,
            ),
        )
        for index in range(args.processes)
    ]
    try:
        for process in workers:
            process.start()
        collected = [results.get() for _ in workers]
        for process in workers:
            process.join()
    finally:
        stop.set()
        for burner in burners:
            burner.join()
    tally = Tally()
    last: dict[str, dict[str, int]] = {}
    for _index, (worker_tally, worker_last) in collected:
        tally.add(worker_tally)
        last.update(worker_last)
    final = anyio.run(final_counters, url, args.sessions)
    for writer, per_session in last.items():
        for session_id, acknowledged in per_session.items():
            stored = final[session_id].get(writer, 0)
            settle(Counted(acknowledged), stored, tally, f"{writer} {session_id} at the end")
    tally.anomalies += check_file(path, args.sessions, tally)
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")
    return tally


def describe(tally: Tally) -> str:
    errors = ", ".join(f"{name} {count}" for name, count in sorted(tally.errors.items()))
    return (
        f"acknowledged {tally.acknowledged}, lost {tally.lost}, duplicated {tally.duplicated},"
        f" applied despite an error {tally.applied_despite_error},"
        f" lifecycles {tally.lifecycle}, errors: {errors or 'none'}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--stores", type=int, default=2, help="store objects per process")
    parser.add_argument("--rounds", type=int, default=300, help="updates per store object")
    parser.add_argument("--sessions", type=int, default=4, help="shared sessions updated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load", type=int, default=0, help="CPU-burning processes beside")
    parser.add_argument("--reopen-every", type=int, default=0, help="rounds (0: never)")
    parser.add_argument("--lifecycle-every", type=int, default=25, help="rounds (0: never)")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--keep", action="store_true", help="keep each run's file")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.stores < 1 or args.rounds < 1 or args.sessions < 1:
        parser.error("--processes, --stores, --rounds and --sessions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    total = Tally()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        directory = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        directory.mkdir(parents=True, exist_ok=True)
        print(
            f"soak: {args.processes} processes x {args.stores} stores x {args.rounds} rounds,"
            f" {args.sessions} sessions, load {args.load}, reopen every {args.reopen_every},"
            f" in {directory}, sqlite {sqlite3.sqlite_version}",
            flush=True,
        )
        for number in range(1, args.runs + 1):
            begun = time.perf_counter()
            tally = run_once(args, number, directory)
            total.add(tally)
            print(
                f"run {number}: {describe(tally)}; {time.perf_counter() - begun:.1f} s",
                flush=True,
            )
            for anomaly in tally.anomalies[:20]:
                print(f"  {anomaly}", flush=True)
    print(
        f"total: {args.runs} runs, {args.runs * args.processes} processes,"
        f" {args.runs * args.processes * args.stores} store objects; {describe(total)};"
        f" {time.perf_counter() - started:.0f} s"
    )
    failed = total.failed
    print("FAILED: updates lost or checks failed" if failed else "held: nothing lost")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
