"""The expiry rules every store calls: pure functions of the config, now and a stored expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from walletmesh_sessions import SessionData, SessionStoreConfig
from walletmesh_sessions._core.expiry import (
    EXPIRED,
    absolute_expiry,
    after_read,
    expiry_after_update,
    expiry_after_write,
    stamped,
    sweep,
)

PLAIN = SessionStoreConfig(lifetime=60)
SLIDING = SessionStoreConfig(lifetime=60, refresh_on_access=True)
CAPPED = SessionStoreConfig(lifetime=60, refresh_on_access=True, max_lifetime=timedelta(minutes=5))


class TestAfterRead:
    """What a read does: EXPIRED, keep, or slide."""

    @pytest.mark.parametrize(
        ("config", "now", "stored", "expected"),
        [
            (PLAIN, 100, 100, 100),  # valid at exactly its expiry
            (PLAIN, 101, 100, EXPIRED),
            (PLAIN, 10**15, None, None),  # never expires
            (SLIDING, 50, 100, 60_050),
            (SLIDING, 50, None, 60_050),  # a session without expiry gets one
            (SLIDING, 101, 100, EXPIRED),
        ],
    )
    def test_decisions(
        self, config: SessionStoreConfig, now: int, stored: int | None, expected: object
    ) -> None:
        """Each case as the contract states it."""
        assert after_read(config, now, stored) == expected

    def test_absolute_timeout(self) -> None:
        """A slide stops at created_at + max_lifetime; one ms later the session is expired."""
        cap = 300_000
        assert after_read(CAPPED, cap - 1_000, cap, created_at=0) == cap
        assert after_read(CAPPED, cap, cap, created_at=0) == cap
        assert after_read(CAPPED, cap + 1, None, created_at=0) is EXPIRED
        # A record stored before the timeout was configured: the cap still applies.
        assert after_read(CAPPED, cap + 1, 10**15, created_at=0) is EXPIRED
        assert after_read(CAPPED, cap + 1, None, created_at=None) == cap + 1 + 60_000


class TestWrites:
    """Expiry of a write and an update; stamping created_at."""

    def test_write_is_capped(self) -> None:
        """now + lifetime, never past the absolute expiry."""
        assert expiry_after_write(PLAIN, 0) == 60_000
        assert expiry_after_write(CAPPED, 0, created_at=0) == 60_000
        assert expiry_after_write(CAPPED, 280_000, created_at=0) == 300_000
        assert expiry_after_write(SessionStoreConfig(max_lifetime=5), 0, created_at=0) == 5_000

    def test_update_is_capped_by_the_new_created_at(self) -> None:
        """An update keeps the read's expiry, capped by the data's absolute expiry."""
        assert expiry_after_update(CAPPED, 400_000, created_at=0) == 300_000
        assert expiry_after_update(CAPPED, 100, created_at=0) == 100
        assert expiry_after_update(PLAIN, 400_000, created_at=0) == 400_000

    def test_stamp_only_with_an_absolute_timeout(self) -> None:
        """created_at is set when the store has max_lifetime and the data has none."""
        data = SessionData("s", "o")
        assert stamped(CAPPED, data, 7).created_at == 7
        assert stamped(PLAIN, data, 7) is data
        assert stamped(CAPPED, SessionData("s", "o", created_at=1), 7).created_at == 1
        assert absolute_expiry(PLAIN, 0) is None


class TestSweep:
    """A pass over many records: found, removals and slides."""

    def test_collect(self) -> None:
        """get_all: live ones found and slid; expired ones listed for removal."""
        data = SessionData("s", "o")
        records = [("a", "ha", data, 100), ("b", "hb", data, 10), ("c", "hc", data, None)]
        result = sweep(SLIDING, 50, records, collect=True)
        assert result.found == {"a": data, "c": data}
        assert result.removals == ["hb"]
        assert result.slides == [("ha", 60_050), ("hc", 60_050)]

    def test_clean(self) -> None:
        """clean_expired: only removals, nothing found or slid."""
        data = SessionData("s", "o")
        result = sweep(SLIDING, 50, [("a", 1, data, 100), ("b", 2, data, 10)], collect=False)
        assert len(result.found) == 0
        assert (result.removals, result.slides) == ([2], [])

    def test_absolute_timeout_in_a_sweep(self) -> None:
        """A record past its absolute expiry is removed even if its stored expiry is later."""
        data = SessionData("s", "o", created_at=0)
        result = sweep(CAPPED, 300_001, [("a", "h", data, 10**15)], collect=True)
        assert result.removals == ["h"]
