"""A real redis-server for the tests, loaded as a pytest plugin by conftest.py.

One server per test session, on 127.0.0.1 and a free port, without persistence, in its own
temporary directory. Each test that asks for `redis_factory` (or `redis_client`) starts from an
empty database. A missing redis-server fails the run: it must not silently skip the Redis tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._core.expiry import Clock
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import StoreFactory

from .servers import ServerProcess, executable, free_port, given_url, starting

__all__ = ("FOREIGN_KEYS", "RedisForeignData", "RedisServer", "free_port", "url_factory")

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


class RedisServer(ServerProcess):
    """A redis-server process (a data server or, with `sentinel`, a sentinel) from a config
    file of its own, re-read at each start: `config()` may name another process's port.

    `extra_args` go on the command line; with `password`, clients authenticate. With
    `given_url`, it is a server someone else runs (``--redis-url``).
    """

    def __init__(
        self,
        directory: Path,
        extra_args: Sequence[str] = (),
        *,
        config: Callable[[], str] = str,
        sentinel: bool = False,
        password: str | None = None,
        given_url: str | None = None,
    ) -> None:
        given_port = None if given_url is None else urlsplit(given_url).port or 6379
        super().__init__("redis", directory, self._command, self._answers, given_port=given_port)
        self.password = password
        self.extra_args = tuple(extra_args)
        self._config = config
        self._sentinel = sentinel
        self._given_url = given_url
        self._executable = "" if given_url else executable("redis-server", "redis-server")

    @property
    def url(self) -> str:
        """The URL of database 0 (or the URL given with ``--redis-url``)."""
        return self._given_url or f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A new synchronous client of the server's database, with short timeouts."""
        return redis.Redis.from_url(
            self.url,
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def _command(self, port: int) -> list[str]:
        persistence = "" if self._sentinel else 'save ""\nappendonly no\n'
        conf = self.directory / "redis.conf"
        conf.write_text(
            f'bind 127.0.0.1\nport {port}\ndir {self.directory}\nlogfile ""\n'
            + persistence
            + self._config()
        )
        mode = ["--sentinel"] if self._sentinel else []
        return [self._executable, str(conf), *mode, *self.extra_args]

    def _answers(self, port: int, pid: int) -> bool:
        probe = redis.Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
        try:
            return int(probe.info("server")["process_id"]) == pid
        except redis.RedisError:
            return False
        finally:
            probe.close()


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
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A running redis-server for the whole test session (the ``--redis-url`` one if given)."""
    url = given_url(request.config, "redis-url")
    if url is not None:
        yield RedisServer(Path(), given_url=url)
        return
    starting("redis", "redis-url")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dedicated_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Start servers of a test's own (with extra arguments); each is stopped afterwards."""
    started: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        starting("redis", "redis-url")
        server = RedisServer(tmp_path_factory.mktemp("redis-dedicated"), extra_args)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
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


def url_factory(url: str) -> StoreFactory:
    """``(config, clock) -> store`` on `url`, for the contract kit (which closes the stores)."""

    def make(config: SessionStoreConfig, clock: Clock) -> RedisSessionStore:
        return RedisSessionStore.from_url(url, config, clock=clock)

    return make


@pytest.fixture
def redis_factory(redis_client: redis.Redis, redis_url: str) -> StoreFactory:
    """Stores over the emptied database."""
    return url_factory(redis_url)


@pytest.fixture
def redis_foreign(redis_client: redis.Redis) -> RedisForeignData:
    """Foreign keys next to the `redis_factory` stores' keys, for the contract kit."""
    return RedisForeignData(redis_client)
