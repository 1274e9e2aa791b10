"""Public names report the module they are imported from (as anyio's do), not the private one
they live in: reprs, pickles and documentation show a path that stays."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping

__all__ = ("present_as",)

_PACKAGE = "walletmesh_sessions."


def present_as(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Make each class and function of `names` in `namespace`, defined in this package, report
    `module` as its home; ``present_as(__name__, globals(), __all__)`` ends a public module.

    A class's string annotations are evaluated first, where they were written, so
    `typing.get_type_hints` (and cattrs, attrs) still resolve them afterwards.
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
