"""The conformance suite, lifecycle rules included, run over every shipped store."""

from __future__ import annotations

import pytest
from hypothesis import settings

from walletmesh_sessions.testing import ForeignData, LifecycleStoreContract, StoreFactory

STORES = [
    "memory",
    "sqlite_file",
    "mapping",
    "redis",
    "redis_cluster",
    "redis_sentinel",
    "postgres",
]
# Each store of these opens a server connection of its own (a new PostgreSQL backend costs
# ~10 ms; a cluster client reads the topology and connects to every primary): the model
# checks, which make a store per example, run fewer examples on them. Sentinel runs the very
# operations the "redis" kind runs in full; only reaching the primary differs.
MODEL_EXAMPLES = {"postgres": 20, "redis_cluster": 20, "redis_sentinel": 20}


class TestContract(LifecycleStoreContract):
    """Every shipped store passes the public conformance kit, with its lifecycle rules."""

    @pytest.fixture(params=STORES)
    def store_kind(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def store_factory(self, store_kind: str, request: pytest.FixtureRequest) -> StoreFactory:
        if store_kind in MODEL_EXAMPLES:
            # For this test's instance only (the kit declares it a class variable).
            self.__dict__["model_settings"] = settings(
                self.model_settings, max_examples=MODEL_EXAMPLES[store_kind]
            )
        factory: StoreFactory = request.getfixturevalue(f"{store_kind}_factory")
        return factory

    @pytest.fixture
    def shares_storage(self, store_kind: str) -> bool:
        """Every shipped store but memory keeps its sessions where a second store object (or
        process) finds them: a file, a mapping, a server."""
        return store_kind != "memory"

    @pytest.fixture
    def foreign_data(self, store_kind: str, request: pytest.FixtureRequest) -> ForeignData:
        foreign: ForeignData = request.getfixturevalue(f"{store_kind}_foreign")
        return foreign


class TestNetworkStoresOnUvloop(TestContract):
    """The network stores keep their calls' deadlines on the running loop's own timer: the
    whole kit passes on uvloop too, whose clock is its own."""

    @pytest.fixture(params=["redis", "redis_cluster", "postgres"])
    def store_kind(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, bool]]:
        return ("asyncio", {"use_uvloop": True})
