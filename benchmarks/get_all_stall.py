"""The longest event-loop stall during get_all and iter_sessions of a store of 1,000,000 sessions.

Run: python benchmarks/get_all_stall.py [--store memory|sqlite] [--sessions 1000000] [--runs 5]
    [--gc-off] [--noise SECONDS]
With --gc-off the garbage collector is disabled for the measurement, to see how much of the
stall it causes. Each line gives the longest stall over the runs and the longest GC pause.
With --noise, nothing is stored: the same heartbeat runs that long on an idle loop, then as
long again beside a thread that keeps a core busy without holding the GIL. That is the floor
of what the heartbeat can see on this machine (the scheduler, the hypervisor), whatever a
store does.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import tempfile
import threading
from pathlib import Path
from typing import Any

import anyio
from suite import DATA, LIFETIME, GcPauses, fill_sqlite, timed

from walletmesh_sessions import LocalStorageSessionStore, MemorySessionStore, SessionStoreConfig
from walletmesh_sessions.testing import FakeClock


async def iterate(store: Any) -> int:
    count = 0
    async for _ in store.iter_sessions():
        count += 1
    return count


async def measure(store: Any, runs: int) -> None:
    calls = (("get_all", store.get_all), ("iter_sessions", functools.partial(iterate, store)))
    for method, call in calls:
        stalls, pauses, seconds = [], [], []
        for _ in range(runs):
            with GcPauses() as gc_pauses:
                elapsed, stall, value = await timed(call)
            del value
            stalls.append(stall * 1000)
            pauses.append(gc_pauses.longest * 1000)
            seconds.append(elapsed)
        print(
            f"{method}: {sorted(seconds)[len(seconds) // 2]:.2f} s (median), longest stall"
            f" {max(stalls):.1f} ms over {runs} runs, longest GC pause {max(pauses):.1f} ms"
        )


def _hash_until(stop: threading.Event) -> None:
    """Keep a core busy in C code that releases the GIL (hashing a large buffer)."""
    buffer = bytes(8 << 20)
    while not stop.is_set():
        hashlib.sha256(buffer).digest()


async def noise(seconds: float) -> None:
    """The longest stall the heartbeat sees with no store at all: idle, then beside a thread."""
    for name in ("idle loop", "beside a busy thread without the GIL"):
        stop = threading.Event()
        busy = threading.Thread(target=_hash_until, args=(stop,))
        if name != "idle loop":
            busy.start()
        try:
            _elapsed, stall, _ = await timed(functools.partial(anyio.sleep, seconds))
        finally:
            stop.set()
            if busy.is_alive():
                busy.join()
        print(f"{name}: longest stall {stall * 1000:.1f} ms over {seconds:g} s")


async def main(kind: str, sessions: int, runs: int, gc_off: bool) -> None:
    clock = FakeClock()
    config = SessionStoreConfig(lifetime=LIFETIME)
    with tempfile.TemporaryDirectory() as directory:
        if kind == "memory":
            store: Any = MemorySessionStore(config, clock=clock)
            for n in range(sessions):
                await store.set(f"id{n}", DATA)
        else:
            path = Path(directory) / "stall.db"
            fill_sqlite(path, sessions, clock.now_ms + 3_600_000)
            store = LocalStorageSessionStore(path, config, clock=clock)
        gc.collect()  # the fill's debt, as in the suite
        if gc_off:
            gc.disable()
        async with store:
            await measure(store, runs)
        gc.enable()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["memory", "sqlite"], default="sqlite")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gc-off", action="store_true")
    parser.add_argument("--noise", type=float, metavar="SECONDS")
    args = parser.parse_args()
    if args.noise is not None:
        anyio.run(noise, args.noise)
    else:
        anyio.run(main, args.store, args.sessions, args.runs, args.gc_off)
