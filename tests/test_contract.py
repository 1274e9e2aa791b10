"""The conformance suite, lifecycle rules included, run over every shipped store."""

from __future__ import annotations

import pytest

from walletmesh_sessions.testing import ForeignData, LifecycleStoreContract, StoreFactory

STORES = ["memory", "sqlite_file", "mapping", "redis"]


class TestContract(LifecycleStoreContract):
    """Every shipped store passes the public conformance kit, with its lifecycle rules."""

    @pytest.fixture(params=STORES)
    def store_kind(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def store_factory(self, store_kind: str, request: pytest.FixtureRequest) -> StoreFactory:
        factory: StoreFactory = request.getfixturevalue(f"{store_kind}_factory")
        return factory

    @pytest.fixture
    def foreign_data(self, store_kind: str, request: pytest.FixtureRequest) -> ForeignData:
        foreign: ForeignData = request.getfixturevalue(f"{store_kind}_foreign")
        return foreign
