"""Litestar access to the session: a dependency, so handlers take ``session: Session``.

Needs Litestar (it is not a dependency of this package); the middleware itself does not.
Register it once: ``Litestar(..., dependencies={"session": session_dependency})``.
"""

from __future__ import annotations

from litestar.di import Provide
from litestar.types import Scope

from .asgi import Session, session_from_scope

__all__ = ("provide_session", "session_dependency")


def provide_session(scope: Scope) -> Session:
    """The request's `Session` (HTTP and WebSocket handlers alike)."""
    return session_from_scope(scope)


session_dependency: Provide = Provide(provide_session, sync_to_thread=False)
"""The dependency to register under the name your handlers use, e.g. ``"session"``."""
