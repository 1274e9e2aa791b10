"""Draw the capacity figures as an SVG chart (docs/capacity.svg), the same bytes for the same JSON.

Run: python benchmarks/capacity_chart.py benchmarks/capacity.json docs/capacity.svg
(`python benchmarks/capacity.py --chart PATH` draws it at the end of a run.) Needs matplotlib,
a benchmarks-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

LABELS = {
    "sqlite": "SQLite (one file)",
    "redis": "Redis (one server)",
    "postgres": "PostgreSQL (one server)",
    "redis-cluster-3": "Redis Cluster, 3 primaries",
    "redis-cluster-1": "Redis Cluster, 1 primary",
}
NAMES = {"memory": "memory", "sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}
NAMES["redis-cluster-3"] = "Redis Cluster, 3 primaries"
# One colour per store in every panel.
COLORS = {
    "memory": "tab:gray",
    "sqlite": "tab:blue",
    "redis": "tab:red",
    "postgres": "tab:green",
    "redis-cluster-3": "tab:orange",
    "redis-cluster-1": "tab:purple",
}
SERVERS = ("sqlite", "redis", "postgres")
CLUSTERS = ("redis-cluster-1", "redis-cluster-3")


def fingerprint(document: dict[str, Any]) -> str:
    """A digest of the figures the chart draws, written into the SVG's description: the test
    can check that the tracked chart was drawn from the tracked JSON with any matplotlib."""
    figures = {key: document[key] for key in ("processes", "bytes")}
    text = json.dumps(figures, sort_keys=True, separators=(",", ":"))
    return f"drawn from figures sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def draw(document: dict[str, Any], output: Path) -> None:
    """Total ops/s against processes per store, 1 against 3 cluster primaries, and bytes per
    session against the record's size."""
    import matplotlib

    matplotlib.use("svg")
    # A fixed salt and no date: the same JSON gives the same file, so a test can compare them.
    matplotlib.rcParams["svg.hashsalt"] = "walletmesh-sessions-capacity"
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, and smaller
    import matplotlib.pyplot as plt

    scaling = document["processes"]
    figure, (stores, clusters, sizes) = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    for axes, kinds in ((stores, SERVERS), (clusters, CLUSTERS)):
        for kind in kinds:
            mine = sorted((r for r in scaling if r["store"] == kind), key=lambda r: r["processes"])
            if mine:
                counts = [r["processes"] for r in mine]
                rates = [r["ops_per_s"] for r in mine]
                axes.plot(counts, rates, marker="o", color=COLORS[kind], label=LABELS[kind])
        axes.set(xlabel="client processes (100 tasks each)", ylabel="total ops/s", ylim=(0, None))
        axes.set_xticks(sorted({r["processes"] for r in scaling}))
    stores.set_title("90 % sliding reads, 10 % set: one server or file")
    clusters.set_title("Redis Cluster: 1 primary against 3")
    for kind in ("memory", "sqlite", "redis", "redis-cluster-3", "postgres"):
        mine = sorted(
            (r for r in document["bytes"] if r["store"] == kind), key=lambda r: r["record_bytes"]
        )
        if mine:
            sizes.plot(
                [r["record_bytes"] for r in mine],
                [r["bytes_per_session"] for r in mine],
                marker="o",
                color=COLORS[kind],
                label=NAMES[kind],
            )
    sizes.set(
        xlabel="record size (JSON bytes)",
        ylabel="bytes per session stored",
        title="Bytes per session against record size",
        ylim=(0, None),
    )
    for axes in (stores, clusters, sizes):
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    metadata = {"Date": None, "Description": fingerprint(document)}
    figure.savefig(output, format="svg", metadata=metadata)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="capacity.py's JSON (--output)")
    parser.add_argument("output", type=Path, help="where to write the SVG")
    args = parser.parse_args()
    draw(json.loads(args.results.read_text(encoding="utf-8")), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
