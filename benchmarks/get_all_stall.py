"""The longest event-loop stall during get_all of a SQLite file with 1,000,000 sessions.

Run: python benchmarks/get_all_stall.py [--sessions 1000000] [--gc-off]
With --gc-off the garbage collector is disabled for the measurement, to see how much of the
stall it causes.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path

import anyio
from suite import LIFETIME, fill_sqlite, timed

from walletmesh_sessions import LocalStorageSessionStore, SessionStoreConfig
from walletmesh_sessions.testing import FakeClock


async def main(sessions: int, gc_off: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        path = Path(directory) / "stall.db"
        fill_sqlite(path, sessions, clock.now_ms + 3_600_000)
        if gc_off:
            gc.disable()
        config = SessionStoreConfig(lifetime=LIFETIME)
        async with LocalStorageSessionStore(path, config, clock=clock) as store:
            for _ in range(2):
                seconds, stall, found = await timed(store.get_all)
                stall_ms = stall * 1000
                print(
                    f"get_all of {len(found):,}: {seconds:.2f} s, longest stall {stall_ms:.1f} ms"
                )
                del found
        gc.enable()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--gc-off", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.sessions, args.gc_off)
