"""Public names report the module they are imported from, not the private one they live in.

As anyio does, a public module sets ``__module__`` of what it re-exports, so reprs, tracebacks,
pickles and documentation show ``walletmesh_sessions.SessionData``, a path that stays.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping

__all__ = ("present_as",)

_PACKAGE = "walletmesh_sessions."


def present_as(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Make each class and function of `names` in `namespace` report `module` as its home.

    Usage, at the end of a public module (its ``__all__`` already defined)::

        present_as(__name__, globals(), __all__)

    Only objects defined in this package are touched (type aliases and other libraries' objects
    are left alone). A class's string annotations are evaluated first, in the module that
    wrote them, so `typing.get_type_hints` (and cattrs, attrs) still resolve them afterwards.
    """
    ours = [
        value
        for name in names
        if (isinstance(value := namespace.get(name), type) or inspect.isfunction(value))
        and value.__module__.startswith(_PACKAGE)
        and value.__module__ != module
    ]
    for value in ours:  # all before any moves: a class's bases resolve in their own modules
        if isinstance(value, type):
            _resolve_annotations(value)
    for value in ours:
        value.__module__ = module


def _resolve_annotations(cls: type) -> None:
    own = inspect.get_annotations(cls)
    if not own or not any(isinstance(hint, str) for hint in own.values()):
        return
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError:  # a name imported for type checkers only: leave the strings
        return
    cls.__annotations__ = {name: hints.get(name, hint) for name, hint in own.items()}
