"""The Redis server's time per call of the read-and-slide script, on a small record.

A redis-server of its own (as bench_redis.py starts one); `INFO commandstats` gives the
server's microseconds per EVALSHA, median over the rounds. Two cases: a read that leaves the
expiry as it is, and one that slides it (the clock moves a millisecond per call). With
`--against REV`, the script as it was at that git revision runs too, interleaved round by
round on the same server.

Run: python benchmarks/bench_slide_script.py [--calls 5000] [--rounds 5] [--against REV]
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import tempfile
from pathlib import Path

import redis
from bench_redis import DATA, start_server

from walletmesh_sessions._core.codec import encode_record
from walletmesh_sessions._redis.scripts import READ_AND_SLIDE

ROOT = Path(__file__).parent.parent
# Where the script's source lived, newest first: the module, and how its definition opens.
_HOMES = (
    ("walletmesh_sessions/_redis/scripts.py", 'READ_AND_SLIDE = script(\n    """'),
    ("walletmesh_sessions/_redis_io.py", 'READ_AND_SLIDE = _script(\n    """'),
)
NOW, LIFETIME_MS, TTL_MS = 1_600_000_000_000, 3_600_000, 3_960_000


def script_at(revision: str) -> str:
    """The read-and-slide script's source as it was at `revision`, wherever it lived then."""
    for path, opening in _HOMES:
        shown = subprocess.run(
            ["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True
        )
        if shown.returncode == 0 and opening in shown.stdout:
            text = shown.stdout
            start = text.index(opening) + len(opening) - 3
            end = text.index('"""', start + 3) + 3
            source: str = ast.literal_eval(text[start:end])
            return source
    msg = f"no read-and-slide script found at {revision}"
    raise SystemExit(msg)


def per_call(client: redis.Redis, source: str, calls: int, slide: bool) -> float:
    """The server's microseconds per call of `source` on one small record."""
    sha = client.script_load(source)
    client.set("k", encode_record(DATA, NOW + LIFETIME_MS))
    client.config_resetstat()
    for n in range(calls):
        client.evalsha(sha, 1, "k", NOW + (n if slide else 0), LIFETIME_MS, "", TTL_MS)
    return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", metavar="REV")
    args = parser.parse_args()
    scripts = {"now": READ_AND_SLIDE.source}
    if args.against:
        scripts[args.against] = script_at(args.against)
    samples: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_server(directory)
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            for _ in range(args.rounds):
                for slide in (False, True):
                    for name, source in scripts.items():
                        us = per_call(client, source, args.calls, slide)
                        samples.setdefault((name, slide), []).append(us)
            client.close()
        finally:
            server.terminate()
            server.wait()
    print("| script | expiry kept, us per call | expiry slid, us per call |")
    print("| --- | ---: | ---: |")
    for name in scripts:
        kept = statistics.median(samples[name, False])
        slid = statistics.median(samples[name, True])
        print(f"| {name} | {kept:.1f} | {slid:.1f} |")


if __name__ == "__main__":
    main()
