"""The operations of `PostgresSessionStore` over many rows: reading them all or a page at a
time, removing the expired ones, and showing records as they are.

A big result is decoded a few rows at a time, with a `CHECKPOINT` whenever a step has taken
`STEP_SECONDS`: a big table never holds the event loop for long.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Sequence
from typing import Any, Final

from .._core.codec import Decode, decode_readable, inspect_record, record_with_expiry
from .._core.data import SessionData, SessionRecord
from .._core.expiry import Sweep, now_ms, sweep
from .._core.log import logger
from .._core.session_map import SessionMap
from .steps import CHECKPOINT, Begin, Op, Spec, Statement, row_key

__all__ = ("DELETE_BATCH", "clean_expired", "get_all", "inspect", "inspect_page", "page")

# Rows removed per DELETE by clean_expired, and slid per UPDATE: short statements, and
# parameters that take a few milliseconds to send (their arrays are built on the event loop).
DELETE_BATCH: Final = 500
# Rows decoded between two checks of the time, and the time after which a bulk operation lets
# other tasks run: each step of its decoding holds the event loop about a millisecond.
DECODE_STEP: Final = 32
STEP_SECONDS: Final = 0.001


def _readable(
    rows: Iterable[Sequence[Any]], decode: Decode
) -> Iterable[tuple[str, tuple[bytes, str], SessionData, int | None]]:
    """Readable records of ``(id, value)`` rows, as ``(session_id, (id, text), data, expiry)``."""
    for session_id, text, data, expires_at in decode_readable(_text_ids(rows), "", decode):
        yield session_id, (row_key(session_id), text), data, expires_at


def _text_ids(rows: Iterable[Sequence[Any]]) -> Iterable[tuple[str, Any]]:
    for raw, text in rows:
        try:
            yield bytes(raw).decode("utf-8"), text
        except UnicodeDecodeError:  # written by another program: no id anyone can ask for
            logger.warning("skipping a record whose id is not UTF-8 text")


def _decided(
    spec: Spec, now: int, rows: list[Sequence[Any]], *, collect: bool, into: SessionMap
) -> Generator[Begin, Any, Sweep[tuple[bytes, str]]]:
    """`sweep` over `rows` in short steps (see the module); `rows` is consumed from its end, so
    that a big result is never all released in one step."""
    total: Sweep[tuple[bytes, str]] = Sweep(found=into)
    started = time.perf_counter()
    while rows:
        if time.perf_counter() - started > STEP_SECONDS:
            yield CHECKPOINT
            started = time.perf_counter()
        part = rows[-DECODE_STEP:]
        del rows[-DECODE_STEP:]
        found = sweep(spec.config, now, _readable(part, spec.decode), collect=collect, into=into)
        total.removals += found.removals
        total.slides += found.slides
    return total


def _slide(spec: Spec, slides: list[tuple[tuple[bytes, str], int]]) -> Op[None]:
    """Write the slides, compare-and-set, `DELETE_BATCH` rows per statement."""
    for start in range(0, len(slides), DELETE_BATCH):
        batch = slides[start : start + DELETE_BATCH]
        ids = [row_id for (row_id, _text), _after in batch]
        olds = [text for (_row_id, text), _after in batch]
        news = [record_with_expiry(text, after) for (_key, text), after in batch]
        yield Statement(spec.sql.slide_many_unchanged, (ids, olds, news))


def get_all(spec: Spec) -> Op[SessionMap]:
    """Every row decided from its record; slides in batches; expired ones are left to
    `clean_expired`, as the SQLite store leaves them."""
    rows = yield Statement(spec.sql.all, None, True)
    now = now_ms(spec.clock)
    result = yield from _decided(spec, now, rows, collect=True, into=SessionMap())
    yield from _slide(spec, result.slides)
    return result.found


def page(
    spec: Spec, cursor: bytes | None, n: int
) -> Op[tuple[list[tuple[str, SessionData]], bytes | None]]:
    """The live sessions among the next `n` rows after the id `cursor`, as ``(id, data)``,
    and the cursor for the rest (`None` at the end): keyset pagination, in id order."""
    rows, after = yield from _page_rows(spec, cursor, n)
    now = now_ms(spec.clock)
    result = yield from _decided(spec, now, rows, collect=True, into=SessionMap(shards=1))
    yield from _slide(spec, result.slides)
    return list(result.found.items()), after


def _page_rows(spec: Spec, cursor: bytes | None, n: int) -> Op[tuple[list[Any], bytes | None]]:
    """The next `n` rows after the id `cursor`, and the cursor for the rest (`None` at the end)."""
    rows = yield Statement(spec.sql.page, (cursor or b"", n), True)
    return rows, bytes(rows[-1][0]) if len(rows) == n else None


def clean_expired(spec: Spec) -> Op[int]:
    """Candidates through the index on expires_at, each decided from its record, then removed
    only if unchanged, a batch per statement. Unreadable records stay."""
    now = now_ms(spec.clock)
    max_lifetime = spec.config.max_lifetime_ms
    if max_lifetime is None:
        candidates = Statement(spec.sql.expired_candidates, (now,), True)
    else:
        # Records stored before the absolute timeout was set may carry a later expiresAt.
        candidates = Statement(spec.sql.expired_candidates_created, (now, now - max_lifetime), True)
    rows = yield candidates
    swept = yield from _decided(spec, now, rows, collect=False, into=SessionMap(shards=1))
    removals = swept.removals
    removed = 0
    for start in range(0, len(removals), DELETE_BATCH):
        batch = removals[start : start + DELETE_BATCH]
        ids = [row_id for row_id, _text in batch]
        texts = [text for _row_id, text in batch]
        removed += yield Statement(spec.sql.delete_many_unchanged, (ids, texts))
    return removed


def inspect(spec: Spec, session_id: str | None) -> Op[list[SessionRecord]]:
    if session_id is None:
        rows = yield Statement(spec.sql.inspect_all, None, True)
    else:
        rows = yield Statement(spec.sql.inspect_one, (row_key(session_id),), True)
    return (yield from _inspected(rows))


def inspect_page(
    spec: Spec, cursor: bytes | None, n: int
) -> Op[tuple[list[SessionRecord], bytes | None]]:
    """The next `n` rows after the id `cursor` as `inspect` shows them (keyset, as `page`)."""
    rows, after = yield from _page_rows(spec, cursor, n)
    return (yield from _inspected(rows)), after


def _inspected(rows: list[Any]) -> Op[list[SessionRecord]]:
    """Rows of ``(id, value)`` as records, unreadable ones included, in short steps."""
    records = []
    started = time.perf_counter()
    for raw, text in rows:
        if time.perf_counter() - started > STEP_SECONDS:
            yield CHECKPOINT
            started = time.perf_counter()
        records.append(inspect_record(bytes(raw).decode("utf-8", errors="replace"), text))
    return records
