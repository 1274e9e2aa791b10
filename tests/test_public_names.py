"""Public names report the module they are imported from, and still resolve their types."""

from __future__ import annotations

import importlib
import inspect
import pickle
import typing

import pytest

import walletmesh_sessions
from walletmesh_sessions import SessionData, SessionRecord, SessionStoreConfig


@pytest.mark.parametrize("name", ["walletmesh_sessions", "walletmesh_sessions.testing"])
def test_public_names_report_their_public_module(name: str) -> None:
    """Every class and function of a public module says it is that module's."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        value = getattr(module, attr)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == name, attr


@pytest.mark.parametrize("cls", [SessionData, SessionRecord, SessionStoreConfig])
def test_type_hints_still_resolve(cls: type) -> None:
    """Moved classes' annotations resolve, as cattrs and `get_type_hints` need."""
    hints = typing.get_type_hints(cls)
    assert hints


def test_data_pickles_under_its_public_name() -> None:
    """A pickle names `walletmesh_sessions.SessionData` and loads back equal."""
    data = SessionData("id", "https://a.example", created_at=5)
    blob = pickle.dumps(data)
    assert b"walletmesh_sessions" in blob
    assert b"_core" not in blob
    assert pickle.loads(blob) == data


def test_clock_is_exported() -> None:
    """`Clock`, the type of every constructor's `clock`, is public."""
    assert "Clock" in walletmesh_sessions.__all__
    assert "SessionMap" not in walletmesh_sessions.__all__
