"""The ASGI types the session layer speaks, written out so that no framework is needed.

They match Starlette's aliases structurally, so `app.add_middleware(SessionMiddleware, ...)`
type-checks; the wrapped app is taken as any ASGI callable (Litestar's and Quart's too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ("AnyASGIApp", "Message", "Receive", "Scope", "Send")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[Any]]
"""What the middleware wraps: any ASGI app, whatever its own scope and message types."""
