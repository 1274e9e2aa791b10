"""Background cleanup: `clean_expired` every N seconds inside an anyio task group."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import anyio
import anyio.abc

from .._core.errors import InvalidConfigError
from .._core.log import logger
from .._core.protocol import SessionStore

__all__ = ("clean_expired_every", "periodic_cleanup")


def _check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        msg = f"interval must be a number of seconds, got {interval!r}"
        raise InvalidConfigError(msg)
    if not (interval > 0 and math.isfinite(interval)):
        msg = f"interval must be > 0 seconds, got {interval!r}"
        raise InvalidConfigError(msg)
    return float(interval)


async def clean_expired_every(
    store: SessionStore,
    interval: float,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Call ``store.clean_expired()`` every `interval` seconds, until cancelled; start it with
    ``await task_group.start(...)``. Each run is logged, and one that raises does not stop it."""
    interval = _check_interval(interval)
    task_status.started()
    while True:
        try:
            removed = await store.clean_expired()
        except Exception:
            logger.exception("clean_expired failed; trying again in %.3g s", interval)
        else:
            log = logger.info if removed else logger.debug
            log("clean_expired removed %d expired session(s)", removed)
        await anyio.sleep(interval)


@asynccontextmanager
async def periodic_cleanup(store: SessionStore, interval: float) -> AsyncIterator[None]:
    """Run `clean_expired_every` in the background, from at once until the block is left."""
    interval = _check_interval(interval)
    async with anyio.create_task_group() as tg:
        await tg.start(clean_expired_every, store, interval)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
