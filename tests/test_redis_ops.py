"""The Redis operations and the driver core without a server: steps run on a dict.

As h11 tests its state machine without sockets, `FakeRedis` carries out the meaning-level steps
of `_redis_ops` on a dict, and lets a test act as another client between two steps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from redis.exceptions import NoScriptError, ResponseError

from walletmesh_sessions import CorruptRecordError, SessionData, SessionStoreConfig
from walletmesh_sessions import _redis_ops as ops
from walletmesh_sessions._codec import encode_record
from walletmesh_sessions._decode_cache import DecodeCache
from walletmesh_sessions._redis_io import (
    COMPARE_AND_DELETE,
    COMPARE_AND_SET,
    exchange,
    translate,
)
from walletmesh_sessions.testing import FakeClock

T = TypeVar("T")

LIFETIME_MS = 60_000
DATA = SessionData("s1", "https://app.example.com", {"eip155:1": ["eth_accounts"]})
OTHER = SessionData("s2", "https://other.example")
PREFIX = "wm_session_"


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class FakeRedis:
    """A dict that carries out steps: strings as bytes, other types as their type name.

    `before[StepType]` runs just before each step of that type (a concurrent client); steps
    of a `Batch` are carried out one by one, each with its hook.
    """

    def __init__(self, page: int = 3) -> None:
        self.data: dict[bytes, bytes] = {}
        self.other_types: dict[bytes, str] = {}
        self.ttl: dict[bytes, int | None] = {}
        self.before: dict[type, Callable[[Any], object]] = {}
        self.steps: list[Any] = []
        self.page = page

    def run(self, op: ops.Op[T]) -> T:
        reply: Any = None
        while True:
            try:
                step = op.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply = self.execute(step)

    def execute(self, step: Any) -> Any:
        self.steps.append(step)
        hook = self.before.get(type(step))
        if hook is not None:
            hook(step)
        if step is ops.CHECKPOINT:
            return None
        if isinstance(step, ops.Batch):
            return [self.execute(inner) for inner in step.steps]
        if isinstance(step, ops.Scan):
            return self._scan(step)
        if isinstance(step, ops.Read):
            key = _b(step.key)
            return ops.WRONG_TYPE if key in self.other_types else self.data.get(key)
        if isinstance(step, ops.ReadMany):
            return [
                ops.NonString(self.other_types[k]) if k in self.other_types else self.data.get(k)
                for k in map(_b, step.keys)
            ]
        if isinstance(step, ops.Write):
            self.data[_b(step.key)] = step.text.encode()
            self.ttl[_b(step.key)] = step.ttl_ms
            return None
        if isinstance(step, ops.CompareAndSet):
            if self.data.get(_b(step.key)) != _b(step.old):
                return False
            self.data[_b(step.key)] = step.new.encode()
            self.ttl[_b(step.key)] = step.ttl_ms
            return True
        if isinstance(step, ops.CompareAndDelete):
            if self.data.get(_b(step.key)) != _b(step.old):
                return False
            del self.data[_b(step.key)]
            return True
        if isinstance(step, ops.Delete):
            keys = [_b(k) for k in step.keys]
            found = [k for k in keys if k in self.data or k in self.other_types]
            for k in found:
                self.data.pop(k, None)
                self.other_types.pop(k, None)
            return len(found)
        raise AssertionError(f"unknown step {step!r}")

    def _scan(self, step: ops.Scan) -> ops.ScanPage:
        # The pattern is an escaped prefix and "*": unescape it, as Redis would match it.
        body = step.pattern[:-1].decode()
        prefix = "".join(c for i, c in enumerate(body) if c != "\\" or body[i - 1 : i] == "\\")
        keys = sorted(k for k in [*self.data, *self.other_types] if k.startswith(prefix.encode()))
        # The cursor is the last key returned, so keys deleted meanwhile never hide others.
        after = b"" if step.cursor is None else step.cursor
        assert isinstance(after, bytes)
        page = [k for k in keys if k > after][: self.page]
        done = len(page) < self.page or page[-1] == keys[-1]
        return ops.ScanPage(list(page), None if done else page[-1])

    def record(self, session_id: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data[_b(PREFIX + session_id)])
        return loaded


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeRedis:
    return FakeRedis()


def spec(clock: FakeClock, *, lifetime: float | None = 60, refresh: bool = False) -> ops.StoreSpec:
    config = SessionStoreConfig(lifetime=lifetime, refresh_on_access=refresh)
    return ops.StoreSpec(PREFIX, config, clock, DecodeCache().decode)


def plant(fake: FakeRedis, session_id: str, data: SessionData, expires_at: int | None) -> bytes:
    text = encode_record(data, expires_at).encode()
    fake.data[_b(PREFIX + session_id)] = text
    return text


class TestRead:
    """`read` does what `after_read` decides, and nothing else."""

    def test_missing(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A missing key reads as None, with no other step."""
        assert fake.run(ops.read(spec(clock), "id")) is None
        assert [type(s) for s in fake.steps] == [ops.Read]

    def test_plain_read_writes_nothing(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Without refresh a live session is returned and left as it is."""
        text = plant(fake, "id", DATA, clock.now_ms + 10)
        assert fake.run(ops.read(spec(clock), "id")) == DATA
        assert fake.data[b"wm_session_id"] == text
        assert [type(s) for s in fake.steps] == [ops.Read]

    def test_refresh_slides_only_the_expiry(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A refreshing read compare-and-sets the same text with only expiresAt changed."""
        text = '{"data":{"id":"s","origin":"o","extra":1e3},"expiresAt":1700000001000,"x":[]}'
        fake.data[b"wm_session_id"] = text.encode()
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == SessionData("s", "o")
        (_, step) = fake.steps
        assert step == ops.CompareAndSet(
            "wm_session_id",
            text.encode(),
            text.replace("1700000001000", str(clock.now_ms + LIFETIME_MS)),
            LIFETIME_MS + 6_000,
        )

    def test_refresh_gives_an_expiry_to_a_record_without_one(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A record stored with no lifetime gets now + lifetime and a TTL when read."""
        plant(fake, "id", DATA, None)
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert fake.record("id")["expiresAt"] == clock.now_ms + LIFETIME_MS
        assert fake.ttl[b"wm_session_id"] == LIFETIME_MS + 6_000

    def test_unchanged_expiry_is_not_written(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A refreshing read at the instant of the last write has nothing to change."""
        plant(fake, "id", DATA, clock.now_ms + LIFETIME_MS)
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert [type(s) for s in fake.steps] == [ops.Read]

    def test_valid_at_exactly_its_expiry(self, fake: FakeRedis, clock: FakeClock) -> None:
        """At exactly expiresAt the session is valid; 1 ms later it is removed."""
        text = plant(fake, "id", DATA, clock.now_ms)
        assert fake.run(ops.read(spec(clock), "id")) == DATA
        clock.advance(ms=1)
        assert fake.run(ops.read(spec(clock), "id")) is None
        assert fake.steps[-1] == ops.CompareAndDelete("wm_session_id", text)
        assert fake.data == {}

    def test_concurrent_set_between_read_and_slide_wins(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A set between the read and the slide is not undone: the slide finds other bytes."""
        plant(fake, "id", DATA, clock.now_ms + 10)
        newer = plant(FakeRedis(), "id", OTHER, clock.now_ms + 5)
        fake.before[ops.CompareAndSet] = lambda _: fake.data.update({b"wm_session_id": newer})
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert fake.data[b"wm_session_id"] == newer

    def test_concurrent_delete_between_read_and_slide_wins(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A delete between the read and the slide is not undone: nothing comes back."""
        plant(fake, "id", DATA, clock.now_ms + 10)
        fake.before[ops.CompareAndSet] = lambda _: fake.data.clear()
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert fake.data == {}

    def test_concurrent_delete_between_read_and_remove(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """An expired session deleted and set again meanwhile is neither removed nor revived."""
        plant(fake, "id", DATA, clock.now_ms - 1)
        fresh = plant(FakeRedis(), "id", OTHER, clock.now_ms + 10)
        fake.before[ops.CompareAndDelete] = lambda _: fake.data.update({b"wm_session_id": fresh})
        assert fake.run(ops.read(spec(clock), "id")) is None
        assert fake.data[b"wm_session_id"] == fresh

    def test_corrupt_and_wrong_type_raise_naming_the_id(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """Not JSON, not UTF-8, another type: CorruptRecordError naming the id, nothing written."""
        fake.data[b"wm_session_a"] = b"not json"
        fake.data[b"wm_session_b"] = b'{"data":"\xff"}'
        fake.other_types[b"wm_session_c"] = "hash"
        for session_id in "abc":
            with pytest.raises(CorruptRecordError) as info:
                fake.run(ops.read(spec(clock, refresh=True), session_id))
            assert info.value.session_id == session_id
        assert {type(s) for s in fake.steps} == {ops.Read}


class TestSweep:
    """get_all and clean_expired: `sweep` decides, compare-and-delete confirms."""

    def test_clean_expired_counts_confirmed_removals_only(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """Expired keys another client deleted between read and removal are not counted."""
        for n in range(5):
            plant(fake, f"old{n}", DATA, clock.now_ms - 1)
        plant(fake, "live", DATA, clock.now_ms + 1)
        fake.page = 100

        def other_client(batch: ops.Batch) -> None:
            del fake.data[b"wm_session_old0"], fake.data[b"wm_session_old3"]

        fake.before[ops.Batch] = other_client
        assert fake.run(ops.clean_expired(spec(clock))) == 3
        assert list(fake.data) == [b"wm_session_live"]

    def test_clean_expired_spares_a_rewritten_key(self, fake: FakeRedis, clock: FakeClock) -> None:
        """An expired key written again before its removal survives and is not counted."""
        plant(fake, "old", DATA, clock.now_ms - 1)
        fresh = plant(FakeRedis(), "old", OTHER, clock.now_ms + 10)
        fake.before[ops.Batch] = lambda _: fake.data.update({b"wm_session_old": fresh})
        assert fake.run(ops.clean_expired(spec(clock))) == 0
        assert fake.data[b"wm_session_old"] == fresh

    def test_get_all_slides_and_removes_across_pages(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """Every page is read, live sessions slide, expired ones go; checkpoints in between."""
        for n in range(7):
            plant(fake, f"live{n}", DATA, clock.now_ms + 5)
        plant(fake, "old", OTHER, clock.now_ms - 1)
        found = fake.run(ops.get_all(spec(clock, refresh=True)))
        assert set(found) == {f"live{n}" for n in range(7)}
        assert b"wm_session_old" not in fake.data
        assert all(
            fake.record(f"live{n}")["expiresAt"] == clock.now_ms + LIFETIME_MS for n in range(7)
        )
        assert sum(s is ops.CHECKPOINT for s in fake.steps) == 2  # 8 keys in pages of 3

    def test_get_all_without_refresh_writes_nothing(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A plain get_all of live sessions reads and never writes."""
        plant(fake, "a", DATA, None)
        plant(fake, "b", OTHER, clock.now_ms)
        assert fake.run(ops.get_all(spec(clock))) == {"a": DATA, "b": OTHER}
        assert not any(isinstance(s, ops.Batch) for s in fake.steps)

    def test_corrupt_and_wrong_type_skipped_kept_logged(
        self, fake: FakeRedis, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Unreadable values never hide sessions, are kept, and are logged with a short id."""
        caplog.set_level(logging.WARNING, logger="walletmesh_sessions")
        corrupt = {
            b"wm_session_not-json": b"not json",
            b"wm_session_not-utf8": b'{"data":"\xff"}',
            b"wm_session_\xff": encode_record(DATA, None).encode(),
            b"wm_session_": encode_record(DATA, None).encode(),
        }
        fake.data.update(corrupt)
        fake.other_types[b"wm_session_hash"] = "hash"
        plant(fake, "good", DATA, clock.now_ms - 1)
        plant(fake, "live", DATA, None)
        assert fake.run(ops.get_all(spec(clock))) == {"live": DATA}
        assert fake.run(ops.clean_expired(spec(clock))) == 0  # get_all removed "good"
        assert all(fake.data[k] == v for k, v in corrupt.items())
        assert fake.other_types == {b"wm_session_hash": "hash"}
        logged = [r.getMessage() for r in caplog.records]
        assert sum("holds a hash" in line for line in logged) == 2
        assert len(logged) == 2 * 5
        assert not any("not-json" in line for line in logged), "a full id was logged"

    def test_key_vanishing_between_scan_and_read(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A key deleted after the scan is neither reported nor counted."""
        plant(fake, "a", DATA, clock.now_ms - 1)
        fake.before[ops.ReadMany] = lambda _: fake.data.clear()
        assert fake.run(ops.clean_expired(spec(clock))) == 0
        assert not any(isinstance(s, ops.Batch) for s in fake.steps)

    def test_clear_and_inspect(self, fake: FakeRedis, clock: FakeClock) -> None:
        """inspect shows every record as it is; clear deletes every key under the prefix."""
        plant(fake, "live", DATA, None)
        plant(fake, "old", OTHER, clock.now_ms - 1)
        fake.data[b"wm_session_bad"] = b"[]"
        fake.other_types[b"wm_session_hash"] = "hash"
        fake.data[b"other"] = b"x"
        records = {r.session_id: r for r in fake.run(ops.inspect(spec(clock), None))}
        assert records["live"].data == DATA
        assert records["old"].is_expired(clock.now_ms)
        assert records["bad"].error
        assert "hash" in str(records["hash"].error)
        assert len(fake.data) == 4, "inspect changed something"
        fake.run(ops.clear(spec(clock)))
        assert fake.data == {b"other": b"x"}
        assert fake.other_types == {}


def drive(step: ops.Step, answer: Callable[[list[tuple[Any, ...]]], list[Any]]) -> Any:
    """Run the driver core's exchange for `step`, answering each round trip with `answer`."""
    talk = exchange(step)
    commands = next(talk)
    while True:
        try:
            commands = talk.send(answer(commands))
        except StopIteration as stop:
            return stop.value


class TestDriverCore:
    """What the commands are for each step, and what their replies mean (no server)."""

    def test_read_wrong_type(self) -> None:
        """GET's WRONGTYPE error reply is the WRONG_TYPE marker."""
        error = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        assert drive(ops.Read("k"), lambda _: [error]) is ops.WRONG_TYPE

    def test_read_many_folds_in_type(self) -> None:
        """MGET's nils are asked TYPE in one round trip; a hash becomes NonString('hash')."""
        sent: list[list[tuple[Any, ...]]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.append(commands)
            if commands[0][0] == "MGET":
                return [[b"a", None, None]]
            return [b"hash", b"none"]

        assert drive(ops.ReadMany(("a", "b", "c")), answer) == [b"a", ops.NonString("hash"), None]
        assert sent == [[("MGET", "a", "b", "c")], [("TYPE", "b"), ("TYPE", "c")]]

    def test_scripts_loaded_once_per_pipeline(self) -> None:
        """After SCRIPT FLUSH each script is loaded once and the failed calls sent again."""
        steps = ops.Batch(
            (
                ops.CompareAndDelete("a", b"x"),
                ops.CompareAndDelete("b", b"y"),
                ops.CompareAndSet("c", b"z", "new", 1000),
            )
        )
        sent: list[list[tuple[Any, ...]]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.append(commands)
            if len(sent) == 1:
                return [NoScriptError("NOSCRIPT No matching script.")] * 3
            return ["sha" if c[0] == "SCRIPT" else 1 for c in commands]

        assert drive(steps, answer) == [True, True, True]
        loads = [c for c in sent[1] if c[0] == "SCRIPT"]
        assert loads == [
            ("SCRIPT", "LOAD", COMPARE_AND_DELETE.source),
            ("SCRIPT", "LOAD", COMPARE_AND_SET.source),
        ]
        assert len(sent) == 2
        assert len(sent[1]) == 5

    def test_compare_and_set_without_ttl(self) -> None:
        """A slide of a store without a TTL sends no PX argument."""
        sent: list[tuple[Any, ...]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.extend(commands)
            return [0]

        assert drive(ops.CompareAndSet("k", b"o", "n", None), answer) is False
        assert sent == [("EVALSHA", COMPARE_AND_SET.sha, 1, "k", b"o", "n")]

    def test_scan_cursor(self) -> None:
        """The scan starts at 0 and a returned 0 ends it (None to the operation)."""
        page = drive(ops.Scan(b"p*"), lambda c: [(0, [b"pa"])])
        assert page == ops.ScanPage([b"pa"], None)
        assert drive(ops.Scan(b"p*", 7), lambda c: [(9, [])]).cursor == 9

    def test_other_error_replies_raise(self) -> None:
        """An error reply the core cannot absorb is raised as redis-py raised it."""
        with pytest.raises(ResponseError, match="OOM"):
            drive(ops.Write("k", "v", None), lambda _: [ResponseError("OOM command not allowed")])

    def test_translate_withholds_echoed_arguments(self) -> None:
        """Error messages keep the code and the operation, never the reply's echoed text."""
        exc = ResponseError(
            "ERR unknown command 'EVALSHA', with args beginning with: 'wm_s_SECRET'"
        )
        error = translate(exc, "clean_expired")
        assert "SECRET" not in str(error)
        assert "SECRET" not in str(exc)
        assert "ERR" in str(error)
        assert "clean_expired" in str(error)
