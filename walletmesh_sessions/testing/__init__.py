"""Tools to test session stores: a fake clock and the conformance suite every store passes.

`FakeClock` needs nothing beyond the library; the conformance kit needs pytest and hypothesis
(``pip install 'walletmesh-sessions[testing]'``) and is imported on first use.
"""

import importlib as _importlib
import typing as _typing

from .._core.public import present_as as _present_as
from ._clock import FakeClock as FakeClock

if _typing.TYPE_CHECKING:
    from ._contract import LifecycleStoreContract as LifecycleStoreContract
    from ._contract import SessionStoreContract as SessionStoreContract
    from ._kit_base import ForeignData as ForeignData
    from ._kit_base import StoreFactory as StoreFactory

__all__ = (
    "FakeClock",
    "ForeignData",
    "LifecycleStoreContract",
    "SessionStoreContract",
    "StoreFactory",
)

_KIT = {
    "LifecycleStoreContract": "_contract",
    "SessionStoreContract": "_contract",
    "ForeignData": "_kit_base",
    "StoreFactory": "_kit_base",
}


def __getattr__(name: str) -> object:
    if name not in _KIT:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    try:
        module = _importlib.import_module(f".{_KIT[name]}", __name__)
    except ImportError as exc:
        msg = (
            f"walletmesh_sessions.testing.{name} needs the testing extra: "
            f"pip install 'walletmesh-sessions[testing]' ({exc})"
        )
        raise ImportError(msg, name=exc.name) from exc
    value = getattr(module, name)
    _present_as(__name__, {name: value}, [name])
    globals()[name] = value
    return value


_present_as(__name__, globals(), __all__)
