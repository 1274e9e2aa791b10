"""The Redis operations and the driver core without a server: steps run on a dict.

As h11 tests its state machine without sockets, `FakeRedis` carries out the meaning-level steps
of `_redis_ops` on a dict, and lets a test act as another client between two steps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import attrs
import pytest
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from walletmesh_sessions import (
    CorruptRecordError,
    InvalidSessionDataError,
    SessionData,
    SessionIdTakenError,
    SessionStoreConfig,
    StoreUnavailableError,
)
from walletmesh_sessions._core.codec import decode_record, encode_record, record_with_expiry
from walletmesh_sessions._core.decode_cache import DecodeCache
from walletmesh_sessions._core.errors import CorruptRecordError as _Corrupt
from walletmesh_sessions._core.expiry import EXPIRED, after_read
from walletmesh_sessions._redis import bulk_ops, ops, steps
from walletmesh_sessions._redis.exchanges import exchange
from walletmesh_sessions._redis.ops import StoreSpec
from walletmesh_sessions._redis.runners import AsyncioRunner, translate
from walletmesh_sessions._redis.scripts import (
    COMPARE_AND_DELETE,
    COMPARE_AND_SET,
    MOVE,
    READ_AND_SLIDE,
)
from walletmesh_sessions._redis.senders import AsyncSender
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

    def run(self, op: steps.Op[T]) -> T:
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
        if step is steps.CHECKPOINT:
            return None
        if isinstance(step, steps.Batch):
            return [self.execute(inner) for inner in step.steps]
        if isinstance(step, steps.Scan):
            return self._scan(step)
        if isinstance(step, steps.Read):
            key = _b(step.key)
            return steps.WRONG_TYPE if key in self.other_types else self.data.get(key)
        if isinstance(step, steps.ReadAndSlide):
            return self._read_and_slide(step)
        if isinstance(step, steps.ReadMany):
            return [
                steps.NonString(self.other_types[k]) if k in self.other_types else self.data.get(k)
                for k in map(_b, step.keys)
            ]
        if isinstance(step, steps.Write):
            self.data[_b(step.key)] = step.text.encode()
            self.ttl[_b(step.key)] = step.ttl_ms
            return None
        if isinstance(step, steps.CompareAndSet):
            if not self._holds(step.key, step.old):
                return False
            self.data[_b(step.key)] = _b(step.new)
            self.ttl[_b(step.key)] = step.ttl_ms
            return True
        if isinstance(step, steps.Move):
            if not (
                self._holds(step.old_key, step.old) and self._holds(step.new_key, step.new_old)
            ):
                return False
            del self.data[_b(step.old_key)]
            self.ttl.pop(_b(step.old_key), None)
            self.data[_b(step.new_key)] = step.text.encode()
            self.ttl[_b(step.new_key)] = step.ttl_ms
            return True
        if isinstance(step, steps.CompareAndDelete):
            if self.data.get(_b(step.key)) != _b(step.old):
                return False
            del self.data[_b(step.key)]
            return True
        if isinstance(step, steps.Delete):
            keys = [_b(k) for k in step.keys]
            found = [k for k in keys if k in self.data or k in self.other_types]
            for k in found:
                self.data.pop(k, None)
                self.other_types.pop(k, None)
            return len(found)
        raise AssertionError(f"unknown step {step!r}")

    def _read_and_slide(self, step: steps.ReadAndSlide) -> Any:
        """What the script does, judged in Python: it leaves records without an expiresAt and
        records `decode_record` refuses undecided (the real script may still slide the latter:
        the tests of the undo plant them through `undecided_as`)."""
        key = _b(step.key)
        if key in self.other_types:
            return steps.WRONG_TYPE
        raw = self.data.get(key)
        if raw is None:
            return None
        undecided = steps.Slide(steps.Verdict.UNDECIDED, raw)
        try:
            data, stored = decode_record(raw, "id")
        except _Corrupt:
            return undecided
        if "expiresAt" not in json.loads(raw):
            return undecided
        config = SessionStoreConfig(
            lifetime=step.lifetime_ms / 1000,
            refresh_on_access=True,
            max_lifetime=None if step.max_lifetime_ms is None else step.max_lifetime_ms / 1000,
        )
        after = after_read(config, step.now, stored, data.created_at)
        if after is EXPIRED:
            return steps.Slide(steps.Verdict.EXPIRED, raw)
        if after == stored:
            return steps.Slide(steps.Verdict.KEPT, raw)
        assert after is not None
        new = record_with_expiry(raw.decode(), after).encode()
        before = self.ttl.get(key)
        self.data[key], self.ttl[key] = new, step.ttl_ms
        return steps.Slide(steps.Verdict.SLID, raw, new, before)

    def _holds(self, key: str | bytes, value: str | bytes | None) -> bool:
        """Does `key` hold exactly `value` (`None`: nothing at all, of any type)?"""
        if value is None:
            return _b(key) not in self.data and _b(key) not in self.other_types
        return self.data.get(_b(key)) == _b(value)

    def _scan(self, step: steps.Scan) -> steps.ScanPage:
        # The pattern is an escaped prefix and "*": unescape it, as Redis would match it.
        body = step.pattern[:-1].decode()
        prefix = "".join(c for i, c in enumerate(body) if c != "\\" or body[i - 1 : i] == "\\")
        keys = sorted(k for k in [*self.data, *self.other_types] if k.startswith(prefix.encode()))
        # The cursor is the last key returned, so keys deleted meanwhile never hide others.
        after = b"" if step.cursor is None else step.cursor
        assert isinstance(after, bytes)
        page = [k for k in keys if k > after][: self.page]
        done = len(page) < self.page or page[-1] == keys[-1]
        return steps.ScanPage(list(page), None if done else page[-1])

    def record(self, session_id: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data[_b(PREFIX + session_id)])
        return loaded


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeRedis:
    return FakeRedis()


def spec(
    clock: FakeClock,
    *,
    lifetime: float | None = 60,
    refresh: bool = False,
    max_lifetime: float | None = None,
) -> StoreSpec:
    config = SessionStoreConfig(
        lifetime=lifetime, refresh_on_access=refresh, max_lifetime=max_lifetime
    )
    return StoreSpec(PREFIX, config, clock, DecodeCache().decode)


def plant(fake: FakeRedis, session_id: str, data: SessionData, expires_at: int | None) -> bytes:
    text = encode_record(data, expires_at).encode()
    fake.data[_b(PREFIX + session_id)] = text
    return text


class TestRead:
    """`read` does what `after_read` decides, and nothing else."""

    def test_missing(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A missing key reads as None, with no other step."""
        assert fake.run(ops.read(spec(clock), "id")) is None
        assert [type(s) for s in fake.steps] == [steps.Read]

    def test_plain_read_writes_nothing(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Without refresh a live session is returned and left as it is."""
        text = plant(fake, "id", DATA, clock.now_ms + 10)
        assert fake.run(ops.read(spec(clock), "id")) == DATA
        assert fake.data[b"wm_session_id"] == text
        assert [type(s) for s in fake.steps] == [steps.Read]

    def test_refresh_slides_only_the_expiry(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A refreshing read is one ReadAndSlide: same text with only expiresAt changed."""
        text = '{"data":{"id":"s","origin":"o","extra":1e3},"expiresAt":1700000001000,"x":[]}'
        fake.data[b"wm_session_id"] = text.encode()
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == SessionData("s", "o")
        assert fake.steps == [
            steps.ReadAndSlide(
                "wm_session_id", clock.now_ms, LIFETIME_MS, None, LIFETIME_MS + 6_000
            )
        ]
        slid = text.replace("1700000001000", str(clock.now_ms + LIFETIME_MS))
        assert fake.data[b"wm_session_id"] == slid.encode()
        assert fake.ttl[b"wm_session_id"] == LIFETIME_MS + 6_000

    def test_refresh_removes_an_expired_record_by_its_bytes(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """An expired verdict is carried out as a compare-and-delete of the bytes read."""
        text = plant(fake, "id", DATA, clock.now_ms - 1)
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) is None
        assert fake.steps[1:] == [steps.CompareAndDelete("wm_session_id", text)]
        assert fake.data == {}

    def test_slid_unreadable_record_is_restored(self, clock: FakeClock) -> None:
        """A record the script slid but `decode_record` refuses gets its bytes and TTL back."""
        old = b'{"data":{"id":1,"origin":"o"},"expiresAt":1700000000000}'
        op = ops.read(spec(clock, refresh=True), "id")
        assert isinstance(next(op), steps.ReadAndSlide)
        undo = op.send(steps.Slide(steps.Verdict.SLID, old, b"new", 1234))
        assert undo == steps.CompareAndSet("wm_session_id", b"new", old, 1234)
        with pytest.raises(CorruptRecordError) as info:
            op.send(True)
        assert info.value.session_id == "id"

    def test_refresh_without_exact_arithmetic_reads_plainly(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """Times a script could not add exactly (>= 10**15 ms) take the read-then-CAS path."""
        plant(fake, "id", DATA, None)
        huge = FakeClock(10**15)
        assert fake.run(ops.read(spec(huge, refresh=True), "id")) == DATA
        assert [type(s) for s in fake.steps] == [steps.Read, steps.CompareAndSet]

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
        text = plant(fake, "id", DATA, clock.now_ms + LIFETIME_MS)
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert [type(s) for s in fake.steps] == [steps.ReadAndSlide]
        assert fake.data[b"wm_session_id"] == text
        assert b"wm_session_id" not in fake.ttl

    def test_valid_at_exactly_its_expiry(self, fake: FakeRedis, clock: FakeClock) -> None:
        """At exactly expiresAt the session is valid; 1 ms later it is removed."""
        text = plant(fake, "id", DATA, clock.now_ms)
        assert fake.run(ops.read(spec(clock), "id")) == DATA
        clock.advance(ms=1)
        assert fake.run(ops.read(spec(clock), "id")) is None
        assert fake.steps[-1] == steps.CompareAndDelete("wm_session_id", text)
        assert fake.data == {}

    def test_concurrent_set_between_read_and_slide_wins(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A set between the read and the slide is not undone: the slide finds other bytes.

        (A record with an expiresAt slides in one atomic step; one without is read by the
        script, left undecided, and slid by a compare-and-set.)
        """
        plant(fake, "id", DATA, None)
        newer = plant(FakeRedis(), "id", OTHER, clock.now_ms + 5)
        fake.before[steps.CompareAndSet] = lambda _: fake.data.update({b"wm_session_id": newer})
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert fake.data[b"wm_session_id"] == newer
        assert [type(s) for s in fake.steps] == [steps.ReadAndSlide, steps.CompareAndSet]

    def test_concurrent_delete_between_read_and_slide_wins(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A delete between the read and the slide is not undone: nothing comes back."""
        plant(fake, "id", DATA, None)
        fake.before[steps.CompareAndSet] = lambda _: fake.data.clear()
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) == DATA
        assert fake.data == {}
        assert [type(s) for s in fake.steps] == [steps.ReadAndSlide, steps.CompareAndSet]

    def test_concurrent_set_before_an_expired_removal_wins(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """After an expired verdict, a fresh set before the removal survives it."""
        plant(fake, "id", DATA, clock.now_ms - 1)
        fresh = plant(FakeRedis(), "id", OTHER, clock.now_ms + 10)
        fake.before[steps.CompareAndDelete] = lambda _: fake.data.update({b"wm_session_id": fresh})
        assert fake.run(ops.read(spec(clock, refresh=True), "id")) is None
        assert fake.data[b"wm_session_id"] == fresh

    def test_concurrent_delete_between_read_and_remove(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """An expired session deleted and set again meanwhile is neither removed nor revived."""
        plant(fake, "id", DATA, clock.now_ms - 1)
        fresh = plant(FakeRedis(), "id", OTHER, clock.now_ms + 10)
        fake.before[steps.CompareAndDelete] = lambda _: fake.data.update({b"wm_session_id": fresh})
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
        assert {type(s) for s in fake.steps} == {steps.ReadAndSlide}
        assert fake.ttl == {}


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

        def other_client(batch: steps.Batch) -> None:
            del fake.data[b"wm_session_old0"], fake.data[b"wm_session_old3"]

        fake.before[steps.Batch] = other_client
        assert fake.run(bulk_ops.clean_expired(spec(clock))) == 3
        assert list(fake.data) == [b"wm_session_live"]

    def test_clean_expired_spares_a_rewritten_key(self, fake: FakeRedis, clock: FakeClock) -> None:
        """An expired key written again before its removal survives and is not counted."""
        plant(fake, "old", DATA, clock.now_ms - 1)
        fresh = plant(FakeRedis(), "old", OTHER, clock.now_ms + 10)
        fake.before[steps.Batch] = lambda _: fake.data.update({b"wm_session_old": fresh})
        assert fake.run(bulk_ops.clean_expired(spec(clock))) == 0
        assert fake.data[b"wm_session_old"] == fresh

    def test_get_all_slides_and_removes_across_pages(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """Every page is read, live sessions slide, expired ones go; checkpoints in between."""
        for n in range(7):
            plant(fake, f"live{n}", DATA, clock.now_ms + 5)
        plant(fake, "old", OTHER, clock.now_ms - 1)
        found = fake.run(bulk_ops.get_all(spec(clock, refresh=True)))
        assert set(found) == {f"live{n}" for n in range(7)}
        assert b"wm_session_old" not in fake.data
        assert all(
            fake.record(f"live{n}")["expiresAt"] == clock.now_ms + LIFETIME_MS for n in range(7)
        )
        assert sum(s is steps.CHECKPOINT for s in fake.steps) == 2  # 8 keys in pages of 3

    def test_get_all_without_refresh_writes_nothing(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A plain get_all of live sessions reads and never writes."""
        plant(fake, "a", DATA, None)
        plant(fake, "b", OTHER, clock.now_ms)
        assert fake.run(bulk_ops.get_all(spec(clock))) == {"a": DATA, "b": OTHER}
        assert not any(isinstance(s, steps.Batch) for s in fake.steps)

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
        assert fake.run(bulk_ops.get_all(spec(clock))) == {"live": DATA}
        assert fake.run(bulk_ops.clean_expired(spec(clock))) == 0  # get_all removed "good"
        assert all(fake.data[k] == v for k, v in corrupt.items())
        assert fake.other_types == {b"wm_session_hash": "hash"}
        logged = [r.getMessage() for r in caplog.records]
        assert sum("holds a hash" in line for line in logged) == 2
        assert len(logged) == 2 * 5
        assert not any("not-json" in line for line in logged), "a full id was logged"

    def test_key_vanishing_between_scan_and_read(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A key deleted after the scan is neither reported nor counted."""
        plant(fake, "a", DATA, clock.now_ms - 1)
        fake.before[steps.ReadMany] = lambda _: fake.data.clear()
        assert fake.run(bulk_ops.clean_expired(spec(clock))) == 0
        assert not any(isinstance(s, steps.Batch) for s in fake.steps)

    def test_clear_and_inspect(self, fake: FakeRedis, clock: FakeClock) -> None:
        """inspect shows every record as it is; clear deletes every key under the prefix."""
        plant(fake, "live", DATA, None)
        plant(fake, "old", OTHER, clock.now_ms - 1)
        fake.data[b"wm_session_bad"] = b"[]"
        fake.other_types[b"wm_session_hash"] = "hash"
        fake.data[b"other"] = b"x"
        records = {r.session_id: r for r in fake.run(bulk_ops.inspect(spec(clock), None))}
        assert records["live"].data == DATA
        assert records["old"].is_expired(clock.now_ms)
        assert records["bad"].error
        assert "hash" in str(records["hash"].error)
        assert len(fake.data) == 4, "inspect changed something"
        fake.run(bulk_ops.clear(spec(clock)))
        assert fake.data == {b"other": b"x"}
        assert fake.other_types == {}


def once(action: Callable[[], object]) -> Callable[[Any], None]:
    """A `before` hook that acts as another client the first time only."""
    done: list[bool] = []

    def hook(step: Any) -> None:
        if not done:
            done.append(True)
            action()

    return hook


def counter(n: int) -> SessionData:
    return SessionData("c", "https://count.example", {"count": [str(n)]})


def increment(data: SessionData) -> SessionData:
    return attrs.evolve(data, permissions={"count": [str(int(data.permissions["count"][0]) + 1)]})


class TestSpecTTL:
    """The Redis TTL follows the expiry written: a little longer, relative to now."""

    def test_lifetime_rule(self, clock: FakeClock) -> None:
        """lifetime + max(1 s, 10 %), also when the expiry is capped nearer; none without one."""
        s = spec(clock)
        assert s.ttl(clock.now_ms, clock.now_ms + LIFETIME_MS) == LIFETIME_MS + 6_000
        assert s.ttl(clock.now_ms, clock.now_ms + 5) == LIFETIME_MS + 6_000
        assert s.ttl(clock.now_ms, None) is None
        assert spec(clock, lifetime=1).ttl(clock.now_ms, clock.now_ms + 1000) == 2_000

    def test_expiry_without_lifetime(self, clock: FakeClock) -> None:
        """An expiry set by the absolute timeout alone: time left + max(1 s, 10 %)."""
        s = spec(clock, lifetime=None, max_lifetime=600)
        assert s.ttl(clock.now_ms, clock.now_ms + 600_000) == 660_000
        assert s.ttl(clock.now_ms, clock.now_ms + 2_000) == 3_000
        assert s.ttl(clock.now_ms, clock.now_ms) == 1_000, "PX must stay positive"

    def test_expiry_beyond_the_lifetime(self, clock: FakeClock) -> None:
        """A longer expiry carried over (by rotate) is never cut short by the lifetime's TTL."""
        s = spec(clock)
        assert s.ttl(clock.now_ms, clock.now_ms + 10 * LIFETIME_MS) == 11 * LIFETIME_MS


class TestWriteStamps:
    """`set` stamps created_at and caps the expiry under an absolute timeout."""

    def test_stamped_and_capped(self, fake: FakeRedis, clock: FakeClock) -> None:
        """No lifetime, max_lifetime 10 min: createdAt now, expiresAt now + 10 min, a TTL."""
        fake.run(ops.write(spec(clock, lifetime=None, max_lifetime=600), "id", DATA))
        record = fake.record("id")
        assert record["data"]["createdAt"] == clock.now_ms
        assert record["expiresAt"] == clock.now_ms + 600_000
        assert fake.ttl[b"wm_session_id"] == 660_000

    def test_capped_below_the_lifetime(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Data created long ago gets the earlier, absolute expiry."""
        old = attrs.evolve(DATA, created_at=clock.now_ms - 590_000)
        fake.run(ops.write(spec(clock, max_lifetime=600), "id", old))
        assert fake.record("id")["expiresAt"] == clock.now_ms + 10_000
        assert fake.record("id")["data"]["createdAt"] == clock.now_ms - 590_000

    def test_read_honours_the_absolute_timeout(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A refreshing read never slides past created_at + max_lifetime, and expires after it."""
        s = spec(clock, refresh=True, max_lifetime=90)
        fake.run(ops.write(s, "id", DATA))
        clock.advance(seconds=50)
        assert fake.run(ops.read(s, "id")) is not None
        assert fake.record("id")["expiresAt"] == clock.now_ms + 40_000
        clock.advance(ms=40_001)
        assert fake.run(ops.read(s, "id")) is None


class TestCreate:
    """`create` writes only over nothing or an expired record, compared exactly."""

    def test_absent(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A free id: one Read, one compare-and-set-if-absent with the write's TTL."""
        assert fake.run(ops.create(spec(clock), "id", DATA)) is True
        (_, write) = fake.steps
        assert write == steps.CompareAndSet(
            "wm_session_id",
            None,
            encode_record(DATA, clock.now_ms + LIFETIME_MS),
            LIFETIME_MS + 6_000,
        )

    def test_live_is_refused_unchanged(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A live session (valid at exactly its expiry) is never written over."""
        text = plant(fake, "id", OTHER, clock.now_ms)
        assert fake.run(ops.create(spec(clock), "id", DATA)) is False
        assert fake.data[b"wm_session_id"] == text
        assert [type(s) for s in fake.steps] == [steps.Read]

    def test_expired_is_replaced_over_its_exact_bytes(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """An expired record is replaced by a compare-and-set of the very bytes read."""
        text = plant(fake, "id", OTHER, clock.now_ms - 1)
        assert fake.run(ops.create(spec(clock), "id", DATA)) is True
        assert fake.steps[-1].old == text
        assert fake.record("id")["data"]["id"] == DATA.id

    def test_lost_race_to_a_live_write(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Another creator writes between Read and write: the compare fails, re-read, False."""
        theirs = plant(FakeRedis(), "id", OTHER, clock.now_ms + 10)
        fake.before[steps.CompareAndSet] = once(
            lambda: fake.data.update({b"wm_session_id": theirs})
        )
        assert fake.run(ops.create(spec(clock), "id", DATA)) is False
        assert fake.data[b"wm_session_id"] == theirs
        assert [type(s) for s in fake.steps] == [
            steps.Read,
            steps.CompareAndSet,
            steps.Checkpoint,
            steps.Read,
        ]

    def test_lost_race_to_a_delete_decides_again(self, fake: FakeRedis, clock: FakeClock) -> None:
        """The expired record read is deleted meanwhile: the second try creates over nothing."""
        plant(fake, "id", OTHER, clock.now_ms - 1)
        fake.before[steps.CompareAndSet] = once(fake.data.clear)
        assert fake.run(ops.create(spec(clock), "id", DATA)) is True
        assert fake.steps[-1].old is None
        assert fake.record("id")["data"]["id"] == DATA.id

    def test_gives_up_after_bounded_races(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A key rewritten (expired) before every compare: False after CREATE_ATTEMPTS."""
        n = [0]

        def churn(step: Any) -> None:
            n[0] += 1
            plant(fake, "id", OTHER, clock.now_ms - n[0])

        fake.before[steps.CompareAndSet] = churn
        assert fake.run(ops.create(spec(clock), "id", DATA)) is False
        assert n[0] == ops.CREATE_ATTEMPTS

    def test_corrupt_or_wrong_type_raises(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A record that is not a session raises CorruptRecordError (as get), unchanged."""
        fake.data[b"wm_session_a"] = b"not json"
        fake.other_types[b"wm_session_b"] = "list"
        for session_id in "ab":
            with pytest.raises(CorruptRecordError) as info:
                fake.run(ops.create(spec(clock), session_id, DATA))
            assert info.value.session_id == session_id
        assert fake.data == {b"wm_session_a": b"not json"}

    def test_stamps_created_at(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Under an absolute timeout the created record carries createdAt, capped expiry."""
        assert fake.run(ops.create(spec(clock, lifetime=None, max_lifetime=60), "id", DATA))
        record = fake.record("id")
        assert record["data"]["createdAt"] == clock.now_ms
        assert record["expiresAt"] == clock.now_ms + 60_000
        assert fake.ttl[b"wm_session_id"] == 66_000


class TestUpdate:
    """`update`: compare-and-set over the exact bytes read, retried when it loses."""

    def test_missing(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A missing session is None and change is never called."""
        assert fake.run(ops.update(spec(clock), "id", lambda d: pytest.fail("called"))) is None

    def test_expired_is_removed(self, fake: FakeRedis, clock: FakeClock) -> None:
        """An expired session is None and removed by compare-and-delete, as a read does."""
        text = plant(fake, "id", counter(0), clock.now_ms - 1)
        assert fake.run(ops.update(spec(clock), "id", increment)) is None
        assert fake.steps[-1] == steps.CompareAndDelete("wm_session_id", text)
        assert fake.data == {}

    def test_replaces_with_expiry_as_after_a_read(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Without refresh the expiry stays; with refresh it slides, and the TTL follows."""
        plant(fake, "id", counter(0), clock.now_ms + 10)
        assert fake.run(ops.update(spec(clock), "id", increment)) == counter(1)
        assert fake.record("id")["expiresAt"] == clock.now_ms + 10
        assert fake.run(ops.update(spec(clock, refresh=True), "id", increment)) == counter(2)
        assert fake.record("id")["expiresAt"] == clock.now_ms + LIFETIME_MS
        assert fake.ttl[b"wm_session_id"] == LIFETIME_MS + 6_000

    def test_lost_race_retries_with_the_newer_data(self, fake: FakeRedis, clock: FakeClock) -> None:
        """An increment lands between Read and write: the retry builds on it, none is lost."""
        plant(fake, "id", counter(0), clock.now_ms + 10)
        calls: list[SessionData] = []

        def counting(data: SessionData) -> SessionData:
            calls.append(data)
            return increment(data)

        def other_client() -> None:
            plant(fake, "id", counter(5), clock.now_ms + 10)

        fake.before[steps.CompareAndSet] = once(other_client)
        assert fake.run(ops.update(spec(clock), "id", counting)) == counter(6)
        assert calls == [counter(0), counter(5)]
        assert steps.CHECKPOINT in fake.steps

    def test_many_lost_races(self, fake: FakeRedis, clock: FakeClock) -> None:
        """No small fixed bound: 50 lost races in a row and the 51st try still wins."""
        plant(fake, "id", counter(0), clock.now_ms + 10)
        n = [0]

        def other_client(step: Any) -> None:
            if n[0] < 50:
                n[0] += 1
                plant(fake, "id", counter(1000 + n[0]), clock.now_ms + 10)

        fake.before[steps.CompareAndSet] = other_client
        assert fake.run(ops.update(spec(clock), "id", increment)) == counter(1051)

    def test_delete_between_read_and_write_is_not_undone(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A delete before the write: the compare fails, the re-read finds nothing, None."""
        plant(fake, "id", counter(0), clock.now_ms + 10)
        fake.before[steps.CompareAndSet] = once(fake.data.clear)
        assert fake.run(ops.update(spec(clock), "id", increment)) is None
        assert fake.data == {}

    def test_keeps_created_at_and_its_cap(self, fake: FakeRedis, clock: FakeClock) -> None:
        """New data without created_at keeps the current one; the expiry stays capped."""
        s = spec(clock, refresh=True, max_lifetime=90)
        fake.run(ops.write(s, "id", counter(0)))
        created = clock.now_ms
        clock.advance(seconds=60)
        new = fake.run(ops.update(s, "id", lambda data: counter(7)))
        assert new == attrs.evolve(counter(7), created_at=created)
        assert fake.record("id")["expiresAt"] == created + 90_000

    def test_bad_change_writes_nothing(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A change that returns no SessionData raises; the record is untouched."""
        text = plant(fake, "id", counter(0), clock.now_ms + 10)
        with pytest.raises(InvalidSessionDataError):
            fake.run(ops.update(spec(clock), "id", lambda data: None))  # type: ignore[arg-type,return-value]
        assert fake.data[b"wm_session_id"] == text

    def test_corrupt_raises(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A corrupt record raises CorruptRecordError naming the id."""
        fake.data[b"wm_session_id"] = b"[]"
        with pytest.raises(CorruptRecordError):
            fake.run(ops.update(spec(clock), "id", increment))


class TestRotate:
    """`rotate`: one `Move` compares both keys with what was read."""

    def test_missing_or_expired(self, fake: FakeRedis, clock: FakeClock) -> None:
        """None for a missing session; an expired one is removed by compare-and-delete."""
        assert fake.run(ops.rotate(spec(clock), "old", "new")) is None
        text = plant(fake, "old", DATA, clock.now_ms - 1)
        assert fake.run(ops.rotate(spec(clock), "old", "new")) is None
        assert fake.steps[-1] == steps.CompareAndDelete("wm_session_old", text)
        assert fake.data == {}

    def test_moves_with_id_expiry_and_ttl(self, fake: FakeRedis, clock: FakeClock) -> None:
        """One Move: the data's id follows, the expiry is the read's, the TTL the rule's."""
        old_data = attrs.evolve(DATA, id="old")
        text = plant(fake, "old", old_data, clock.now_ms + 10)
        assert fake.run(ops.rotate(spec(clock, refresh=True), "old", "new")) == "new"
        moved = encode_record(attrs.evolve(DATA, id="new"), clock.now_ms + LIFETIME_MS)
        assert fake.steps[-1] == steps.Move(
            "wm_session_old", text, "wm_session_new", None, moved, LIFETIME_MS + 6_000
        )
        assert list(fake.data) == [b"wm_session_new"]

    def test_no_expiry_no_ttl(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A session without an expiry moves without one, and without a TTL."""
        plant(fake, "old", DATA, None)
        assert fake.run(ops.rotate(spec(clock), "old", "new")) == "new"
        assert "expiresAt" not in fake.record("new")
        assert fake.ttl[b"wm_session_new"] is None

    def test_taken_or_same_id_refused_unchanged(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A live new id, or the same id: SessionIdTakenError, and no write step at all."""
        before = {
            b"wm_session_old": plant(fake, "old", DATA, clock.now_ms + 10),
            b"wm_session_new": plant(fake, "new", OTHER, clock.now_ms),
        }
        for new_id in ("new", "old"):
            with pytest.raises(SessionIdTakenError) as info:
                fake.run(ops.rotate(spec(clock), "old", new_id))
            assert info.value.session_id == new_id
        assert fake.data == before
        assert {type(s) for s in fake.steps} == {steps.ReadMany}

    def test_expired_new_id_is_replaced_over_its_bytes(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """An expired session under the new id is compared exactly and replaced."""
        plant(fake, "old", DATA, clock.now_ms + 10)
        stale = plant(fake, "new", OTHER, clock.now_ms - 1)
        assert fake.run(ops.rotate(spec(clock), "old", "new")) == "new"
        assert fake.steps[-1].new_old == stale
        assert fake.record("new")["data"]["origin"] == DATA.origin

    def test_write_to_old_meanwhile_is_moved_not_lost(
        self, fake: FakeRedis, clock: FakeClock
    ) -> None:
        """A set of the old id before the Move: the Move fails, the retry moves the newer data."""
        plant(fake, "old", DATA, clock.now_ms + 10)
        fake.before[steps.Move] = once(lambda: plant(fake, "old", OTHER, clock.now_ms + 10))
        assert fake.run(ops.rotate(spec(clock), "old", "new")) == "new"
        assert fake.record("new")["data"]["origin"] == OTHER.origin
        assert list(fake.data) == [b"wm_session_new"]

    def test_concurrent_rotate_meanwhile(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Another rotate moved the session first: the retry finds it gone, None."""
        plant(fake, "old", DATA, clock.now_ms + 10)

        def other_rotate() -> None:
            fake.data[b"wm_session_elsewhere"] = fake.data.pop(b"wm_session_old")

        fake.before[steps.Move] = once(other_rotate)
        assert fake.run(ops.rotate(spec(clock), "old", "new")) is None
        assert list(fake.data) == [b"wm_session_elsewhere"]

    def test_new_id_taken_meanwhile(self, fake: FakeRedis, clock: FakeClock) -> None:
        """A create of the new id before the Move: the retry refuses it, the old id stays."""
        text = plant(fake, "old", DATA, clock.now_ms + 10)
        fake.before[steps.Move] = once(lambda: plant(fake, "new", OTHER, clock.now_ms + 10))
        with pytest.raises(SessionIdTakenError):
            fake.run(ops.rotate(spec(clock), "old", "new"))
        assert fake.data[b"wm_session_old"] == text
        assert fake.record("new")["data"]["origin"] == OTHER.origin

    def test_corrupt_new_id_raises(self, fake: FakeRedis, clock: FakeClock) -> None:
        """Something unreadable under the new id: CorruptRecordError naming it, no change."""
        plant(fake, "old", DATA, clock.now_ms + 10)
        fake.other_types[b"wm_session_new"] = "hash"
        with pytest.raises(CorruptRecordError) as info:
            fake.run(ops.rotate(spec(clock), "old", "new"))
        assert info.value.session_id == "new"


def drive(step: steps.Step, answer: Callable[[list[tuple[Any, ...]]], list[Any]]) -> Any:
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
        assert drive(steps.Read("k"), lambda _: [error]) is steps.WRONG_TYPE

    def test_read_and_slide_is_one_script(self) -> None:
        """ReadAndSlide: one EVALSHA (loaded again after NOSCRIPT); its replies as a Slide."""
        sent: list[tuple[Any, ...]] = []
        replies: list[Any] = [NoScriptError("NOSCRIPT No matching script."), "sha", None]

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.extend(commands)
            return [replies.pop(0) for _ in commands]

        step = steps.ReadAndSlide("k", 5, 60, None, 66)
        assert drive(step, answer) is None
        command = ("EVALSHA", READ_AND_SLIDE.sha, 1, "k", 5, 60, "", 66)
        assert sent == [command, ("SCRIPT", "LOAD", READ_AND_SLIDE.source), command]
        cases = [
            ([0, b"t"], steps.Slide(steps.Verdict.KEPT, b"t")),
            ([1, b"t", b"n", -1], steps.Slide(steps.Verdict.SLID, b"t", b"n", None)),
            ([1, b"t", b"n", 700], steps.Slide(steps.Verdict.SLID, b"t", b"n", 700)),
            ([2, b"t"], steps.Slide(steps.Verdict.EXPIRED, b"t")),
            ([3, b"t"], steps.Slide(steps.Verdict.UNDECIDED, b"t")),
        ]
        for reply, expected in cases:
            assert drive(steps.ReadAndSlide("k", 5, 60, 9, 66), lambda _: [reply]) == expected  # noqa: B023
        error = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        assert drive(step, lambda _: [error]) is steps.WRONG_TYPE

    def test_read_many_folds_in_type(self) -> None:
        """MGET's nils are asked TYPE in one round trip; a hash becomes NonString('hash')."""
        sent: list[list[tuple[Any, ...]]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.append(commands)
            if commands[0][0] == "MGET":
                return [[b"a", None, None]]
            return [b"hash", b"none"]

        assert drive(steps.ReadMany(("a", "b", "c")), answer) == [
            b"a",
            steps.NonString("hash"),
            None,
        ]
        assert sent == [[("MGET", "a", "b", "c")], [("TYPE", "b"), ("TYPE", "c")]]

    def test_scripts_loaded_once_per_pipeline(self) -> None:
        """After SCRIPT FLUSH each script is loaded once and the failed calls sent again."""
        batch = steps.Batch(
            (
                steps.CompareAndDelete("a", b"x"),
                steps.CompareAndDelete("b", b"y"),
                steps.CompareAndSet("c", b"z", "new", 1000),
            )
        )
        sent: list[list[tuple[Any, ...]]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.append(commands)
            if len(sent) == 1:
                return [NoScriptError("NOSCRIPT No matching script.")] * 3
            return ["sha" if c[0] == "SCRIPT" else 1 for c in commands]

        assert drive(batch, answer) == [True, True, True]
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

        assert drive(steps.CompareAndSet("k", b"o", "n", None), answer) is False
        assert sent == [("EVALSHA", COMPARE_AND_SET.sha, 1, "k", b"o", "n")]

    def test_scan_cursor(self) -> None:
        """The scan starts at 0 and a returned 0 ends it (None to the operation)."""
        page = drive(steps.Scan(b"p*"), lambda c: [(0, [b"pa"])])
        assert page == steps.ScanPage([b"pa"], None)
        assert drive(steps.Scan(b"p*", 7), lambda c: [(9, [])]).cursor == 9

    def test_other_error_replies_raise(self) -> None:
        """An error reply the core cannot absorb is raised as redis-py raised it."""
        with pytest.raises(ResponseError, match="OOM"):
            drive(steps.Write("k", "v", None), lambda _: [ResponseError("OOM command not allowed")])

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

    def test_compare_and_set_if_absent_is_set_nx(self) -> None:
        """old=None needs no script: SET NX, with PX when there is a TTL; nil means lost."""
        sent: list[tuple[Any, ...]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.extend(commands)
            return [True if len(sent) == 1 else None]

        assert drive(steps.CompareAndSet("k", None, "n", 1000), answer) is True
        assert drive(steps.CompareAndSet("k", None, "n", None), answer) is False
        assert sent == [("SET", "k", "n", "NX", "PX", 1000), ("SET", "k", "n", "NX")]

    def test_move_is_one_script_on_two_keys(self) -> None:
        """Move: EVALSHA over both keys; the expected new value only when there is one."""
        sent: list[tuple[Any, ...]] = []

        def answer(commands: list[tuple[Any, ...]]) -> list[Any]:
            sent.extend(commands)
            if len(sent) == 1:
                return [NoScriptError("NOSCRIPT No matching script.")]
            return ["sha" if c[0] == "SCRIPT" else 1 for c in commands]

        assert drive(steps.Move("a", b"x", "b", None, "t", 500), answer) is True
        assert sent == [
            ("EVALSHA", MOVE.sha, 2, "a", "b", b"x", "t", 500),
            ("SCRIPT", "LOAD", MOVE.source),
            ("EVALSHA", MOVE.sha, 2, "a", "b", b"x", "t", 500),
        ]
        sent.clear()
        drive(steps.Move("a", b"x", "b", b"y", "t", None), answer)
        assert sent[0] == ("EVALSHA", MOVE.sha, 2, "a", "b", b"x", "t", "", b"y")


class _HungClient:
    """Stands for a `redis.asyncio.Redis` whose server never answers."""

    async def execute_command(self, *args: Any) -> Any:
        await asyncio.sleep(3600)


class TestAsyncioDeadlines:
    """The asyncio runner's one deadline timer bounds calls as a timeout per call would."""

    def test_expiry_is_unavailable_and_outside_cancellation_stays_one(
        self, clock: FakeClock
    ) -> None:
        """An overdue call raises StoreUnavailableError; a caller's cancel is a cancel."""
        runner = AsyncioRunner(AsyncSender(cast("redis.asyncio.Redis", _HungClient())), 4, 0.2)
        store_spec = spec(clock)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(2):  # the timer re-arms for later calls
                start = loop.time()
                with pytest.raises(StoreUnavailableError, match=r"within 0\.2 s"):
                    await runner.run(ops.delete(store_spec, "id"), "delete")
                assert 0.15 < loop.time() - start < 1.0
            results = await asyncio.gather(
                *(runner.run(ops.delete(store_spec, f"id{n}"), "delete") for n in range(8)),
                return_exceptions=True,
            )
            assert all(isinstance(r, StoreUnavailableError) for r in results)
            call = asyncio.ensure_future(runner.run(ops.delete(store_spec, "id"), "delete"))
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            task = asyncio.current_task()
            assert task is not None
            if sys.version_info >= (3, 11):
                assert task.cancelling() == 0, "a cancellation of the runner's was left behind"

        asyncio.run(main())
