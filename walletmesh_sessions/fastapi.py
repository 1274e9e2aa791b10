"""FastAPI access to the session: ``session: SessionDep`` in any path operation.

Needs FastAPI (it is not a dependency of this package); the middleware itself does not.
"""

from typing import Annotated as _Annotated

from fastapi import Depends as _Depends
from starlette.requests import HTTPConnection as _HTTPConnection

from .asgi import Session as _Session
from .asgi import session_of as _session_of

__all__ = ("SessionDep", "current_session")


async def current_session(connection: _HTTPConnection) -> _Session:
    """The request's `Session`, as a FastAPI dependency (HTTP and WebSocket routes alike)."""
    return _session_of(connection)


SessionDep = _Annotated[_Session, _Depends(current_session)]
"""Annotate a parameter with it: ``async def me(session: SessionDep) -> ...``."""
