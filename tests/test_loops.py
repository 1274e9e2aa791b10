"""The per-loop holder: one resource per event loop or trio run, closed on its own loop."""

from __future__ import annotations

import gc

import anyio
import anyio.lowlevel
import pytest

from walletmesh_sessions._core.loops import PerLoop

BACKENDS = ["asyncio", "trio"]


class Resource:
    """A stand-in client: remembers the run it was made on and the run it was closed on."""

    def __init__(self) -> None:
        self.made_on = anyio.lowlevel.current_token()
        self.closed_on: object = None

    async def aclose(self) -> None:
        assert self.closed_on is None, "closed twice"
        self.closed_on = anyio.lowlevel.current_token()


def holder() -> PerLoop[Resource]:
    return PerLoop(Resource, close=Resource.aclose)


@pytest.mark.parametrize("backend", BACKENDS)
class TestPerLoop:
    def test_one_per_loop(self, backend: str) -> None:
        """Every `get()` on one loop gives the same resource, made once."""
        made: list[Resource] = []

        def factory() -> Resource:
            made.append(Resource())
            return made[-1]

        loops: PerLoop[Resource] = PerLoop(factory)

        async def main() -> None:
            assert loops.current() is None
            first = loops.get()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(anyio.sleep, 0)
            assert loops.get() is first
            assert loops.current() is first

        anyio.run(main, backend=backend)
        assert len(made) == 1

    def test_each_run_its_own_closed_as_it_ends(self, backend: str) -> None:
        """A second run gets a fresh resource; the first was closed on its own run."""
        loops = holder()
        seen: list[Resource] = []

        async def main() -> None:
            seen.append(loops.get())

        anyio.run(main, backend=backend)
        anyio.run(main, backend=backend)
        first, second = seen
        assert first is not second
        assert first.closed_on is not None
        assert first.closed_on == first.made_on
        assert second.closed_on == second.made_on
        assert loops._held == {}

    def test_aclose_closes_this_loops_now(self, backend: str) -> None:
        """`aclose()` closes this loop's resource at once; the next `get()` makes another."""
        loops = holder()

        async def main() -> None:
            await loops.aclose()  # nothing made yet: nothing to do
            first = loops.get()
            await loops.aclose()
            assert first.closed_on == anyio.lowlevel.current_token()
            assert loops.current() is None
            second = loops.get()
            assert second is not first
            assert second.closed_on is None
            await loops.aclose()
            assert second.closed_on is not None

        anyio.run(main, backend=backend)

    def test_holders_are_independent(self, backend: str) -> None:
        """Two holders on one loop keep, and close, their own resources."""
        one, two = holder(), holder()

        async def main() -> None:
            a, b = one.get(), two.get()
            assert a is not b
            await one.aclose()
            assert a.closed_on is not None
            assert b.closed_on is None
            assert two.get() is b

        anyio.run(main, backend=backend)

    def test_a_dropped_holder_closes_on_its_loop(self, backend: str) -> None:
        """A holder dropped while its loop runs has its resource closed on that loop: soon
        after on asyncio, as the run ends on trio."""
        seen: list[tuple[Resource, object]] = []

        async def main() -> None:
            loops = holder()
            resource = loops.get()
            del loops
            gc.collect()
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            seen.append((resource, anyio.lowlevel.current_token()))
            if backend == "asyncio":
                assert resource.closed_on is not None

        anyio.run(main, backend=backend)
        [(resource, token)] = seen
        assert resource.closed_on == token

    def test_without_close_it_is_only_forgotten(self, backend: str) -> None:
        """A resource with nothing to close (a thread limiter) is dropped as its run ends."""
        limiters = PerLoop(lambda: anyio.CapacityLimiter(3))
        seen: list[anyio.CapacityLimiter] = []

        async def main() -> None:
            seen.append(limiters.get())
            assert limiters.get() is seen[-1]

        anyio.run(main, backend=backend)
        anyio.run(main, backend=backend)
        assert seen[0] is not seen[1]
        assert limiters._held == {}
