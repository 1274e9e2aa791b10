"""Print the suite's JSON results as the Markdown tables of docs/performance.md.

Run: python benchmarks/tables.py benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def per_session(results: list[dict[str, Any]]) -> list[str]:
    """ops/s of each store and its floor, asyncio and trio side by side."""
    by_backend = {result["backend"]: result for result in results}
    asyncio, trio = by_backend["asyncio"], by_backend.get("trio", {})
    lines = [
        "| store | method | asyncio ops/s | floor ops/s | ratio | trio ops/s | trio ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in ("memory", "sqlite", "redis", "postgres"):
        for method, row in asyncio.get(kind, {}).items():
            if not row["floor_ops"]:
                continue  # a count, not a rate
            other = trio.get(kind, {}).get(method)
            trio_cells = (
                f"{other['store_ops']:,.0f} | {other['ratio']:.2f}" if other else "see below | -"
            )
            lines.append(
                f"| {kind} | `{method}` | {row['store_ops']:,.0f} | {row['floor_ops']:,.0f}"
                f" | {row['ratio']:.2f} | {trio_cells} |"
            )
    return lines


def scaling(results: list[dict[str, Any]]) -> list[str]:
    """get_all and clean_expired against size, with the longest stall of each."""
    lines = [
        "| store | sessions | `clean_expired` | removed | stall | `get_all` | stall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        for row in result.get("scaling", []):
            lines.append(
                f"| {row['store']} | {row['sessions']:,} | {_seconds(row['clean_expired_s'])}"
                f" | {row['clean_expired_removed']:,} | {row['clean_expired_max_stall_ms']:.1f} ms"
                f" | {_seconds(row['get_all_s'])} | {row['get_all_max_stall_ms']:.1f} ms |"
            )
    return lines


def big_stalls(results: list[dict[str, Any]]) -> list[str]:
    runs = sorted({row["runs"] for result in results for row in result.get("big_stalls", [])})
    over = f", {runs[0]} runs" if len(runs) == 1 else ""  # a quick run makes fewer
    lines = [
        f"| store | method | sessions | time (median) | longest stall{over} | longest GC pause |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        for row in result.get("big_stalls", []):
            lines.append(
                f"| {row['store']} | `{row['method']}` | {row['sessions']:,}"
                f" | {_seconds(row['median_s'])} | {row['max_stall_ms']:.1f} ms"
                f" | {row['max_gc_pause_ms']:.1f} ms |"
            )
    return lines


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    results = json.loads(args.results.read_text())["results"]
    for table in (per_session(results), scaling(results), big_stalls(results)):
        print("\n".join(table), end="\n\n")
    for result in results:
        for durability, row in result.get("sqlite_clean", {}).items():
            print(
                f"SQLite clean_expired, 5,000 of 10,000 expired [{durability}]: "
                f"{row['store_ms']:.1f} ms, raw DELETE {row['floor_ms']:.1f} ms, "
                f"ratio {row['ratio']:.2f}"
            )
        if "footprint" in result:
            footprint = result["footprint"]
            print(
                f"memory per session: store {footprint['memory']:.0f} bytes, "
                f"dict of tuples {footprint['floor']:.0f} bytes"
            )


if __name__ == "__main__":
    main()
