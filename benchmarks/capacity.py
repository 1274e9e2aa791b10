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
import multiprocessing
import os
import platform
import random
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

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
# The server helpers live in tests/, the report and the chart next to this file.
for _path in (str(ROOT), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from capacity_report import (  # noqa: E402
    CONCURRENCY,
    LABELS,
    WORKLOADS,
    markdown,
    missing_blocks,
    rewrite_docs,
)

from walletmesh_sessions import (  # noqa: E402
    FullSessionStore,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    SessionStoreError,
    open_store,
)

TRACKED_RESULTS = BENCHMARKS / "capacity.json"
TRACKED_CHART = ROOT / "docs" / "capacity.svg"
TRACKED_PAGE = ROOT / "docs" / "capacity.md"

LIFETIME = timedelta(days=1)
SLIDING = SessionStoreConfig(lifetime=LIFETIME, refresh_on_access=True)
FIXED = SessionStoreConfig(lifetime=LIFETIME)
SET_SHARE = 0.10  # of the mix; the rest is validate_and_refresh
WARM_UP_S = 0.3
PROCESS_TASKS = 100
STORES = ("memory", "sqlite", "redis", "redis-cluster-3", "postgres")  # measured per process
SHARED_STORES = ("sqlite", "redis", "postgres")  # one file or server shared by processes
CLUSTERS = {"redis-cluster-3": 3, "redis-cluster-1": 1}
# Extra app_data bytes of the session sizes measured for bytes per session.
SIZES = {"typical": 0, "+1 KiB": 1024, "+4 KiB": 4096}


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


Done = tuple[int, float, int, float]  # operations, seconds, errors, CPU seconds of this process


async def drive(
    store: FullSessionStore, sessions: Sessions, workload: str, tasks: int, seconds: float
) -> Done:
    """What `tasks` tasks looping for `seconds` did; the CPU time is this process's, every
    thread's (SQLite's calls run in threads): what the client side costs, whatever the
    server and a busy machine add to the wall time."""
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

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for seed in range(tasks):
            group.start_soon(worker, seed * 7919 + os.getpid())
    return counts[0], time.perf_counter() - start, counts[1], time.process_time() - cpu


async def throughput(
    url: str, sessions: Sessions, workload: str, tasks: int, seconds: float
) -> dict[str, float]:
    """ops/s of one store object in this process, after a warm-up (memory: filled first)."""
    config = SLIDING if workload == "mix" else FIXED
    async with open_store(url, config) as store:
        if url.startswith("memory:"):
            await fill(store, sessions)
        await drive(store, sessions, workload, tasks, WARM_UP_S)
        ops, elapsed, errors, cpu = await drive(store, sessions, workload, tasks, seconds)
    return {"ops_per_s": ops / elapsed, "errors": errors, "cpu_us": cpu / ops * 1e6}


def process_main(
    url: str, count: int, seconds: float, barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """One process of the scaling run: warm up, wait for the others, run the mix."""

    async def main() -> Done:
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
        "ops_per_s": sum(ops / elapsed for ops, elapsed, _, _ in done),
        "errors": sum(errors for _, _, errors, _ in done),
        "cpu_us": sum(cpu for *_, cpu in done) / sum(ops for ops, *_ in done) * 1e6,
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


def redis_used_memory(nodes: Sequence[str]) -> int:
    """used_memory summed over the servers at the URLs `nodes`."""
    import redis

    total = 0
    for node in nodes:
        with redis.Redis.from_url(node, socket_timeout=10) as client:
            total += int(client.info("memory")["used_memory"])
    return total


def redis_memory_usage(node: str, prefix: str, sample: int = 500) -> float:
    """Mean ``MEMORY USAGE`` of up to `sample` keys under `prefix` on the server at `node`."""
    import redis

    with redis.Redis.from_url(node, socket_timeout=10) as client:
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
def servers(
    kinds: Sequence[str], directory: Path, given: dict[str, str | None]
) -> Iterator[dict[str, Any]]:
    """The servers `kinds` names: the URL `given` for a kind, else one started with the test
    suite's helpers and stopped after. Each as its URL and the URLs of its nodes."""
    found: dict[str, Any] = {}
    for kind, url in given.items():
        if url is not None and kind in kinds:
            found[kind] = {"url": url, "nodes": [url]}
    with contextlib.ExitStack() as stack:
        if "redis" in kinds and "redis" not in found:
            from tests.redis_server import RedisServer

            (directory / "redis").mkdir()
            single = RedisServer(directory / "redis")
            single.start()
            stack.callback(single.stop)
            found["redis"] = {"url": single.url, "nodes": [single.url]}
        for name, primaries in CLUSTERS.items():
            if name in kinds:
                cluster = start_cluster(directory / name, primaries)
                stack.callback(cluster.stop)
                nodes = [f"127.0.0.1:{port}" for port in cluster.ports]
                found[name] = {
                    "url": f"redis+cluster://{','.join(nodes)}",
                    "nodes": [f"redis://{node}" for node in nodes],
                }
        if "postgres" in kinds and "postgres" not in found:
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
    """The `open_store` URL of `kind`, on file, table or prefix `name`."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{directory / (name + '.db')}"
    url = str(running[kind]["url"])
    separator = "&" if "?" in url else "?"
    if kind == "postgres":
        return f"{url}{separator}table={name}"
    return f"{url}{separator}prefix={name}_"


async def remove(urls: Sequence[str]) -> None:
    """Empty the stores at `urls` (a server given with --redis-url keeps nothing of ours)."""
    for url in urls:
        async with open_store(url) as store:
            await store.clear()


def drop_tables(url: str, tables: Sequence[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the capacity model, as the JSON document written by ``--output``."""
    load_before = os.getloadavg()
    stores = [kind for kind in STORES if kind in args.stores]
    scaled = [kind for kind in (*SHARED_STORES, *CLUSTERS) if kind in args.stores]
    server_kinds = [kind for kind in {*stores, *scaled} if kind not in ("memory", "sqlite")]
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
    given = {"redis": args.redis_url, "postgres": args.postgres_url}
    with tempfile.TemporaryDirectory() as tmp, servers(server_kinds, Path(tmp), given) as running:
        directory = Path(tmp)
        try:
            measure_in(args, document, stores, scaled, directory, running)
        finally:  # a server given by URL keeps nothing of ours
            names = ["capacity", *(f"capacity_bytes_{extra}" for extra in SIZES.values())]
            if args.redis_url and "redis" in running:
                anyio.run(remove, [store_url("redis", directory, running, n) for n in names])
            if args.postgres_url and "postgres" in running:
                drop_tables(args.postgres_url, names)
    document["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return document


def measure_in(
    args: argparse.Namespace,
    document: dict[str, Any],
    stores: Sequence[str],
    scaled: Sequence[str],
    directory: Path,
    running: dict[str, Any],
) -> None:
    """The measurements of `measure`, into `document`, once the servers run."""
    sessions = Sessions(args.sessions)
    urls = {kind: store_url(kind, directory, running, "capacity") for kind in {*stores, *scaled}}
    for kind, url in urls.items():
        if kind != "memory":
            anyio.run(prefill, url, sessions)
    samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for run in range(args.rounds):
        for kind in stores:
            for workload in WORKLOADS:
                for tasks in CONCURRENCY:
                    got = anyio.run(throughput, urls[kind], sessions, workload, tasks, args.window)
                    samples.setdefault((kind, workload, tasks), []).append(got)
                    report(f"round {run + 1}: {kind} {workload} x{tasks}", got)
    document["per_process"] = summarize(samples, "workload", "tasks")
    scaling: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for run in range(args.rounds_processes):
        for kind in scaled:
            for count in args.processes:
                got = processes_throughput(urls[kind], args.sessions, count, args.process_window)
                scaling.setdefault((kind, "mix", count), []).append(got)
                report(f"round {run + 1}: {kind} {count} processes", got)
    document["processes"] = summarize(scaling, "workload", "processes")
    document["bytes"] = bytes_per_session(args, stores, directory, running)


async def prefill(url: str, sessions: Sessions) -> None:
    async with open_store(url, SLIDING) as store:
        await store.clear()
        await fill(store, sessions)


def summarize(
    samples: dict[tuple[str, str, int], list[dict[str, float]]], second: str, third: str
) -> list[dict[str, Any]]:
    """One row per case: the median ops/s and client CPU µs per call of its rounds, every
    sample, and errors seen."""
    return [
        {
            "store": kind,
            second: workload,
            third: number,
            "ops_per_s": round(statistics.median(s["ops_per_s"] for s in got)),
            "samples": [round(s["ops_per_s"]) for s in got],
            "cpu_us": round(statistics.median(s["cpu_us"] for s in got), 1),
            "errors": int(sum(s["errors"] for s in got)),
        }
        for (kind, workload, number), got in samples.items()
    ]


def report(what: str, got: dict[str, float]) -> None:
    errors = f", {got['errors']:.0f} errors" if got["errors"] else ""
    cpu = f"{got['cpu_us']:.0f} µs client CPU per call"
    print(f"  {what}: {got['ops_per_s']:,.0f} ops/s, {cpu}{errors}", flush=True)


def bytes_per_session(
    args: argparse.Namespace, stores: Sequence[str], directory: Path, running: dict[str, Any]
) -> list[dict[str, Any]]:
    """Bytes per session of every store at every size in `SIZES`."""
    count = args.bytes_sessions
    rows: list[dict[str, Any]] = []
    for size, extra in SIZES.items():
        name = f"capacity_bytes_{extra}"
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
                nodes = running[kind]["nodes"]
                before = redis_used_memory(nodes)
                anyio.run(fill_size, url, count, extra)
                after = redis_used_memory(nodes)
                usage = statistics.fmean(redis_memory_usage(node, f"{name}_") for node in nodes)
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
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    parser.add_argument(
        "--postgres-url", default=None, help="use this PostgreSQL instead of starting one"
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
    # Mistakes found now, not after minutes of measuring.
    for path in (args.output, args.chart):
        if path is not None and str(path) != "-" and not path.resolve().parent.is_dir():
            parser.error(f"no directory to write {str(path)!r} in")
    if args.docs is not None:
        missing = (
            missing_blocks(args.docs.read_text(encoding="utf-8"))
            if args.docs.is_file()
            else ["all"]
        )
        if missing:
            parser.error(f"{str(args.docs)!r} has no <!-- capacity:NAME --> block for {missing}")
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
        import capacity_chart

        capacity_chart.draw(document, args.chart)
        print(f"wrote {args.chart}")


if __name__ == "__main__":
    main()
