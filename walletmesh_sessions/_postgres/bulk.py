"""The operations of `PostgresSessionStore` over many rows, each one page of a walk of the
table: reading live sessions, removing the expired ones or every row, showing records as they
are. The store runs each page as a call of its own, within its own timeout.

A page is decoded a few rows at a time, with a `CHECKPOINT` whenever a step has taken
`STEP_SECONDS`: a big page never holds the event loop for long.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Sequence
from typing import Any, Final

from .._core.codec import (
    Decode,
    decode_readable,
    decode_record,
    inspect_record,
    record_times,
    record_with_expiry,
)
from .._core.data import SessionData, SessionRecord
from .._core.expiry import Sweep, now_ms, sweep, sweep_texts
from .._core.log import logger
from .._core.session_map import SessionMap
from .steps import CHECKPOINT, Begin, Op, Spec, Statement, row_key

__all__ = (
    "DELETE_BATCH",
    "PAGE_ROWS",
    "clear_page",
    "expired_page",
    "inspect_one",
    "inspect_page",
    "live_page",
    "page",
)

# Rows per page of a walk over the whole table (get_all, clean_expired, clear, inspect): a
# page takes a fraction of a second, far within any timeout. Not fewer: each page's call
# (coroutines, cancel scope, psycopg's loaders) outlives enough young collections to be
# moved to the oldest generation, and those moves, counted, decide when a full collection
# runs: at 5,000 rows a walk of a million rows brought one about, at 20,000 none. Read at
# each call, so that tests can walk small tables in many pages.
PAGE_ROWS = 20_000

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
    that a big result is never all released in one step. Not through the store's cache of
    decoded records: a walk reads each record once, and would only churn it (and keep what
    it holds alive long enough for the garbage collector to walk)."""
    total: Sweep[tuple[bytes, str]] = Sweep(found=into)
    started = time.perf_counter()
    while rows:
        if time.perf_counter() - started > STEP_SECONDS:
            yield CHECKPOINT
            started = time.perf_counter()
        part = rows[-DECODE_STEP:]
        del rows[-DECODE_STEP:]
        if not collect:  # deciding only: no `SessionData` built
            times = decode_readable(_text_ids(part), "", record_times)
            by_id = sweep_texts(spec.config, now, times, collect=False)
            total.removals += [(row_key(sid), text) for sid, text in by_id.removals]
            continue
        found = sweep(spec.config, now, _readable(part, decode_record), collect=True, into=into)
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


def live_page(
    spec: Spec, cursor: bytes | None, n: int, *, into: SessionMap
) -> Op[tuple[tuple[()], bytes | None]]:
    """`get_all`'s page: the live sessions among the next `n` rows after the id `cursor`,
    their record texts put `into` a `SessionMap.of_records` a step at a time (a million-entry
    map grows at about a microsecond per entry: in one go, a page would hold the event loop),
    slid in batches; answers the cursor for the rest (`None` at the end). Expired ones are
    left to `clean_expired`, as the SQLite store leaves them. A page retried after a lost
    connection puts its rows again, each as read then.

    Each record is only checked and its times read, to decide it (`record_times`): no
    `SessionData` is built, so nothing a garbage collection would have to walk is left.
    """
    rows, after = yield from _page_rows(spec, cursor, n)
    now = now_ms(spec.clock)
    config = spec.config
    slides: list[tuple[tuple[bytes, str], int]] = []
    started = time.perf_counter()
    while rows:  # consumed from its end, as in `_decided`
        if time.perf_counter() - started > STEP_SECONDS:
            yield CHECKPOINT
            started = time.perf_counter()
        part = rows[-DECODE_STEP:]
        del rows[-DECODE_STEP:]
        times = decode_readable(_text_ids(part), "", record_times)
        found = sweep_texts(config, now, times, collect=True, into=into)
        # The expired are left to clean_expired.
        slides += [((row_key(sid), text), after) for (sid, text), after in found.slides]
    yield from _slide(spec, slides)
    return (), after


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
    if cursor is None:  # from the first row: an empty id is a key too
        rows = yield Statement(spec.sql.first_page, (n,), True)
    else:
        rows = yield Statement(spec.sql.page, (cursor, n), True)
    return rows, bytes(rows[-1][0]) if len(rows) == n else None


# Where a walk of expiry candidates starts: below every sort key (both are clamped to +-9e18).
FIRST_KEY: Final = (-(2**63), b"")


def expired_page(
    spec: Spec, by_created: bool, cursor: tuple[int, bytes] | None, n: int
) -> Op[tuple[list[int], tuple[int, bytes] | None]]:
    """`clean_expired`'s page: the next `n` candidates after `cursor` (sort key, id), through
    the index on expires_at (or, `by_created`, the one on the record's createdAt); each decided
    from its record, removed only if unchanged. Unreadable records stay. Answers ``[removed]``
    and the cursor for the rest (`None` at the end)."""
    now = now_ms(spec.clock)
    key, after_id = cursor or FIRST_KEY
    if by_created:
        max_lifetime = spec.config.max_lifetime_ms
        assert max_lifetime is not None
        query, before = spec.sql.created_page, now - max_lifetime
    else:
        query, before = spec.sql.expired_page, now
    params = {"before": before, "key": key, "id": after_id, "n": n}
    rows = yield Statement(query, params, True)
    last = (rows[-1][2], bytes(rows[-1][0])) if len(rows) == n else None
    pairs: list[Sequence[Any]] = [(raw, text) for raw, text, _key in rows]
    del rows
    swept = yield from _decided(spec, now, pairs, collect=False, into=SessionMap(shards=1))
    removals = swept.removals
    removed = 0
    for start in range(0, len(removals), DELETE_BATCH):
        batch = removals[start : start + DELETE_BATCH]
        ids = [row_id for row_id, _text in batch]
        texts = [text for _row_id, text in batch]
        removed += yield Statement(spec.sql.delete_many_unchanged, (ids, texts))
    return [removed], last


def clear_page(spec: Spec, cursor: bytes | None, n: int) -> Op[tuple[list[int], bytes | None]]:
    """`clear`'s page: remove the next `n` rows after the id `cursor`, whatever they hold.
    Answers ``[removed]`` and the cursor for the rest (`None` at the end)."""
    if cursor is None:  # from the first row: an empty id is a key too
        rows = yield Statement(spec.sql.clear_first_page, (n,), True)
    else:
        rows = yield Statement(spec.sql.clear_page, (cursor, n), True)
    last, held, removed = rows[0]
    return [removed], bytes(last) if held == n else None


def inspect_one(spec: Spec, session_id: str) -> Op[list[SessionRecord]]:
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
