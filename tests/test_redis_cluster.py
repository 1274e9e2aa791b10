"""RedisSessionStore on a Redis Cluster beyond the contract: placement, scans over every primary
and while slots migrate, rotate across slots, clients and URLs, a primary killed under load."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
import redis.cluster

from walletmesh_sessions import (
    InvalidConfigError,
    SessionData,
    SessionStoreConfig,
    StoreUnavailableError,
    open_store,
)
from walletmesh_sessions._core.codec import encode_record, record_with_expiry
from walletmesh_sessions._redis import cluster_steps as cluster_steps
from walletmesh_sessions._redis.cluster_steps import slot_of
from walletmesh_sessions._redis.steps import Move
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock

from .redis_cluster import RedisClusterNodes
from .redis_server import free_port
from .test_cli import run

LIFETIME = 60.0
DATA = SessionData("s1", "https://app.example.com", {"eip155:1": ["eth_accounts"]})


def config(*, refresh: bool = False) -> SessionStoreConfig:
    return SessionStoreConfig(lifetime=LIFETIME, refresh_on_access=refresh)


def session(sid: str) -> SessionData:
    return SessionData(sid, "https://app.example.com")


def plant(client: Any, ids: list[str], clock: FakeClock, prefix: str = "wm_session_") -> None:
    """Write sessions straight into the cluster, in one pipeline (faster than the store)."""
    expires = round(clock() * 1000) + int(LIFETIME * 1000)
    pipe = client.pipeline()
    for sid in ids:
        pipe.set(prefix + sid, encode_record(session(sid), expires), px=3_600_000)
    pipe.execute()


def keys_per_primary(cluster: RedisClusterNodes) -> dict[int, int]:
    counts = {}
    for port, _ in cluster.primaries():
        client = cluster.node_client(port)
        try:
            counts[port] = int(client.dbsize())
        finally:
            client.close()
    return counts


class TestPlacement:
    """Sessions spread over the primaries, and every scan reaches all of them."""

    @pytest.mark.anyio
    async def test_sessions_land_on_every_primary(
        self, redis_cluster_factory: Callable[..., RedisSessionStore], redis_cluster: Any
    ) -> None:
        """Per-session keys hash to slots of different primaries."""
        async with redis_cluster_factory(config(), FakeClock()) as store:
            for n in range(60):
                await store.set(f"id{n}", session(f"id{n}"))
        counts = keys_per_primary(redis_cluster)
        assert len(counts) == 3
        assert all(counts.values()), counts
        assert sum(counts.values()) == 60

    @pytest.mark.anyio
    @pytest.mark.parametrize("count", [40, 1300])
    async def test_scans_cover_every_primary(
        self,
        redis_cluster_factory: Callable[..., RedisSessionStore],
        redis_cluster: RedisClusterNodes,
        redis_cluster_client: Any,
        count: int,
    ) -> None:
        """get_all, iter_sessions, inspect, clean_expired and clear see every primary's keys
        (few keys: one pass per node; many: slot by slot)."""
        clock = FakeClock()
        ids = [f"id{n}" for n in range(count)]
        plant(redis_cluster_client, ids, clock)
        async with redis_cluster_factory(config(), clock) as store:
            assert set(await store.get_all()) == set(ids)
            seen = [sid async for sid, _ in store.iter_sessions(100)]
            assert sorted(seen) == sorted(ids)
            assert {r.session_id for r in await store.inspect()} == set(ids)
            clock.advance(ms=int(LIFETIME * 1000) + 1)
            assert await store.clean_expired() == count
            plant(redis_cluster_client, ids, clock)
            await store.clear()
            assert await store.get_all() == {}
        assert sum(keys_per_primary(redis_cluster).values()) == 0

    @pytest.mark.anyio
    async def test_one_big_slot(
        self, redis_cluster_factory: Callable[..., RedisSessionStore], redis_cluster_client: Any
    ) -> None:
        """Sessions whose ids share a hash tag all sit in one slot: read whole, not capped."""
        clock = FakeClock()
        ids = [f"{{user7}}:{n}" for n in range(1200)]
        assert len({slot_of("wm_session_" + sid) for sid in ids}) == 1
        plant(redis_cluster_client, ids, clock)
        plant(redis_cluster_client, [f"other{n}" for n in range(600)], clock)
        async with redis_cluster_factory(config(), clock) as store:
            found = await store.get_all()
            assert len(found) == 1800
            assert set(ids) <= set(found)
            await store.clear()
            assert await store.get_all() == {}


class TestRotate:
    """rotate within one slot is one script; across slots, two compare steps in a safe order."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("new_id", ["{abc}new", "elsewhere"])
    async def test_rotate(
        self,
        redis_cluster_factory: Callable[..., RedisSessionStore],
        redis_cluster_client: Any,
        new_id: str,
    ) -> None:
        """Only the new id answers afterwards, with the data's id changed and a TTL."""
        same_slot = slot_of("wm_session_{abc}") == slot_of("wm_session_" + new_id)
        assert same_slot == new_id.startswith("{abc}")
        async with redis_cluster_factory(config(), FakeClock()) as store:
            await store.set("{abc}", session("{abc}"))
            assert await store.rotate("{abc}", new_id) == new_id
            assert await store.get("{abc}") is None
            moved = await store.get(new_id)
            assert moved is not None
            assert moved.id == new_id
            assert redis_cluster_client.pttl("wm_session_" + new_id) > 0

    @pytest.mark.anyio
    async def test_concurrent_rotates_one_winner(
        self, redis_cluster_factory: Callable[..., RedisSessionStore]
    ) -> None:
        """40 rotates of one id to ids in other slots, over two stores: exactly one wins, and
        no loser's copy is left behind."""
        async with (
            redis_cluster_factory(config(), time.time) as one,
            redis_cluster_factory(config(), time.time) as two,
        ):
            await one.set("id", session("id"))
            moved: list[str] = []

            async def rotator(n: int) -> None:
                new_id = await (one if n % 2 else two).rotate("id", f"new-{n}")
                if new_id is not None:
                    moved.append(new_id)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for n in range(40):
                        tg.start_soon(rotator, n)
            assert len(moved) == 1, f"{len(moved)} of 40 rotates won"
            assert list(await two.get_all()) == moved

    @pytest.mark.anyio
    async def test_cancelled_rotates_never_leave_both_ids(
        self, redis_cluster_factory: Callable[..., RedisSessionStore]
    ) -> None:
        """A rotate to another slot cancelled at any point still ends, on its own, with one of
        the two ids answering: never both for good (nor neither)."""
        async with redis_cluster_factory(config(), time.time) as store:
            for n in range(120):
                old, new = f"old{n}", f"new{n}x"
                assert slot_of("wm_session_" + old) != slot_of("wm_session_" + new)
                await store.set(old, session(old))
                with anyio.move_on_after((n % 40) * 0.0001):
                    await store.rotate(old, new)
                # A cancelled rotate goes on to its end on its own (on asyncio in a task of the
                # runner's; on trio the call waited for its thread): wait until it has.
                unawaited = set(getattr(store._runner(), "_unawaited", ()))
                if unawaited:
                    with anyio.fail_after(10):
                        await asyncio.wait(unawaited)
                kept, moved = await store.get(old), await store.get(new)
                assert (kept is None) != (moved is None), (n, kept, moved)
                assert moved is None or moved.id == new


class TestClients:
    """Cluster clients of the caller are used as given and never closed."""

    @pytest.mark.anyio
    async def test_sync_cluster_client_on_both_backends(
        self, redis_cluster_client: Any, redis_cluster: RedisClusterNodes
    ) -> None:
        """A redis.cluster.RedisCluster works on asyncio and trio and stays open."""
        client = redis_cluster.client()
        try:
            async with RedisSessionStore(client, config(refresh=True)) as store:
                await store.set("id", DATA)
                assert await store.get("id") == DATA
                assert dict(await store.get_all()) == {"id": DATA}
            assert client.ping()
        finally:
            client.close()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_asyncio_cluster_client(
        self, redis_cluster_client: Any, redis_cluster: RedisClusterNodes
    ) -> None:
        """A redis.asyncio.RedisCluster works on asyncio and stays open."""
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        try:
            async with RedisSessionStore(client, config()) as store:
                await store.set("id", DATA)
                assert dict(await store.get_all()) == {"id": DATA}
            assert await client.ping()
        finally:
            await client.aclose()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_asyncio_cluster_client_refused_on_trio(
        self, redis_cluster: RedisClusterNodes
    ) -> None:
        """On trio an asyncio cluster client is a clear error."""
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        store = RedisSessionStore(client, config())
        with pytest.raises(InvalidConfigError, match="trio"):
            await store.get("id")
        await store.aclose()

    @pytest.mark.anyio
    async def test_no_node_answers(self) -> None:
        """With no node to read the topology from, every call of a from_url store fails with
        StoreUnavailableError, on trio too (its client reads the topology as it is made)."""
        url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        calls: list[Callable[[RedisSessionStore], Any]] = [
            lambda store: store.get("id"),
            lambda store: store.set("id", DATA),
            lambda store: store.get_all(),
            lambda store: store.clear(),
            lambda store: store.rotate("id", "other"),
        ]
        async with RedisSessionStore.from_url(url, config(), timeout=2.0) as store:
            for call in calls:
                with pytest.raises(StoreUnavailableError):
                    await call(store)


class TestUrls:
    """redis+cluster:// URLs: checked before anything connects, secrets never shown."""

    def test_waiting_for_replicas_is_refused(self) -> None:
        """A cluster store would not follow its writes with WAIT: the option is refused."""
        with pytest.raises(InvalidConfigError, match="wait_for_replicas"):
            RedisSessionStore.from_url("redis+cluster://127.0.0.1:1", wait_for_replicas=1)
        with pytest.raises(InvalidConfigError, match="wait_for_replicas"):
            RedisSessionStore.from_url("redis+cluster://127.0.0.1:1/?wait_for_replicas=1")
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=1)
        with pytest.raises(InvalidConfigError, match="wait_for_replicas"):
            RedisSessionStore(client, wait_for_replicas=1)

    @pytest.mark.anyio
    async def test_open_store(
        self, redis_cluster_client: Any, redis_cluster: RedisClusterNodes
    ) -> None:
        """open_store and from_url take the cluster URL, with the usual parameters."""
        url = redis_cluster.url + "/?timeout=2&retries=0&prefix=u_&lifetime=60"
        store = open_store(url)
        try:
            await store.set("id", DATA)
            assert await store.get("id") == DATA
        finally:
            await store.aclose()
        assert redis_cluster_client.exists("u_id") == 1

    @pytest.mark.parametrize(
        "url",
        [
            "redis+cluster://127.0.0.1:7000/3",
            "redis+cluster://127.0.0.1:7000/?db=1",
            "redis+cluster://127.0.0.1:7000/?%64b=1",
            "redis+cluster://127.0.0.1:7000,,127.0.0.1:7001",
            "redis+cluster://127.0.0.1:7000/?colour=blue",
            "redis+cluster://127.0.0.1:notaport",
            "redis+cluster://127.0.0.1:7000/?ssl_ca_certs=x",
        ],
    )
    def test_refused_at_construction(self, url: str) -> None:
        """A database, an unknown parameter, TLS settings without rediss, a bad node."""
        with pytest.raises(InvalidConfigError):
            RedisSessionStore.from_url(url)

    def test_tls_parameters_on_rediss(self) -> None:
        """rediss+cluster:// takes the TLS parameters."""
        RedisSessionStore.from_url("rediss+cluster://h:7000,h:7001/?ssl_cert_reqs=none")

    @pytest.mark.parametrize(
        "url",
        [
            "redis+cluster://user:s3cr3tpw@127.0.0.1:7000/?colour=blue",
            "redis+cluster://user:s3cr3tpw@127.0.0.1:7000/5",
            "redis+cluster://127.0.0.1:7000/?password=s3cr3tpw&db=2",
        ],
    )
    def test_password_never_shown(self, url: str) -> None:
        """Refusals mask the password wherever the URL carries it."""
        with pytest.raises(InvalidConfigError) as info:
            RedisSessionStore.from_url(url)
        assert "s3cr3tpw" not in str(info.value)
        with pytest.raises(InvalidConfigError) as info:
            open_store(url)
        assert "s3cr3tpw" not in str(info.value)


def _reshard(cluster: RedisClusterNodes, slots: int) -> subprocess.Popen[bytes]:
    """Start moving `slots` slots from the first primary to the second, in the background."""
    (port, source), (_, target) = cluster.primaries()[:2]
    command = [
        cluster.cli, "--cluster", "reshard", f"127.0.0.1:{port}",
        "--cluster-from", source, "--cluster-to", target,
        "--cluster-slots", str(slots), "--cluster-yes",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class TestResharding:
    """Scans neither miss nor repeat a session while slots migrate between primaries."""

    @pytest.mark.anyio
    async def test_scans_during_reshard(
        self,
        redis_cluster_factory: Callable[..., RedisSessionStore],
        redis_cluster: RedisClusterNodes,
        redis_cluster_client: Any,
    ) -> None:
        """10,000 sessions; get_all and iter_sessions, again and again while redis-cli moves
        slots: each answer is exactly the ids stored, and the iterator yields none twice."""
        clock = FakeClock()
        ids = [f"id{n}" for n in range(10_000)]
        plant(redis_cluster_client, ids, clock)
        expected = set(ids)
        async with redis_cluster_factory(config(), clock) as store:
            reshard = _reshard(redis_cluster, 2000)
            scans = 0
            try:
                while reshard.poll() is None or scans < 2:
                    assert set(await store.get_all()) == expected
                    seen = Counter([sid async for sid, _ in store.iter_sessions(300)])
                    assert set(seen) == expected
                    assert max(seen.values()) == 1, "a session was yielded twice"
                    scans += 1
            finally:
                _, err = reshard.communicate(timeout=300)
            assert reshard.returncode == 0, err
            print(f"\n{scans} full scans of each kind ran while slots moved")
        redis_cluster.wait_ready()


class TestFailover:
    """A primary killed under load: errors only, within the bound; then service again."""

    @pytest.mark.anyio
    async def test_kill_a_primary_under_load(
        self, dedicated_cluster: Callable[[], RedisClusterNodes]
    ) -> None:
        """20 tasks write and read while a primary is killed (SIGKILL). Every call ends within
        its bound, failing only with StoreUnavailableError; once its replica is promoted,
        calls succeed again. Reports the time to recover and the acknowledged writes lost."""
        cluster = dedicated_cluster()
        timeout, retries = 1.0, 1
        bound = (retries + 1) * timeout + retries * 0.1
        url = f"{cluster.url}/?timeout={timeout}&retries={retries}"
        acknowledged: list[str] = []
        errors: Counter[str] = Counter()
        killed_at: list[float] = []
        recovered_at: list[float] = []
        stop = anyio.Event()
        recovered = anyio.Event()
        # Set once this many writes are acknowledged (the target moves, then a new event).
        target: list[tuple[int, anyio.Event]] = [(300, anyio.Event())]
        (victim_port, _), *_ = cluster.primaries()
        victim_slots = cluster.slots_of(victim_port)
        async with RedisSessionStore.from_url(url, config()) as store:

            async def worker(n: int) -> None:
                count = 0
                while not stop.is_set():
                    sid = f"w{n}-{count}"
                    count += 1
                    started = time.monotonic()
                    # The bound, with room for a busy machine: a hang fails here.
                    with anyio.fail_after(bound + 5):
                        try:
                            await store.set(sid, session(sid))
                            acknowledged.append(sid)
                            if len(acknowledged) >= target[0][0]:
                                target[0][1].set()
                            await store.get(random.choice(acknowledged))
                        except StoreUnavailableError as exc:
                            errors[str(exc).split(":")[-1].strip()] += 1
                            await anyio.sleep(0.01)
                            continue
                    if (
                        killed_at
                        and started > killed_at[0]
                        and not recovered_at
                        and slot_of("wm_session_" + sid) in victim_slots
                    ):
                        # A write made after the kill, acknowledged in the killed primary's
                        # slots: its replica serves them now.
                        recovered_at.append(time.monotonic())
                        recovered.set()

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(worker, n)
                await target[0][1].wait()
                cluster.node(victim_port).kill()
                killed_at.append(time.monotonic())
                with anyio.fail_after(60):
                    await recovered.wait()
                target[0] = (len(acknowledged) + 300, anyio.Event())
                with anyio.fail_after(60):
                    await target[0][1].wait()
                stop.set()
            cluster.wait_ready()
            stored = set(await store.get_all())
        lost = [sid for sid in acknowledged if sid not in stored]
        print(
            f"\nrecovered {recovered_at[0] - killed_at[0]:.2f} s after the kill; "
            f"{len(acknowledged)} writes acknowledged, {len(lost)} lost; errors: {dict(errors)}"
        )
        assert errors, "the kill went unnoticed: the test proved nothing"


class TestCommandLine:
    """The command line takes a cluster URL as --store."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_list(
        self, redis_cluster_client: Any, redis_cluster: RedisClusterNodes, tmp_path: Path
    ) -> None:
        """`list` shows the sessions of every primary."""
        ids = [f"cli{n}" for n in range(30)]
        plant(redis_cluster_client, ids, FakeClock(round(time.time() * 1000)))
        result = run("list", "--store", redis_cluster.url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert all(sid in result.stdout for sid in ids)


def _drive(exchange: Any, client: Any, before: Callable[[tuple[Any, ...]], None]) -> Any:
    """Run a cluster exchange's commands on `client` one by one, calling `before` first."""
    try:
        commands = exchange.send(None)
        while True:
            replies: list[Any] = []
            for command in commands:
                before(command)
                try:
                    replies.append(client.execute_command(*command))
                except redis.exceptions.RedisError as exc:
                    replies.append(exc)
            commands = exchange.send(replies)
    except StopIteration as stop:
        return stop.value


class TestMoveAcrossSlotsUnderSlides:
    """A sliding read between the two steps of a cross-slot move changes no data: the move
    still happens, and a copy to take back is still taken back."""

    OLD, NEW = "wm_session_slid-old", "wm_session_slid-new"

    def _step(self, client: Any) -> tuple[Move, str]:
        assert slot_of(self.OLD) != slot_of(self.NEW)
        old = encode_record(session("slid-old"), 1_700_000_060_000)
        client.set(self.OLD, old)
        text = encode_record(session("slid-new"), 1_700_000_070_000)
        return Move(self.OLD, old, self.NEW, None, text, 60_000), old

    def test_old_key_slid_between_the_steps(self, redis_cluster_client: Any) -> None:
        """The old key's expiresAt moved after the copy was made: the move completes."""
        step, old = self._step(redis_cluster_client)
        slid = False

        def slide(command: tuple[Any, ...]) -> None:
            nonlocal slid
            if command[0] == "EVALSHA" and self.OLD in command and not slid:
                slid = True
                redis_cluster_client.set(self.OLD, record_with_expiry(old, 1_700_000_090_000))

        moved = _drive(cluster_steps._move(step), redis_cluster_client, slide)
        assert moved is True
        assert redis_cluster_client.get(self.OLD) is None
        assert redis_cluster_client.get(self.NEW) == step.text.encode()

    def test_copy_slid_before_it_is_taken_back(self, redis_cluster_client: Any) -> None:
        """The old key was really changed, and the copy slid meanwhile: the copy still goes."""
        step, _old = self._step(redis_cluster_client)
        changed = encode_record(SessionData("slid-old", "https://b.example"), 1)

        def change_then_slide(command: tuple[Any, ...]) -> None:
            if command[0] == "EVALSHA" and self.OLD in command:
                redis_cluster_client.set(self.OLD, changed)
            if command[0] == "EVALSHA" and self.NEW in command:
                redis_cluster_client.set(self.NEW, record_with_expiry(step.text, 1_700_000_099_000))

        moved = _drive(cluster_steps._move(step), redis_cluster_client, change_then_slide)
        assert moved is False
        assert redis_cluster_client.get(self.OLD) == changed.encode()
        assert redis_cluster_client.get(self.NEW) is None


class TestRotateUnderReaders:
    """A refreshing store: rotates with a store-chosen id while other tasks read the old id."""

    @pytest.mark.anyio
    async def test_each_rotate_leaves_one_live_id(
        self, redis_cluster_factory: Callable[..., RedisSessionStore]
    ) -> None:
        """Every rotate wins, the old id is dead, the new one live, and no error for an id the
        caller never chose."""
        problems: list[str] = []
        async with redis_cluster_factory(config(refresh=True), time.time) as store:
            for n in range(40):
                old = f"read-{n}"
                await store.set(old, session(old))
                done = anyio.Event()
                moved: list[str | None] = []

                async def reader(old: str = old, done: anyio.Event = done) -> None:
                    while not done.is_set():
                        await store.get(old)

                async def rotate(
                    old: str = old, done: anyio.Event = done, moved: list[str | None] = moved
                ) -> None:
                    try:
                        moved.append(await store.rotate(old))
                    finally:
                        done.set()

                with anyio.fail_after(30):
                    async with anyio.create_task_group() as tg:
                        for _ in range(3):
                            tg.start_soon(reader)
                        tg.start_soon(rotate)
                (new,) = moved
                if new is None or await store.get(old) is not None or not await store.get(new):
                    problems.append(f"{n}: rotate gave {new!r}")
        assert problems == []
