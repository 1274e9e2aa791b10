"""Capacity model: ops/s per process and per server, and bytes per session, for every store.

Run from the repository root (about 8 minutes; it starts and stops its own servers on 127.0.0.1);
this measures, saves the JSON, draws the chart and rewrites the tables of docs/capacity.md:

    python benchmarks/capacity.py --output benchmarks/capacity.json \\
        --chart docs/capacity.svg --docs docs/capacity.md

Measures, each store opened with `open_store` and the defaults (asyncio):

- ops/s of one process at 1 and 100 concurrent tasks over `--sessions` pre-filled sessions:
  "mix" is 90 % `validate_and_refresh` (a sliding read, 24 h lifetime) and 10 % `set` of an
  existing session; "get" is `get` alone on a store without sliding (a plain read);
- total ops/s of 1, 2 and 4 processes (100 tasks each, the mix, started together, over a fixed
  window) on one SQLite file, one redis-server, one PostgreSQL, and a Redis Cluster of 3 primaries
  and one of 1 primary (no replicas);
- bytes per session for a typical session and for bigger ones: tracemalloc (memory), pages after
  VACUUM (SQLite), ``INFO memory`` used_memory delta and ``MEMORY USAGE`` (Redis),
  ``pg_total_relation_size`` (PostgreSQL).

Figures are printed; the JSON goes only to ``--output``. ``--from FILE --markdown`` prints the
tables of docs/capacity.md from a saved JSON, ``--docs docs/capacity.md`` rewrites them there,
and ``--chart PATH`` draws docs/capacity.svg (benchmarks/capacity_chart.py). ``--quick`` is a
smoke run of a few seconds: memory and SQLite only, tiny counts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import hashlib
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the server helpers live in tests/
    sys.path.insert(0, str(ROOT))

from walletmesh_sessions import (  # noqa: E402
    FullSessionStore,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    SessionStoreError,
    open_store,
)

TRACKED_RESULTS = ROOT / "benchmarks" / "capacity.json"
TRACKED_CHART = ROOT / "docs" / "capacity.svg"
TRACKED_PAGE = ROOT / "docs" / "capacity.md"

LIFETIME = timedelta(days=1)
SLIDING = SessionStoreConfig(lifetime=LIFETIME, refresh_on_access=True)
FIXED = SessionStoreConfig(lifetime=LIFETIME)
SET_SHARE = 0.10  # of the mix; the rest is validate_and_refresh
WARM_UP_S = 0.3
WORKLOADS = ("mix", "get")
CONCURRENCY = (1, 100)
PROCESS_TASKS = 100
STORES = ("memory", "sqlite", "redis", "redis-cluster-3", "postgres")  # measured per process
SHARED_STORES = ("sqlite", "redis", "postgres")  # one file or server shared by processes
CLUSTERS = {"redis-cluster-3": 3, "redis-cluster-1": 1}
# Extra app_data bytes of the session sizes measured for bytes per session.
SIZES = {"typical": 0, "+1 KiB": 1024, "+4 KiB": 4096}
LABELS = {
    "memory": "memory",
    "sqlite": "SQLite",
    "redis": "Redis",
    "redis-cluster-3": "Redis Cluster, 3 primaries",
    "redis-cluster-1": "Redis Cluster, 1 primary",
    "postgres": "PostgreSQL",
}

# The worked deployment (docs/capacity.md): assumptions, stated once, applied to the figures.
WALLETS = 100_000_000
DAPPS = 10
TOUCHES_PER_DAY = 20  # requests per session per day, each a sliding read (10 % writes)
PEAK_FACTOR = 4  # peak rate / daily average rate
PRIMARY_MAX_MEMORY = 24 * 2**30  # Redis maxmemory per primary (a 32 GiB machine)
RTT_S = 0.0005  # a same-zone network round trip, for the "with RTT" column


# --- sessions -----------------------------------------------------------------------------


def session_id(n: int) -> str:
    """A deterministic id as long as `new_session_id()`'s (43 URL-safe characters)."""
    digest = hashlib.sha256(n.to_bytes(8, "big")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def session(sid: str, extra: int = 0) -> SessionData:
    """A typical session: one origin, 3 chains with 2 to 4 methods, small app_data; `extra`
    bytes of padding in app_data make the bigger sizes."""
    app_data: dict[str, Any] = {"theme": "dark", "locale": "en-US", "last_chain": "eip155:1"}
    if extra:  # incompressible (PostgreSQL compresses big values): the worst case
        app_data["blob"] = base64.b64encode(random.Random(sid).randbytes(extra * 3 // 4)).decode()
    return SessionData(
        sid,
        "https://app.example.com",
        {
            "eip155:1": ["eth_accounts", "eth_sendTransaction", "personal_sign", "eth_chainId"],
            "eip155:137": ["eth_accounts", "eth_sendTransaction", "eth_chainId"],
            "solana:mainnet": ["solana_signTransaction", "solana_signMessage"],
        },
        created_at=1_700_000_000_000,
        app_data=app_data,
    )


class Sessions:
    """The ids and data of `count` sessions, the same in every process."""

    def __init__(self, count: int) -> None:
        self.ids = [session_id(n) for n in range(count)]
        self.data = [session(sid) for sid in self.ids]


# --- load ---------------------------------------------------------------------------------


async def fill(store: FullSessionStore, sessions: Sessions, tasks: int = 50) -> None:
    """Store every session, `tasks` at a time."""

    async def worker(first: int) -> None:
        for n in range(first, len(sessions.ids), tasks):
            await store.set(sessions.ids[n], sessions.data[n])

    async with anyio.create_task_group() as group:
        for first in range(tasks):
            group.start_soon(worker, first)


async def drive(
    store: FullSessionStore, sessions: Sessions, workload: str, tasks: int, seconds: float
) -> tuple[int, float, int]:
    """(operations done, seconds taken, errors) of `tasks` tasks looping for `seconds`."""
    counts = [0, 0]
    end = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        size = len(sessions.ids)
        while time.perf_counter() < end:
            n = rng.randrange(size)
            try:
                if workload == "get":
                    await store.get(sessions.ids[n])
                elif rng.random() < SET_SHARE:
                    await store.set(sessions.ids[n], sessions.data[n])
                else:
                    await store.validate_and_refresh(sessions.ids[n])
            except SessionStoreError:
                counts[1] += 1
            counts[0] += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for seed in range(tasks):
            group.start_soon(worker, seed * 7919 + os.getpid())
    return counts[0], time.perf_counter() - start, counts[1]


async def throughput(
    url: str, sessions: Sessions, workload: str, tasks: int, seconds: float
) -> dict[str, float]:
    """ops/s of one store object in this process, after a warm-up (memory: filled first)."""
    config = SLIDING if workload == "mix" else FIXED
    async with open_store(url, config) as store:
        if url.startswith("memory:"):
            await fill(store, sessions)
        await drive(store, sessions, workload, tasks, WARM_UP_S)
        ops, elapsed, errors = await drive(store, sessions, workload, tasks, seconds)
    return {"ops_per_s": ops / elapsed, "errors": errors}


def process_main(
    url: str, count: int, seconds: float, barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """One process of the scaling run: warm up, wait for the others, run the mix."""

    async def main() -> tuple[int, float, int]:
        sessions = Sessions(count)
        async with open_store(url, SLIDING) as store:
            await drive(store, sessions, "mix", PROCESS_TASKS, WARM_UP_S)
            barrier.wait(timeout=120)
            return await drive(store, sessions, "mix", PROCESS_TASKS, seconds)

    try:
        results.put(anyio.run(main))
    except BaseException as exc:
        barrier.abort()  # the others stop waiting for this one
        results.put(repr(exc))
        raise


def processes_throughput(url: str, count: int, processes: int, seconds: float) -> dict[str, float]:
    """Total ops/s of `processes` processes started together on the same store."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(target=process_main, args=(url, count, seconds, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        done = [results.get(timeout=180) for _ in children]
        if failed := [d for d in done if isinstance(d, str)]:
            msg = f"a process of the scaling run on {url} failed: {failed[0]}"
            raise RuntimeError(msg)
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
                child.join(timeout=10)
    return {
        "ops_per_s": sum(ops / elapsed for ops, elapsed, _ in done),
        "errors": sum(errors for _, _, errors in done),
    }


# --- bytes per session --------------------------------------------------------------------


async def memory_bytes(count: int, extra: int) -> dict[str, float]:
    """tracemalloc of a memory store and the sessions it holds, all built while traced."""
    ids = [session_id(n) for n in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = MemorySessionStore(SLIDING)
        for sid in ids:
            await store.set(sid, session(sid, extra))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del store
    return {"bytes_per_session": (after - before) / count}


async def record_bytes(extra: int) -> int:
    """The length of a session's wire record (UTF-8 JSON): what every store but memory keeps."""
    storage: dict[str, str] = {}
    store = LocalStorageSessionStore(storage, SLIDING)
    await store.set(session_id(0), session(session_id(0), extra))
    (value,) = storage.values()
    return len(value.encode())


def sqlite_bytes(path: Path, count: int) -> dict[str, float]:
    """Pages of the file after VACUUM per session."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("VACUUM")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return {"bytes_per_session": pages * page_size / count}


def redis_used_memory(ports: Sequence[int]) -> int:
    """used_memory summed over the servers on `ports`."""
    import redis

    total = 0
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=10) as client:
            total += int(client.info("memory")["used_memory"])
    return total


def redis_memory_usage(port: int, prefix: str, sample: int = 500) -> float:
    """Mean ``MEMORY USAGE`` of up to `sample` keys under `prefix` on one server."""
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=10) as client:
        keys = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            keys.append(key)
            if len(keys) >= sample:
                break
        sizes = [int(client.memory_usage(key, samples=0) or 0) for key in keys]
    return statistics.fmean(sizes) if sizes else 0.0


def postgres_bytes(url: str, table: str, count: int) -> dict[str, float]:
    """pg_total_relation_size (table, TOAST and indexes) per session, after VACUUM."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"VACUUM ANALYZE {table}")
        row = conn.execute(
            "SELECT pg_total_relation_size(%s), pg_relation_size(%s), pg_indexes_size(%s)",
            (table, table, table),
        ).fetchone()
    assert row is not None
    total, heap, indexes = row
    return {"bytes_per_session": total / count, "heap": heap / count, "indexes": indexes / count}


async def fill_size(url: str, count: int, extra: int) -> None:
    sessions = Sessions(0)
    sessions.ids = [session_id(n) for n in range(count)]
    sessions.data = [session(sid, extra) for sid in sessions.ids]
    async with open_store(url, SLIDING) as store:
        await fill(store, sessions)


# --- servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def servers(kinds: Sequence[str], directory: Path) -> Iterator[dict[str, Any]]:
    """The servers `kinds` names, started with the test suite's helpers and stopped after."""
    found: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if "redis" in kinds:
            from tests.redis_server import RedisServer

            (directory / "redis").mkdir()
            single = RedisServer(directory / "redis")
            single.start()
            stack.callback(single.stop)
            found["redis"] = {"url": single.url, "ports": [single.port]}
        for name, primaries in CLUSTERS.items():
            if name in kinds:
                cluster = start_cluster(directory / name, primaries)
                stack.callback(cluster.stop)
                nodes = ",".join(f"127.0.0.1:{port}" for port in cluster.ports)
                found[name] = {"url": f"redis+cluster://{nodes}", "ports": cluster.ports}
        if "postgres" in kinds:
            from tests.postgres_server import make_server

            postgres = make_server()
            stack.callback(shutil.rmtree, postgres.directory, ignore_errors=True)
            postgres.start()
            stack.callback(postgres.stop)
            found["postgres"] = {"url": postgres.url}
        yield found


def start_cluster(directory: Path, primaries: int) -> Any:
    """A Redis Cluster of `primaries` primaries and no replicas (``redis-cli --cluster create``
    wants 3 or more, so one primary is given every slot itself)."""
    import subprocess

    from tests.redis_cluster import SHARED_NODE_TIMEOUT_MS, RedisClusterNodes

    directory.mkdir()
    cluster = RedisClusterNodes(directory, SHARED_NODE_TIMEOUT_MS, size=primaries)
    try:
        for node in cluster.nodes:
            node.start()
        if primaries == 1:
            client = cluster.node_client(cluster.ports[0])
            try:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            finally:
                client.close()
        else:
            command = [cluster.cli, "--cluster", "create"]
            command += [f"127.0.0.1:{port}" for port in cluster.ports]
            command += ["--cluster-replicas", "0", "--cluster-yes"]
            subprocess.run(command, capture_output=True, timeout=60, check=True)
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --- the run ------------------------------------------------------------------------------


def store_url(kind: str, directory: Path, running: dict[str, Any], name: str) -> str:
    """The `open_store` URL of `kind`, on file or table `name` where that applies."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{directory / (name + '.db')}"
    if kind == "postgres":
        return f"{running[kind]['url']}?table={name}"
    return str(running[kind]["url"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the capacity model, as the JSON document written by ``--output``."""
    load_before = os.getloadavg()
    stores = [kind for kind in STORES if kind in args.stores]
    scaled = [kind for kind in (*SHARED_STORES, *CLUSTERS) if kind in args.stores]
    server_kinds = [kind for kind in {*stores, *scaled} if kind not in ("memory", "sqlite")]
    sessions = Sessions(args.sessions)
    document: dict[str, Any] = {
        "machine": machine(),
        "command": shlex.join(["python", "benchmarks/capacity.py", *args.argv]),
        "settings": {
            "sessions": args.sessions,
            "window_s": args.window,
            "process_window_s": args.process_window,
            "rounds": args.rounds,
            "set_share": SET_SHARE,
            "process_tasks": PROCESS_TASKS,
            "bytes_sessions": args.bytes_sessions,
            "backend": "asyncio",
        },
    }
    with tempfile.TemporaryDirectory() as tmp, servers(server_kinds, Path(tmp)) as running:
        directory = Path(tmp)
        urls = {
            kind: store_url(kind, directory, running, "capacity") for kind in {*stores, *scaled}
        }
        for kind, url in urls.items():
            if kind != "memory":
                anyio.run(prefill, url, sessions)
        samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        for run in range(args.rounds):
            for kind in stores:
                for workload in WORKLOADS:
                    for tasks in CONCURRENCY:
                        got = anyio.run(
                            throughput, urls[kind], sessions, workload, tasks, args.window
                        )
                        samples.setdefault((kind, workload, tasks), []).append(got)
                        report(f"round {run + 1}: {kind} {workload} x{tasks}", got)
        document["per_process"] = summarize(samples, "workload", "tasks")
        scaling: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        for run in range(args.rounds_processes):
            for kind in scaled:
                for count in args.processes:
                    got = processes_throughput(
                        urls[kind], args.sessions, count, args.process_window
                    )
                    scaling.setdefault((kind, "mix", count), []).append(got)
                    report(f"round {run + 1}: {kind} {count} processes", got)
        document["processes"] = summarize(scaling, "workload", "processes")
        document["bytes"] = bytes_per_session(args, stores, directory, running)
    document["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return document


async def prefill(url: str, sessions: Sessions) -> None:
    async with open_store(url, SLIDING) as store:
        await store.clear()
        await fill(store, sessions)


def summarize(
    samples: dict[tuple[str, str, int], list[dict[str, float]]], second: str, third: str
) -> list[dict[str, Any]]:
    """One row per case: the median ops/s of its rounds, every sample, and errors seen."""
    return [
        {
            "store": kind,
            second: workload,
            third: number,
            "ops_per_s": round(statistics.median(s["ops_per_s"] for s in got)),
            "samples": [round(s["ops_per_s"]) for s in got],
            "errors": int(sum(s["errors"] for s in got)),
        }
        for (kind, workload, number), got in samples.items()
    ]


def report(what: str, got: dict[str, float]) -> None:
    errors = f", {got['errors']:.0f} errors" if got["errors"] else ""
    print(f"  {what}: {got['ops_per_s']:,.0f} ops/s{errors}", flush=True)


def bytes_per_session(
    args: argparse.Namespace, stores: Sequence[str], directory: Path, running: dict[str, Any]
) -> list[dict[str, Any]]:
    """Bytes per session of every store at every size in `SIZES`."""
    count = args.bytes_sessions
    rows: list[dict[str, Any]] = []
    for size, extra in SIZES.items():
        name = f"bytes_{extra}"
        record = anyio.run(record_bytes, extra)
        for kind in stores:
            url = store_url(kind, directory, running, name)
            row: dict[str, Any] = {"store": kind, "size": size, "sessions": count}
            if kind == "memory":
                row.update(anyio.run(memory_bytes, count, extra))
            elif kind == "sqlite":
                anyio.run(fill_size, url, count, extra)
                row.update(sqlite_bytes(directory / f"{name}.db", count))
            elif kind == "postgres":
                anyio.run(fill_size, url, count, extra)
                row.update(postgres_bytes(running[kind]["url"], name, count))
            else:  # Redis: used_memory over every server, before and after
                url = f"{url}{'&' if '?' in url else '?'}prefix={name}_"
                ports = running[kind]["ports"]
                before = redis_used_memory(ports)
                anyio.run(fill_size, url, count, extra)
                after = redis_used_memory(ports)
                usage = statistics.fmean(redis_memory_usage(port, f"{name}_") for port in ports)
                row.update({"bytes_per_session": (after - before) / count, "memory_usage": usage})
            rows.append(row)
            print(f"  {kind} {size}: {row['bytes_per_session']:,.0f} bytes per session", flush=True)
        for row in rows:
            if row["size"] == size:
                row["record_bytes"] = round(record)
    for row in rows:
        for key in ("bytes_per_session", "memory_usage", "heap", "indexes"):
            if key in row:
                row[key] = round(row[key])
    return rows


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


# --- reports ------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _bytes(value: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ops(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    errors = f" ({row['errors']} errors)" if row["errors"] else ""
    return _n(row["ops_per_s"]) + errors


def markdown(document: dict[str, Any]) -> dict[str, str]:
    """The tables of docs/capacity.md, by block name, rendered from the JSON document."""
    settings = document["settings"]
    load = document["load_average"]
    return {
        "setup": "\n".join(
            [
                f"Measured by `{document['command']}` on {document['machine']['cpus']} CPUs,"
                f" Python {document['machine']['python']}, SQLite {document['machine']['sqlite']};"
                f" load average (1, 5, 15 min) {_load(load['before'])} before and"
                f" {_load(load['after'])} after. {_n(settings['sessions'])} sessions pre-filled;"
                f" each figure is the median of {settings['rounds']} rounds"
                f" ({settings['window_s']} s windows; {settings['process_window_s']} s for"
                f" processes), on {settings['backend']}.",
            ]
        ),
        "per_process": "\n".join(per_process_table(document)),
        "processes": "\n".join(processes_table(document)),
        "bytes": "\n".join(bytes_table(document)),
        "deployment": "\n".join(deployment_table(document)),
    }


def _load(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def per_process_table(document: dict[str, Any]) -> list[str]:
    rows = document["per_process"]
    lines = [
        "| store | mix, 1 task | mix, 100 tasks | get, 1 task | get, 100 tasks "
        f"| mix, 1 task, {RTT_S * 1000:g} ms RTT added |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in dict.fromkeys(r["store"] for r in rows):
        cells = [
            _ops(_find(rows, store=kind, workload=w, tasks=t))
            for w in WORKLOADS
            for t in CONCURRENCY
        ]
        one = _find(rows, store=kind, workload="mix", tasks=1)
        with_rtt = (
            "-" if one is None or kind == "memory" else _n(1 / (1 / one["ops_per_s"] + RTT_S))
        )
        lines.append(_row([LABELS[kind], *cells, with_rtt]))
    return lines


def processes_table(document: dict[str, Any]) -> list[str]:
    rows = document["processes"]
    counts = sorted({r["processes"] for r in rows})
    lines = [
        "| store (one server or file) | "
        + " | ".join(f"{c} process{'es' if c > 1 else ''}" for c in counts)
        + f" | {counts[-1]} / 1 |",
        "| --- |" + " ---: |" * (len(counts) + 1),
    ]
    for kind in dict.fromkeys(r["store"] for r in rows):
        found = [_find(rows, store=kind, processes=c) for c in counts]
        first, last = found[0], found[-1]
        ratio = (
            "-"
            if first is None or last is None
            else f"{last['ops_per_s'] / first['ops_per_s']:.2f}x"
        )
        lines.append(_row([LABELS[kind], *(_ops(r) for r in found), ratio]))
    return lines


def bytes_table(document: dict[str, Any]) -> list[str]:
    lines = [
        "| store | session | record (JSON bytes) | bytes per session | how | other measure |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    how = {
        "memory": "tracemalloc",
        "sqlite": "page_count x page_size after VACUUM",
        "postgres": "pg_total_relation_size after VACUUM",
    }
    for row in sorted(
        document["bytes"],
        key=lambda r: (list(LABELS).index(r["store"]), list(SIZES).index(r["size"])),
    ):
        kind = row["store"]
        if kind == "postgres":
            toast = row["bytes_per_session"] - row["heap"] - row["indexes"]
            other = f"heap {_n(row['heap'])}, TOAST {_n(toast)}, indexes {_n(row['indexes'])}"
        elif "memory_usage" in row:
            other = f"MEMORY USAGE {_n(row['memory_usage'])}"
        else:
            other = ""
        method = how.get(kind, "used_memory delta")
        lines.append(
            _row(
                [
                    LABELS[kind],
                    row["size"],
                    _n(row["record_bytes"]),
                    _n(row["bytes_per_session"]),
                    method,
                    other,
                ]
            )
        )
    return lines


def deployment(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The worked deployment per store: memory for every session, Redis primaries by memory,
    client processes for the peak rate (measured figures times the stated assumptions)."""
    sessions = WALLETS * DAPPS
    peak = sessions * TOUCHES_PER_DAY / 86_400 * PEAK_FACTOR
    rows = []
    for kind in LABELS:
        size = _find(document["bytes"], store=kind, size="typical")
        rate = _find(document["per_process"], store=kind, workload="mix", tasks=100)
        if size is None or rate is None:
            continue
        total = size["bytes_per_session"] * sessions
        scaled = [r for r in document["processes"] if r["store"] == kind]
        server = max((r["ops_per_s"] for r in scaled), default=None)
        rows.append(
            {
                "store": kind,
                "bytes": total,
                "primaries": math.ceil(total / PRIMARY_MAX_MEMORY)
                if kind.startswith("redis")
                else None,
                "peak_ops_per_s": peak,
                # A memory store shares nothing: more processes do not serve more sessions.
                "processes": None if kind == "memory" else math.ceil(peak / rate["ops_per_s"]),
                "servers_by_rate": None if server is None else math.ceil(peak / server),
            }
        )
    return rows


def deployment_table(document: dict[str, Any]) -> list[str]:
    rows = deployment(document)
    peak = rows[0]["peak_ops_per_s"] if rows else 0
    lines = [
        f"{WALLETS:,} wallets x {DAPPS} dApps = {WALLETS * DAPPS:,} sessions; each touched"
        f" {TOUCHES_PER_DAY} times a day, peak {PEAK_FACTOR}x the daily average:"
        f" **{_n(peak)} ops/s** of the mix at peak. Redis maxmemory"
        f" {_bytes(PRIMARY_MAX_MEMORY)} per primary.",
        "",
        "| store | space for every session | Redis primaries by memory "
        "| client processes at peak (100 tasks each) | servers at the measured best rate |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        primaries = "-" if row["primaries"] is None else _n(row["primaries"])
        servers_ = "-" if row["servers_by_rate"] is None else _n(row["servers_by_rate"])
        processes = "-" if row["processes"] is None else _n(row["processes"])
        cells = [LABELS[row["store"]], _bytes(row["bytes"]), primaries, processes, servers_]
        lines.append(_row(cells))
    return lines


BLOCK = re.compile(r"(<!-- capacity:(\w+) -->\n)(?:.*?\n)??(<!-- /capacity:\2 -->)", re.S)


def rewrite_docs(text: str, blocks: dict[str, str]) -> str:
    """`text` with every ``<!-- capacity:NAME -->`` block replaced by `blocks[NAME]`."""
    return BLOCK.sub(lambda m: m[1] + blocks[m[2]] + "\n" + m[3], text)


# --- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options; a quick run may not overwrite the tracked JSON or chart."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="memory and SQLite, tiny counts")
    parser.add_argument(
        "--output", type=Path, default=None, help="write the JSON here ('-': stdout)"
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="read a saved JSON instead of measuring",
    )
    parser.add_argument("--markdown", action="store_true", help="print the docs' tables")
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the tables in this page")
    parser.add_argument("--chart", type=Path, default=None, help="draw the SVG chart here")
    parser.add_argument(
        "--stores",
        type=lambda text: text.split(","),
        default=None,
        help=f"comma-separated, of {','.join(LABELS)} (default: every one; --quick: memory,sqlite)",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.stores is None:
        args.stores = ["memory", "sqlite"] if args.quick else list(LABELS)
    if unknown := set(args.stores) - set(LABELS):
        parser.error(f"--stores: no store named {sorted(unknown)}")
    tracked = {TRACKED_RESULTS: args.output, TRACKED_CHART: args.chart, TRACKED_PAGE: args.docs}
    for path, given in tracked.items():
        if args.quick and given is not None and given.resolve() == path:
            parser.error(f"--quick would overwrite the tracked {path.name} with rough numbers")
    if args.source is not None and args.output is not None:
        parser.error("--from reads saved figures: nothing to --output")
    args.sessions = 200 if args.quick else 10_000
    args.bytes_sessions = 500 if args.quick else 10_000
    args.window = 0.2 if args.quick else 1.5
    args.process_window = 0.3 if args.quick else 3.0
    args.rounds = 1 if args.quick else 3
    args.rounds_processes = 1 if args.quick else 2
    args.processes = [1, 2] if args.quick else [1, 2, 4]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.source is not None:
        document = json.loads(args.source.read_text(encoding="utf-8"))
    else:
        document = measure(args)
    if args.output is not None:
        text = json.dumps(document, indent=2) + "\n"
        if str(args.output) == "-":
            print(text)
        else:
            args.output.write_text(text, encoding="utf-8")
            print(f"wrote {args.output}")
    blocks = markdown(document)
    if args.markdown or args.source is None:
        for name, block in blocks.items():
            print(f"\n<!-- capacity:{name} -->\n{block}\n<!-- /capacity:{name} -->")
    if args.docs is not None:
        args.docs.write_text(
            rewrite_docs(args.docs.read_text(encoding="utf-8"), blocks), encoding="utf-8"
        )
        print(f"rewrote the tables in {args.docs}")
    if args.chart is not None:
        sys.path.insert(0, str(Path(__file__).parent))
        import capacity_chart

        capacity_chart.draw(document, args.chart)
        print(f"wrote {args.chart}")


if __name__ == "__main__":
    main()
