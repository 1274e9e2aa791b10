"""RedisSessionStore on Redis Sentinel: URLs, clients, and failovers under a steady load."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from walletmesh_sessions import (
    InvalidConfigError,
    NotReplicatedError,
    SessionData,
    SessionStoreConfig,
    StoreUnavailableError,
    open_store,
)
from walletmesh_sessions._redis.sentinel import PRIMARY_RECHECK
from walletmesh_sessions.redis import RedisSessionStore

from .redis_sentinel import SERVICE, SentinelDeployment

DATA = SessionData("s1", "https://app.example.com", {"eip155:1": ["eth_accounts"]})
TASKS = 50
SECRET = "Zq9xSecretPw"
SENTINEL_SECRET = "Kv7wSentinelPw"

# redis-py leaves these untyped.
AsyncSentinel: Callable[..., Any] = redis.asyncio.sentinel.Sentinel
SyncSentinel: Callable[..., Any] = redis.sentinel.Sentinel


class TestUrl:
    """The redis+sentinel:// URL: its forms, and clear refusals before anything connects."""

    @pytest.mark.parametrize(
        ("url", "sentinels", "service"),
        [
            ("redis+sentinel://h/svc", [("h", 26379)], "svc"),
            ("REDIS+SENTINEL://h1:1,h2:2/svc/3", [("h1", 1), ("h2", 2)], "svc"),
            ("redis+sentinel://[::1]:5,[::2]/a%2Fb", [("::1", 5), ("::2", 26379)], "a/b"),
            (
                "redis+sentinel://user:pw@h:7/svc/0?timeout=2&retries=0&max_connections=5"
                "&socket_keepalive=true&client_name=c&sentinel_username=u&sentinel_password=p",
                [("h", 7)],
                "svc",
            ),
        ],
    )
    def test_forms(self, url: str, sentinels: list[tuple[str, int]], service: str) -> None:
        """Sentinel addresses (26379 by default), the service, database and query are read."""
        store = RedisSessionStore.from_url(url)
        target = store._clients._target  # type: ignore[union-attr]
        assert (list(target.sentinels), target.service) == (sentinels, service)

    @pytest.mark.parametrize(
        ("url", "match"),
        [
            ("redis+sentinel://h:26379", "service_name"),
            ("redis+sentinel://h:26379/", "service_name"),
            ("redis+sentinel://h/svc/0/more", "service_name"),
            ("redis+sentinel://h/svc/x", "must be a number"),
            ("redis+sentinel:///svc", "at least one sentinel"),
            ("redis+sentinel://h:port/svc", "host:port"),
            ("redis+sentinel://h:1,/svc", "host:port"),
            ("redis+sentinel://h:0/svc", "1 to 65535"),
            ("redis+sentinel://h/svc?bogus=1", "'bogus'"),
            ("redis+sentinel://h/svc?ssl_ca_certs=/ca.pem", "'ssl_ca_certs'"),
            ("redis+sentinel://h/svc?timeout=soon", "'timeout'"),
            ("redis+sentinel://h/svc?socket_keepalive=maybe", "'socket_keepalive'"),
            ("redis+sentinel://h/svc?retries=-1", "retries"),
            ("redis+sentinel://h/svc?protocol=9", "bad value"),
        ],
    )
    def test_refused(self, url: str, match: str) -> None:
        """Refused by from_url and by open_store with InvalidConfigError saying why."""
        with pytest.raises(InvalidConfigError, match=match):
            RedisSessionStore.from_url(url)
        with pytest.raises(InvalidConfigError, match=match):
            open_store(url)

    def test_unknown_client_option(self) -> None:
        """A keyword the connections do not take fails now, naming it."""
        with pytest.raises(InvalidConfigError, match="bogus_option"):
            RedisSessionStore.from_url("redis+sentinel://h/svc", bogus_option=1)

    @pytest.mark.parametrize(
        "url",
        [
            f"redis+sentinel://u:{SECRET}@h:1/svc/x",
            f"redis+sentinel://:{SECRET}@h:port/svc",
            f"redis+sentinel://u:{SECRET}@h/svc?bogus=1",
            f"redis+sentinel://u:{SECRET}@h/svc?protocol=9",
            f"redis+sentinel://u:{SECRET}@h/svc?socket_timeout=soon",
            f"redis+sentinel://u:{SECRET[:4]}/{SECRET[4:]}@h/svc",
            f"redis+sentinel://h/svc?sentinel_password={SECRET}&bogus=1",
            f"redis+sentinel://h/svc?password={SECRET}&protocol=9",
            f"redis+sentinel://h:0/svc?sentinel_password={SECRET}",
        ],
    )
    def test_secrets_masked(self, url: str) -> None:
        """No refusal shows a password, in its message or in any exception it chains."""
        for make in (RedisSessionStore.from_url, open_store):
            with pytest.raises(InvalidConfigError) as info:
                make(url)
            error: BaseException | None = info.value
            while error is not None:
                for piece in (SECRET, SECRET[:4], SECRET[4:]):
                    assert piece not in str(error), (url, str(error))
                    assert piece not in repr(error), (url, repr(error))
                error = error.__cause__ or error.__context__


def flushed_primary(deployment: SentinelDeployment) -> redis.Redis:
    """A raw client of the deployment's current primary."""
    return deployment.process_on(deployment.primary_port()).client()


class TestPrimary:
    """The store finds the primary through the sentinels and writes there."""

    @pytest.mark.anyio
    async def test_writes_to_the_primary(
        self, redis_sentinel: SentinelDeployment, redis_sentinel_primary: redis.Redis
    ) -> None:
        """Keys land in the primary's database named in the URL, and reach the replica."""
        url = redis_sentinel.url(database=2, query="timeout=2&lifetime=60")
        primary_port = redis_sentinel.primary_port()
        async with open_store(url) as store:
            await store.set("id", DATA)
            assert await store.get("id") == DATA
        replica = next(
            p for p in (redis_sentinel.primary, redis_sentinel.replica) if p.port != primary_port
        )
        with redis.Redis(port=primary_port, db=2) as primary:
            assert primary.pttl("wm_session_id") > 60_000
            assert primary.wait(1, 5000) == 1
            with redis.Redis(port=replica.port, db=2) as raw:
                assert raw.get("wm_session_id") == primary.get("wm_session_id")
            primary.delete("wm_session_id")

    @pytest.mark.anyio
    async def test_credentials(self, dedicated_sentinel: Callable[..., SentinelDeployment]) -> None:
        """User info goes to the primary, sentinel_password to the sentinels; none is shown."""
        deployment = dedicated_sentinel(password=SECRET, sentinel_password=SENTINEL_SECRET)
        hosts = deployment.url().split("//", 1)[1].split("/", 1)[0]
        good = f"redis+sentinel://:{SECRET}@{hosts}/{SERVICE}?sentinel_password={SENTINEL_SECRET}"
        async with RedisSessionStore.from_url(good, SessionStoreConfig(), timeout=2) as store:
            await store.set("id", DATA)
            assert await store.get("id") == DATA
        wrong = [
            f"redis+sentinel://:{SECRET}@{hosts}/{SERVICE}",
            f"redis+sentinel://:nope@{hosts}/{SERVICE}?sentinel_password={SENTINEL_SECRET}",
        ]
        for url in wrong:
            async with RedisSessionStore.from_url(url, timeout=2) as store:
                with pytest.raises(StoreUnavailableError) as info:
                    await store.get("id")
                for secret in (SECRET, SENTINEL_SECRET):
                    assert secret not in str(info.value)
                    assert secret not in repr(store)

    @pytest.mark.anyio
    async def test_caller_sync_client(
        self, redis_sentinel: SentinelDeployment, redis_sentinel_primary: redis.Redis
    ) -> None:
        """A synchronous master_for client works on both backends and stays open."""
        sentinel = SyncSentinel(redis_sentinel.sentinel_addresses, socket_timeout=2)
        client: redis.Redis = sentinel.master_for(SERVICE, socket_timeout=2)
        try:
            async with RedisSessionStore(client) as store:
                await store.set("id", DATA)
                assert await store.get("id") == DATA
            assert client.ping()
            assert redis_sentinel_primary.exists("wm_session_id") == 1
        finally:
            client.close()
            sentinel.close()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_caller_asyncio_client(
        self, redis_sentinel: SentinelDeployment, redis_sentinel_primary: redis.Redis
    ) -> None:
        """An asyncio master_for client works on asyncio and stays open."""
        sentinel = AsyncSentinel(redis_sentinel.sentinel_addresses, socket_timeout=2)
        client: redis.asyncio.Redis = sentinel.master_for(SERVICE, socket_timeout=2)
        try:
            async with RedisSessionStore(client) as store:
                await store.set("id", DATA)
                assert await store.get("id") == DATA
            assert await client.ping()
            assert redis_sentinel_primary.exists("wm_session_id") == 1
        finally:
            await client.aclose()
            await sentinel.aclose()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_caller_asyncio_client_refused_on_trio(
        self, redis_sentinel: SentinelDeployment
    ) -> None:
        """An asyncio master_for client on trio is a clear error."""
        sentinel = AsyncSentinel(redis_sentinel.sentinel_addresses)
        store = RedisSessionStore(sentinel.master_for(SERVICE))
        with pytest.raises(InvalidConfigError, match="trio"):
            await store.get("id")
        await store.aclose()


class TestCli:
    """The command line takes a Sentinel URL as its store."""

    def test_list(
        self,
        redis_sentinel: SentinelDeployment,
        redis_sentinel_primary: redis.Redis,
        tmp_path: Path,
    ) -> None:
        """`list --store redis+sentinel://...` shows the sessions on the primary."""
        url = redis_sentinel.url()

        async def write() -> None:
            async with open_store(url, SessionStoreConfig(lifetime=3600)) as store:
                await store.set("cli-session", DATA)

        anyio.run(write)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETMESH_SESSIONS_")}
        command = [sys.executable, "-m", "walletmesh_sessions", "list", "--store", url]
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "cli-session" in result.stdout


class TestWaitForReplicas:
    """wait_for_replicas: a call that returns has its writes on that many replicas."""

    @pytest.mark.parametrize(
        ("url", "options", "match"),
        [
            ("redis://h/0", {"wait_for_replicas": -1}, "wait_for_replicas"),
            ("redis://h/0", {"wait_for_replicas": "1"}, "wait_for_replicas"),
            ("redis://h/0", {"wait_for_replicas": 1, "replica_timeout": 0}, "replica_timeout"),
            (
                "redis://h/0",
                {"wait_for_replicas": 1, "replica_timeout": math.inf, "timeout": None},
                "replica_timeout",
            ),
            ("redis://h/0?wait_for_replicas=1", {"timeout": 0.5}, "shorter than timeout"),
            ("redis://h/0?wait_for_replicas=one", {}, "'wait_for_replicas'"),
            ("redis+sentinel://h/s?wait_for_replicas=1&timeout=1", {}, "shorter than timeout"),
            ("redis+sentinel://h/s?replica_timeout=soon", {}, "'replica_timeout'"),
        ],
    )
    def test_refused(self, url: str, options: dict[str, Any], match: str) -> None:
        """Bad settings are refused when the store is made."""
        with pytest.raises(InvalidConfigError, match=match):
            RedisSessionStore.from_url(url, **options)

    def test_refused_with_a_caller_client(self) -> None:
        """The constructor checks them too."""
        with pytest.raises(InvalidConfigError, match="wait_for_replicas"):
            RedisSessionStore(redis.Redis(), wait_for_replicas=True)

    @pytest.mark.anyio
    async def test_too_few_replicas(self, redis_url: str, redis_client: redis.Redis) -> None:
        """With no replica to confirm, a write raises NotReplicatedError, yet is done; reads
        that write nothing are not held up."""
        url = f"{redis_url}?wait_for_replicas=1&replica_timeout=0.05"
        async with RedisSessionStore.from_url(url, SessionStoreConfig()) as store:
            with pytest.raises(NotReplicatedError, match="0 of 1 replicas"):
                await store.set("id", DATA)
            assert redis_client.exists("wm_session_id") == 1
            assert await store.get("id") == DATA

    @pytest.mark.anyio
    async def test_on_the_replica_when_the_call_returns(
        self, redis_sentinel: SentinelDeployment, redis_sentinel_primary: redis.Redis
    ) -> None:
        """Once set returns, the replica holds the record (no waiting by the test)."""
        url = redis_sentinel.url(query="wait_for_replicas=1&replica_timeout=2")
        replica = next(
            p
            for p in (redis_sentinel.primary, redis_sentinel.replica)
            if p.port != redis_sentinel.primary_port()
        )
        async with RedisSessionStore.from_url(url, SessionStoreConfig()) as store:
            with replica.client() as raw:
                for n in range(20):
                    await store.set(f"id{n}", DATA)
                    assert raw.exists(f"wm_session_id{n}") == 1


@attrs.define
class Figures:
    """What a steady load saw of a failover."""

    calls: int = 0
    failed: int = 0
    slowest_call: float = 0.0
    slowest_failed_call: float = 0.0
    lateness: float = 0.0  # how late the event loop itself ran, at worst
    fault_at: float = 0.0
    last_failure_at: float = 0.0
    acked: list[str] = attrs.Factory(list)
    acked_before_fault: int = 0
    lost: list[str] = attrs.Factory(list)

    def report(self, title: str) -> str:
        outage = max(0.0, self.last_failure_at - self.fault_at)
        return (
            f"{title}: {self.calls} calls, {self.failed} failed; calls failed for {outage:.2f} s "
            f"after the fault; slowest call {self.slowest_call:.3f} s, slowest failed call "
            f"{self.slowest_failed_call:.3f} s, loop lateness {self.lateness:.3f} s; "
            f"{len(self.acked)} writes acknowledged ({self.acked_before_fault} before the "
            f"fault), {len(self.lost)} lost"
        )


async def steady_load(
    store: RedisSessionStore, deployment: SentinelDeployment, fault: Callable[[], None]
) -> Figures:
    """`TASKS` tasks set and get sessions in a loop; `fault` strikes once 500 writes are in.

    The load stops once every sentinel names another primary and then 1000 calls in a row
    have succeeded; the acknowledged writes missing on the new primary are then counted as
    lost. Only `StoreUnavailableError` and `NotReplicatedError` are caught (a write that
    raised is not counted as acknowledged): any other error fails the test.
    """
    old_port = deployment.primary_port()
    figures = Figures()
    clear_run = [0]
    warm, recovered = anyio.Event(), anyio.Event()
    switched = [False]  # set once the sentinels name the new primary

    async def timed(call: Any) -> bool:
        start = time.monotonic()
        try:
            await call
        except (StoreUnavailableError, NotReplicatedError):
            figures.failed += 1
            clear_run[0] = 0
            ok = False
        else:
            clear_run[0] += 1
            ok = True
        end = time.monotonic()
        figures.calls += 1
        figures.slowest_call = max(figures.slowest_call, end - start)
        if not ok:
            figures.slowest_failed_call = max(figures.slowest_failed_call, end - start)
            figures.last_failure_at = max(figures.last_failure_at, end)
        elif switched[0] and clear_run[0] >= 1000:
            recovered.set()
        return ok

    async def worker(n: int) -> None:
        i = 0
        while not recovered.is_set():
            key = f"t{n}-{i}"
            i += 1
            if await timed(store.set(key, SessionData(key, "https://app.example.com"))):
                figures.acked.append(key)
                if len(figures.acked) >= 500:
                    warm.set()
                await timed(store.get(key))

    async def heartbeat() -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(0.01)
            figures.lateness = max(figures.lateness, time.monotonic() - before - 0.01)

    # Workers stop between calls rather than being cancelled: redis-py may leave a socket
    # unclosed when an asyncio connection attempt is cancelled half-way.
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            async with anyio.create_task_group() as workers:
                for n in range(TASKS):
                    workers.start_soon(worker, n)
                await warm.wait()
                figures.acked_before_fault = len(figures.acked)
                figures.fault_at = time.monotonic()
                fault()
                await anyio.to_thread.run_sync(deployment.wait_for_new_primary, old_port)
                clear_run[0], switched[0] = 0, True
            tg.cancel_scope.cancel()
    keys = [f"wm_session_{key}" for key in figures.acked]
    with deployment.process_on(deployment.primary_port()).client() as primary:
        found = primary.mget(keys)
    figures.lost = [key for key, value in zip(keys, found, strict=True) if value is None]
    return figures


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test reports: printed at its end (shown with -s or -rA)."""
    lines: list[str] = []
    yield lines
    for line in lines:
        print(f"\n{request.node.name}: {line}")


class TestFailover:
    """The store follows the primary through a failover: prompt errors, then success again."""

    @pytest.mark.anyio
    # Each backend once, and each way of writing once: these are the slowest tests here.
    @pytest.mark.parametrize(
        ("anyio_backend", "wait"), [("asyncio", 0), ("trio", 1)], ids=["asyncio", "trio-wait-1"]
    )
    async def test_primary_killed_under_load(
        self, dedicated_sentinel: Callable[..., SentinelDeployment], report: list[str], wait: int
    ) -> None:
        """SIGKILL the primary under 50 busy tasks: every call ends within its bound, only
        with StoreUnavailableError (or NotReplicatedError), until the replica is promoted and
        calls succeed again. Waiting for a replica (of two), no acknowledged write is lost."""
        deployment = dedicated_sentinel(replicas=1 + wait)
        timeout, retries = 0.5, 1
        bound = (retries + 1) * timeout + retries * 0.1
        query = f"timeout={timeout}&retries={retries}&wait_for_replicas={wait}&replica_timeout=0.3"
        store = RedisSessionStore.from_url(deployment.url(query=query), SessionStoreConfig(3600))
        old_port = deployment.primary_port()
        async with store:
            figures = await steady_load(store, deployment, deployment.process_on(old_port).kill)
        report.append(figures.report(f"SIGKILL, wait_for_replicas={wait}"))
        assert deployment.primary_port() != old_port
        assert figures.failed > 0
        assert figures.slowest_call <= bound + figures.lateness, figures.report("SIGKILL")
        if wait:
            assert figures.lost == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_manual_failover_with_a_caller_client(
        self, dedicated_sentinel: Callable[..., SentinelDeployment], report: list[str]
    ) -> None:
        """SENTINEL FAILOVER under load, through a caller's master_for client: the demoted
        primary's connections are dropped or answer READONLY, and the store moves on."""
        deployment = dedicated_sentinel()
        sentinel = SyncSentinel(deployment.sentinel_addresses, socket_timeout=1)
        client: redis.Redis = sentinel.master_for(
            SERVICE, socket_timeout=1, socket_connect_timeout=1
        )
        old_port = deployment.primary_port()

        def fail_over() -> None:
            with deployment.sentinels[0].client() as raw:
                raw.execute_command("SENTINEL", "FAILOVER", SERVICE)

        try:
            async with RedisSessionStore(client, SessionStoreConfig(lifetime=3600)) as store:
                figures = await steady_load(store, deployment, fail_over)
        finally:
            client.close()
            sentinel.close()
        report.append(figures.report("SENTINEL FAILOVER"))
        assert deployment.primary_port() != old_port


class TestStaleConnections:
    """Once the sentinels name a new primary, the store stops using its connections to the old
    one, even while the old primary lives on and still takes writes."""

    @pytest.mark.anyio
    async def test_writes_after_a_manual_failover_reach_the_new_primary(
        self, dedicated_sentinel: Callable[..., SentinelDeployment], report: list[str]
    ) -> None:
        """SENTINEL FAILOVER while 10 callers hold pooled connections to the primary; from
        PRIMARY_RECHECK after every sentinel names the new primary, 200 sequential writes all
        succeed and all are on the new primary (none went to the old one, to be discarded)."""
        deployment = dedicated_sentinel()
        old_port = deployment.primary_port()
        store = RedisSessionStore.from_url(deployment.url(query="timeout=2"), SessionStoreConfig())
        busy_failed: list[str] = []
        failed: list[str] = []
        written: list[str] = []
        warm, switched = anyio.Event(), anyio.Event()

        async def caller(n: int) -> None:
            i = 0
            while not switched.is_set():
                key = f"c{n}-{i}"
                i += 1
                try:
                    await store.set(key, SessionData(key, "https://app.example.com"))
                except (StoreUnavailableError, NotReplicatedError) as exc:
                    busy_failed.append(repr(exc))
                if i == 20:
                    warm.set()

        async with store:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for n in range(10):
                        tg.start_soon(caller, n)
                    await warm.wait()
                    with deployment.sentinels[0].client() as raw:
                        raw.execute_command("SENTINEL", "FAILOVER", SERVICE)
                    await anyio.to_thread.run_sync(deployment.wait_for_new_primary, old_port)
                    switched.set()
                # The callers' connections, to the old primary, are idle in the pool now.
                await anyio.sleep(PRIMARY_RECHECK)
                for n in range(200):
                    key = f"after-{n}"
                    try:
                        await store.set(key, SessionData(key, "https://app.example.com"))
                    except (StoreUnavailableError, NotReplicatedError) as exc:
                        failed.append(repr(exc))
                    else:
                        written.append(key)
        new_primary = deployment.process_on(deployment.primary_port())
        with new_primary.client() as primary:
            found = primary.mget([f"wm_session_{key}" for key in written])
        lost = [key for key, value in zip(written, found, strict=True) if value is None]
        report.append(
            f"{len(busy_failed)} calls failed during the failover; of 200 writes after it, "
            f"{len(failed)} failed and {len(lost)} missed the new primary"
        )
        assert failed == []
        assert lost == []
