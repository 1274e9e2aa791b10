"""The conformance suite, run over every shipped store."""

from __future__ import annotations

import pytest

from walletmesh_sessions.testing import SessionStoreContract, StoreFactory

STORES = ["memory", "sqlite_file", "mapping", "redis"]


class TestContract(SessionStoreContract):
    """Every shipped store passes the public conformance kit."""

    @pytest.fixture(params=STORES)
    def store_factory(self, request: pytest.FixtureRequest) -> StoreFactory:
        factory: StoreFactory = request.getfixturevalue(f"{request.param}_factory")
        return factory
