"""A model-based rule: random sequences of calls and clock moves, checked against a reference.

The reference model is written from the contract alone (it shares no code with the stores), so a
store and the model can only agree if the store keeps the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import anyio.from_thread
import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from .._core.data import SessionData, SessionStoreConfig
from .._core.errors import SessionIdTakenError
from .._core.protocol import LifecycleSessionStore, SessionStore
from ._clock import FakeClock
from ._kit_base import StoreFactory, StoreFixtures, close_store, lifecycle
from ._rules_app_data import APP_DATA

__all__ = ("LifecycleModelRules", "ModelRules")

LIFETIME_MS = 60_000
IDS = st.sampled_from(["a", "b", "c", "a*", "[a]", "a%_", "x\x00y", "\u00fc\U0001f600"])
DATA = st.builds(
    SessionData,
    id=st.sampled_from(["s1", "s2"]),
    origin=st.sampled_from(["https://a.example", "https://b.example"]),
    permissions=st.dictionaries(
        st.sampled_from(["eip155:1", "eip155:137"]),
        st.lists(st.sampled_from(["eth_accounts", "personal_sign"]), max_size=2),
        max_size=2,
    ),
    app_data=APP_DATA,
)


class _Reference:
    """The contract's meaning of the seven methods, on a dict of (data, expires_at)."""

    def __init__(self, lifetime_ms: int | None, refresh: bool, max_ms: int | None = None) -> None:
        self.lifetime_ms = lifetime_ms
        self.refresh = refresh and lifetime_ms is not None
        self.max_ms = max_ms  # the absolute timeout, counted from created_at
        self.sessions: dict[str, tuple[SessionData, int | None]] = {}
        # Expired sessions a get_all may or may not have removed (the contract allows both).
        self.maybe_gone: set[str] = set()

    def expired(self, sid: str, now: int) -> bool:
        expires_at = self.sessions[sid][1]
        return expires_at is not None and now > expires_at

    def set(self, sid: str, data: SessionData, now: int) -> None:
        # A store may reclaim expired sessions while it writes (the memory store does).
        self.maybe_gone.update(s for s in self.sessions if self.expired(s, now))
        self.maybe_gone.discard(sid)
        if self.max_ms is not None and data.created_at is None:
            data = attrs.evolve(data, created_at=now)
        lifetime = self.lifetime_ms
        self.sessions[sid] = (data, self.capped(data, None if lifetime is None else now + lifetime))

    def capped(self, data: SessionData, expires_at: int | None) -> int | None:
        """`expires_at`, never later than created_at + max_lifetime."""
        if self.max_ms is None or data.created_at is None:
            return expires_at
        limit = data.created_at + self.max_ms
        return limit if expires_at is None else min(limit, expires_at)

    def live(self, sid: str, now: int) -> bool:
        """Whether `sid` is live; an expired one is removed, nothing slides."""
        if sid not in self.sessions:
            return False
        if self.expired(sid, now):
            del self.sessions[sid]
            self.maybe_gone.discard(sid)
            return False
        return True

    def get(self, sid: str, now: int) -> SessionData | None:
        if not self.live(sid, now):
            return None
        data = self.sessions[sid][0]
        if self.refresh:
            assert self.lifetime_ms is not None
            self.sessions[sid] = (data, self.capped(data, now + self.lifetime_ms))
        return data

    def get_all(self, now: int) -> dict[str, SessionData]:
        live = {}
        for sid in list(self.sessions):
            if self.expired(sid, now):
                self.maybe_gone.add(sid)
            else:
                live[sid] = self.get(sid, now)
        return {sid: data for sid, data in live.items() if data is not None}

    def delete(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        self.maybe_gone.discard(sid)

    def clear(self) -> None:
        self.sessions.clear()
        self.maybe_gone.clear()

    def clean_expired(self, now: int) -> tuple[int, int]:
        """The least and the most a correct clean_expired may return; removes them all."""
        expired = [sid for sid in self.sessions if self.expired(sid, now)]
        surely_there = len([sid for sid in expired if sid not in self.maybe_gone])
        for sid in expired:
            del self.sessions[sid]
        self.maybe_gone.clear()
        return surely_there, len(expired)


class _StoreMachine(RuleBasedStateMachine):
    """Drives one store and the reference through the same steps; they must always agree."""

    factory: ClassVar[StoreFactory]
    portal: ClassVar[anyio.from_thread.BlockingPortal]

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store: SessionStore | None = None
        self.model = _Reference(None, False)

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(method, *args)

    @initialize(lifetime=st.sampled_from([LIFETIME_MS, LIFETIME_MS, None]), refresh=st.booleans())
    def make_store(self, lifetime: int | None, refresh: bool, max_ms: int | None = None) -> None:
        config = SessionStoreConfig(
            lifetime=None if lifetime is None else lifetime / 1000,
            refresh_on_access=refresh,
            max_lifetime=None if max_ms is None else max_ms / 1000,
        )
        self.store = self.call(lambda: type(self).factory(config, self.clock))
        self.call(self.live.clear)  # a factory's stores may share storage across examples
        self.model = _Reference(lifetime, refresh, max_ms)

    @property
    def live(self) -> SessionStore:
        assert self.store is not None
        return self.store

    @rule(sid=IDS, data=DATA)
    def set(self, sid: str, data: SessionData) -> None:
        self.call(self.live.set, sid, data)
        self.model.set(sid, data, self.clock.now_ms)

    @rule(sid=IDS, method=st.sampled_from(["get", "validate_and_refresh"]))
    def read(self, sid: str, method: str) -> None:
        got = self.call(getattr(self.live, method), sid)
        expected = self.model.get(sid, self.clock.now_ms)
        assert got == expected, f"{method}({sid!r}) returned {got}, the contract says {expected}"

    @rule()
    def get_all(self) -> None:
        got: Mapping[str, SessionData] = self.call(self.live.get_all)
        expected = self.model.get_all(self.clock.now_ms)
        assert dict(got) == expected, f"get_all returned {dict(got)}, the contract says {expected}"

    @rule(sid=IDS, data=DATA, past=st.sampled_from([0, 1]))
    def expire_at_the_boundary(self, sid: str, data: SessionData, past: int) -> None:
        """Store, move to exactly the expiry (or 1 ms past it), and read back."""
        self.set(sid, data)
        if self.model.lifetime_ms is not None:
            self.clock.advance(ms=self.model.lifetime_ms + past)
        self.read(sid, "get")

    @rule(sid=IDS)
    def delete(self, sid: str) -> None:
        self.call(self.live.delete, sid)
        self.model.delete(sid)

    @rule()
    def clear(self) -> None:
        self.call(self.live.clear)
        self.model.clear()

    @rule()
    def clean_expired(self) -> None:
        got = self.call(self.live.clean_expired)
        least, most = self.model.clean_expired(self.clock.now_ms)
        assert least <= got <= most, f"clean_expired returned {got}, the contract says {least}"

    # Moves that land exactly on, just before and just after an expiry, and anywhere else.
    @rule(
        ms=st.sampled_from([LIFETIME_MS, LIFETIME_MS - 1, LIFETIME_MS + 1, 1])
        | st.integers(min_value=0, max_value=2 * LIFETIME_MS)
    )
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms=ms)

    def teardown(self) -> None:
        if self.store is not None:
            self.call(close_store, self.store)


class ModelRules(StoreFixtures):
    """The model-based rule."""

    model_settings: ClassVar[settings] = settings(
        max_examples=100,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

    def test_matches_reference_model(self, store_factory: StoreFactory, anyio_backend: str) -> None:
        """Random sequences of the seven methods and clock moves agree with the contract's model."""
        _run_machine(_StoreMachine, store_factory, anyio_backend, self.model_settings)


def _run_machine(
    machine: type[_StoreMachine], factory: StoreFactory, anyio_backend: object, how: settings
) -> None:
    """Run `machine` over `factory`'s stores, on a blocking portal of `anyio_backend`: a name,
    or anyio's ``(name, options)`` (``("asyncio", {"use_uvloop": True})``)."""
    if isinstance(anyio_backend, str):
        backend, options = anyio_backend, None
    else:
        backend, options = cast("tuple[str, dict[str, Any]]", anyio_backend)
    with anyio.from_thread.start_blocking_portal(backend, options) as portal:
        bound = type(
            machine.__name__.lstrip("_"),
            (machine,),
            {"factory": staticmethod(factory), "portal": portal},
        )
        run_state_machine_as_test(bound, settings=how)


# Few ids, some equal to a data's id, so lifecycle calls meet live sessions and taken ids.
FEW_IDS = st.sampled_from(["a", "b", "s1"])
FEW_DATA = st.builds(
    SessionData,
    id=st.sampled_from(["a", "s1", "s2"]),
    origin=st.just("https://a.example"),
    permissions=st.just({"eip155:1": ["eth_accounts"]}),
    app_data=APP_DATA,
)


def _add_chain(data: SessionData) -> SessionData:
    """The change the lifecycle model applies through `update`: one more chain, and a mark in
    app_data next to whatever it holds."""
    permissions = {**data.permissions, "eip155:10": ("personal_sign",)}
    return attrs.evolve(data, permissions=permissions).with_app_data({"updated": True})


class _LifecycleMachine(_StoreMachine):
    """The seven methods, plus create, update and rotate, with an absolute timeout at times."""

    @initialize(
        lifetime=st.sampled_from([LIFETIME_MS, LIFETIME_MS, None]),
        refresh=st.booleans(),
        max_ms=st.sampled_from([None, 2 * LIFETIME_MS, LIFETIME_MS // 2]),
    )
    def make_store(self, lifetime: int | None, refresh: bool, max_ms: int | None = None) -> None:
        super().make_store(lifetime, refresh, max_ms)

    # The seven methods on the same few ids, so lifecycle calls meet what they stored.
    @rule(sid=FEW_IDS, data=FEW_DATA)
    def set(self, sid: str, data: SessionData) -> None:
        super().set(sid, data)

    @rule(sid=FEW_IDS, method=st.sampled_from(["get", "validate_and_refresh"]))
    def read(self, sid: str, method: str) -> None:
        super().read(sid, method)

    @rule(sid=FEW_IDS)
    def delete(self, sid: str) -> None:
        super().delete(sid)

    @property
    def lifecycle(self) -> LifecycleSessionStore:
        return lifecycle(self.live)

    @rule(sid=FEW_IDS, data=FEW_DATA)
    def create(self, sid: str, data: SessionData) -> None:
        got = self.call(self.lifecycle.create, sid, data)
        live = self.model.live(sid, self.clock.now_ms)
        if not live:
            self.model.set(sid, data, self.clock.now_ms)
        assert got is (not live), f"create({sid!r}) returned {got}, the contract says {not live}"

    @rule(sid=FEW_IDS)
    def update(self, sid: str) -> None:
        got = self.call(self.lifecycle.update, sid, _add_chain)
        current = self.model.get(sid, self.clock.now_ms)
        expected = None
        if current is not None:
            expected = _add_chain(current)
            self.model.sessions[sid] = (expected, self.model.sessions[sid][1])
        assert got == expected, f"update({sid!r}) returned {got}, the contract says {expected}"

    @rule(sid=FEW_IDS, new_id=FEW_IDS)
    def rotate(self, sid: str, new_id: str) -> None:
        try:
            got: str | None = self.call(self.lifecycle.rotate, sid, new_id)
        except SessionIdTakenError:
            got, taken = None, True
        else:
            taken = False
        now = self.clock.now_ms
        if not self.model.live(sid, now):
            assert not taken, f"rotate({sid!r}) of a missing session raised SessionIdTakenError"
            assert got is None, f"rotate({sid!r}) of a missing session returned {got}"
            return
        new_live = new_id == sid or self.model.live(new_id, now)
        assert taken is new_live, f"rotate({sid!r}, {new_id!r}): taken={taken}, expected {new_live}"
        if taken:
            return
        assert got == new_id, f"rotate({sid!r}, {new_id!r}) returned {got}"
        data, stored = self.model.sessions.pop(sid)
        after = stored
        if self.model.refresh:
            assert self.model.lifetime_ms is not None
            after = self.model.capped(data, now + self.model.lifetime_ms)
        moved = attrs.evolve(data, id=new_id) if data.id == sid else data
        self.model.sessions[new_id] = (moved, after)
        self.model.maybe_gone.discard(new_id)


class LifecycleModelRules(StoreFixtures):
    """The model-based rule with create, update, rotate and the absolute timeout."""

    model_settings: ClassVar[settings] = ModelRules.model_settings

    def test_lifecycle_matches_reference_model(
        self, store_factory: StoreFactory, anyio_backend: str
    ) -> None:
        """Random sequences of all ten methods and clock moves agree with the contract's model."""
        _run_machine(_LifecycleMachine, store_factory, anyio_backend, self.model_settings)
