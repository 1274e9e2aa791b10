"""The tables of docs/capacity.md and its worked deployment, rendered from capacity.py's JSON.

`markdown(document)` gives each table by block name; `rewrite_docs` puts them between the
``<!-- capacity:NAME -->`` markers of the page, so the page is rewritten from the JSON in one step
(``python benchmarks/capacity.py --from benchmarks/capacity.json --docs docs/capacity.md``) and
tests/test_capacity.py can check that it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

WORKLOADS = ("mix", "get")
CONCURRENCY = (1, 100)
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
        f"| mix, 1 task, {RTT_S * 1000:g} ms RTT added | client CPU per call, mix, 100 tasks |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
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
        busy = _find(rows, store=kind, workload="mix", tasks=100)
        cpu = "-" if busy is None or "cpu_us" not in busy else f"{busy['cpu_us']:,.3g} µs"
        lines.append(_row([LABELS[kind], *cells, with_rtt, cpu]))
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
        key=lambda r: (list(LABELS).index(r["store"]), r["record_bytes"]),
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
                "client_cores": None
                if kind == "memory" or "cpu_us" not in rate
                else math.ceil(peak * rate["cpu_us"] / 1e6),
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
        "| client processes at peak (100 tasks each) | client CPU cores at peak "
        "| servers (or files) at the best rate measured |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        primaries = "-" if row["primaries"] is None else _n(row["primaries"])
        servers_ = "-" if row["servers_by_rate"] is None else _n(row["servers_by_rate"])
        if row["store"] == "redis-cluster-3" and row["servers_by_rate"] is not None:
            servers_ += " clusters"
        processes = "-" if row["processes"] is None else _n(row["processes"])
        cores = "-" if row["client_cores"] is None else _n(row["client_cores"])
        cells = [LABELS[row["store"]], _bytes(row["bytes"]), primaries, processes, cores, servers_]
        lines.append(_row(cells))
    return lines


BLOCK = re.compile(r"(<!-- capacity:(\w+) -->\n)(?:.*?\n)??(<!-- /capacity:\2 -->)", re.S)


BLOCKS = ("setup", "per_process", "processes", "bytes", "deployment")


def missing_blocks(text: str) -> list[str]:
    """The names of `BLOCKS` that `text` has no ``<!-- capacity:NAME -->`` block for."""
    found = {match[2] for match in BLOCK.finditer(text)}
    return [name for name in BLOCKS if name not in found]


def rewrite_docs(text: str, blocks: dict[str, str]) -> str:
    """`text` with every ``<!-- capacity:NAME -->`` block replaced by `blocks[NAME]`."""
    return BLOCK.sub(lambda m: m[1] + blocks[m[2]] + "\n" + m[3], text)
