"""A real redis-server for the tests, loaded as a pytest plugin by conftest.py.

One server per test session, on 127.0.0.1 and a free port, without persistence, in its own
temporary directory. Each test that asks for `redis_factory` (or `redis_client`) starts from an
empty database. A missing redis-server fails the run: it must not silently skip the Redis tests.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._core.expiry import Clock
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import StoreFactory

__all__ = ("FOREIGN_KEYS", "RedisForeignData", "RedisServer", "free_port")

START_TIMEOUT = 10.0

# Keys near the factory's prefix ("wm_session_") that do not start with it, some of which
# an unescaped glob or a case-insensitive match would take for the store's.
FOREIGN_KEYS = {
    b"wm_session": b"one character short",
    b"wm_session*": b"glob star",
    b"wm_session?x": b"glob question mark",
    b"WM_SESSION_x": b"other case",
    b"xwm_session_a": b"prefix inside",
    b"other_wm_session_s": b'{"data":{"id":"s","origin":"o","permissions":{}}}',
}


def _ephemeral_ports() -> range:
    """The ports the system hands out to outgoing connections (Linux; a common default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(int(low), int(high) + 1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, outside the ephemeral range.

    A server stopped and started again on its port (a restart, a killed cluster node) must
    find it free: an ephemeral port may meanwhile be the local end of any client connection.
    """
    ephemeral = _ephemeral_ports()
    candidates = [p for p in range(10_000, 30_000) if p not in ephemeral] or [0]
    for port in random.sample(candidates, min(len(candidates), 200)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = sock.getsockname()[1]
            return found
    with socket.socket() as sock:  # everything taken: any port the system gives
        sock.bind(("127.0.0.1", 0))
        port_: int = sock.getsockname()[1]
        return port_


class RedisServer:
    """A redis-server process that can be stopped and started again on the same port."""

    def __init__(
        self, executable: str, directory: Path, port: int, extra_args: Sequence[str] = ()
    ) -> None:
        self.executable = executable
        self.directory = directory
        self.port = port
        self.extra_args = tuple(extra_args)
        self.log = directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """A new synchronous client of database 0, with short timeouts."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5
        )

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        command = [
            self.executable,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        probe = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            while True:
                if self._process.poll() is not None:
                    pytest.fail(f"redis-server exited at start:\n{self._output()}")
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server did not answer PING:\n{self._output()}")
                time.sleep(0.02)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until it has exited."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def kill(self) -> None:
        """Kill the server outright (SIGKILL), as a crash would, and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are still accepted, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port: every key and loaded script is gone."""
        self.stop()
        self.start()

    def _output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class RedisForeignData:
    """Keys of other programs in the store's database (a `ForeignData` for the contract kit)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def plant(self) -> None:
        self._client.mset(FOREIGN_KEYS)
        self._client.hset("wm_sessions_hash", mapping={"f": "v"})

    async def intact(self) -> bool:
        values = self._client.mget(list(FOREIGN_KEYS))
        hash_ok = self._client.hgetall("wm_sessions_hash") == {b"f": b"v"}
        return values == list(FOREIGN_KEYS.values()) and hash_ok


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running redis-server for the whole test session."""
    server = RedisServer(_executable(), tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not installed (it is on PATH in CI); install it, for example "
            "with `apt-get install redis-server`, to run the Redis tests"
        )
    return executable


@pytest.fixture
def dedicated_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Start servers of a test's own (with extra arguments); each is stopped afterwards."""
    started: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        directory = tmp_path_factory.mktemp("redis-dedicated")
        server = RedisServer(_executable(), directory, free_port(), extra_args)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.running:
                server.resume()  # a stopped process ignores SIGTERM until it runs again
            server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the test server's database 0."""
    return redis_server.url


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A raw synchronous client on a freshly emptied database, for planting and inspecting."""
    if not redis_server.running:
        redis_server.start()
    client = redis_server.client()
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_factory(redis_client: redis.Redis, redis_url: str) -> StoreFactory:
    """``(config, clock) -> store`` over the emptied database; the contract kit closes them."""

    def make(config: SessionStoreConfig, clock: Clock) -> RedisSessionStore:
        return RedisSessionStore.from_url(redis_url, config, clock=clock)

    return make


@pytest.fixture
def redis_foreign(redis_client: redis.Redis) -> RedisForeignData:
    """Foreign keys next to the `redis_factory` stores' keys, for the contract kit."""
    return RedisForeignData(redis_client)
