"""Microseconds per `decode_record` of typical records, this tree against another checkout.

Records: the usual one (an id, an origin, one chain of two methods, createdAt, expiresAt),
the same with a small appData, and one with an escaped quote (which takes the full path).
With --against DIR the rounds alternate between a process importing this tree and one
importing DIR's `walletmesh_sessions` (A, B, A, B ...); each prints the best of its repeats.

Run: python benchmarks/bench_decode.py [--against /tmp/decode-base] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
NUMBER = 20_000

RECORDS = {
    "plain": '{"data":{"id":"sess-0001234","origin":"https://app.example.com","permissions":'
    '{"eip155:1":["eth_accounts","eth_sendTransaction"]},"createdAt":1700000000000},'
    '"expiresAt":1800000000000}',
    "appData": '{"data":{"id":"sess-0001234","origin":"https://app.example.com","permissions":'
    '{"eip155:1":["eth_accounts","eth_sendTransaction"]},"createdAt":1700000000000,'
    '"appData":{"theme":"dark","seen":[1,2,3],"prefs":{"lang":"en"}}},'
    '"expiresAt":1800000000000}',
    "escaped": '{"data":{"id":"sess-0001234","origin":"https://app.example.com/\\"q\\"",'
    '"permissions":{"eip155:1":["eth_accounts"]}},"expiresAt":1800000000000}',
}


def measure() -> dict[str, float]:
    """Best µs per decode of each record, in this process."""
    from walletmesh_sessions._core.codec import decode_record

    result = {}
    for name, text in RECORDS.items():
        decode_record(text, "s")
        best = min(timeit.repeat(lambda t=text: decode_record(t, "s"), number=NUMBER, repeat=5))
        result[name] = best / NUMBER * 1e6
    return result


def run(root: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = [sys.executable, __file__, "--child"]
    out = subprocess.run(script, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    roots = {"this tree": HERE}
    if args.against is not None:
        roots["against"] = args.against.resolve()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
    for _ in range(args.rounds):
        for name, root in roots.items():
            runs[name].append(run(root))
    for record in RECORDS:
        medians = {name: statistics.median(r[record] for r in runs[name]) for name in roots}
        line = ", ".join(f"{name} {us:.2f} us" for name, us in medians.items())
        if "against" in medians:
            line += f", ratio {medians['this tree'] / medians['against']:.2f}"
        print(f"{record}: {line}")


if __name__ == "__main__":
    main()
