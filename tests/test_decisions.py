"""The lifecycle decisions: what create, update and rotate write, from what is stored and now."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from walletmesh_sessions import InvalidSessionDataError, SessionData, SessionStoreConfig
from walletmesh_sessions._core.expiry import (
    EXPIRED,
    absolute_expiry,
    after_read,
    expiry_after_write,
    stamped,
)
from walletmesh_sessions._core.lifecycle import (
    ABSENT,
    TAKEN,
    Move,
    Stored,
    Write,
    decide_create,
    decide_rotate,
    decide_update,
)

NOW = 1_000_000
PLAIN = SessionStoreConfig(lifetime=60)
CAPPED = SessionStoreConfig(lifetime=60, refresh_on_access=True, max_lifetime=timedelta(minutes=5))
LIVE: Stored = (SessionData("old", "o", created_at=NOW - 1000), NOW + 10)
DEAD: Stored = (SessionData("old", "o", created_at=NOW - 1000), NOW - 1)


def never(data: SessionData) -> SessionData:
    raise AssertionError("change must not be called")


def touch(data: SessionData) -> SessionData:
    return attrs.evolve(data, app_data={"n": 1}, created_at=None)


class TestCreate:
    def test_absent_is_written_stamped_with_a_fresh_expiry(self) -> None:
        """Nothing stored: the data is written, stamped, with the expiry of a write now."""
        decision = decide_create(CAPPED, NOW, None, SessionData("s", "o"))
        assert decision == Write(SessionData("s", "o", created_at=NOW), NOW + 60_000)

    def test_live_is_taken(self) -> None:
        """A live session under the id: nothing is written."""
        assert decide_create(PLAIN, NOW, LIVE, SessionData("s", "o")) is TAKEN

    def test_expired_counts_as_absent(self) -> None:
        """An expired record is written over."""
        decision = decide_create(PLAIN, NOW, DEAD, SessionData("s", "o"))
        assert decision == Write(SessionData("s", "o"), NOW + 60_000)


class TestUpdate:
    def test_absent(self) -> None:
        """No record: nothing happens, and `change` is not called."""
        assert decide_update(PLAIN, NOW, None, never) is ABSENT

    def test_expired_is_removed(self) -> None:
        """An expired record: remove it, `change` not called."""
        assert decide_update(PLAIN, NOW, DEAD, never) is EXPIRED

    def test_live_keeps_created_at_and_the_reads_expiry(self) -> None:
        """The change is written with the stored `created_at` and the expiry a read gives."""
        decision = decide_update(CAPPED, NOW, LIVE, touch)
        assert isinstance(decision, Write)
        assert decision.data.created_at == NOW - 1000
        assert decision.data.app_data == {"n": 1}
        assert decision.expires_at == NOW + 60_000  # slid on the read
        assert decide_update(PLAIN, NOW, LIVE, touch) == Write(
            attrs.evolve(touch(LIVE[0]), created_at=NOW - 1000), NOW + 10
        )

    def test_a_change_returning_garbage_is_refused(self) -> None:
        """`change` must return a SessionData."""
        with pytest.raises(InvalidSessionDataError):
            decide_update(PLAIN, NOW, LIVE, lambda data: "x")  # type: ignore[arg-type,return-value]


class TestRotate:
    def test_absent_old(self) -> None:
        """No record at the old id: nothing, even when the new id is the same."""
        assert decide_rotate(PLAIN, NOW, "old", "old", None, None) is ABSENT
        assert decide_rotate(PLAIN, NOW, "old", "new", None, LIVE) is ABSENT

    def test_expired_old_is_removed(self) -> None:
        """An expired old record is removed, whatever the new id holds."""
        assert decide_rotate(PLAIN, NOW, "old", "new", DEAD, LIVE) is EXPIRED

    def test_taken(self) -> None:
        """The same id, or a new id holding a live session, is refused."""
        assert decide_rotate(PLAIN, NOW, "old", "old", LIVE, LIVE) is TAKEN
        assert decide_rotate(PLAIN, NOW, "old", "new", LIVE, LIVE) is TAKEN

    def test_moves_over_nothing_or_an_expired_record(self) -> None:
        """The data moves with the expiry a read gives it; its id follows the session id."""
        for there in (None, DEAD):
            decision = decide_rotate(CAPPED, NOW, "old", "new", LIVE, there)
            assert decision == Move(attrs.evolve(LIVE[0], id="new"), NOW + 60_000)

    def test_a_foreign_data_id_is_kept(self) -> None:
        """Data whose id is not the session id (a router's record) keeps its id."""
        stored: Stored = (SessionData("origin_old", "o"), None)
        decision = decide_rotate(PLAIN, NOW, "old", "new", stored, None)
        assert decision == Move(SessionData("origin_old", "o"), None)


configs = st.builds(
    SessionStoreConfig,
    lifetime=st.none() | st.integers(1, 1000),
    refresh_on_access=st.booleans(),
    max_lifetime=st.none() | st.integers(1, 1000).map(lambda s: timedelta(seconds=s)),
)
times = st.integers(0, 10_000_000)
stored_records = st.none() | st.tuples(
    st.builds(SessionData, st.just("old"), st.just("o"), created_at=st.none() | times),
    st.none() | times,
)


def is_live(config: SessionStoreConfig, now: int, stored: Stored | None) -> bool:
    return stored is not None and (
        after_read(config, now, stored[1], stored[0].created_at) is not EXPIRED
    )


class TestRules:
    @given(configs, times, stored_records)
    def test_create_writes_exactly_when_nothing_live(
        self, config: SessionStoreConfig, now: int, stored: Stored | None
    ) -> None:
        """create writes iff no live session is stored, with what a plain write would."""
        decision = decide_create(config, now, stored, SessionData("s", "o"))
        if is_live(config, now, stored):
            assert decision is TAKEN
        else:
            data = stamped(config, SessionData("s", "o"), now)
            assert decision == Write(data, expiry_after_write(config, now, data.created_at))

    @given(configs, times, stored_records)
    def test_update_never_outlives_the_absolute_timeout(
        self, config: SessionStoreConfig, now: int, stored: Stored | None
    ) -> None:
        """An update of a live session keeps `created_at` and stays within its cap."""
        decision = decide_update(config, now, stored, touch)
        if stored is None:
            assert decision is ABSENT
        elif not is_live(config, now, stored):
            assert decision is EXPIRED
        else:
            assert isinstance(decision, Write)
            if stored[0].created_at is not None:
                assert decision.data.created_at == stored[0].created_at
            cap = absolute_expiry(config, decision.data.created_at)
            if cap is not None:
                assert decision.expires_at is not None
                assert decision.expires_at <= cap

    @given(configs, times, stored_records, stored_records)
    def test_rotate_moves_only_a_live_session_to_a_free_id(
        self, config: SessionStoreConfig, now: int, old: Stored | None, new: Stored | None
    ) -> None:
        """rotate moves iff the old session is live and the new id holds none live."""
        decision = decide_rotate(config, now, "old", "new", old, new)
        if old is None:
            assert decision is ABSENT
        elif not is_live(config, now, old):
            assert decision is EXPIRED
        elif is_live(config, now, new):
            assert decision is TAKEN
        else:
            assert isinstance(decision, Move)
            assert decision.data.id == "new"
            after = after_read(config, now, old[1], old[0].created_at)
            assert decision.expires_at == after
