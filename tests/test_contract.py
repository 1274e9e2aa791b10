"""The conformance suite, run over every shipped store."""

from __future__ import annotations

import pytest

from walletmesh_sessions.testing import ForeignData, SessionStoreContract, StoreFactory
from walletmesh_sessions.testing._rules_lifecycle import LifecycleRules

STORES = ["memory", "sqlite_file", "mapping", "redis"]
LIFECYCLE_STORES = STORES


class TestContract(SessionStoreContract):
    """Every shipped store passes the public conformance kit."""

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


class TestLifecycle(LifecycleRules):
    """Every shipped store passes the kit's lifecycle rules (the rest runs in TestContract)."""

    @pytest.fixture(params=LIFECYCLE_STORES)
    def store_kind(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def store_factory(self, store_kind: str, request: pytest.FixtureRequest) -> StoreFactory:
        factory: StoreFactory = request.getfixturevalue(f"{store_kind}_factory")
        return factory
