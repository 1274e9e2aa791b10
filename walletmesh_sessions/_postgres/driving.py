"""How one attempt of a call runs an operation (`drive`), whether a failed one runs again
(`Tries`), and the library's error for psycopg's (`translate`): written once for both runners.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

import attrs
import psycopg
import psycopg.errors
import psycopg_pool

from .._core.deadline import Deadline
from .._core.errors import InvalidSessionIdError, SessionStoreError, StoreUnavailableError
from .._core.masking import redact_message
from .sources import AsyncConn, SyncConn
from .steps import BEGIN, CHECKPOINT, Begin, Op, Plan, Statement, Unsure

__all__ = ("Request", "Sent", "Transaction", "Tries", "drive", "translate")

T = TypeVar("T")


@attrs.define
class Sent:
    """Whether an attempt has sent what may have committed (a statement outside a
    transaction, or a COMMIT)."""

    may_commit: bool = False


@attrs.define
class Transaction:
    """A request to run `body` in one transaction; the runner calls `committing` inside the
    transaction once `body` is done, as the COMMIT is about to go out."""

    body: Generator[Request, Any, Any]
    sent: Sent

    def committing(self) -> None:
        self.sent.may_commit = True


Request = Statement | Begin | Transaction


def drive(op: Op[T], autocommit: bool, sent: Sent) -> Generator[Request, Any, T]:
    """The requests that run `op` on a connection; one that is not autocommit runs it all in
    one transaction."""
    if autocommit:
        return (yield from _steps(op, False, sent))
    result: T = yield Transaction(_steps(op, True, sent), sent)
    return result


def _steps(op: Op[T], in_transaction: bool, sent: Sent) -> Generator[Request, Any, T]:
    """Run `op`'s statements; at `BEGIN`, the rest of them in one transaction."""
    reply: Any = None
    try:
        while True:
            step = op.send(reply)
            reply = None
            if step is CHECKPOINT:
                yield CHECKPOINT
            elif step is BEGIN:
                if not in_transaction:
                    done: T = yield Transaction(_steps(op, True, sent), sent)
                    return done
            else:
                assert isinstance(step, Statement)
                if not in_transaction:
                    sent.may_commit = True
                reply = yield step
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        op.close()


@attrs.define
class Tries:
    """The attempts of one call: after a failed one, whether the call runs again."""

    plan: Plan
    deadline: Deadline
    lost: psycopg.Error | None = None

    def failed(self, exc: Exception, conn: AsyncConn | SyncConn, sent: Sent) -> None:
        """Raise the error the call fails with, or return if it may run again, on another
        connection: only after a lost connection, and within the deadline. An idempotent
        plan always may; another only if nothing it sent can have committed, or if it
        recognises its own earlier effect (it is then told so)."""
        plan = self.plan
        if isinstance(exc, Unsure):
            msg = (
                f"the connection was lost as the {plan.name} was committed, and the row has"
                " changed since: it may or may not have taken effect"
            )
            raise psycopg.OperationalError(msg) from self.lost
        if not (
            isinstance(exc, psycopg.OperationalError)
            and conn.closed  # lost (a restart, a dropped socket): not a failing statement
            and self.deadline.remaining() > 0
        ):
            raise exc
        if not plan.retry and sent.may_commit:
            if plan.attempts is None:
                raise exc
            plan.attempts.unsure = True
        self.lost = exc


def translate(
    what: str, exc: psycopg.Error | psycopg_pool.PoolTimeout, url: str | None
) -> tuple[SessionStoreError, Exception]:
    """The library's error for a psycopg or pool error, and the cause to chain to it.

    With the store's `url`, every message is masked against it; a cause whose chain shows a
    secret gives way to a stand-in that carries the masked message only.
    """
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        msg = f"{what}: a session id (or record) too large for PostgreSQL's index: {exc}"
        return InvalidSessionIdError(msg), exc
    text = f"{type(exc).__name__}: {exc}".strip()
    if url is None:
        return StoreUnavailableError(f"{what}: {text}"), exc
    error = StoreUnavailableError(f"{what}: {redact_message(text, url)}")
    return error, (exc if _clean(exc, url) else Exception(redact_message(str(exc), url)))


def _clean(exc: BaseException, url: str) -> bool:
    """True if no message along `exc`'s chain of causes and contexts shows a secret."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if redact_message(str(current), url) != str(current):
            return False
        pending += [current.__cause__, current.__context__]
    return True
