"""Drop-in ASGI sessions over any store with the lifecycle operations; no framework needed.

Wrap the app in `SessionMiddleware`, then reach each request's `Session` with
`session_of(request)` (Starlette, Litestar), `session_from_scope(scope)`, or the FastAPI
dependency in `walletmesh_sessions.fastapi`.
"""

from ._cookies import CookieOptions as CookieOptions
from ._middleware import SCOPE_KEY as SCOPE_KEY
from ._middleware import HasScope as HasScope
from ._middleware import SessionMiddleware as SessionMiddleware
from ._middleware import session_from_scope as session_from_scope
from ._middleware import session_of as session_of
from ._session import ResponseStartedError as ResponseStartedError
from ._session import Session as Session

__all__ = (  # noqa: RUF022  (plain sorted order, as the public API test checks)
    "CookieOptions",
    "HasScope",
    "ResponseStartedError",
    "SCOPE_KEY",
    "Session",
    "SessionMiddleware",
    "session_from_scope",
    "session_of",
)
