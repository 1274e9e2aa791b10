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
    FullSessionStore,
    InvalidConfigError,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionData,
    SessionStoreConfig,
    open_store,
)
from walletmesh_sessions.postgres import PostgresSessionStore
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock

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
            ("memory://x", {}, "a memory store has no host or path"),
            ("memory:///sessions", {}, "a memory store has no host or path"),
            ("sqlite:///%00x.db", {}, "must not hold a NUL"),
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


def with_query(url: str, query: str) -> str:
    """`url` with `query` appended to whatever query it has."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


WHOLE = "lifetime=900&refresh_on_access=true&max_lifetime=3600"
WHOLE_CONFIG = SessionStoreConfig(lifetime=900, refresh_on_access=True, max_lifetime=3600)
# One URL of every scheme; nothing connects, so no server is needed.
EVERY_SCHEME = [
    ("memory://", MemorySessionStore),
    ("sqlite:///sessions.db", LocalStorageSessionStore),
    ("redis://127.0.0.1:1/0", RedisSessionStore),
    ("rediss://h:6380/1", RedisSessionStore),
    ("unix:///run/redis.sock?db=2", RedisSessionStore),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", RedisSessionStore),
    ("rediss+cluster://127.0.0.1:7000", RedisSessionStore),
    ("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/sessions/0", RedisSessionStore),
    ("postgresql://app@127.0.0.1:1/app?table=sessions", PostgresSessionStore),
    ("postgres://app@127.0.0.1:1/app", PostgresSessionStore),
]


class TestWholeConfiguration:
    """lifetime, refresh_on_access and max_lifetime: one URL carries a whole configuration."""

    @pytest.mark.parametrize(("url", "kind"), EVERY_SCHEME)
    def test_every_scheme_gets_the_config(self, url: str, kind: type[object]) -> None:
        """Each scheme's store has the URL's config and is a FullSessionStore."""
        store = open_store(with_query(url, WHOLE))
        assert type(store) is kind
        assert isinstance(store, FullSessionStore)
        assert store.config == WHOLE_CONFIG

    @pytest.mark.parametrize(("url", "kind"), EVERY_SCHEME)
    def test_config_argument_for_every_scheme(self, url: str, kind: type[object]) -> None:
        """Without the parameters, each scheme's store has the config argument."""
        assert open_store(url, WHOLE_CONFIG).config is WHOLE_CONFIG

    @pytest.mark.parametrize("value", ["", "none", "None"])
    def test_none(self, value: str) -> None:
        """An empty max_lifetime or lifetime, or none, means no such limit."""
        store = open_store(f"memory://?lifetime=60&max_lifetime={value}")
        assert store.config == SessionStoreConfig(lifetime=60)
        store = open_store(f"memory://?lifetime={value}&max_lifetime=60")
        assert store.config == SessionStoreConfig(max_lifetime=60)

    def test_fractional_seconds(self) -> None:
        """Seconds may be fractional, as for lifetime."""
        store = open_store("sqlite:///s.db?max_lifetime=1.5")
        assert store.config.max_lifetime == timedelta(seconds=1.5)

    @pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
    def live_url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        """A store URL of each family, on a real server where it needs one."""
        if request.param == "memory":
            return "memory://"
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / 'sessions.db'}"
        if request.param == "redis":
            request.getfixturevalue("redis_client")  # an emptied database
            return str(request.getfixturevalue("redis_url"))
        table = request.getfixturevalue("postgres_table")
        return f"{request.getfixturevalue('postgres_url')}?table={table}"

    async def test_max_lifetime_caps_refreshes(self, live_url: str, clock: FakeClock) -> None:
        """Refreshes slide the expiry, but never past created_at + max_lifetime."""
        url = with_query(live_url, "lifetime=60&refresh_on_access=true&max_lifetime=100")
        async with open_store(url, clock=clock) as store:
            assert store.config.max_lifetime == timedelta(seconds=100)
            await store.set("a", SessionData("a", "https://a.example"))
            clock.advance(seconds=50)
            assert await store.get("a") is not None  # slid to 110, capped at 100
            clock.advance(seconds=50)
            assert await store.get("a") is not None  # exactly at the cap: still valid
            clock.advance(ms=1)
            assert await store.get("a") is None

    @pytest.mark.parametrize(
        ("url", "kwargs", "message"),
        [
            ("memory://?max_lifetime=soon", {}, "max_lifetime in 'memory://?max_lifetime=soon'"),
            ("memory://?max_lifetime=soon", {}, "must be seconds or none, got 'soon'"),
            ("memory://?max_lifetime=0", {}, "max_lifetime must be > 0"),
            ("memory://?max_lifetime=-60", {}, "max_lifetime must be > 0"),
            ("memory://?max_lifetime=nan", {}, "max_lifetime must be finite"),
            ("memory://?max_lifetime=0.0001", {}, "at least 1 millisecond"),
            ("memory://?max_lifetime=0", {}, "(in 'memory://?max_lifetime=0')"),
            ("redis://h:6379/0?max_lifetime=x", {}, "max_lifetime in 'redis://h:6379/0?"),
            ("postgresql://h/db?max_lifetime=x", {}, "max_lifetime in 'postgresql://h/db?"),
            ("memory://?max_lifetime=60", {"config": SessionStoreConfig()}, "not both"),
            ("memory://?max_lifetime=", {"config": SessionStoreConfig()}, "not both"),
            ("sqlite:///s.db?max_lifetime=6", {"config": SessionStoreConfig()}, "max_lifetime"),
            ("redis://h:6379/0?max_lifetime=6", {"config": SessionStoreConfig()}, "not both"),
            ("postgres://h/db?max_lifetime=6", {"config": SessionStoreConfig()}, "not both"),
        ],
    )
    def test_mistakes(self, url: str, kwargs: dict[str, object], message: str) -> None:
        """A bad max_lifetime is an InvalidConfigError that names the URL."""
        with pytest.raises(InvalidConfigError) as info:
            open_store(url, **kwargs)  # type: ignore[arg-type]
        assert message in str(info.value)

    @pytest.mark.parametrize(
        "url",
        [
            "memory://?lifetime=1&lifetime=2",
            "memory://?lifetime=5&lifetime=5",
            "sqlite:///s.db?refresh_on_access=true&refresh_on_access=false",
            "redis://h:6379/0?max_lifetime=1&max_lifetime=2",
            "redis+cluster://h:7000?max_lifetime=1&max_lifetime=",
            "redis+sentinel://h:26379/svc/0?lifetime=1&db=0&lifetime=2",
            "postgresql://h/db?max_lifetime=1&table=t&max_lifetime=2",
            "sqlite:///s.db?prefix=a_&prefix=b_",
            "redis://h:6379/0?prefix=a_&prefix=a_",
        ],
    )
    def test_repeated_parameter(self, url: str) -> None:
        """A store parameter given twice is refused, even with the same value."""
        with pytest.raises(InvalidConfigError, match="given twice in"):
            open_store(url)

    @pytest.mark.parametrize(
        ("url", "kwargs"),
        [
            ("redis://user:hunter2@h:6379/0?max_lifetime=soon", {}),
            ("redis://user:hunter2@h:6379/0?max_lifetime=0", {}),
            ("redis://user:hunter2@h:6379/0?max_lifetime=1&max_lifetime=2", {}),
            ("redis://user:hunter2@h:6379/0?max_lifetime=6", {"config": SessionStoreConfig()}),
            ("rediss+cluster://user:hunter2@h:7000?max_lifetime=nan", {}),
            ("redis+sentinel://user:hunter2@h:26379/svc/0?max_lifetime=-1", {}),
            ("postgresql://user:hunter2@h/db?max_lifetime=soon", {}),
            ("postgresql://user:hunter2@h/db?max_lifetime=60&max_lifetime=60", {}),
            ("sqlite:///s.db?password=hunter2&max_lifetime=0", {}),
        ],
    )
    def test_password_masked(self, url: str, kwargs: dict[str, object]) -> None:
        """No refusal shows the password, in its message or any chained exception."""
        with pytest.raises(InvalidConfigError) as info:
            open_store(url, **kwargs)  # type: ignore[arg-type]
        assert "***" in str(info.value)
        error: BaseException | None = info.value
        while error is not None:
            assert "hunter2" not in str(error), str(error)
            error = error.__cause__ or error.__context__


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


class TestRepeatedStoreParameters:
    """A PostgreSQL or Redis URL parameter given twice is refused, not decided by the last."""

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://h/db?table=a&table=b",
            "postgresql://h/db?table=a&table=a",
            "postgresql://h/db?timeout=1&max_connections=2&timeout=3",
            "postgresql://h/db?max_connections=1&max_connections=2",
            "postgresql://h/db?sslmode=disable&sslmode=require",
            "redis://h:6379/0?timeout=1&timeout=2",
            "redis://h:6379/0?retries=1&retries=1",
            "redis://h:6379/0?db=1&db=2",
            "rediss://h:6379/0?ssl_cert_reqs=none&ssl_cert_reqs=required",
            "redis+cluster://h:7000,h:7001?max_connections=1&max_connections=2",
            "redis+sentinel://h:26379/svc/0?timeout=1&timeout=2",
            "redis+sentinel://h:26379/svc/0?sentinel_password=s3cret&sentinel_password=other",
            "redis+sentinel://h:26379/svc?sentinel_username=u&db=1&sentinel_username=u",
        ],
    )
    def test_refused(self, url: str) -> None:
        """open_store and from_url both refuse it, naming the parameter."""
        name = url.rpartition("&")[2].partition("=")[0]
        with pytest.raises(InvalidConfigError, match=f"{name} given twice in"):
            open_store(url)
        store_class = PostgresSessionStore if url.startswith("postgresql") else RedisSessionStore
        with pytest.raises(InvalidConfigError, match=f"{name} given twice in"):
            store_class.from_url(url)

    def test_password_masked(self) -> None:
        """The refusal shows the URL with its password masked."""
        url = "postgresql://user:hunter2@h/db?table=a&table=b"
        with pytest.raises(InvalidConfigError) as info:
            PostgresSessionStore.from_url(url)
        assert "***" in str(info.value)
        assert "hunter2" not in str(info.value)
