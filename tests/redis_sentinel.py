"""Redis Sentinel deployments for the tests, loaded as a pytest plugin by conftest.py.

A deployment is one primary, one replica (or more) and three sentinels, each a redis-server
process on 127.0.0.1 and a free port, in a temporary directory of its own. Sentinels notice a dead
primary after 1 s and promote the replica. One deployment serves the whole test session (the
conformance kit runs on it); tests that kill a primary start a dedicated one. A missing
redis-server fails the run: it must not silently skip the Sentinel tests.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._core.expiry import Clock
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import StoreFactory

from .redis_server import RedisForeignData, free_port

__all__ = ("SERVICE", "SentinelDeployment")

SERVICE = "sessions"
READY_TIMEOUT = 30.0
# Sentinel's timings: how long a primary may be silent, and how long a failover may take.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class _Process:
    """One redis-server process (a data server or a sentinel), from a config file of its own."""

    def __init__(
        self,
        executable: str,
        directory: Path,
        config: Callable[[], str],
        *,
        sentinel: bool,
        password: str | None = None,
    ) -> None:
        self.port = free_port()
        self.password = password
        self.directory = directory
        self.log = directory / "redis.log"
        self._config = config  # read at start: it may name another process's port
        self._conf = directory / "redis.conf"
        self._command = [executable, str(self._conf), *(["--sentinel"] if sentinel else [])]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, timeout: float = 5.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def start(self) -> None:
        """Start and wait until this very process answers (not another on a reused port).

        Other programs on this host take free ports too: if the port was taken meanwhile,
        start again on another.
        """
        for _attempt in range(3):
            self._conf.write_text(
                f'bind 127.0.0.1\nport {self.port}\ndir {self.directory}\nlogfile ""\n'
                + self._config()
            )
            with self.log.open("ab") as log:
                self._process = subprocess.Popen(
                    self._command, stdout=log, stderr=subprocess.STDOUT
                )
            probe = self.client(0.5)
            try:
                _wait_for(partial(self._answers, probe), f"port {self.port} to answer", self)
            finally:
                probe.close()
            if self.running:
                return
            self.port = free_port()
        pytest.fail(f"redis-server could not start on a free port:\n{self.output()}")

    def _answers(self, probe: redis.Redis) -> bool:
        """True once this process answers; also True if it exited for a taken port."""
        assert self._process is not None
        if self._process.poll() is not None:
            if "Address already in use" in self.output():
                return True
            pytest.fail(f"redis-server exited at start:\n{self.output()}")
        try:
            return int(probe.info("server")["process_id"]) == self._process.pid
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the process dies at once, its connections reset by the kernel."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _wait_for(ready: Callable[[], bool], what: str, *processes: _Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- port {p.port}:\n{p.output()}" for p in processes)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.02)


class SentinelDeployment:
    """A primary, `replicas` replicas and three sentinels monitoring them as `SERVICE`.

    With `password`, the primary and the replicas require it; with `sentinel_password`, the
    sentinels require that one.
    """

    def __init__(
        self,
        executable: str,
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

        data = (
            'save ""\nappendonly no\nreplica-announce-ip 127.0.0.1\n'
            "repl-diskless-sync-delay 0\n"  # a replica syncs at once, not after 5 s
        )
        if password is not None:
            data += f"requirepass {password}\nmasterauth {password}\n"
        self.primary = _Process(
            executable, directory_for("primary"), lambda: data, sentinel=False, password=password
        )
        self.replicas = [
            _Process(
                executable,
                directory_for(f"replica{n}"),
                lambda: f"{data}replicaof 127.0.0.1 {self.primary.port}\n",
                sentinel=False,
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
        self.sentinels = [
            _Process(
                executable,
                directory_for(f"sentinel{n}"),
                lambda: f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n{after}",
                sentinel=True,
                password=sentinel_password,
            )
            for n in range(3)
        ]

    @property
    def processes(self) -> list[_Process]:
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

    def wait_in_sync(self, replica: _Process) -> None:
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

    def process_on(self, port: int) -> _Process:
        return next(p for p in (self.primary, *self.replicas) if p.port == port)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def _executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not installed (it is on PATH in CI); install it, for example "
            "with `apt-get install redis-server`, to run the Redis Sentinel tests"
        )
    return executable


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """A Sentinel deployment for the whole test session; no test may kill its primary."""
    deployment = SentinelDeployment(_executable(), tmp_path_factory.mktemp("sentinel"))
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
        deployment = SentinelDeployment(_executable(), directory, **options)
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
    """``(config, clock) -> store`` through the sentinels, over the emptied database."""
    url = redis_sentinel.url()

    def make(config: SessionStoreConfig, clock: Clock) -> RedisSessionStore:
        return RedisSessionStore.from_url(url, config, clock=clock)

    return make


@pytest.fixture
def redis_sentinel_foreign(redis_sentinel_primary: redis.Redis) -> RedisForeignData:
    """Foreign keys next to the `redis_sentinel_factory` stores' keys, for the contract kit."""
    return RedisForeignData(redis_sentinel_primary)
