"""FastAPI access to the session: ``session: SessionDep`` in any path operation.

Needs FastAPI (it is not a dependency of this package); the middleware itself does not.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .asgi import Session, session_of

__all__ = ("SessionDep", "current_session")


async def current_session(connection: HTTPConnection) -> Session:
    """The request's `Session`, as a FastAPI dependency (HTTP and WebSocket routes alike)."""
    return session_of(connection)


SessionDep = Annotated[Session, Depends(current_session)]
"""Annotate a parameter with it: ``async def me(session: SessionDep) -> ...``."""
