"""Profile 200,000 MemorySessionStore.set calls: where the time goes beyond the floor.

Run: python benchmarks/profile_memory_set.py
"""

from __future__ import annotations

import cProfile
import pstats

import anyio

from walletmesh_sessions import MemorySessionStore, SessionData, SessionStoreConfig
from walletmesh_sessions.testing import FakeClock

DATA = SessionData("s", "https://app.example.com")


async def main() -> None:
    store = MemorySessionStore(SessionStoreConfig(lifetime=3600), clock=FakeClock())
    ids = [f"id{n}" for n in range(1000)]
    for n in range(200_000):
        await store.set(ids[n % 1000], DATA)


if __name__ == "__main__":
    profile = cProfile.Profile()
    profile.runcall(anyio.run, main)
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)
