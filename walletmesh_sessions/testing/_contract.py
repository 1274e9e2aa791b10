"""`SessionStoreContract`: the behaviour every `SessionStore` must have, as a pytest class.

Subclass it in a test module and provide a `store_factory` fixture returning a callable
``(config, clock) -> store``; every test runs on asyncio and on trio. The project's own stores
are tested with this same class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

import anyio
import pytest

from .._data import SessionData, SessionStoreConfig
from .._errors import InvalidSessionDataError, InvalidSessionIdError
from .._expiry import Clock
from .._protocol import SessionStore
from ._clock import FakeClock

__all__ = ("SessionStoreContract", "StoreFactory")

StoreFactory = Callable[[SessionStoreConfig, Clock], SessionStore]
"""Makes a fresh, empty store with the given config, reading the given clock."""

MakeStore = Callable[..., SessionStore]

LIFETIME_MS = 60_000
HOSTILE_IDS = (
    "a*",
    "a?",
    "[ab]",
    "a%",
    "a_",
    "a\\",
    "a\\*",
    "a\x00b",
    "a'b\"c;--",
    "sessi\u00f6n-\u4f1a\u8bdd-\U0001f600",
    "x" * 10_000,
    " ",
    "\n",
)
BAD_IDS: tuple[Any, ...] = ("", None, 1, b"id", ["id"], "\ud800")


def session(n: int | str = 1, **permissions: list[str]) -> SessionData:
    """A small distinct session for tests."""
    return SessionData(
        id=f"s{n}",
        origin=f"https://app{n}.example",
        permissions=permissions or {"eip155:1": ["eth_accounts"]},
    )


async def _close(store: object) -> None:
    aclose = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()


class SessionStoreContract:
    """The conformance suite. Subclass it and provide a `store_factory` fixture."""

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        """Every test runs on both backends; a missing trio fails instead of skipping."""
        return str(request.param)

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        """Override in the subclass: return ``(config, clock) -> fresh empty store``."""
        raise NotImplementedError("provide a store_factory fixture")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def make_store(
        self, store_factory: StoreFactory, clock: FakeClock, anyio_backend: str
    ) -> AsyncIterator[MakeStore]:
        """Make stores with a config (and the shared fake clock); close them afterwards."""
        made: list[SessionStore] = []

        def make(
            lifetime: float | timedelta | None = None,
            *,
            refresh: bool = False,
            clock_: Clock | None = None,
        ) -> SessionStore:
            config = SessionStoreConfig(lifetime=lifetime, refresh_on_access=refresh)
            store = store_factory(config, clock_ or clock)
            made.append(store)
            return store

        yield make
        for store in made:
            await _close(store)

    @pytest.fixture
    def store(self, make_store: MakeStore) -> SessionStore:
        """A store with a 60 s lifetime and no refresh."""
        return make_store(timedelta(milliseconds=LIFETIME_MS))

    @pytest.fixture
    def refreshing_store(self, make_store: MakeStore) -> SessionStore:
        """A store with a 60 s lifetime that slides expiry on every read."""
        return make_store(timedelta(milliseconds=LIFETIME_MS), refresh=True)

    # -- structure -------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_satisfies_protocol(self, store: SessionStore) -> None:
        """The store is a SessionStore at runtime, without inheriting from it."""
        assert isinstance(store, SessionStore), "store does not have the seven methods"
        assert SessionStore not in type(store).__mro__, "stores must not inherit SessionStore"

    # -- set / get -------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_set_then_get(self, store: SessionStore) -> None:
        """A stored session reads back equal."""
        data = session(1, **{"eip155:1": ["eth_accounts", "eth_sendTransaction"]})
        await store.set("id-1", data)
        assert await store.get("id-1") == data, "get must return what set stored"

    @pytest.mark.anyio
    async def test_round_trips_every_field(self, store: SessionStore) -> None:
        """created_at, empty permissions and many chains survive storage."""
        full = SessionData(
            "s", "https://a.example", {"eip155:1": [], "aztec:testnet": ["a", "b"]}, 1_699_999
        )
        empty = SessionData("e", "https://b.example")
        await store.set("full", full)
        await store.set("empty", empty)
        assert await store.get("full") == full
        assert await store.get("empty") == empty

    @pytest.mark.anyio
    async def test_get_missing_is_none(self, store: SessionStore) -> None:
        """A session never stored reads as None."""
        assert await store.get("nope") is None
        assert await store.validate_and_refresh("nope") is None

    @pytest.mark.anyio
    async def test_set_overwrites(self, store: SessionStore) -> None:
        """A second set replaces the first."""
        await store.set("id", session(1))
        await store.set("id", session(2))
        assert await store.get("id") == session(2)
        assert dict(await store.get_all()) == {"id": session(2)}

    @pytest.mark.anyio
    async def test_ids_are_distinct_keys(self, store: SessionStore) -> None:
        """The session id, not data.id, is the key."""
        await store.set("a", session(1))
        await store.set("b", session(1))
        assert dict(await store.get_all()) == {"a": session(1), "b": session(1)}

    # -- expiry ----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_valid_at_exactly_expiry(self, store: SessionStore, clock: FakeClock) -> None:
        """At exactly now + lifetime a session is still valid; 1 ms later it is expired."""
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS)
        assert await store.get("id") == session(), "expired at exactly its expiry (off by one)"
        clock.advance(ms=1)
        assert await store.get("id") is None, "still valid 1 ms after its expiry"

    @pytest.mark.anyio
    async def test_expired_get_removes(self, store: SessionStore, clock: FakeClock) -> None:
        """Reading an expired session removes it: clean_expired then finds nothing."""
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS + 1)
        assert await store.validate_and_refresh("id") is None
        assert await store.clean_expired() == 0, "an expired session read by get was not removed"
        clock.advance(ms=-LIFETIME_MS)
        assert await store.get("id") is None, "an expired session came back"

    @pytest.mark.anyio
    async def test_no_lifetime_never_expires(self, make_store: MakeStore, clock: FakeClock) -> None:
        """Without a lifetime, sessions outlive any clock move."""
        store = make_store(None)
        await store.set("id", session())
        clock.advance(seconds=100 * 365 * 86400)
        assert await store.get("id") == session()
        assert await store.clean_expired() == 0
        assert dict(await store.get_all()) == {"id": session()}

    @pytest.mark.anyio
    async def test_no_refresh_keeps_expiry(self, store: SessionStore, clock: FakeClock) -> None:
        """Without refresh_on_access, reads do not extend a session."""
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS - 1)
        assert await store.get("id") == session()
        await store.get_all()
        clock.advance(ms=2)
        assert await store.get("id") is None, "a read extended the session without refresh"

    @pytest.mark.anyio
    async def test_set_restarts_lifetime(self, store: SessionStore, clock: FakeClock) -> None:
        """Overwriting a session gives it a new expiry from now."""
        await store.set("id", session(1))
        clock.advance(ms=LIFETIME_MS - 10)
        await store.set("id", session(2))
        clock.advance(ms=LIFETIME_MS)
        assert await store.get("id") == session(2)

    # -- sliding refresh -------------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize("method", ["get", "validate_and_refresh"])
    async def test_read_slides_expiry(
        self, refreshing_store: SessionStore, clock: FakeClock, method: str
    ) -> None:
        """With refresh_on_access, a read sets the expiry to now + lifetime."""
        store = refreshing_store
        await store.set("id", session())
        clock.advance(ms=LIFETIME_MS - 1)
        assert await getattr(store, method)("id") == session()
        clock.advance(ms=LIFETIME_MS)
        assert await store.get("id") == session(), f"{method} did not slide the expiry"
        clock.advance(ms=LIFETIME_MS + 1)
        assert await store.get("id") is None, "expiry slid beyond now + lifetime"

    @pytest.mark.anyio
    async def test_get_all_slides_expiry(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """With refresh_on_access, get_all slides every returned session."""
        store = refreshing_store
        await store.set("a", session(1))
        await store.set("b", session(2))
        clock.advance(ms=LIFETIME_MS)
        assert dict(await store.get_all()) == {"a": session(1), "b": session(2)}
        clock.advance(ms=LIFETIME_MS)
        assert dict(await store.get_all()) == {"a": session(1), "b": session(2)}, (
            "get_all did not slide the expiry"
        )

    @pytest.mark.anyio
    async def test_refresh_does_not_revive(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """An expired session stays expired even with refresh_on_access."""
        await refreshing_store.set("id", session())
        clock.advance(ms=LIFETIME_MS + 1)
        assert await refreshing_store.get("id") is None
        assert dict(await refreshing_store.get_all()) == {}

    # -- get_all ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_get_all_skips_expired(self, store: SessionStore, clock: FakeClock) -> None:
        """get_all returns only unexpired sessions, keyed by session id."""
        await store.set("old", session(1))
        clock.advance(ms=LIFETIME_MS // 2)
        await store.set("new", session(2))
        clock.advance(ms=LIFETIME_MS // 2 + 1)
        assert dict(await store.get_all()) == {"new": session(2)}, "get_all returned expired"

    @pytest.mark.anyio
    async def test_get_all_empty(self, store: SessionStore) -> None:
        """An empty store has an empty mapping."""
        result = await store.get_all()
        assert isinstance(result, Mapping)
        assert dict(result) == {}

    @pytest.mark.anyio
    async def test_get_all_is_a_new_mapping(self, store: SessionStore) -> None:
        """Changing the returned mapping does not change the store."""
        await store.set("a", session(1))
        first = await store.get_all()
        if isinstance(first, dict):
            first.clear()
        assert dict(await store.get_all()) == {"a": session(1)}, "get_all returned its own state"

    # -- delete / clear --------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_delete(self, store: SessionStore) -> None:
        """delete removes one session and leaves the others."""
        await store.set("a", session(1))
        await store.set("b", session(2))
        await store.delete("a")
        assert await store.get("a") is None
        assert await store.get("b") == session(2)

    @pytest.mark.anyio
    async def test_delete_missing_is_fine(self, store: SessionStore) -> None:
        """Deleting a missing id is not an error."""
        await store.delete("never-there")
        await store.delete("never-there")

    @pytest.mark.anyio
    async def test_clear(self, store: SessionStore, clock: FakeClock) -> None:
        """clear removes every session, expired or not."""
        await store.set("a", session(1))
        clock.advance(ms=LIFETIME_MS + 1)
        await store.set("b", session(2))
        await store.clear()
        assert dict(await store.get_all()) == {}
        assert await store.clean_expired() == 0
        clock.advance(ms=-LIFETIME_MS - 1)
        assert await store.get("a") is None, "clear left an expired session behind"

    # -- clean_expired ---------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_clean_expired_counts(self, store: SessionStore, clock: FakeClock) -> None:
        """clean_expired removes exactly the expired sessions and returns their number."""
        for n in range(5):
            await store.set(f"old{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2)
        for n in range(3):
            await store.set(f"new{n}", session(n))
        clock.advance(ms=LIFETIME_MS // 2)
        assert await store.clean_expired() == 0, "removed sessions at exactly their expiry"
        clock.advance(ms=1)
        assert await store.clean_expired() == 5
        assert await store.clean_expired() == 0, "a second call counted the same sessions"
        assert set(await store.get_all()) == {"new0", "new1", "new2"}

    @pytest.mark.anyio
    async def test_clean_expired_after_clock_steps_back(
        self, store: SessionStore, clock: FakeClock
    ) -> None:
        """Sessions written while the clock was set back are still cleaned correctly."""
        await store.set("late", session(1))
        clock.advance(ms=-10 * LIFETIME_MS)
        await store.set("early", session(2))
        clock.advance(ms=10 * LIFETIME_MS - 1)
        assert await store.clean_expired() == 1
        assert set(await store.get_all()) == {"late"}

    # -- input validation ------------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
    async def test_bad_ids_refused(self, store: SessionStore, bad_id: Any) -> None:
        """Every method that takes an id refuses a bad one, and nothing changes."""
        await store.set("keep", session())
        for name in ("get", "validate_and_refresh", "delete"):
            with pytest.raises(InvalidSessionIdError):
                await getattr(store, name)(bad_id)
        with pytest.raises(InvalidSessionIdError):
            await store.set(bad_id, session())
        assert dict(await store.get_all()) == {"keep": session()}

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "bad_data",
        [None, {"id": "s", "origin": "o", "permissions": {}}, "s", 1],
        ids=repr,
    )
    async def test_bad_data_refused(self, store: SessionStore, bad_data: Any) -> None:
        """set refuses data that is not a SessionData and keeps what was stored."""
        await store.set("id", session(1))
        with pytest.raises(InvalidSessionDataError):
            await store.set("id", bad_data)
        assert await store.get("id") == session(1), "a failed set changed the stored session"

    @pytest.mark.anyio
    @pytest.mark.parametrize("hostile_id", HOSTILE_IDS, ids=lambda s: repr(s[:20]))
    async def test_hostile_ids_round_trip(self, store: SessionStore, hostile_id: str) -> None:
        """Ids with wildcards, quotes, NUL, unicode or 10,000 characters are plain keys."""
        await store.set("ab", session(1))
        await store.set("a", session(2))
        await store.set(hostile_id, session(3))
        assert await store.get(hostile_id) == session(3)
        assert dict(await store.get_all()) == {
            "ab": session(1),
            "a": session(2),
            hostile_id: session(3),
        }
        await store.delete(hostile_id)
        assert dict(await store.get_all()) == {"ab": session(1), "a": session(2)}

    # -- concurrency -----------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_many_tasks(self, store: SessionStore) -> None:
        """Hundreds of concurrent tasks lose no write and see no error."""
        results: dict[str, SessionData | None] = {}

        async def worker(n: int) -> None:
            sid = f"task-{n}"
            await store.set(sid, session(n))
            results[sid] = await store.get(sid)
            if n % 3 == 0:
                await store.delete(sid)

        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(worker, n)
        assert all(results[f"task-{n}"] == session(n) for n in range(200)), "a write was lost"
        expected = {f"task-{n}": session(n) for n in range(200) if n % 3}
        assert dict(await store.get_all()) == expected

    @pytest.mark.anyio
    async def test_concurrent_refresh_never_revives_deleted(
        self, refreshing_store: SessionStore
    ) -> None:
        """Reads racing a delete never bring the session back."""
        store = refreshing_store
        for n in range(50):
            await store.set(f"id{n}", session(n))

        async def reader(n: int) -> None:
            for _ in range(3):
                await store.get(f"id{n}")
                await store.get_all()

        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(reader, n)
                tg.start_soon(store.delete, f"id{n}")
        assert dict(await store.get_all()) == {}, "a refresh brought back a deleted session"
