"""Draw the suite's scaling results as an SVG chart (docs/scaling.svg).

Run: python benchmarks/chart.py benchmarks/results.json docs/scaling.svg
(`python benchmarks/suite.py --chart PATH` draws it at the end of a run.) Needs matplotlib, a
benchmarks-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STORES = {"memory": "memory", "sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}
STALL_TARGET_MS = 5.0


def draw(results: list[dict[str, Any]], output: Path) -> None:
    """Time and longest event-loop stall of `get_all` and `clean_expired` against size."""
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "walletmesh-sessions"  # the same file for the same data
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, and smaller
    import matplotlib.pyplot as plt

    rows = [row for result in results for row in result.get("scaling", [])]
    figure, (times, stalls) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for kind, label in STORES.items():
        mine = sorted((r for r in rows if r["store"] == kind), key=lambda r: r["sessions"])
        if not mine:
            continue
        sizes = [r["sessions"] for r in mine]
        (line,) = times.plot(sizes, [r["get_all_s"] for r in mine], marker="o", label=label)
        times.plot(
            sizes,
            [max(r["clean_expired_s"], 1e-5) for r in mine],
            marker="s",
            linestyle="--",
            color=line.get_color(),
            label=f"{label} clean_expired",
        )
        stalls.plot(
            sizes,
            [max(r["get_all_max_stall_ms"], 0.01) for r in mine],
            marker="o",
            color=line.get_color(),
            label=label,
        )
    times.set(
        xscale="log",
        yscale="log",
        xlabel="sessions stored",
        ylabel="seconds per call",
        title="get_all (solid) and clean_expired, 1 % expired (dashed)",
    )
    stalls.axhline(STALL_TARGET_MS, color="grey", linestyle=":", label="5 ms")
    stalls.set(
        xscale="log",
        yscale="log",
        xlabel="sessions stored",
        ylabel="longest event-loop stall (ms)",
        title="Longest stall of the event loop during get_all",
    )
    for axes in (times, stalls):
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize="small")
    figure.savefig(output, format="svg", metadata={"Date": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the suite's JSON (--output)")
    parser.add_argument("output", type=Path, help="where to write the SVG")
    args = parser.parse_args()
    draw(json.loads(args.results.read_text())["results"], args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
