"""The error classes follow the rule written in `_core.errors`: the builtin says who fixes it."""

from __future__ import annotations

import pytest

import walletmesh_sessions
from walletmesh_sessions._core import errors

CALLERS_MISTAKE = {
    "InvalidSessionIdError": ValueError,
    "SessionIdTypeError": TypeError,
    "InvalidSessionDataError": TypeError,
    "InvalidConfigError": ValueError,
    "SessionIdTakenError": ValueError,
}
STORES_STATE = {
    "StoreClosedError": RuntimeError,
    "StoreUnavailableError": ConnectionError,
    "MissingDependencyError": ImportError,
}
STORAGE_ONLY = ("CorruptRecordError", "NotReplicatedError")
BUILTINS = (ValueError, TypeError, RuntimeError, OSError, ImportError, LookupError)


class TestErrorRule:
    def test_every_class_is_classified(self) -> None:
        """Each error class is in exactly one group of the rule."""
        named = set(CALLERS_MISTAKE) | set(STORES_STATE) | set(STORAGE_ONLY)
        assert named | {"SessionStoreError"} == set(errors.__all__)

    @pytest.mark.parametrize("name", [*CALLERS_MISTAKE, *STORES_STATE])
    def test_builtin_of_who_fixes_it(self, name: str) -> None:
        """A caller's mistake is a ValueError/TypeError; a store's state its state's builtin."""
        cls = getattr(walletmesh_sessions, name)
        builtin = {**CALLERS_MISTAKE, **STORES_STATE}[name]
        assert issubclass(cls, walletmesh_sessions.SessionStoreError)
        assert issubclass(cls, builtin)
        if name in STORES_STATE:
            assert not issubclass(cls, (ValueError, TypeError))

    @pytest.mark.parametrize("name", STORAGE_ONLY)
    def test_what_storage_did_has_no_builtin(self, name: str) -> None:
        """What the storage holds or did is a SessionStoreError only."""
        cls = getattr(walletmesh_sessions, name)
        assert issubclass(cls, walletmesh_sessions.SessionStoreError)
        assert not issubclass(cls, BUILTINS)
