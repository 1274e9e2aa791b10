"""Rules for `SessionData.app_data`: every store keeps it, and it never fools a store's reading
of the record's own ``createdAt`` and ``expiresAt`` (in a script, a JSON path or SQL)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import anyio
import attrs
import pytest
from hypothesis import strategies as st

from .._core.data import SessionData
from .._core.iteration import iter_sessions
from .._core.json_values import MAX_SAFE_INTEGER, JSONValue
from .._core.protocol import SessionStore
from ._clock import FakeClock
from ._kit_base import LIFETIME_MS, MakeStore, StoreFixtures, lifecycle

__all__ = ("APP_DATA", "APP_DATA_SAMPLES", "AppDataLifecycleRules", "AppDataRules")

# Names the stores look for in a record's text, as keys and as strings, with and without
# backslashes (a reader that counts names or quotes must not be fooled either way).
APP_DATA_SAMPLES: dict[str, Mapping[str, JSONValue]] = {
    "plain": {"theme": "dark", "tabs": ["a", "b"], "prefs": {"x": None, "on": True, "r": 0.5}},
    # A store that read these as the record's would expire the session at once.
    "early-names": {"createdAt": 1, "expiresAt": 1, "data": {"createdAt": 2, "expiresAt": 2}},
    # ... and these, as a session that never expires (the year 2096).
    "late-names": {"createdAt": 4_000_000_000_000, "expiresAt": 4_000_000_000_000, "data": {}},
    "names-as-strings": {"k": ["createdAt", "expiresAt", "data", "appData", "null"]},
    # One of the names only, and no backslash: a reader that counts names gets as far as it.
    "createdAt-alone": {"k": "createdAt", "createdAt": 1},
    "expiresAt-alone": {"k": "expiresAt", "expiresAt": 1},
    "backslashes": {
        "path": "C:\\Users\\",
        "text": ',"expiresAt":1}',
        "more": '"createdAt":1,"data":{',
        "escape": "\\u0000\\",
        "nul": "a\x00b",
        "expiresAt": [1, "\\"],
    },
    "numbers-and-text": {
        "\u00e9": "\U0001f600 \u4f1a\u8bdd",
        "n": [-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, 0, -0.0, 0.1, 1e300, -2.5e-300],
        "empty": {"a": {}, "b": [], "c": ""},
        "nested": [[[{"createdAt": [[1]]}]]],
    },
}

_TEXT = st.sampled_from(["", "createdAt", "expiresAt", "data", "\\", '"', ',"expiresAt":1}'])
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_NAMES = st.sampled_from(["createdAt", "expiresAt", "data", "appData", "k"])
APP_DATA: st.SearchStrategy[Mapping[str, JSONValue]] = st.sampled_from(
    [{}, *APP_DATA_SAMPLES.values()]
) | st.dictionaries(
    _NAMES,
    st.recursive(
        _LEAVES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
        max_leaves=6,
    ),
    max_size=3,
)
"""`app_data` values for model checks: the samples above, or small objects built from them."""


_ETH = {"eip155:1": ["eth_accounts"]}


def _sessions(created_at: int | None = None) -> dict[str, SessionData]:
    """One session per sample, keyed by the session id it is stored under."""
    return {
        f"id-{n}": SessionData(f"s{n}", "https://app.example", _ETH, created_at, app_data=value)
        for n, value in enumerate(APP_DATA_SAMPLES.values())
    }


async def _stored(store: SessionStore, created_at: int | None = None) -> dict[str, SessionData]:
    """`_sessions`, each set in `store`."""
    sessions = _sessions(created_at)
    for session_id, data in sessions.items():
        await store.set(session_id, data)
    return sessions


class AppDataRules(StoreFixtures):
    """`app_data` survives set, get, get_all, iteration, refreshes and clean_expired."""

    async def test_app_data_round_trips(self, store: SessionStore) -> None:
        """Each sample reads back equal, as JSON too, through get, get_all and iteration."""
        sessions = await _stored(store)
        for session_id, data in sessions.items():
            got = await store.get(session_id)
            assert got is not None, f"{session_id} was not stored"
            assert got == data, f"get returned {got}, set stored {data}"
            assert got.to_json() == data.to_json()
        assert dict(await store.get_all()) == sessions, "get_all changed app_data"
        assert dict([item async for item in iter_sessions(store, 2)]) == sessions

    async def test_set_replaces_app_data(self, store: SessionStore) -> None:
        """A second set with other (or no) app_data replaces it whole."""
        first = SessionData("s", "https://a.example", app_data={"a": 1, "b": [2]})
        await store.set("id", first)
        second = attrs.evolve(first, app_data={"b": "x"})
        await store.set("id", second)
        assert await store.get("id") == second
        await store.set("id", SessionData("s", "https://a.example"))
        got = await store.get("id")
        assert got is not None
        assert dict(got.app_data) == {}, "set kept app_data it was not given"

    async def test_app_data_never_moves_expiry(
        self, refreshing_store: SessionStore, clock: FakeClock
    ) -> None:
        """Names like createdAt or expiresAt inside app_data are never read as the record's:
        every read slides the expiry, to the millisecond."""
        sessions = await _stored(refreshing_store)
        # Each read is at exactly the expiry the read before it set (so still valid).
        for reader in ("get", "get_all", "get"):
            clock.advance(ms=LIFETIME_MS)
            await _read_all(refreshing_store, reader, sessions)
        clock.advance(ms=LIFETIME_MS + 1)
        for session_id in sessions:
            assert await refreshing_store.get(session_id) is None, f"{session_id} outlived it"

    async def test_clean_expired_with_app_data(self, store: SessionStore, clock: FakeClock) -> None:
        """clean_expired finds these sessions at their expiry, not before."""
        sessions = await _stored(store)
        clock.advance(ms=LIFETIME_MS)
        assert await store.clean_expired() == 0, "cleaned before the expiry"
        assert len(await store.get_all()) == len(sessions)
        clock.advance(ms=1)
        assert await store.clean_expired() == len(sessions)


async def _read_all(store: SessionStore, reader: str, sessions: dict[str, SessionData]) -> None:
    """Read every session by `reader` ("get" or "get_all"): each must be there, unchanged."""
    if reader == "get_all":
        assert dict(await store.get_all()) == sessions, "get_all lost, changed or expired them"
        return
    for session_id, data in sessions.items():
        assert await store.get(session_id) == data, f"{session_id} lost, changed or expired"


def _count(data: SessionData) -> SessionData:
    """``update`` change that adds one to ``app_data["count"]``."""
    count = data.app_data.get("count", 0)
    assert isinstance(count, int)
    return data.with_app_data({"count": count + 1})


class AppDataLifecycleRules(StoreFixtures):
    """`app_data` through create, update and rotate, and updates of it under concurrency."""

    async def test_app_data_never_moves_absolute_timeout(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        """Names like createdAt inside app_data never move the absolute timeout: reads slide up
        to exactly created_at + max_lifetime, and the session expires 1 ms later."""
        store = make_store(
            timedelta(milliseconds=LIFETIME_MS),
            refresh=True,
            max_lifetime=timedelta(milliseconds=3 * LIFETIME_MS),
        )
        sessions = await _stored(store, clock.now_ms)
        for reader in ("get", "get_all", "get"):  # 3 * (LIFETIME_MS - 1): each read slides
            clock.advance(ms=LIFETIME_MS - 1)
            await _read_all(store, reader, sessions)
        clock.advance(ms=3)  # exactly created_at + max_lifetime: still valid
        await _read_all(store, "get_all", sessions)
        clock.advance(ms=1)
        for session_id in sessions:
            assert await store.get(session_id) is None, f"{session_id} outlived max_lifetime"

    async def test_clean_expired_at_absolute_timeout(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        """clean_expired finds these sessions at their absolute timeout, not before."""
        store = make_store(timedelta(minutes=10), max_lifetime=timedelta(minutes=1))
        sessions = await _stored(store)
        clock.advance(ms=60_000)
        assert await store.clean_expired() == 0, "cleaned before the absolute timeout"
        assert len(await store.get_all()) == len(sessions)
        clock.advance(ms=1)
        assert await store.clean_expired() == len(sessions)

    async def test_create_keeps_app_data(self, store: SessionStore) -> None:
        """create stores app_data; a refused create leaves the stored one as it was."""
        s = lifecycle(store)
        for session_id, data in _sessions().items():
            assert await s.create(session_id, data) is True
            assert await s.create(session_id, data.with_app_data({"x": 1})) is False
            assert await s.get(session_id) == data

    @pytest.mark.parametrize("sample", list(APP_DATA_SAMPLES))
    async def test_update_changes_app_data(self, store: SessionStore, sample: str) -> None:
        """update stores the new app_data (merged, removed, emptied) and returns it."""
        s = lifecycle(store)
        data = SessionData(
            "s", "https://a.example", created_at=5, app_data=APP_DATA_SAMPLES[sample]
        )
        await s.set("id", data)
        merged = await s.update("id", lambda d: d.with_app_data({"step": 1, "data": [None]}))
        assert merged is not None
        assert merged == data.with_app_data({"step": 1, "data": [None]})
        assert await s.get("id") == merged
        removed = await s.update("id", lambda d: d.without_app_data("step", "createdAt"))
        assert removed == merged.without_app_data("step", "createdAt")
        assert await s.get("id") == removed
        emptied = await s.update("id", lambda d: attrs.evolve(d, app_data={}))
        assert emptied == attrs.evolve(data, app_data={})
        assert await s.get("id") == emptied
        # New data without created_at: the stored one keeps the session's, and the new app_data.
        fresh = await s.update(
            "id", lambda d: SessionData("s", "https://a.example", app_data={"a": 1})
        )
        assert fresh == SessionData("s", "https://a.example", created_at=5, app_data={"a": 1})
        assert await s.get("id") == fresh

    async def test_concurrent_app_data_updates_are_not_lost(self, store: SessionStore) -> None:
        """Many concurrent updates of app_data next to tricky values: none is lost."""
        s = lifecycle(store)
        start = SessionData("s", "https://a.example", app_data=APP_DATA_SAMPLES["backslashes"])
        await s.set("id", start)
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(s.update, "id", _count)
        assert await s.get("id") == start.with_app_data({"count": 200}), "lost updates"

    async def test_rotate_keeps_app_data(self, store: SessionStore) -> None:
        """rotate moves app_data with the session, unchanged."""
        s = lifecycle(store)
        for session_id, data in _sessions().items():
            await s.set(session_id, data)
            new_id = await s.rotate(session_id)
            assert new_id is not None
            assert await s.get(new_id) == data, "rotate changed app_data"
        moved = SessionData("old", "https://a.example", app_data=APP_DATA_SAMPLES["backslashes"])
        await s.set("old", moved)
        assert await s.rotate("old", "new") == "new"
        assert await s.get("new") == attrs.evolve(moved, id="new")
