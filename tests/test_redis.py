"""RedisSessionStore beyond the contract: TTLs, key isolation, atomicity, outages, clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import attrs
import pytest
import redis
import redis.asyncio
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from walletmesh_sessions import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidSessionIdError,
    LifecycleSessionStore,
    SessionData,
    SessionIdTakenError,
    SessionStore,
    SessionStoreConfig,
    SessionStoreError,
    StoreClosedError,
    StoreUnavailableError,
    clean_expired_every,
)
from walletmesh_sessions._core.codec import encode_record, record_with_expiry
from walletmesh_sessions._core.expiry import EXPIRED, after_read
from walletmesh_sessions._redis import bulk_ops, ops, steps
from walletmesh_sessions._redis.exchanges import exchange
from walletmesh_sessions._redis.ops import glob_escape
from walletmesh_sessions._redis.runners import AsyncioRunner, ThreadRunner
from walletmesh_sessions._redis.scripts import (
    COMPARE_AND_DELETE,
    COMPARE_AND_SET,
    MOVE,
    READ_AND_SLIDE,
)
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing import FakeClock
from walletmesh_sessions.testing._rules_lifecycle import counter, increment

from .redis_server import RedisServer, free_port

T = TypeVar("T")

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
LIFETIME_MS = 60_000
GRACE_MS = 6_000
DATA = SessionData("s1", "https://app.example.com", {"eip155:1": ["eth_accounts"]})
OTHER = SessionData("s2", "https://other.example", {"eip155:137": ["personal_sign"]})


def config(lifetime: float | None = 60, *, refresh: bool = False) -> SessionStoreConfig:
    return SessionStoreConfig(lifetime=lifetime, refresh_on_access=refresh)


MakeStore = Callable[..., RedisSessionStore]


@pytest.fixture
def make(redis_client: redis.Redis, redis_url: str, clock: FakeClock) -> MakeStore:
    """Stores over the emptied test database; each test closes its stores (`async with`)."""

    def factory(
        cfg: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock_: FakeClock | None = None,
        **options: Any,
    ) -> RedisSessionStore:
        return RedisSessionStore.from_url(
            options.pop("url", redis_url),
            cfg or config(),
            prefix=prefix,
            clock=clock_ or clock,
            **options,
        )

    return factory


def before_each(
    op: steps.Op[T],
    kinds: type | tuple[type, ...],
    action: Callable[[], object],
    required: str | None = None,
) -> steps.Op[T]:
    """`op`, with `action` run (as another client would) just before each of its `kinds` steps.

    With `required`, fails if `op` finished without such a step: the test would prove nothing.
    """
    reply: Any = None
    ran = False
    while True:
        try:
            step = op.send(reply)
        except StopIteration as stop:
            assert ran or required is None, f"the operation never reached a {required} step"
            result: T = stop.value
            return result
        if isinstance(step, kinds):
            action()
            ran = True
        reply = yield step


def interleave(op: steps.Op[T], before_script: Callable[[], object]) -> steps.Op[T]:
    """`op`, with `before_script` run between its read and its compare-and-set step."""
    kinds = (steps.CompareAndSet, steps.CompareAndDelete)
    return before_each(op, kinds, before_script, required="compare-and-set")


class TestTTL:
    """Redis expires keys by itself, relative to its own time and a little after the clock."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("clock_ms", [1_700_000_000_000, 4_102_444_800_000, 1_000])
    async def test_ttl_is_lifetime_plus_grace(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock, clock_ms: int
    ) -> None:
        """PX is lifetime + 10 %, whatever the store's clock reads (never an absolute time)."""
        clock.now_ms = clock_ms
        async with make() as store:
            await store.set("id", DATA)
        ttl = redis_client.pttl("wm_session_id")
        assert LIFETIME_MS < ttl <= LIFETIME_MS + GRACE_MS

    @pytest.mark.anyio
    async def test_short_lifetime_gets_one_second_grace(
        self, make: MakeStore, redis_client: redis.Redis
    ) -> None:
        """A short lifetime is kept at least one second longer by Redis."""
        async with make(config(0.2)) as store:
            await store.set("id", DATA)
        assert 200 < redis_client.pttl("wm_session_id") <= 1_200

    @pytest.mark.anyio
    async def test_no_lifetime_no_ttl(self, make: MakeStore, redis_client: redis.Redis) -> None:
        """Sessions without expiry have no TTL, also when they replace one that had it."""
        redis_client.set("wm_session_id", encode_record(DATA, None), px=5_000)
        async with make(config(None)) as store:
            await store.set("id", DATA)
            await store.set("other", DATA)
        assert redis_client.pttl("wm_session_id") == -1
        assert redis_client.pttl("wm_session_other") == -1

    @pytest.mark.anyio
    async def test_refresh_renews_ttl(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """A refreshing read sets the TTL again; a plain read leaves it alone."""
        async with make(config(refresh=True)) as refreshing, make() as plain:
            await plain.set("a", DATA)
            await plain.set("b", DATA)
            redis_client.pexpire("wm_session_a", 10_000)
            redis_client.pexpire("wm_session_b", 10_000)
            clock.advance(ms=1_000)
            assert await refreshing.get("a") == DATA
            assert await plain.get("b") == DATA
        assert redis_client.pttl("wm_session_a") > LIFETIME_MS
        assert redis_client.pttl("wm_session_b") <= 10_000


FOREIGN = {
    b"wm_abc": b"matches an unescaped glob",
    b"wm_*[x": b"one character short",
    b"wm_x": b"x",
    b"wm_\\*[x]s": b"backslash",
    b"WM_*[x]s": b"case",
    b"other": b"unrelated",
    b"wm_session_s": encode_record(DATA, None).encode(),
}


class TestForeignKeys:
    """Keys outside the prefix are never read, counted or touched."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("prefix", ["wm_*[x]", "p?\\", "[^a-z]-", "s\u00fc*\x00"])
    async def test_foreign_keys_survive(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock, prefix: str
    ) -> None:
        """clear, get_all and clean_expired see only keys that start with the prefix."""
        redis_client.mset(FOREIGN)
        redis_client.hset("wm_hash", "field", "value")
        async with make(prefix=prefix) as store:
            await store.set("old", OTHER)
            clock.advance(ms=LIFETIME_MS // 2)
            await store.set("new", DATA)
            clock.advance(ms=LIFETIME_MS // 2 + 1)
            assert dict(await store.get_all()) == {"new": DATA}
            assert await store.clean_expired() == 0  # get_all removed "old" already
            await store.set("old", OTHER)
            clock.advance(ms=LIFETIME_MS + 1)
            assert await store.clean_expired() == 2
            await store.set("new", DATA)
            await store.clear()
            assert dict(await store.get_all()) == {}
        assert redis_client.mget(list(FOREIGN)) == list(FOREIGN.values())
        assert redis_client.hget("wm_hash", "field") == b"value"
        assert redis_client.dbsize() == len(FOREIGN) + 1

    @pytest.mark.parametrize("prefix", ["wm_*[x]", "a?b", "[^a-z]-\\", "\\*"])
    def test_escaped_glob_matches_only_the_prefix(
        self, redis_client: redis.Redis, prefix: str
    ) -> None:
        """SCAN with the escaped pattern alone already excludes lookalike keys."""
        redis_client.mset({prefix + "1": "mine", **FOREIGN, "a_b1": "x", "x-1": "x", "*1": "x"})
        pattern = glob_escape(prefix) + "*"
        assert set(redis_client.scan_iter(match=pattern)) == {(prefix + "1").encode()}


CORRUPT_REASONS = (
    "'not-'...(8 chars): JSONDecodeError",  # ids are shortened in logs
    "'bad-'...(9 chars)",
    "'not-'...(8 chars): not UTF-8 text",
    "*(1): the key is not the prefix and a UTF-8 session id",  # b"\xff" after the prefix
    " (0): the key is not the prefix and a UTF-8 session id",  # nothing after the prefix
    "holds a hash",
)


def _recording(
    round_trip: Callable[..., Any], sent: list[list[tuple[Any, ...]]]
) -> Callable[..., Any]:
    """A runner's `_round_trip` that also records each round trip's commands in `sent`."""

    def recorded(self: object, commands: list[tuple[Any, ...]]) -> Any:
        sent.append(commands)
        return round_trip(self, commands)

    return recorded


def _run_step(client: redis.Redis, step: steps.Step) -> Any:
    """Carry out `step` through the driver core on a synchronous client, as a runner does."""

    execute: Callable[..., Any] = client.execute_command

    def send(command: tuple[Any, ...]) -> Any:
        try:
            return execute(*command)
        except redis.ResponseError as exc:
            return exc

    talk = exchange(step)
    commands = next(talk)
    while True:
        try:
            commands = talk.send([send(c) for c in commands])
        except StopIteration as stop:
            return stop.value


class TestCorruptRecords:
    """Unreadable values under the prefix never hide sessions and are never deleted silently."""

    @pytest.fixture
    def planted(self, redis_client: redis.Redis) -> dict[bytes, bytes]:
        values = {
            b"wm_session_not-json": b"not json",
            b"wm_session_bad-shape": b'{"data": 1}',
            b"wm_session_not-utf8": b'{"data": "\xff"}',
            b"wm_session_\xff": encode_record(DATA, None).encode(),
            b"wm_session_": encode_record(DATA, None).encode(),
        }
        redis_client.mset(values)
        redis_client.hset("wm_session_hash", "a", "b")
        return values

    @pytest.mark.anyio
    async def test_skipped_kept_and_logged(
        self,
        make: MakeStore,
        redis_client: redis.Redis,
        planted: dict[bytes, bytes],
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """get_all and clean_expired skip corrupt records, warn, and leave them in place."""
        caplog.set_level(logging.WARNING, logger="walletmesh_sessions")
        async with make() as store:
            await store.set("good", DATA)
            await store.set("old", OTHER)
            clock.advance(ms=LIFETIME_MS + 1)
            await store.set("good", DATA)
            assert await store.clean_expired() == 1
            assert dict(await store.get_all()) == {"good": DATA}
        assert redis_client.mget(list(planted)) == list(planted.values())
        assert redis_client.type("wm_session_hash") == b"hash"
        assert all(r.name == "walletmesh_sessions" for r in caplog.records)
        logged = [r.getMessage() for r in caplog.records]
        assert len(logged) == 2 * len(CORRUPT_REASONS), "one warning per record and sweep"
        for reason in CORRUPT_REASONS:
            assert sum(reason in line for line in logged) == 2, reason

    @pytest.mark.anyio
    @pytest.mark.parametrize("session_id", ["not-json", "bad-shape", "not-utf8", "hash"])
    async def test_get_raises_naming_the_id(
        self, make: MakeStore, planted: dict[bytes, bytes], session_id: str
    ) -> None:
        """get of a corrupt record raises CorruptRecordError with the id; delete removes it."""
        async with make(config(refresh=True)) as store:
            with pytest.raises(CorruptRecordError) as info:
                await store.get(session_id)
            assert info.value.session_id == session_id
            assert repr(session_id) in str(info.value)
            await store.delete(session_id)
            assert await store.get(session_id) is None

    @pytest.mark.anyio
    async def test_inspect_shows_everything_and_changes_nothing(
        self,
        make: MakeStore,
        redis_client: redis.Redis,
        planted: dict[bytes, bytes],
        clock: FakeClock,
    ) -> None:
        """inspect lists live, expired and unreadable records, and removes or refreshes none."""
        async with make(config(refresh=True)) as store:
            await store.set("live", DATA)
            await store.set("old", OTHER)
            clock.advance(ms=LIFETIME_MS + 1)
            await store.set("live", DATA)
            before = redis_client.get("wm_session_live")
            records = {r.session_id: r for r in await store.inspect()}
            assert records["live"].data == DATA
            assert records["old"].is_expired(clock.now_ms)
            for session_id in ("not-json", "bad-shape", "not-utf8", "hash", "\ufffd", ""):
                assert records[session_id].data is None
                assert records[session_id].error
            assert [r.data for r in await store.inspect("live")] == [DATA]
            assert await store.inspect("missing") == []
            assert (await store.inspect("hash"))[0].error
        assert redis_client.get("wm_session_live") == before, "inspect refreshed a session"
        assert redis_client.exists("wm_session_old") == 1, "inspect removed an expired session"

    @pytest.mark.anyio
    async def test_clear_removes_them(
        self, make: MakeStore, redis_client: redis.Redis, planted: dict[bytes, bytes]
    ) -> None:
        """clear removes every key under the prefix, unreadable ones included."""
        redis_client.set("keep", "x")
        async with make() as store:
            await store.clear()
        assert redis_client.keys() == [b"keep"]


class TestAtomicRefresh:
    """Sliding the expiry is a compare-and-set of the exact bytes read."""

    @pytest.mark.anyio
    async def test_never_resurrects_a_deleted_session(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """A delete between the read and the compare-and-set wins: the key stays gone.

        A record with an expiresAt is read and slid by one script, so nothing can come
        between; one without (as here) is left to a compare-and-set after the read.
        """
        async with make(config(refresh=True)) as store:
            redis_client.set("wm_session_id", encode_record(DATA, None))
            op = interleave(
                ops.read(store._spec, "id"), lambda: redis_client.delete("wm_session_id")
            )
            assert await store._run("get", op) == DATA
        assert redis_client.exists("wm_session_id") == 0

    @pytest.mark.anyio
    async def test_never_overwrites_a_concurrent_set(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """A set between the read and the compare-and-set wins: its value and TTL stay."""
        newer = encode_record(OTHER, 1_700_000_005_000)
        async with make(config(refresh=True)) as store:
            redis_client.set("wm_session_id", encode_record(DATA, None))
            op = interleave(
                ops.read(store._spec, "id"),
                lambda: redis_client.set("wm_session_id", newer, px=5_000),
            )
            assert await store._run("get", op) == DATA
            assert redis_client.get("wm_session_id") == newer.encode()
            assert redis_client.pttl("wm_session_id") <= 5_000
            assert await store.get("id") == OTHER

    @pytest.mark.anyio
    async def test_expired_removal_spares_a_concurrent_set(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """Removing an expired session is a compare-and-delete: a fresh set survives it."""
        async with make() as store:
            await store.set("id", DATA)
            clock.advance(ms=LIFETIME_MS + 1)
            fresh = encode_record(OTHER, clock.now_ms + LIFETIME_MS)
            op = interleave(
                ops.read(store._spec, "id"), lambda: redis_client.set("wm_session_id", fresh)
            )
            assert await store._run("get", op) is None
            assert await store.get("id") == OTHER

    @pytest.mark.anyio
    async def test_refreshing_read_is_one_round_trip(
        self,
        make: MakeStore,
        redis_client: redis.Redis,
        clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A sliding get is one EVALSHA: the read and the slide are one atomic script."""
        sent: list[list[tuple[Any, ...]]] = []
        for runner in (AsyncioRunner, ThreadRunner):
            monkeypatch.setattr(runner, "_round_trip", _recording(runner._round_trip, sent))
        async with make(config(refresh=True)) as store:
            await store.set("id", DATA)
            clock.advance(ms=1_000)
            sent.clear()
            assert await store.get("id") == DATA
        assert [[c[0] for c in commands] for commands in sent] == [["EVALSHA"]]
        record = json.loads(redis_client.get("wm_session_id") or b"")
        assert record["expiresAt"] == clock.now_ms + LIFETIME_MS
        assert LIFETIME_MS < redis_client.pttl("wm_session_id") <= LIFETIME_MS + GRACE_MS

    @pytest.mark.anyio
    async def test_slid_unreadable_record_is_restored(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """A record the script can slide but that is unreadable gets its bytes and TTL back."""
        text = b'{"data":{"id":1,"origin":"o"},"expiresAt":1700000060000}'
        redis_client.set("wm_session_id", text)
        async with make(config(refresh=True)) as store:
            clock.advance(ms=1_000)
            with pytest.raises(CorruptRecordError):
                await store.get("id")
        assert redis_client.get("wm_session_id") == text
        assert redis_client.pttl("wm_session_id") == -1

    def test_scripts_directly(self, redis_client: redis.Redis) -> None:
        """The scripts write or delete only when the key holds exactly the expected bytes."""
        refresh = redis_client.register_script(COMPARE_AND_SET.source)
        remove = redis_client.register_script(COMPARE_AND_DELETE.source)
        assert refresh.sha == COMPARE_AND_SET.sha
        assert refresh(keys=["k"], args=["old", "new", 1000]) == 0
        assert redis_client.exists("k") == 0, "refresh created a missing key"
        redis_client.set("k", "other")
        assert refresh(keys=["k"], args=["old", "new", 1000]) == 0
        assert remove(keys=["k"], args=["old"]) == 0
        assert redis_client.get("k") == b"other"
        assert refresh(keys=["k"], args=["other", "new", 1000]) == 1
        assert redis_client.get("k") == b"new"
        assert 0 < redis_client.pttl("k") <= 1000
        redis_client.hset("h", "a", "b")
        assert refresh(keys=["h"], args=["old", "new", 1000]) == 0
        assert remove(keys=["h"], args=["old"]) == 0
        assert remove(keys=["k"], args=["new"]) == 1
        assert redis_client.exists("k") == 0

    @pytest.mark.anyio
    async def test_refresh_keeps_unknown_fields_byte_for_byte(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """Only expiresAt changes; big integers and unknown fields are not re-encoded by Lua."""
        text = (
            '{"data":{"id":"s","origin":"o","permissions":{},"extra":12345678901234567890123},'
            '"expiresAt":1700000060000,"future":[1.5,{"a":null}]}'
        )
        redis_client.set("wm_session_s", text)
        async with make(config(refresh=True)) as store:
            clock.advance(ms=1_000)
            assert await store.get("s") == SessionData("s", "o")
            assert dict(await store.get_all()) == {"s": SessionData("s", "o")}
        stored = redis_client.get("wm_session_s")
        assert stored == text.replace("1700000060000", "1700000061000").encode()

    @pytest.mark.anyio
    async def test_scripts_reloaded_after_flush(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """After SCRIPT FLUSH (or a restart) single and pipelined scripts load again."""
        async with make(config(refresh=True)) as store:
            await store.set("a", DATA)
            await store.set("b", OTHER)
            redis_client.script_flush()
            clock.advance(ms=LIFETIME_MS // 2)
            assert await store.get("a") == DATA
            redis_client.script_flush()
            clock.advance(ms=LIFETIME_MS // 2)
            assert dict(await store.get_all()) == {"a": DATA, "b": OTHER}
            clock.advance(ms=LIFETIME_MS)
            assert dict(await store.get_all()) == {"a": DATA, "b": OTHER}, "get_all did not slide"


_TIMES = st.integers(min_value=-(10**14), max_value=10**14)
_SPANS = st.integers(min_value=1, max_value=10**13)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def _records(draw: st.DrawFn) -> tuple[str, int | None, int | None]:
    """A record text as the script meets it, with its stored expiry and createdAt."""
    created = draw(st.none() | _TIMES)
    stored = draw(st.none() | st.just(0) | _TIMES)
    data: dict[str, object] = {"id": "s", "origin": "o", "permissions": {"c": ["m"]}}
    if draw(st.booleans()):  # app state naming createdAt, written before data's own
        data["appData"] = {"createdAt": draw(_TIMES), "note": "createdAt"}
    if created is not None:
        data["createdAt"] = created
    if draw(st.booleans()):
        data["extra"] = {"expiresAt": 5, "s": 'x"}\\'}  # nested look-alikes
    if draw(st.booleans()):
        data["more"] = draw(_JSON)
    members: list[tuple[str, object]] = [("data", data), ("expiresAt", stored)]
    if draw(st.booleans()):
        members.reverse()
    if draw(st.booleans()):
        members.insert(1, ("createdAt", draw(_TIMES)))  # not data's: never read
    if draw(st.booleans()):
        members.append(("future", [1.5, {"expiresAt": None}]))
    # Compact, as the TypeScript store and this package write it (the script's quick path),
    # with spaces, or indented (the path that walks the text).
    layout = draw(st.sampled_from([(None, (",", ":")), (None, None), (1, None), ("\t", None)]))
    indent, separators = layout
    text = json.dumps(
        dict(members), indent=indent, separators=separators, ensure_ascii=draw(st.booleans())
    )
    return text, (stored or None), created


def _script_agrees(
    server: RedisServer,
    text: str,
    stored: int | None,
    created: int | None,
    now: int,
    lifetime: int,
    max_lifetime: int | None,
) -> None:
    """The read-and-slide script on `text` decides as `after_read` does, and writes the same
    bytes with the TTL it is given."""
    # Whole milliseconds as timedeltas: float seconds this large are not exact (a lifetime of
    # 8,771,708,119,248 ms is 8771708119.247999 s as a float).
    cfg = SessionStoreConfig(
        lifetime=timedelta(milliseconds=lifetime),
        refresh_on_access=True,
        max_lifetime=None if max_lifetime is None else timedelta(milliseconds=max_lifetime),
    )
    assert cfg.lifetime_ms == lifetime
    assert cfg.max_lifetime_ms == max_lifetime
    client = server.client()
    try:
        client.set("prop", text)
        found = _run_step(client, steps.ReadAndSlide("prop", now, lifetime, max_lifetime, 777_000))
        held, ttl = client.get("prop"), client.pttl("prop")
    finally:
        client.delete("prop")
        client.close()
    expected = after_read(cfg, now, stored, created)
    assert isinstance(found, steps.Slide)
    assert found.raw == text.encode()
    if expected is EXPIRED:
        assert found.verdict is steps.Verdict.EXPIRED
        assert held == text.encode()
    elif expected == stored:
        assert found.verdict is steps.Verdict.KEPT
        assert (held, ttl) == (text.encode(), -1)
    else:
        assert expected is not None
        slid = record_with_expiry(text, expected).encode()
        assert found == steps.Slide(steps.Verdict.SLID, text.encode(), slid, None)
        assert held == slid
        assert 776_000 < ttl <= 777_000


# The read-and-slide script without its quick path: every text is walked.
_WALKED_ONLY = READ_AND_SLIDE.source.replace(
    "local exp, stored, created = quick()\n", "local exp, stored, created = nil\n"
)
assert READ_AND_SLIDE.source != _WALKED_ONLY

_ODD_VALUES = st.sampled_from(["nan(1)", "-nan(x_1)", "NaN", "0x1F", "1e3", "-0", "007", "+1"])


@st.composite
def _compact_texts(draw: st.DrawFn) -> str:
    """Records in the compact shape the script's quick path reads, some with a value that is
    not JSON, a repeated createdAt or a NUL byte after the object's first part."""
    data: dict[str, object] = {"id": "s", "origin": "o"}
    if draw(st.booleans()):
        data["createdAt"] = draw(st.none() | _TIMES)
    data["more"] = draw(st.just("\ue000") | _JSON)
    if draw(st.booleans()):
        data["\ue001"] = None
    members: dict[str, object] = {"data": data}
    if draw(st.booleans()):
        members["other"] = draw(st.just("\ue000") | _JSON)
    members["expiresAt"] = draw(st.just(0) | _TIMES)
    text = json.dumps(members, separators=(",", ":"), ensure_ascii=False)
    text = text.replace('"\ue000"', draw(_ODD_VALUES)).replace("\ue001", "createdAt")
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        last = text.rindex(',"expiresAt"')
        text = text[:last] + "}\x00" + text[last:]
    return text


class TestReadAndSlideAgreesWithAfterRead:
    """The one decision that exists twice (`_expiry.after_read` and the Lua script) agrees."""

    @settings(max_examples=300, deadline=None)
    @given(
        record=_records(),
        now=_TIMES,
        lifetime=_SPANS,
        max_lifetime=st.none() | _SPANS,
    )
    def test_same_decision_and_bytes(
        self,
        redis_server: RedisServer,
        record: tuple[str, int | None, int | None],
        now: int,
        lifetime: int,
        max_lifetime: int | None,
    ) -> None:
        """Random configs, clocks and records: same verdict, same text, TTL as given."""
        text, stored, created = record
        _script_agrees(redis_server, text, stored, created, now, lifetime, max_lifetime)

    @settings(max_examples=200, deadline=None)
    @given(
        created=st.none() | _TIMES,
        stored=_TIMES.filter(bool),  # written with an expiry: without one there is none to slide
        since=st.integers(min_value=-(10**6), max_value=10**7),
        lifetime=st.integers(min_value=1, max_value=10**7),
        max_lifetime=st.none() | st.integers(min_value=1, max_value=10**7),
    )
    def test_records_as_written(
        self,
        redis_server: RedisServer,
        created: int | None,
        stored: int,
        since: int,
        lifetime: int,
        max_lifetime: int | None,
    ) -> None:
        """Records as this package and the TypeScript store write them (the script's quick
        path), read near their creation, where the absolute timeout decides."""
        data = SessionData("s", "https://o.example", {"eip155:1": ["eth_accounts"]}, created)
        text = encode_record(data, stored)
        now = (0 if created is None else created) + since
        _script_agrees(redis_server, text, stored, created, now, lifetime, max_lifetime)

    @settings(max_examples=300, deadline=None)
    @given(
        text=_compact_texts(),
        now=_TIMES,
        lifetime=_SPANS,
        max_lifetime=st.none() | _SPANS,
    )
    def test_quick_path_agrees_with_walking(
        self,
        redis_server: RedisServer,
        text: str,
        now: int,
        lifetime: int,
        max_lifetime: int | None,
    ) -> None:
        """On any text, the script decides and writes as it does with every text walked."""
        client = redis_server.client()
        cap = "" if max_lifetime is None else max_lifetime
        replies = []
        try:
            for source in (READ_AND_SLIDE.source, _WALKED_ONLY):
                client.set("prop", text)
                reply = client.eval(source, 1, "prop", now, lifetime, cap, 777_000)
                replies.append((reply[:3], client.get("prop"), client.pttl("prop") > 0))
        finally:
            client.delete("prop")
            client.close()
        assert replies[0] == replies[1]

    @pytest.mark.parametrize(
        "text",
        [
            '{"data":{"id":"s","origin":"o"}}',  # no expiresAt: the record gains one
            '{"data":{"id":"s","origin":"o"},"expiresAt":1.5}',
            '{"data":{"id":"s","origin":"o"},"expiresAt":1e3}',
            '{"data":{"id":"s","origin":"o"},"expiresAt":12345678901234567}',
            '{"data":{"id":"s","origin":"o"},"expires\\u0041t":1}',
            '{"data":{"id":"s","origin":"o"},"expiresAt":1,"expiresAt":2}',
            '{"data":{"id":"s","origin":"o","createdAt":1,"createdAt":2},"expiresAt":1}',
            '{"data":{"id":"s","origin":"o","createdAt":1e3},"expiresAt":1}',
            '{"data":{"id":"s","origin":"o"},"data":{"id":"t","origin":"o"},"expiresAt":1}',
            '{"data":{"id":"s","origin":"o","createdAt":1.5},"expiresAt":1}',
            '{"data":{"id":"s","origin":"o","createdAt":1,"createdAt":null},"expiresAt":100}',
            '{"data":{"id":"s","origin":"o"}}\x00,"expiresAt":100}',  # cjson stops at a NUL
            '{"data":{"id":"s","origin":"o","x":nan(1)},"expiresAt":100}',  # strtod reads nan(...)
            '{"data":[],"expiresAt":1}',
            '{"data":{"id":"s","origin":"o"},"expiresAt":1}x',
            "not json",
            "[1]",
        ],
    )
    def test_undecided_shapes_left_unchanged(self, redis_client: redis.Redis, text: str) -> None:
        """A shape the script does not read with certainty is returned unjudged, unchanged."""
        redis_client.set("k", text)
        found = _run_step(redis_client, steps.ReadAndSlide("k", 10, 60_000, None, 66_000))
        assert found == steps.Slide(steps.Verdict.UNDECIDED, text.encode())
        assert (redis_client.get("k"), redis_client.pttl("k")) == (text.encode(), -1)


class TestTypeScriptRecords:
    """Records written by the TypeScript LocalStorageSessionStore read with its results."""

    @pytest.mark.anyio
    async def test_fixture_records(self, make: MakeStore, redis_client: redis.Redis) -> None:
        """s-basic, s-multi and s-noexp are live, s-old is expired, theme is not a session."""
        fixture = json.loads((FIXTURES / "ts-localstorage-records.json").read_text())
        redis_client.mset({r["key"]: r["value"] for r in fixture["records"]})
        clock = FakeClock(fixture["written_at_ms"])
        base = "https://app.example.com_s-basic"
        async with make(config(60), clock_=clock) as store:
            basic = await store.get(base)
            assert basic == SessionData(
                "s-basic",
                "https://app.example.com",
                {"eip155:1": ["eth_accounts", "eth_sendTransaction"]},
            )
            multi = await store.get("https://dapp.example.org_s-multi")
            assert multi is not None
            assert multi.permissions == {
                "eip155:1": ("eth_accounts",),
                "eip155:137": ("eth_sendTransaction", "personal_sign"),
                "aztec:testnet": ("aztec_getAddress",),
            }
            noexp = await store.get("https://wallet.example_s-noexp")
            assert noexp == SessionData("s-noexp", "https://wallet.example")
            assert set(await store.get_all()) == {
                base,
                "https://dapp.example.org_s-multi",
                "https://wallet.example_s-noexp",
            }
            assert await store.get("https://old.example.com_s-old") is None
            assert await store.clean_expired() == 0  # get already removed s-old
            clock.advance(ms=LIFETIME_MS + 1)
            assert await store.clean_expired() == 2
        assert redis_client.get("theme") == b"dark"
        assert redis_client.exists("wm_session_https://wallet.example_s-noexp") == 1


WRITER = """
import sys
import anyio
from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions.redis import RedisSessionStore

url, name, backend, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


async def main() -> None:
    config = SessionStoreConfig(lifetime=3600, refresh_on_access=True)
    async with RedisSessionStore.from_url(url, config) as store:

        async def write(n: int) -> None:
            await store.set(f"{name}-{n}", SessionData(f"{name}-{n}", "https://" + name))
            await store.set(f"shared-{n}", SessionData(name, "https://" + name))
            assert await store.get(f"{name}-{n}") is not None

        async with anyio.create_task_group() as tg:
            for n in range(count):
                tg.start_soon(write, n)


anyio.run(main, backend=backend)
"""


class TestProcesses:
    """Stores in separate OS processes share one database without losing writes."""

    @pytest.mark.anyio
    async def test_two_processes_write_concurrently(self, make: MakeStore, redis_url: str) -> None:
        """An asyncio process and a trio process each write 200 sessions at once."""
        count = 200

        async def run(name: str, backend: str) -> None:
            command = [sys.executable, "-c", WRITER, redis_url, name, backend, str(count)]
            await anyio.run_process(command, cwd=ROOT, check=True)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "alpha", "asyncio")
                tg.start_soon(run, "beta", "trio")
        async with make(config(3600), clock_=FakeClock(round(time.time() * 1000))) as store:
            sessions = await store.get_all()
        expected = {f"{name}-{n}" for name in ("alpha", "beta") for n in range(count)}
        expected |= {f"shared-{n}" for n in range(count)}
        assert set(sessions) == expected
        assert {sessions[f"shared-{n}"].id for n in range(count)} <= {"alpha", "beta"}


class TestConnectionLoss:
    """A lost or silent server gives a prompt StoreUnavailableError, and no lasting harm."""

    @pytest.mark.anyio
    async def test_restart(self, make: MakeStore, redis_server: RedisServer) -> None:
        """While Redis is down calls fail fast; after a restart the same store works again."""
        async with make(config(refresh=True)) as store:
            await store.set("id", DATA)
            assert await store.get("id") == DATA
            redis_server.stop()
            try:
                for call in (store.get("id"), store.set("id", DATA), store.get_all()):
                    start = time.monotonic()
                    with anyio.fail_after(10), pytest.raises(StoreUnavailableError) as info:
                        await call
                    assert time.monotonic() - start < 3
                    assert isinstance(info.value.__cause__, redis.RedisError | OSError)
            finally:
                redis_server.start()
            assert await store.get("id") is None  # nothing persists across the restart
            await store.set("id", DATA)
            assert await store.get("id") == DATA  # the refresh script is loaded again
            assert dict(await store.get_all()) == {"id": DATA}

    @pytest.mark.anyio
    async def test_silent_server_times_out(self, make: MakeStore) -> None:
        """A server that accepts but never answers is abandoned after the timeout."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
            async with make(url=url, timeout=0.2, retries=1) as store:
                start = time.monotonic()
                with anyio.fail_after(10), pytest.raises(StoreUnavailableError):
                    await store.get("id")
                assert time.monotonic() - start < 2

    @pytest.mark.anyio
    async def test_waiting_for_a_connection_is_bounded(self, make: MakeStore) -> None:
        """With every pooled connection busy, a call gives up after the timeout."""
        async with make(max_connections=1, timeout=0.2) as store:
            await store.set("id", DATA)
            runner = store._runner()
            if isinstance(runner, AsyncioRunner):
                slots = runner._slots
                assert slots is not None
                await slots.acquire()
                release = slots.release
            else:
                pool = runner.client.connection_pool
                busy = pool.get_connection()

                def release() -> None:
                    pool.release(busy)

            try:
                with anyio.fail_after(5), pytest.raises(StoreUnavailableError):
                    await store.get("id")
            finally:
                release()
            assert await store.get("id") == DATA

    @pytest.mark.anyio
    async def test_nothing_listening(self, make: MakeStore) -> None:
        """Connection refused is reported at once, and bad input is refused before any I/O."""
        async with make(url=f"redis://127.0.0.1:{free_port()}/0") as store:
            with pytest.raises(InvalidSessionIdError):
                await store.get("")
            with anyio.fail_after(10), pytest.raises(StoreUnavailableError, match="Redis"):
                await store.delete("id")


class TestClients:
    """A caller's client is used as given and never closed; from_url makes its own."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_asyncio_client_stays_open(
        self, redis_client: redis.Redis, redis_server: RedisServer
    ) -> None:
        """A redis.asyncio client works on asyncio and is still open after aclose."""
        client = redis.asyncio.Redis(port=redis_server.port)
        try:
            async with RedisSessionStore(client, config()) as store:
                await store.set("id", DATA)
                assert await store.get("id") == DATA
            assert await client.ping()
        finally:
            await client.aclose()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_asyncio_client_refused_on_trio(self, redis_server: RedisServer) -> None:
        """A redis.asyncio client on trio is a clear error, not a hang or a crash."""
        store = RedisSessionStore(redis.asyncio.Redis(port=redis_server.port), config())
        with pytest.raises(InvalidConfigError, match="trio"):
            await store.get("id")
        await store.aclose()

    @pytest.mark.anyio
    async def test_sync_client_on_both_backends(
        self, redis_client: redis.Redis, redis_server: RedisServer
    ) -> None:
        """A redis.Redis works on asyncio and trio (in threads) and stays open after aclose."""
        client = redis_server.client()
        try:
            async with RedisSessionStore(client, config(refresh=True)) as store:
                await store.set("id", DATA)
                assert await store.get("id") == DATA
                assert dict(await store.get_all()) == {"id": DATA}
            assert client.ping()
        finally:
            client.close()

    @pytest.mark.parametrize(
        "client", ["redis://localhost", None, object()], ids=["url", "none", "object"]
    )
    def test_not_a_client(self, client: Any) -> None:
        """Anything but a Redis client is refused at construction."""
        with pytest.raises(InvalidConfigError, match=r"redis\.Redis"):
            RedisSessionStore(client)

    @pytest.mark.parametrize("url", ["http://localhost", 6379, "redis://h:notaport"], ids=repr)
    def test_bad_url(self, url: Any) -> None:
        """A URL redis-py cannot use is refused by from_url, before any connection."""
        with pytest.raises(InvalidConfigError):
            RedisSessionStore.from_url(url)

    @pytest.mark.parametrize(
        "options",
        [
            {"timeout": 0},
            {"timeout": "5"},
            {"timeout": float("inf")},
            {"max_connections": 0},
            {"retries": -1},
        ],
        ids=repr,
    )
    def test_bad_limits(self, options: dict[str, Any]) -> None:
        """Timeouts, pool size and retries are checked by from_url."""
        with pytest.raises(InvalidConfigError):
            RedisSessionStore.from_url("redis://localhost", **options)

    def test_bad_settings(self) -> None:
        """Prefix, config and clock are checked like every other store's."""
        with pytest.raises(InvalidConfigError):
            RedisSessionStore.from_url("redis://localhost", prefix="")
        with pytest.raises(InvalidConfigError):
            RedisSessionStore.from_url("redis://localhost", config={"lifetime": 1})  # type: ignore[arg-type]
        with pytest.raises(InvalidConfigError):
            RedisSessionStore.from_url("redis://localhost", clock=1)  # type: ignore[arg-type]


class TestLifecycle:
    """aclose and `async with` close the store; a closed store says so."""

    @pytest.mark.anyio
    async def test_closed_store_raises(self, make: MakeStore) -> None:
        """Every method of a closed store raises StoreClosedError; aclose is idempotent."""
        async with make() as store:
            assert isinstance(store, SessionStore)
            await store.set("id", DATA)
        await store.aclose()
        calls = [
            store.set("id", DATA),
            store.get("id"),
            store.get_all(),
            store.delete("id"),
            store.clear(),
            store.validate_and_refresh("id"),
            store.clean_expired(),
            store.create("id", DATA),
            store.update("id", lambda data: data),
            store.rotate("id", "new"),
        ]
        for call in calls:
            with pytest.raises(StoreClosedError):
                await call

    @pytest.mark.anyio
    async def test_repr_hides_the_url(self, make: MakeStore) -> None:
        """The repr names prefix and config, never the URL (it may hold a password)."""
        async with make(url="redis://:secret@127.0.0.1:1/0") as store:
            assert "secret" not in repr(store)
            assert "wm_session_" in repr(store)


class TestMissingExtra:
    """Without redis installed the import error says which pip install fixes it."""

    def test_import_error_names_the_extra(self) -> None:
        """walletmesh_sessions works without redis; walletmesh_sessions.redis explains."""
        script = (
            "import sys\n"
            "sys.modules['redis'] = None\n"
            "import walletmesh_sessions\n"
            "try:\n"
            "    import walletmesh_sessions.redis\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "pip install 'walletmesh-sessions[redis]'" in result.stdout

    def test_import_error_is_missing_dependency_error(self) -> None:
        """The error is the library's MissingDependencyError, still an ImportError."""
        script = (
            "import sys\n"
            "sys.modules['sniffio'] = None\n"
            "import walletmesh_sessions\n"
            "try:\n"
            "    import walletmesh_sessions.redis\n"
            "except walletmesh_sessions.MissingDependencyError as exc:\n"
            "    print(isinstance(exc, ImportError), exc.name)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.split() == ["True", "sniffio"]


def test_class_reports_its_public_module() -> None:
    """RedisSessionStore is walletmesh_sessions.redis.RedisSessionStore, wherever it is written."""
    assert RedisSessionStore.__module__ == "walletmesh_sessions.redis"


def before_step(op: steps.Op[T], kind: type, action: Callable[[], object]) -> steps.Op[T]:
    """`op`, with `action` run (as another client would) just before its first `kind` step."""
    done: list[bool] = []

    def once() -> None:
        if not done:
            action()
            done.append(True)

    return before_each(op, kind, once, required=kind.__name__)


class TestRefreshAndCount:
    """A refresh gives an expiry to a record without one; clean_expired counts what it removed."""

    @pytest.mark.anyio
    async def test_refresh_gives_expiry_and_ttl_to_a_record_without_one(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """Stored with no lifetime, read by a refreshing store: expiresAt and a TTL appear."""
        async with make(config(None)) as forever, make(config(refresh=True)) as refreshing:
            await forever.set("id", DATA)
            assert redis_client.pttl("wm_session_id") == -1
            assert "expiresAt" not in json.loads(redis_client.get("wm_session_id") or b"")
            clock.advance(ms=1_000)
            assert await refreshing.get("id") == DATA
        stored = json.loads(redis_client.get("wm_session_id") or b"")
        assert stored["expiresAt"] == clock.now_ms + LIFETIME_MS
        assert LIFETIME_MS < redis_client.pttl("wm_session_id") <= LIFETIME_MS + GRACE_MS

    @pytest.mark.anyio
    async def test_clean_expired_counts_only_confirmed_removals(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """Keys another client deletes between the scan and the removals are not counted."""
        async with make() as store:
            for n in range(10):
                await store.set(f"old{n}", DATA)
            clock.advance(ms=LIFETIME_MS + 1)
            await store.set("live", DATA)
            op = before_step(
                bulk_ops.clean_expired(store._spec),
                steps.Batch,
                lambda: redis_client.delete(*(f"wm_session_old{n}" for n in range(4))),
            )
            assert await store._run("clean_expired", op) == 6
        assert redis_client.keys() == [b"wm_session_live"]


class TestBoundedCalls:
    """Every call of a from_url store ends within (retries + 1) x timeout, however many wait."""

    @pytest.mark.anyio
    async def test_hung_server_many_concurrent_gets(
        self, dedicated_redis: Callable[..., RedisServer], clock: FakeClock
    ) -> None:
        """200 gets to a frozen server each fail with StoreUnavailableError within the bound."""
        server = dedicated_redis()
        timeout, retries = 1.0, 1
        bound = (retries + 1) * timeout + retries * 0.1
        store = RedisSessionStore.from_url(
            server.url, config(), clock=clock, timeout=timeout, retries=retries
        )
        elapsed: list[float] = []
        failures: list[BaseException] = []

        async def call(n: int) -> None:
            start = time.monotonic()
            try:
                await store.get(f"id{n}")
            except StoreUnavailableError as exc:
                failures.append(exc)
            elapsed.append(time.monotonic() - start)

        lag = [0.0]

        async def heartbeat() -> None:
            # How late the event loop itself ran: time no call could have used, on a busy host.
            while True:
                before = time.monotonic()
                await anyio.sleep(0.01)
                lag[0] = max(lag[0], time.monotonic() - before - 0.01)

        server.pause()
        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as outer:
                    outer.start_soon(heartbeat)
                    async with anyio.create_task_group() as tg:
                        for n in range(200):
                            tg.start_soon(call, n)
                    outer.cancel_scope.cancel()
        finally:
            server.resume()
        with anyio.fail_after(10):
            await store.aclose()
        assert len(failures) == 200
        slowest = max(elapsed)
        assert slowest < bound + 0.6 + lag[0], f"slowest call: {slowest:.2f} s, lag {lag[0]:.2f}"


def slow_scans(op: steps.Op[T], seconds: float, pages: list[int]) -> steps.Op[T]:
    """`op`, taking `seconds` longer before each of its scan pages (a slow network, say)."""

    def slow_page() -> None:
        pages.append(1)
        time.sleep(seconds)

    return before_each(op, steps.Scan, slow_page)


class _JumpingLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop whose clock a test moves forward: time passes without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0

    def time(self) -> float:
        return super().time() + self.skipped


def _jump_trio_clock(seconds: float) -> None:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    clock.jump(seconds)


class TestBulkCallsBoundedByPage:
    """A scan's bound is per page: a big store takes as long as it is big, and never fails
    for that alone."""

    # The bound per page, and how long each page takes on the event loop's clock: moved
    # forward by the test, so a page's own running time (a few milliseconds, seconds on a
    # loaded machine) would have to exceed the difference for the test to be wrong.
    BOUND = 10.0
    PAGE = 4.0

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
        """Both backends, each with a clock the test moves forward (from the running loop's
        thread on asyncio, from a worker thread on trio, where Redis calls run)."""
        if request.param == "asyncio":
            return "asyncio", {"loop_factory": _JumpingLoop}
        return "trio", {"clock": trio.testing.MockClock(rate=1.0)}

    @pytest.fixture
    def jump(self, anyio_backend: tuple[str, dict[str, Any]]) -> Callable[[float], None]:
        """Move the event loop's clock forward by that many seconds, from inside an operation."""

        def on_asyncio(seconds: float) -> None:
            loop = asyncio.get_running_loop()
            assert isinstance(loop, _JumpingLoop)
            loop.skipped += seconds

        def on_trio(seconds: float) -> None:
            anyio.from_thread.run_sync(_jump_trio_clock, seconds)

        return on_asyncio if anyio_backend[0] == "asyncio" else on_trio

    def jumping_scans(
        self, op: steps.Op[T], seconds: float, jump: Callable[[float], None], pages: list[int]
    ) -> steps.Op[T]:
        """`op`, each of its scan pages taking `seconds` on the event loop's clock."""

        def slow_page() -> None:
            pages.append(1)
            jump(seconds)

        return before_each(op, steps.Scan, slow_page)

    @pytest.mark.anyio
    @pytest.mark.parametrize("method", ["get_all", "clean_expired", "clear", "inspect"])
    async def test_longer_than_the_bound_in_all(
        self,
        make: MakeStore,
        redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch,
        jump: Callable[[float], None],
        method: str,
    ) -> None:
        """Pages of 40 % of the bound each, more than the bound together: the call succeeds."""
        record = encode_record(DATA, None)
        redis_client.mset({f"wm_session_id{n}": record for n in range(3000)})
        pages: list[int] = []
        real = getattr(bulk_ops, method)

        def slowed(*args: Any) -> steps.Op[Any]:
            return self.jumping_scans(real(*args), self.PAGE, jump, pages)

        monkeypatch.setattr(bulk_ops, method, slowed)
        async with make(timeout=self.BOUND, retries=0) as store:
            start = anyio.current_time()
            await getattr(store, method)()
            elapsed = anyio.current_time() - start
        assert len(pages) * self.PAGE > self.BOUND, f"only {len(pages)} pages: proves nothing"
        assert elapsed > self.BOUND

    @pytest.mark.anyio
    async def test_the_bound_reads_the_moved_clock(
        self,
        make: MakeStore,
        redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch,
        jump: Callable[[float], None],
    ) -> None:
        """One page moved past the bound fails: the clock the test above moves is the one
        the bound is measured on, so its success is not for want of a deadline."""
        redis_client.mset({f"wm_session_id{n}": encode_record(DATA, None) for n in range(50)})
        real = bulk_ops.get_all

        def slowed(*args: Any) -> steps.Op[Any]:
            return self.jumping_scans(real(*args), self.BOUND + self.PAGE, jump, [])

        monkeypatch.setattr(bulk_ops, "get_all", slowed)
        async with make(timeout=self.BOUND, retries=0) as store:
            with anyio.fail_after(self.BOUND * 3), pytest.raises(StoreUnavailableError):
                await store.get_all()
            monkeypatch.setattr(bulk_ops, "get_all", real)
            assert len(await store.get_all()) == 50

    @pytest.mark.anyio
    async def test_a_page_longer_than_the_bound_fails(
        self, make: MakeStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One slow page is StoreUnavailableError (on trio its thread is abandoned mid-step),
        and the store goes on working."""
        redis_client.mset({f"wm_session_id{n}": encode_record(DATA, None) for n in range(50)})
        real = bulk_ops.get_all
        monkeypatch.setattr(bulk_ops, "get_all", lambda *args: slow_scans(real(*args), 0.6, []))
        async with make(timeout=0.2, retries=0) as store:
            with pytest.raises(StoreUnavailableError):
                await store.get_all()
            monkeypatch.setattr(bulk_ops, "get_all", real)
            assert len(await store.get_all()) == 50


class TestEventLoops:
    """A from_url store works under successive event loops (a module-level store in tests)."""

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_two_successive_runs(
        self, redis_client: redis.Redis, redis_url: str, backend: str
    ) -> None:
        """Two anyio.run calls with the same store: each works; aclose in a third."""
        store = RedisSessionStore.from_url(redis_url, config(refresh=True))

        async def use(n: int) -> None:
            await store.set(f"id{n}", DATA)
            assert await store.get(f"id{n}") == DATA
            assert set(await store.get_all()) == {f"id{m}" for m in range(1, n + 1)}

        with warnings_as_errors():
            anyio.run(use, 1, backend=backend)
            anyio.run(use, 2, backend=backend)
            anyio.run(store.aclose, backend=backend)
        assert redis_client.exists("wm_session_id1", "wm_session_id2") == 2


@contextlib.contextmanager
def warnings_as_errors() -> Iterator[None]:
    """Every warning an error, unclosed sockets of dropped clients included."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
        gc.collect()  # an abandoned transport would warn now


URL_PARAMETERS = [
    ("timeout=0.5", {"timeout": 0.5}),
    ("retries=0", {"retries": 0}),
    ("max_connections=3", {"max_connections": 3}),
    ("db=2", {"db": 2}),
    ("socket_timeout=2", {"socket_timeout": 2.0}),
    ("socket_connect_timeout=2", {"socket_connect_timeout": 2.0}),
    ("socket_keepalive=true", {"socket_keepalive": True}),
    ("health_check_interval=30", {"health_check_interval": 30}),
    ("client_name=sessions", {"client_name": "sessions"}),
    ("protocol=2", {"protocol": 2}),
]


class TestUrlParameters:
    """Every documented URL parameter works; an unknown one is refused at creation."""

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "expected"), URL_PARAMETERS, ids=[q for q, _ in URL_PARAMETERS]
    )
    async def test_documented_parameter(
        self, redis_url: str, redis_client: redis.Redis, query: str, expected: dict[str, Any]
    ) -> None:
        """The store works with it and uses it (no TypeError at the first call)."""
        url = f"{redis_url.rsplit('/', 1)[0]}/0?{query}"
        async with RedisSessionStore.from_url(url, config()) as store:
            await store.set("id", DATA)
            assert await store.get("id") == DATA
            runner = store._runner()
            pool = runner.client.connection_pool
            for name, value in expected.items():
                if name == "retries":
                    assert store._clients._retries == value  # type: ignore[union-attr]
                elif name == "timeout":
                    assert store._clients._budget == 2 * value + 0.1  # type: ignore[union-attr]
                elif name == "max_connections":
                    assert store._clients._limit == value  # type: ignore[union-attr]
                else:
                    assert pool.connection_kwargs[name] == value
        database = 2 if "db=2" in query else 0
        with redis.Redis(
            port=redis_client.connection_pool.connection_kwargs["port"], db=database
        ) as raw:
            assert raw.exists("wm_session_id") == 1
            raw.delete("wm_session_id")

    @pytest.mark.anyio
    @pytest.mark.parametrize("given", [None, 3.0])
    async def test_read_timeout_by_backend(
        self, redis_url: str, anyio_backend: str, given: float | None
    ) -> None:
        """On asyncio the call's deadline bounds replies, unless a socket_timeout is given;
        on trio each reply is bounded (a thread cannot be cancelled)."""
        options: dict[str, Any] = {} if given is None else {"socket_timeout": given}
        async with RedisSessionStore.from_url(redis_url, config(), timeout=2.0, **options) as store:
            await store.get("id")
            pool = store._runner().client.connection_pool
            expected = given if given is not None else (None if anyio_backend == "asyncio" else 2.0)
            assert pool.connection_kwargs["socket_timeout"] == expected
            assert pool.connection_kwargs["socket_connect_timeout"] == 2.0

    @pytest.mark.anyio
    async def test_through_open_store(self, redis_url: str, redis_client: redis.Redis) -> None:
        """open_store passes ?timeout= through to a working store."""
        from walletmesh_sessions import open_store

        async with open_store(f"{redis_url}?timeout=2&lifetime=60") as store:
            await store.set("id", DATA)
            assert await store.get("id") == DATA

    def test_tls_parameters_on_rediss(self) -> None:
        """TLS parameters are accepted for rediss:// (nothing connects yet)."""
        RedisSessionStore.from_url(
            "rediss://h:6380/0?ssl_cert_reqs=required&ssl_check_hostname=true"
        )

    @pytest.mark.parametrize(
        "url",
        [
            "redis://h:6379/0?bogus=1",
            "redis://h:6379/0?ssl_ca_certs=/ca.pem",  # TLS only on rediss://
            "redis://h:6379/0?timeout=soon",
            "redis://h:6379/0?db=0&Timeout=1",
        ],
    )
    def test_unknown_or_bad_parameter_refused_at_creation(self, url: str) -> None:
        """Refused by from_url with InvalidConfigError naming the parameter."""
        name = url.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
        with pytest.raises(InvalidConfigError, match=repr(name)):
            RedisSessionStore.from_url(url)

    def test_unknown_client_option_refused_at_creation(self) -> None:
        """A keyword the Redis connections do not take fails now, naming it."""
        with pytest.raises(InvalidConfigError, match="bogus_option"):
            RedisSessionStore.from_url("redis://h:6379/0", bogus_option=1)


class TestErrorsHideIds:
    """Error replies that echo arguments never put a session id into messages or logs."""

    SECRET = "Sx9-very-secret-session-id-0123456789"

    @pytest.mark.anyio
    async def test_echoed_arguments_withheld(
        self,
        dedicated_redis: Callable[..., RedisServer],
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """With EVALSHA disabled Redis echoes keys and records; none reach errors or logs."""
        server = dedicated_redis("--rename-command", "EVALSHA", "")
        caplog.set_level(logging.DEBUG, logger="walletmesh_sessions")
        async with RedisSessionStore.from_url(server.url, config(), clock=clock) as store:
            for n in range(3):
                await store.set(f"{self.SECRET}{n}", DATA)
            clock.advance(ms=LIFETIME_MS + 1)
            errors: list[BaseException] = []
            for call in (store.clean_expired(), store.get_all(), store.get(f"{self.SECRET}0")):
                with pytest.raises(SessionStoreError) as info:
                    await call
                errors.append(info.value)
            with anyio.move_on_after(0.5):
                await clean_expired_every(store, 0.1)
        for error in errors:
            for shown in (str(error), repr(error), str(error.__cause__)):
                assert self.SECRET not in shown
            assert "unknown command" not in str(error.__cause__)
            assert isinstance(error.__cause__, redis.ResponseError)
            assert "ERR" in str(error)
        assert any(r.levelno == logging.ERROR for r in caplog.records)
        assert self.SECRET not in caplog.text
        assert "wm_session_" not in caplog.text


# A child process: `count` concurrent increments through update, once the parent says go.
# It prints how many compare-and-set races its updates lost.
INCREMENTER = """
import sys
import time

import anyio
import redis

from walletmesh_sessions import SessionStoreConfig
from walletmesh_sessions._redis import ops, steps
from walletmesh_sessions.redis import RedisSessionStore
from walletmesh_sessions.testing._rules_lifecycle import increment

url, backend, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
lost = [0]
plain_update = ops.update


def counted(*args):
    op = plain_update(*args)
    reply = None
    while True:
        try:
            step = op.send(reply)
        except StopIteration as stop:
            return stop.value
        reply = yield step
        if isinstance(step, steps.CompareAndSet) and not reply:
            lost[0] += 1


ops.update = counted


async def main() -> None:
    config = SessionStoreConfig(lifetime=3600)
    raw = redis.Redis.from_url(url, socket_timeout=5)
    async with RedisSessionStore.from_url(url, config) as store:
        await store.get("counter")  # connected before the start
        raw.incr("ready")
        deadline = time.monotonic() + 30
        while not raw.exists("go"):
            assert time.monotonic() < deadline, "never told to go"
            await anyio.sleep(0.001)
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(store.update, "counter", increment)
    raw.close()
    print(lost[0])


anyio.run(main, backend=backend)
"""


def count_lost_races(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count, from now on, the compare-and-set races this process's updates lose."""
    lost = [0]
    plain_update = ops.update

    def counted(*args: Any) -> steps.Op[SessionData | None]:
        op = plain_update(*args)
        reply: Any = None
        while True:
            try:
                step = op.send(reply)
            except StopIteration as stop:
                result: SessionData | None = stop.value
                return result
            reply = yield step
            if isinstance(step, steps.CompareAndSet) and not reply:
                lost[0] += 1

    monkeypatch.setattr(ops, "update", counted)
    return lost


def real_clock_store(make: MakeStore) -> RedisSessionStore:
    return make(config(3600), clock_=time.time)


class TestAtomicLifecycle:
    """create, update and rotate on a real server: atomic across tasks, stores and processes."""

    @pytest.mark.anyio
    async def test_is_a_lifecycle_store(self, make: MakeStore) -> None:
        """RedisSessionStore satisfies LifecycleSessionStore structurally."""
        async with make() as store:
            assert isinstance(store, LifecycleSessionStore)

    @pytest.mark.anyio
    async def test_500_increments_none_lost_no_race(
        self, make: MakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """500 concurrent updates from one store: none lost, and taking turns none races."""
        lost = count_lost_races(monkeypatch)
        async with real_clock_store(make) as store:
            await store.set("counter", counter(0))
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for _ in range(500):
                        tg.start_soon(store.update, "counter", increment)
            assert await store.get("counter") == counter(500)
            assert store._turns._turns == {}, "a key's lock outlived its users"
        assert lost == [0], f"{lost[0]} races lost inside one store"

    @pytest.mark.anyio
    async def test_four_processes_and_500_tasks(
        self,
        make: MakeStore,
        redis_url: str,
        redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """4 processes x 100 increments while 500 tasks increment here: the count is exact."""
        lost = count_lost_races(monkeypatch)
        children_lost: list[int] = []

        async def child(backend: str) -> None:
            command = [sys.executable, "-c", INCREMENTER, redis_url, backend, "100"]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            done = await anyio.run_process(command, cwd=ROOT, env=env, check=True)
            children_lost.append(int(done.stdout.decode().split()[-1]))

        async with real_clock_store(make) as store:
            await store.set("counter", counter(0))
            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for backend in ("asyncio", "asyncio", "trio", "trio"):
                        tg.start_soon(child, backend)
                    for _ in range(6000):  # the children start, connect and report ready
                        if int(redis_client.get("ready") or 0) == 4:
                            break
                        await anyio.sleep(0.01)
                    redis_client.set("go", 1)
                    for _ in range(500):
                        tg.start_soon(store.update, "counter", increment)
            final = await store.get("counter")
        races = f"compare-and-set races lost: here {lost[0]}, in the children {children_lost}"
        assert final == counter(900), f"ended at {final}; {races}"
        assert len(children_lost) == 4, races

    @pytest.mark.anyio
    async def test_200_creators_one_winner(self, make: MakeStore) -> None:
        """200 tasks over two store objects create one id: exactly one True, its data kept."""
        async with real_clock_store(make) as one, real_clock_store(make) as two:
            winners: list[int] = []

            async def creator(n: int) -> None:
                if await (one if n % 2 else two).create("contested", counter(n)):
                    winners.append(n)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for n in range(200):
                        tg.start_soon(creator, n)
            assert len(winners) == 1, f"{len(winners)} of 200 creators won"
            assert await one.get("contested") == counter(winners[0])

    @pytest.mark.anyio
    async def test_concurrent_rotates_one_winner(self, make: MakeStore) -> None:
        """50 rotates of one id over two store objects: exactly one moves it."""
        async with real_clock_store(make) as one, real_clock_store(make) as two:
            await one.set("id", DATA)
            moved: list[str] = []

            async def rotator(n: int) -> None:
                new_id = await (one if n % 2 else two).rotate("id", f"new-{n}")
                if new_id is not None:
                    moved.append(new_id)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for n in range(50):
                        tg.start_soon(rotator, n)
            assert len(moved) == 1, f"{len(moved)} of 50 rotates won"
            assert list(await two.get_all()) == moved

    @pytest.mark.anyio
    async def test_rotates_into_one_new_id(self, make: MakeStore) -> None:
        """Two sessions rotated to the same new id at once: one wins, the other is refused."""
        async with real_clock_store(make) as store:
            for n in range(20):
                await store.set(f"a{n}", DATA)
                await store.set(f"b{n}", OTHER)
            outcomes: list[str] = []

            async def rotate(old: str, new: str) -> None:
                try:
                    await store.rotate(old, new)
                    outcomes.append("moved")
                except SessionIdTakenError:
                    outcomes.append("refused")

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(rotate, f"a{n}", f"x{n}")
                    tg.start_soon(rotate, f"b{n}", f"x{n}")
            assert sorted(outcomes) == ["moved"] * 20 + ["refused"] * 20
            remaining = await store.get_all()
            assert len(remaining) == 40
            for n in range(20):
                assert (f"a{n}" in remaining) != (f"b{n}" in remaining)

    @pytest.mark.anyio
    async def test_rotate_sets_key_ttl_and_removes_old(
        self, make: MakeStore, redis_client: redis.Redis
    ) -> None:
        """After rotate the old key is gone and the new one has the record and the TTL."""
        async with make(config(refresh=True)) as store:
            await store.set("old", SessionData("old", "https://a.example"))
            assert await store.rotate("old", "new") == "new"
            assert redis_client.exists("wm_session_old") == 0
            assert LIFETIME_MS < redis_client.pttl("wm_session_new") <= LIFETIME_MS + GRACE_MS
            assert await store.get("new") == SessionData("new", "https://a.example")

    @pytest.mark.anyio
    async def test_absolute_timeout_without_lifetime_gets_a_ttl(
        self, make: MakeStore, redis_client: redis.Redis, clock: FakeClock
    ) -> None:
        """max_lifetime alone: createdAt stamped, expiry capped, PX of time left + 10 %."""
        cfg = SessionStoreConfig(lifetime=None, max_lifetime=600)
        async with make(cfg) as store:
            assert await store.create("id", DATA) is True
            record = json.loads(redis_client.get("wm_session_id") or b"")
            assert record["data"]["createdAt"] == clock.now_ms
            assert record["expiresAt"] == clock.now_ms + 600_000
            assert 600_000 < redis_client.pttl("wm_session_id") <= 660_000

    @pytest.mark.anyio
    async def test_corrupt_or_wrong_type_raises(
        self, make: MakeStore, redis_client: redis.Redis
    ) -> None:
        """create, update and rotate of an unreadable record raise CorruptRecordError."""
        redis_client.set("wm_session_bad", b"not json")
        redis_client.hset("wm_session_hash", "a", "b")
        async with make() as store:
            for session_id in ("bad", "hash"):
                with pytest.raises(CorruptRecordError):
                    await store.create(session_id, DATA)
                with pytest.raises(CorruptRecordError):
                    await store.update(session_id, increment)
                with pytest.raises(CorruptRecordError):
                    await store.rotate(session_id)
            await store.set("id", DATA)
            with pytest.raises(CorruptRecordError):
                await store.rotate("id", "hash")
            assert await store.get("id") == DATA
        assert redis_client.get("wm_session_bad") == b"not json"

    def test_move_script_directly(self, redis_client: redis.Redis) -> None:
        """Move changes both keys only when both hold exactly what is expected."""
        move = redis_client.register_script(MOVE.source)
        assert move.sha == MOVE.sha
        redis_client.set("a", "A")
        assert move(keys=["a", "b"], args=["X", "moved", ""]) == 0, "old differs"
        redis_client.set("b", "B")
        assert move(keys=["a", "b"], args=["A", "moved", ""]) == 0, "new must be absent"
        assert move(keys=["a", "b"], args=["A", "moved", "", "other"]) == 0, "new differs"
        assert redis_client.mget(["a", "b"]) == [b"A", b"B"]
        assert move(keys=["a", "b"], args=["A", "moved", 5000, "B"]) == 1
        assert redis_client.mget(["a", "b"]) == [None, b"moved"]
        assert 0 < redis_client.pttl("b") <= 5000
        redis_client.set("c", "C", px=5000)
        assert move(keys=["c", "d"], args=["C", "plain", ""]) == 1
        assert redis_client.pttl("d") == -1, "no TTL asked, none left"
        redis_client.set("e", "E")
        redis_client.hset("h", "f", "v")
        assert move(keys=["e", "h"], args=["E", "x", ""]) == 0, "a hash is not absent"
        assert move(keys=["h", "z"], args=["E", "x", ""]) == 0, "a hash is not the old text"
        assert redis_client.get("e") == b"E"

    @pytest.mark.anyio
    async def test_caller_client(self, redis_server: RedisServer) -> None:
        """With a caller's redis.Redis (no budget of the store's), on asyncio and trio."""
        client = redis_server.client()
        try:
            async with RedisSessionStore(client, config()) as store:
                assert await store.create("id", counter(0)) is True
                assert await store.update("id", increment) == counter(1)
                assert await store.rotate("id", "new") == "new"
                assert await store.get("new") == counter(1)
                await store.clear()
        finally:
            client.close()

    @pytest.mark.anyio
    async def test_update_waits_are_bounded(
        self, make: MakeStore, dedicated_redis: Callable[..., RedisServer]
    ) -> None:
        """A frozen server: updates in flight and those waiting for their turn fail on time."""
        server = dedicated_redis()
        async with make(url=server.url, timeout=0.3, retries=0) as store:
            await store.set("counter", counter(0))
            server.pause()
            failed: list[type[BaseException]] = []

            async def update() -> None:
                try:
                    await store.update("counter", increment)
                except StoreUnavailableError as exc:
                    failed.append(type(exc))

            start = time.monotonic()
            try:
                with anyio.fail_after(10):
                    async with anyio.create_task_group() as tg:
                        for _ in range(5):
                            tg.start_soon(update)
            finally:
                server.resume()
            assert failed == [StoreUnavailableError] * 5
            assert time.monotonic() - start < 3
            assert store._turns._turns == {}


class TestCancellation:
    """A call in a cancelled scope is cancelled, on trio too, where the thread hops are shielded."""

    @pytest.mark.anyio
    async def test_loop_of_calls_in_a_cancelled_scope_ends(self, make: MakeStore) -> None:
        """A task calling the store in a loop stops at its first call after being cancelled."""
        calls = 0
        async with make() as store:
            with anyio.CancelScope() as scope:
                scope.cancel()
                for _ in range(100):
                    await store.set("id", DATA)
                    calls += 1
        assert scope.cancelled_caught
        assert calls == 0


class TestFarExpiry:
    """A record whose expiresAt lies beyond any Redis TTL (written elsewhere) is used fully."""

    FAR = 99_999_999_999_999_999_999_999_999

    @pytest.mark.anyio
    @pytest.mark.parametrize("refresh", [False, True])
    async def test_update_and_rotate(
        self, make: MakeStore, redis_client: redis.Redis, refresh: bool
    ) -> None:
        """get, update and rotate all work, and the key keeps a TTL Redis accepts."""
        record = f'{{"data":{{"id":"far","origin":"https://a.example"}},"expiresAt":{self.FAR}}}'
        redis_client.set("wm_session_far", record)
        cfg = SessionStoreConfig(lifetime=60, refresh_on_access=refresh)
        async with make(cfg) as store:
            assert await store.get("far") is not None
            updated = await store.update("far", lambda d: d.granted("eip155:1", "eth_accounts"))
            assert updated is not None
            assert updated.allows("eip155:1", "eth_accounts")
            assert await store.rotate("far", "far2") == "far2"
            assert await store.get("far2") == attrs.evolve(updated, id="far2")
        assert redis_client.pttl("wm_session_far2") > 0
