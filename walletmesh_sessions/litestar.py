"""Litestar access to the session: a dependency, so handlers take ``session: Session``.

Needs Litestar (it is not a dependency of this package); the middleware itself does not.
Register it once: ``Litestar(..., dependencies={"session": session_dependency})``, then
declare ``session: NamedDependency[Session]`` in a handler.
"""

from litestar.di import Provide as _Provide
from litestar.types import Scope as _Scope

from .asgi import Session as _Session
from .asgi import session_from_scope as _session_from_scope

__all__ = ("provide_session", "session_dependency")


def provide_session(scope: _Scope) -> _Session:
    """The request's `Session` (HTTP and WebSocket handlers alike)."""
    return _session_from_scope(scope)


session_dependency: _Provide = _Provide(provide_session, sync_to_thread=False)
"""The dependency to register under the name your handlers use, e.g. ``"session"``."""
