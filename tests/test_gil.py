"""Worker-thread scans release the GIL about every millisecond of work, and change nothing."""

from __future__ import annotations

from collections.abc import Iterator

from walletmesh_sessions._core.gil import sharing_the_gil


class SteppingClock:
    """A clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_items_pass_unchanged_and_lazily() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for n in range(1000):
            pulled.append(n)
            yield n

    shared = sharing_the_gil(source())
    assert next(shared) == 0
    assert pulled == [0]  # nothing read ahead of the consumer
    assert list(shared) == list(range(1, 1000))


def test_releases_after_each_millisecond_of_work() -> None:
    pauses: list[float] = []
    # The clock is read every 64 items; 0.4 ms per read: a millisecond passes every 3 reads.
    clock = SteppingClock(0.0004)
    items = list(sharing_the_gil(range(64 * 30), clock=clock, pause=pauses.append))
    assert items == list(range(64 * 30))
    assert pauses
    assert set(pauses) == {0}
    assert 8 <= len(pauses) <= 15


def test_quick_work_is_never_paused() -> None:
    pauses: list[float] = []
    clock = SteppingClock(0.000001)
    assert len(list(sharing_the_gil(range(10_000), clock=clock, pause=pauses.append))) == 10_000
    assert pauses == []
