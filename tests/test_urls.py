"""open_store: every URL form, its options, and clear errors for the rest."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from walletmesh_sessions import (
    ClosableSessionStore,
    InvalidConfigError,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    open_store,
)
from walletmesh_sessions.redis import RedisSessionStore

pytestmark = pytest.mark.anyio


class TestSchemes:
    """Each scheme opens the store it names."""

    async def test_memory(self) -> None:
        """memory:// is a MemorySessionStore."""
        async with open_store("memory://") as store:
            assert isinstance(store, MemorySessionStore)
            assert isinstance(store, ClosableSessionStore)

    async def test_sqlite_relative_and_absolute(self, tmp_path: Path) -> None:
        """Three slashes: relative to the working directory; four: absolute."""
        relative = open_store("sqlite:///sessions.db")
        assert isinstance(relative, LocalStorageSessionStore)
        assert "'sessions.db'" in repr(relative)
        path = tmp_path / "abs.db"
        async with open_store(f"sqlite:///{path}") as store:
            await store.set("a", SessionData("a", "https://a.example"))
        assert path.exists()

    async def test_sqlite_percent_encoding(self, tmp_path: Path) -> None:
        """Percent-encoded characters in the path are decoded."""
        async with open_store(f"sqlite:///{tmp_path}/with%20space.db") as store:
            await store.set("a", SessionData("a", "https://a.example"))
        assert (tmp_path / "with space.db").exists()

    async def test_sqlite_durability_and_timeout(self, tmp_path: Path) -> None:
        """durability and timeout, from the query or as keyword options."""
        store = open_store(f"sqlite:///{tmp_path}/a.db?durability=power&timeout=2.5")
        assert isinstance(store, LocalStorageSessionStore)
        assert (store.durability, store.timeout) == ("power", 2.5)
        store = open_store(f"sqlite:///{tmp_path}/a.db", durability="power", timeout=1)
        assert isinstance(store, LocalStorageSessionStore)
        assert (store.durability, store.timeout) == ("power", 1)
        store = open_store(f"sqlite:///{tmp_path}/a.db")
        assert isinstance(store, LocalStorageSessionStore)
        assert (store.durability, store.timeout) == ("process", 30.0)

    @pytest.mark.parametrize(
        ("url", "options", "message"),
        [
            ("a.db?durability=disk", {}, "durability must be"),
            ("a.db?timeout=soon", {}, "timeout in"),
            ("a.db?timeout=1&timeout=2", {}, "timeout given twice"),
            ("a.db?durability=power", {"durability": "power"}, "not both"),
            ("a.db?journal=wal", {}, "unknown option(s) journal"),
            ("a.db", {"timeout": "5"}, "timeout must be a positive, finite number"),
        ],
    )
    def test_sqlite_bad_options(
        self, tmp_path: Path, url: str, options: dict[str, Any], message: str
    ) -> None:
        """Bad SQLite options are refused when the store is made."""
        with pytest.raises(InvalidConfigError) as exc:
            open_store(f"sqlite:///{tmp_path}/{url}", **options)
        assert message in str(exc.value)

    @pytest.mark.parametrize(
        "url", ["redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock?db=2"]
    )
    def test_redis_schemes(self, url: str) -> None:
        """redis://, rediss:// and unix:// are Redis stores (nothing connects yet)."""
        assert isinstance(open_store(url), RedisSessionStore)

    async def test_redis_works(self, redis_url: str, redis_client: object) -> None:
        """A Redis URL with store parameters gives a working store."""
        async with open_store(f"{redis_url}?prefix=u_&lifetime=60") as store:
            await store.set("a", SessionData("a", "https://a.example"))
            assert await store.get("a") == SessionData("a", "https://a.example")
            assert isinstance(store, RedisSessionStore)
            assert store.prefix == "u_"


class TestParameters:
    """prefix, lifetime and refresh_on_access in the query."""

    def test_store_parameters(self) -> None:
        """Query parameters build the config and the prefix."""
        store = open_store("sqlite:///s.db?prefix=app_&lifetime=90&refresh_on_access=yes")
        assert isinstance(store, LocalStorageSessionStore)
        assert store.prefix == "app_"
        assert store.config == SessionStoreConfig(
            lifetime=timedelta(seconds=90), refresh_on_access=True
        )

    def test_config_argument(self) -> None:
        """Without query parameters, the config argument is used."""
        config = SessionStoreConfig(lifetime=5)
        store = open_store("memory://", config)
        assert isinstance(store, MemorySessionStore)
        assert store.config is config

    @pytest.mark.parametrize(
        ("url", "kwargs", "message"),
        [
            ("ftp://x", {}, "unknown store URL scheme"),
            ("sessions.db", {}, "unknown store URL scheme"),
            ("sqlite://host/x.db", {}, "sqlite:///relative.db"),
            ("sqlite:///", {}, "sqlite:///relative.db"),
            ("memory://?lifetime=abc", {}, "must be seconds"),
            ("memory://?lifetime=0", {}, "lifetime must be > 0"),
            ("memory://?refresh_on_access=maybe", {}, "true or false"),
            ("memory://?colour=red", {}, "unknown option(s) colour"),
            ("redis://h:6379/0?colour=red", {}, "unknown parameter 'colour'"),
            ("rediss://h:6379/0?db=1&colour=red", {}, "unknown parameter 'colour'"),
            ("unix:///run/redis.sock?ssl_ca_certs=x", {}, "unknown parameter 'ssl_ca_certs'"),
            ("memory://", {"timeout": 5}, "unknown option(s) timeout"),
            ("memory://?lifetime=5", {"config": SessionStoreConfig()}, "not both"),
            ("sqlite:///s.db?prefix=a_", {"prefix": "b_"}, "not both"),
            ("sqlite:///s.db?prefix=", {}, "prefix must be a non-empty str"),
        ],
    )
    def test_mistakes(self, url: str, kwargs: dict[str, object], message: str) -> None:
        """Every mistake is an InvalidConfigError that says what is wrong."""
        with pytest.raises(InvalidConfigError) as info:
            open_store(url, **kwargs)  # type: ignore[arg-type]
        assert message in str(info.value)

    def test_password_masked(self) -> None:
        """A password in the URL never appears in an error message."""
        with pytest.raises(InvalidConfigError) as info:
            open_store("redis://user:hunter2@h:6379/0?lifetime=soon")
        assert "hunter2" not in str(info.value)
        assert "user:***@h" in str(info.value)


def test_missing_redis_extra_names_the_install() -> None:
    """Without redis installed, a Redis URL says which pip install fixes it."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from walletmesh_sessions import MissingDependencyError, open_store\n"
        "try:\n"
        "    open_store('redis://localhost:6379/0')\n"
        "except MissingDependencyError as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'walletmesh-sessions[redis]'" in result.stdout


class TestBadRedisUrls:
    """Every bad Redis URL is an InvalidConfigError when the store is made, with no secret in it."""

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("redis://user:Zq9x#t/?@pw@127.0.0.1:6399/0", "not a Redis URL"),
            ("redis://:Zq9x#t/?@pw@127.0.0.1:6399/0", "not a Redis URL"),
            ("redis://:Zq9x@[::1/0", "not a store URL"),
            ("rediss://:Zq9x@127.0.0.1:1/0?ssl_cert_reqs=bogus", "bad value"),
            ("redis://:Zq9x@127.0.0.1:1/0?protocol=7", "bad value"),
            ("redis://:Zq9x@127.0.0.1:1/abc", "must be a number"),
            ("redis://:Zq9x@127.0.0.1:1/3x", "must be a number"),
            ("redis://:Zq9x@127.0.0.1:1/0?socket_keepalive=maybe", "true or false"),
        ],
    )
    def test_refused_without_the_password(self, url: str, message: str) -> None:
        """No piece of the password in the message or in any chained cause."""
        with pytest.raises(InvalidConfigError) as info:
            open_store(url)
        assert message in str(info.value)
        error: BaseException | None = info.value
        while error is not None:
            assert "Zq9x" not in str(error), str(error)
            error = error.__cause__ or error.__context__
