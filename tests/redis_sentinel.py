"""Redis Sentinel deployments for the tests, loaded as a pytest plugin by conftest.py.

A deployment is one primary, one replica (or more) and three sentinels, each a redis-server
process on 127.0.0.1 and a free port, in a temporary directory of its own. Sentinels notice a dead
primary after 1 s and promote the replica. One deployment serves the whole test session (the
conformance kit runs on it); tests that kill a primary start a dedicated one. A missing
redis-server fails the run: it must not silently skip the Sentinel tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from walletmesh_sessions.testing import StoreFactory

from .redis_server import RedisForeignData, RedisServer, url_factory
from .servers import starting, wait_for

__all__ = ("SERVICE", "SentinelDeployment")

SERVICE = "sessions"
READY_TIMEOUT = 30.0
# Sentinel's timings: how long a primary may be silent, and how long a failover may take.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def _wait_for(ready: Callable[[], bool], what: str, *processes: RedisServer) -> None:
    wait_for(ready, what, READY_TIMEOUT, *processes)


class SentinelDeployment:
    """A primary, `replicas` replicas and three sentinels monitoring them as `SERVICE`.

    With `password`, the primary and the replicas require it; with `sentinel_password`, the
    sentinels require that one.
    """

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        replicas: int = 1,
    ) -> None:
        def directory_for(name: str) -> Path:
            path = directory / name
            path.mkdir()
            return path

        # A replica syncs at once, not after the default 5 s wait for more replicas.
        data = "replica-announce-ip 127.0.0.1\nrepl-diskless-sync-delay 0\n"
        if password is not None:
            data += f"requirepass {password}\nmasterauth {password}\n"
        self.primary = RedisServer(directory_for("primary"), config=lambda: data, password=password)
        self.replicas = [
            RedisServer(
                directory_for(f"replica{n}"),
                config=lambda: f"{data}replicaof 127.0.0.1 {self.primary.port}\n",
                password=password,
            )
            for n in range(replicas)
        ]
        self.replica = self.replicas[0]
        after = (
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            "sentinel announce-ip 127.0.0.1\n"
        )
        if password is not None:
            after += f"sentinel auth-pass {SERVICE} {password}\n"
        if sentinel_password is not None:
            after += (
                f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n"
            )

        def sentinel_config() -> str:
            return f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n{after}"

        self.sentinels = [
            RedisServer(
                directory_for(f"sentinel{n}"),
                config=sentinel_config,
                sentinel=True,
                password=sentinel_password,
            )
            for n in range(3)
        ]

    @property
    def processes(self) -> list[RedisServer]:
        return [self.primary, *self.replicas, *self.sentinels]

    def url(self, database: int = 0, query: str = "") -> str:
        """The ``redis+sentinel://`` URL of the service's database."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{database}" + (f"?{query}" if query else "")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def start(self) -> None:
        """Start everything; return once the sentinels agree and the replicas are in sync.

        The replicas are in sync before the sentinels start, so that their first look at the
        primary lists it (they look again only every 10 s).
        """
        self.primary.start()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            self.wait_in_sync(replica)
        for sentinel in self.sentinels:
            sentinel.start()
        _wait_for(self._sentinels_agree, "the sentinels to agree", *self.processes)

    def wait_in_sync(self, replica: RedisServer) -> None:
        client = replica.client()
        try:
            _wait_for(
                lambda: client.info("replication").get("master_link_status") == "up",
                f"the replica on port {replica.port} to sync",
                *self.processes,
            )
        finally:
            client.close()

    def _sentinels_agree(self) -> bool:
        """Each running sentinel names the same live primary, knows the others and the replicas."""
        seen = set()
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = sentinel.client(1.0)
            try:
                state: dict[str, Any] = client.sentinel_master(SERVICE)  # type: ignore[assignment]
            except redis.RedisError:
                return False
            finally:
                client.close()
            if state["is_sdown"] or state["is_odown"] or state["num-slaves"] < len(self.replicas):
                return False
            if state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
            seen.add(int(state["port"]))
        return len(seen) == 1

    def primary_port(self) -> int:
        """The port the sentinels name as the primary (once they agree)."""
        _wait_for(self._sentinels_agree, "the sentinels to agree", *self.processes)
        client = self.sentinels[0].client()
        try:
            address: tuple[str, int] = client.sentinel_get_master_addr_by_name(SERVICE)  # type: ignore[assignment]
        finally:
            client.close()
        return int(address[1])

    def wait_for_new_primary(self, old_port: int) -> None:
        """Return once every sentinel names a primary other than the one on `old_port`."""
        _wait_for(lambda: self.primary_port() != old_port, "a new primary", *self.processes)

    def process_on(self, port: int) -> RedisServer:
        return next(p for p in (self.primary, *self.replicas) if p.port == port)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """A Sentinel deployment for the whole test session; no test may kill its primary."""
    starting("redis_sentinel", "redis-url")
    deployment = SentinelDeployment(tmp_path_factory.mktemp("sentinel"))
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def dedicated_sentinel(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., SentinelDeployment]]:
    """Start deployments of a test's own (to kill a primary in); each is stopped afterwards.

    Keyword arguments `password`, `sentinel_password` and `replicas` as for
    `SentinelDeployment`.
    """
    started: list[SentinelDeployment] = []

    def start(**options: Any) -> SentinelDeployment:
        directory = tmp_path_factory.mktemp("sentinel-dedicated")
        starting("redis_sentinel", "redis-url")
        deployment = SentinelDeployment(directory, **options)
        started.append(deployment)
        deployment.start()
        return deployment

    try:
        yield start
    finally:
        for deployment in started:
            deployment.stop()


@pytest.fixture
def redis_sentinel_primary(redis_sentinel: SentinelDeployment) -> Iterator[redis.Redis]:
    """A raw client of the shared deployment's primary, its database emptied."""
    client = redis_sentinel.process_on(redis_sentinel.primary_port()).client()
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_sentinel_factory(
    redis_sentinel: SentinelDeployment, redis_sentinel_primary: redis.Redis
) -> StoreFactory:
    """Stores through the sentinels, over the emptied database."""
    return url_factory(redis_sentinel.url())


@pytest.fixture
def redis_sentinel_foreign(redis_sentinel_primary: redis.Redis) -> RedisForeignData:
    """Foreign keys next to the `redis_sentinel_factory` stores' keys, for the contract kit."""
    return RedisForeignData(redis_sentinel_primary)
