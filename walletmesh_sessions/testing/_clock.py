"""`FakeClock`: a settable clock for tests, so expiry is tested without sleeping."""

from __future__ import annotations

__all__ = ("FakeClock",)


class FakeClock:
    """A clock (seconds since the epoch, like `time.time`) that moves only when told to.

    It keeps whole milliseconds, so ``round(clock() * 1000)`` is exactly `now_ms`.
    """

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms: int = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000

    def advance(self, *, ms: int = 0, seconds: float = 0) -> None:
        """Move the clock by `ms` milliseconds plus `seconds` seconds (negative moves back)."""
        self.now_ms += ms + round(seconds * 1000)

    def __repr__(self) -> str:
        return f"FakeClock(now_ms={self.now_ms})"
