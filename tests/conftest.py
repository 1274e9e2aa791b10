"""Shared fixtures: both anyio backends, and one store factory per shipped store."""

from __future__ import annotations

import pytest

from walletmesh_sessions import MemorySessionStore, SessionStoreConfig
from walletmesh_sessions._expiry import Clock
from walletmesh_sessions.testing import StoreFactory
from walletmesh_sessions.testing._clock import FakeClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Explicit backends, so a missing trio fails the run instead of skipping it."""
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_factory() -> StoreFactory:
    def make(config: SessionStoreConfig, clock: Clock) -> MemorySessionStore:
        return MemorySessionStore(config, clock=clock)

    return make
