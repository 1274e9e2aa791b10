"""Auto-pipelining of the Redis store: one pipeline per event-loop turn on asyncio, and every
call still its own (its reply, error, deadline and cancellation), on either backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
import redis.cluster

from walletmesh_sessions import (
    CorruptRecordError,
    InvalidConfigError,
    SessionData,
    SessionStoreConfig,
    StoreUnavailableError,
)
from walletmesh_sessions.redis import RedisSessionStore

from .redis_cluster import RedisClusterNodes

CONFIG = SessionStoreConfig(lifetime=60)
SLIDING = SessionStoreConfig(lifetime=60, refresh_on_access=True)


def data(n: int) -> SessionData:
    return SessionData(f"s{n}", "https://app.example.com", {"eip155:1": [f"account{n}"]})


# Where auto-pipelining applies: asyncio, plain and on uvloop.
ON_ASYNCIO = pytest.mark.parametrize(
    "anyio_backend", ["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"]
)
# Every backend: uvloop too.
EVERY_LOOP = pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", ("asyncio", {"use_uvloop": True}), "trio"],
    ids=["asyncio", "uvloop", "trio"],
)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many writes asyncio connections made (each `send_packed_command`), in a one-item list."""
    count = [0]
    send = redis.asyncio.Connection.send_packed_command

    async def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        count[0] += 1
        await send(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.Connection, "send_packed_command", counted)
    return count


def pause(client: redis.Redis, ms: int) -> None:
    """Have the server hold every client's commands for `ms` milliseconds."""
    command: Any = client.execute_command
    command("CLIENT", "PAUSE", ms, "ALL")


def unpause(client: redis.Redis) -> None:
    command: Any = client.execute_command
    command("CLIENT", "UNPAUSE")


def store_connections(client: redis.Redis, name: str) -> int:
    """The connections open on the server under the client name `name`."""
    listed: Any = client.client_list()
    return sum(1 for entry in listed if entry["name"] == name)


@pytest.mark.redis
class TestOnePipeline:
    """Calls started in one event-loop turn go out as one write on one connection."""

    @ON_ASYNCIO
    @pytest.mark.anyio
    @pytest.mark.parametrize("kind", ["get", "set", "validate_and_refresh", "create"])
    async def test_one_write_per_turn(
        self,
        redis_client: redis.Redis,
        redis_url: str,
        writes: list[int],
        kind: str,
    ) -> None:
        """Fifty calls made at once: one write; each caller gets its own session back."""
        async with RedisSessionStore.from_url(redis_url, SLIDING) as store:
            for n in range(50):
                await store.set(f"id{n}", data(n))
            results: dict[int, Any] = {}

            async def call(n: int, prefix: str = "") -> None:
                if kind == "get":
                    results[n] = await store.get(f"id{n}")
                elif kind == "validate_and_refresh":
                    results[n] = await store.validate_and_refresh(f"id{n}")
                elif kind == "set":
                    await store.set(f"id{n}", data(n + 100))
                else:
                    results[n] = await store.create(f"{prefix}new{n}", data(n))

            async with anyio.create_task_group() as group:  # connections opened, scripts loaded
                for n in range(50):
                    group.start_soon(call, n, "warm")
            before = writes[0]
            async with anyio.create_task_group() as group:
                for n in range(50):
                    group.start_soon(call, n)
            assert writes[0] - before == (2 if kind == "create" else 1)  # create: read, then write
            if kind in ("get", "validate_and_refresh"):
                assert results == {n: data(n) for n in range(50)}
            elif kind == "set":
                assert [await store.get(f"id{n}") for n in range(50)] == [
                    data(n + 100) for n in range(50)
                ]
            else:
                assert results == dict.fromkeys(range(50), True)

    @pytest.mark.anyio
    @pytest.mark.parametrize("on", [True, False])
    async def test_connections_used(
        self, redis_client: redis.Redis, redis_url: str, anyio_backend: str, on: bool
    ) -> None:
        """On asyncio, twenty calls at once open one connection; switched off, one per call;
        on trio (the synchronous client in worker threads) one per thread busy at once."""
        flag = "true" if on else "false"
        url = f"{redis_url}?client_name=piped&auto_pipeline={flag}"
        async with RedisSessionStore.from_url(url, CONFIG) as store:
            async with anyio.create_task_group() as group:
                for n in range(20):
                    group.start_soon(store.get, f"id{n}")
            opened = store_connections(redis_client, "piped")
        if anyio_backend == "trio":
            assert opened > 1
        else:
            assert opened == (1 if on else 20)

    @ON_ASYNCIO
    @pytest.mark.anyio
    async def test_switched_off_by_argument(
        self, redis_client: redis.Redis, redis_url: str, writes: list[int]
    ) -> None:
        """``auto_pipeline=False`` (constructor or from_url): a write per call, as before."""
        client = redis.asyncio.Redis.from_url(redis_url)
        stores = [
            RedisSessionStore(client, CONFIG, auto_pipeline=False),
            RedisSessionStore.from_url(redis_url, CONFIG, auto_pipeline=False),
        ]
        try:
            for store in stores:
                async with anyio.create_task_group() as group:  # the connections opened
                    for n in range(10):
                        group.start_soon(store.get, f"id{n}")
                before = writes[0]
                async with anyio.create_task_group() as group:
                    for n in range(10):
                        group.start_soon(store.get, f"id{n}")
                assert writes[0] - before == 10
        finally:
            for store in stores:
                await store.aclose()
            await client.aclose()

    @ON_ASYNCIO
    @pytest.mark.anyio
    async def test_callers_client_pipelines(
        self, redis_client: redis.Redis, redis_url: str, writes: list[int]
    ) -> None:
        """A `redis.asyncio.Redis` the caller passes pipelines too (one of one connection not)."""
        pooled = redis.asyncio.Redis.from_url(redis_url)
        single = redis.asyncio.Redis.from_url(redis_url, single_connection_client=True)
        try:
            for client, expected in ((pooled, 1), (single, 10)):
                store = RedisSessionStore(client, CONFIG)
                async with anyio.create_task_group() as group:  # the connections opened
                    for n in range(10):
                        group.start_soon(store.get, f"id{n}")
                before = writes[0]
                async with anyio.create_task_group() as group:
                    for n in range(10):
                        group.start_soon(store.get, f"id{n}")
                assert writes[0] - before == expected
        finally:
            await pooled.aclose()
            await single.aclose()


class TestSwitch:
    """The ``auto_pipeline`` option is checked like the others."""

    @pytest.mark.parametrize("value", ["maybe", "", "2"])
    def test_bad_url_value(self, value: str) -> None:
        with pytest.raises(InvalidConfigError, match="auto_pipeline"):
            RedisSessionStore.from_url(f"redis://127.0.0.1:1/0?auto_pipeline={value}")

    @pytest.mark.parametrize("value", [1, "yes", None])
    def test_bad_argument(self, value: Any) -> None:
        with pytest.raises(InvalidConfigError, match="auto_pipeline"):
            RedisSessionStore.from_url("redis://127.0.0.1:1/0", auto_pipeline=value)
        with pytest.raises(InvalidConfigError, match="auto_pipeline"):
            RedisSessionStore(redis.Redis(), auto_pipeline=value)

    @pytest.mark.parametrize("value", ["true", "False", "off", "1"])
    def test_good_url_values(self, value: str) -> None:
        RedisSessionStore.from_url(f"redis://127.0.0.1:1/0?auto_pipeline={value}")


@pytest.mark.redis
@EVERY_LOOP
class TestOwnOutcome:
    """Each call of a batch gets its own reply, error, deadline and cancellation."""

    @pytest.mark.anyio
    async def test_failing_commands_fail_only_their_callers(
        self, redis_client: redis.Redis, redis_url: str
    ) -> None:
        """A key of another type (WRONGTYPE) and an unreadable record among good reads."""
        redis_client.rpush("wm_session_listed", "x")
        redis_client.set("wm_session_garbled", b"{not json")
        outcomes: dict[str, Any] = {}
        async with RedisSessionStore.from_url(redis_url, SLIDING) as store:
            for n in range(30):
                await store.set(f"id{n}", data(n))

            async def call(session_id: str) -> None:
                try:
                    outcomes[session_id] = await store.validate_and_refresh(session_id)
                except CorruptRecordError as exc:
                    outcomes[session_id] = exc

            async with anyio.create_task_group() as group:
                for n in range(15):
                    group.start_soon(call, f"id{n}")
                group.start_soon(call, "listed")
                group.start_soon(call, "garbled")
                for n in range(15, 30):
                    group.start_soon(call, f"id{n}")
            assert isinstance(outcomes.pop("listed"), CorruptRecordError)
            assert isinstance(outcomes.pop("garbled"), CorruptRecordError)
            assert outcomes == {f"id{n}": data(n) for n in range(30)}
            assert await store.get("id3") == data(3)

    @pytest.mark.anyio
    async def test_cancelled_caller_leaves_the_others_right(
        self, redis_client: redis.Redis, redis_url: str
    ) -> None:
        """One caller cancelled while the batch waits on a paused server: the others get
        their own sessions, and the store's next calls too."""
        results: dict[int, Any] = {}
        async with RedisSessionStore.from_url(redis_url, CONFIG) as store:
            for n in range(20):
                await store.set(f"id{n}", data(n))

            async def call(n: int) -> None:
                results[n] = await store.get(f"id{n}")

            victim = anyio.CancelScope()

            async def cancelled() -> None:
                with victim:
                    results[99] = await store.get("id5")

            pause(redis_client, 300)
            async with anyio.create_task_group() as group:
                for n in range(10):
                    group.start_soon(call, n)
                group.start_soon(cancelled)
                for n in range(10, 20):
                    group.start_soon(call, n)
                await anyio.sleep(0.05)  # all sent, the server paused: the batch is in flight
                victim.cancel()
            assert victim.cancelled_caught
            assert 99 not in results
            assert results == {n: data(n) for n in range(20)}
            assert [await store.get(f"id{n}") for n in range(20)] == [data(n) for n in range(20)]

    @pytest.mark.anyio
    async def test_deadline_holds_when_no_reply_comes(
        self, redis_client: redis.Redis, redis_url: str
    ) -> None:
        """With the server paused, each caller of a batch fails at its own deadline; once the
        server answers again, the store's calls are right (no stale reply is handed out)."""
        async with RedisSessionStore.from_url(redis_url, CONFIG, timeout=0.2, retries=0) as store:
            for n in range(10):
                await store.set(f"id{n}", data(n))
            failed: list[int] = []

            async def call(n: int) -> None:
                with pytest.raises(StoreUnavailableError):
                    await store.get(f"id{n}")
                failed.append(n)

            pause(redis_client, 1500)
            try:
                with anyio.fail_after(1.2):  # each has 0.2 s: far less than the pause
                    async with anyio.create_task_group() as group:
                        for n in range(10):
                            group.start_soon(call, n)
            finally:
                unpause(redis_client)
            assert sorted(failed) == list(range(10))
            assert [await store.get(f"id{n}") for n in range(10)] == [data(n) for n in range(10)]


@pytest.mark.redis
@ON_ASYNCIO
class TestClosing:
    """Closing the store ends its batches (on trio a blocked worker thread is not reached)."""

    @pytest.mark.anyio
    async def test_closing_fails_the_calls_in_flight(
        self, redis_client: redis.Redis, redis_url: str
    ) -> None:
        """Closing the store while its batch waits on a paused server fails the batch's calls
        at once, not at their deadlines."""
        store = RedisSessionStore.from_url(redis_url, CONFIG, timeout=5)
        await store.set("id", data(1))
        failed: list[BaseException] = []

        async def call() -> None:
            try:
                await store.get("id")
            except StoreUnavailableError as exc:
                failed.append(exc)

        pause(redis_client, 2000)
        try:
            with anyio.fail_after(1):  # far less than the pause and the calls' 5 s
                async with anyio.create_task_group() as group:
                    for _ in range(5):
                        group.start_soon(call)
                    await anyio.sleep(0.05)
                    await store.aclose()
        finally:
            unpause(redis_client)
        assert len(failed) == 5


@pytest.mark.redis
class TestManyMixedCalls:
    """Hundreds of concurrent mixed calls: nothing lost, nothing crossed."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("on", [True, False])
    async def test_each_caller_gets_its_own(
        self, redis_client: redis.Redis, redis_url: str, anyio_backend: str, on: bool
    ) -> None:
        calls = 300 if anyio_backend == "asyncio" else 60
        problems: list[str] = []
        async with RedisSessionStore.from_url(redis_url, SLIDING, auto_pipeline=on) as store:

            async def life(n: int) -> None:
                sid = f"life{n}"
                if not await store.create(sid, data(n)):
                    problems.append(f"{sid}: create lost")
                if await store.get(sid) != data(n):
                    problems.append(f"{sid}: get after create")
                await store.set(sid, data(n + 1000))
                if await store.validate_and_refresh(sid) != data(n + 1000):
                    problems.append(f"{sid}: slide after set")
                changed = await store.update(sid, lambda d: data(n + 2000))
                if changed != data(n + 2000):
                    problems.append(f"{sid}: update")
                moved = await store.rotate(sid, f"moved{n}")
                if moved != f"moved{n}" or await store.get(sid) is not None:
                    problems.append(f"{sid}: rotate")
                if await store.get(f"moved{n}") != data(n + 2000):
                    problems.append(f"{sid}: get after rotate")
                await store.delete(f"moved{n}")
                if await store.get(f"moved{n}") is not None:
                    problems.append(f"{sid}: delete")

            async with anyio.create_task_group() as group:
                for n in range(calls):
                    group.start_soon(life, n)
        assert problems == []
        assert redis_client.dbsize() == 0


@pytest.mark.redis_cluster
class TestCluster:
    """On a cluster, a batch per node; each caller still gets its own."""

    @ON_ASYNCIO
    @pytest.mark.anyio
    @pytest.mark.parametrize("on", [True, False])
    async def test_one_write_per_node(
        self,
        redis_cluster_client: redis.cluster.RedisCluster,
        redis_cluster: RedisClusterNodes,
        writes: list[int],
        on: bool,
    ) -> None:
        """Sixty reads at once over three primaries: a write per node (on), or per call."""
        async with RedisSessionStore.from_url(
            redis_cluster.url, SLIDING, auto_pipeline=on
        ) as store:
            for n in range(60):
                await store.set(f"id{n}", data(n))
            results: dict[int, Any] = {}

            async def call(n: int) -> None:
                results[n] = await store.validate_and_refresh(f"id{n}")

            for _ in range(2):  # the first: connections opened, the script cached on each node
                before = writes[0]
                async with anyio.create_task_group() as group:
                    for n in range(60):
                        group.start_soon(call, n)
            if on:
                assert writes[0] - before == len(redis_cluster.primaries())
            else:  # a write per call, and some for connections opened
                assert writes[0] - before >= 60
            assert results == {n: data(n) for n in range(60)}

    @pytest.mark.anyio
    async def test_mixed_calls_and_errors(
        self, redis_cluster_client: redis.cluster.RedisCluster, redis_cluster: RedisClusterNodes
    ) -> None:
        """Mixed lifecycle calls and a WRONGTYPE key among them: every caller its own."""
        redis_cluster_client.rpush("wm_session_listed", "x")
        problems: list[str] = []
        async with RedisSessionStore.from_url(redis_cluster.url, SLIDING) as store:

            async def life(n: int) -> None:
                sid = f"life{n}"
                if not await store.create(sid, data(n)):
                    problems.append(f"{sid}: create lost")
                if await store.get(sid) != data(n):
                    problems.append(f"{sid}: get after create")
                await store.update(sid, lambda d: data(n + 1))
                moved = await store.rotate(sid, f"moved{n}")
                if await store.get(f"{moved}") != data(n + 1):
                    problems.append(f"{sid}: get after rotate")
                await store.delete(f"moved{n}")

            async def listed() -> None:
                with pytest.raises(CorruptRecordError):
                    await store.get("listed")

            async with anyio.create_task_group() as group:
                for n in range(100):
                    group.start_soon(life, n)
                    if n % 25 == 0:
                        group.start_soon(listed)
        assert problems == []
