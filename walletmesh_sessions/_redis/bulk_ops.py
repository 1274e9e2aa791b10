"""The operations over every session of a store, as generators of steps (no I/O).

Each walks the store's keys with the one scan loop, `_pages`, a page at a time, with a
`CHECKPOINT` between pages: a runner may return to its event loop there, and the store runs
`get_all`, `clear` and the like as a series of calls, one page each (`until_checkpoint`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from .._core.codec import decode_readable, decode_record, inspect_record, record_times
from .._core.codec import record_with_expiry as _with_expiry
from .._core.data import SessionData, SessionRecord
from .._core.errors import CorruptRecordError
from .._core.expiry import now_ms, sweep, sweep_texts
from .._core.log import logger, short_id
from .._core.session_map import SessionMap
from . import steps
from .ops import StoreSpec, record_text

__all__ = (
    "clean_expired",
    "clear",
    "get_all",
    "inspect",
    "inspect_page",
    "iterate_page",
    "until_checkpoint",
)

T = TypeVar("T")


def _warn_corrupt(session_id: str, reason: str) -> None:
    # The same words as `decode_readable`, for the rows it never gets to see.
    logger.warning("skipping corrupt session record %s: %s", short_id(session_id), reason)


def _readable_key(spec: StoreSpec, key: bytes) -> str | None:
    """The key as str if it is the prefix and a (UTF-8, non-empty) session id, else `None`."""
    try:
        text_key = key.decode()
    except UnicodeDecodeError:
        return None
    return text_key if len(text_key) > len(spec.prefix) else None


def _readable_row(spec: StoreSpec, key: bytes, raw: steps.Key) -> tuple[str, str] | None:
    """``(key, text)`` as str for `decode_readable`, or `None` (logged) if not UTF-8 text."""
    text_key = _readable_key(spec, key)
    if text_key is None:
        rest = key[len(spec.prefix_bytes) :].decode(errors="replace")
        _warn_corrupt(rest, "the key is not the prefix and a UTF-8 session id")
        return None
    session_id = text_key[len(spec.prefix) :]
    try:
        return text_key, record_text(raw, session_id)
    except CorruptRecordError as exc:
        _warn_corrupt(session_id, exc.reason)
        return None


def _pages(
    spec: StoreSpec,
    cursor: object,
    each: Callable[[list[bytes]], steps.Op[Any]],
    enough: Callable[[], bool] | None = None,
) -> steps.Op[object]:
    """The one scan loop: from `cursor`, each page's keys of this store go to `each`.

    Stops at the end of the scan (returns `None`) or, once `enough()` holds after a page, at
    the cursor to go on from. Between pages it yields `CHECKPOINT`.
    """
    while True:
        page: steps.ScanPage = yield steps.Scan(spec.pattern, cursor)
        # A caller's client may decode replies to str; our own clients never do. The glob is
        # escaped already: the prefix check guards the one rule that matters.
        keys = (k if isinstance(k, bytes) else k.encode() for k in page.keys)
        mine = [k for k in keys if k.startswith(spec.prefix_bytes)]
        if mine:
            yield from each(mine)
        if page.cursor is None:
            return None
        cursor = page.cursor
        if enough is not None and enough():
            return cursor
        yield steps.CHECKPOINT


def _sweep(
    spec: StoreSpec,
    cursor: object,
    collect: bool,
    n: float = math.inf,
    texts: bool = False,
) -> steps.Op[tuple[SessionMap, int, object]]:
    """Scan pages from `cursor`, each swept, until `n` live sessions are found (`collect`),
    as their data, or with `texts` as their record texts in a map `SessionMap.of_records`.

    Returns the sessions found (none unless `collect`), the removals confirmed, and the cursor
    to go on from (`None`: the scan is complete).
    """
    found = SessionMap.of_records(decode_record) if texts else SessionMap()
    removed = 0

    def page(keys: list[bytes]) -> steps.Op[None]:
        nonlocal removed
        removed += yield from _sweep_batch(spec, keys, found, collect, texts)

    after = yield from _pages(spec, cursor, page, lambda: len(found) >= n)
    return found, removed, after


def _sweep_batch(
    spec: StoreSpec,
    keys: list[bytes],
    found: SessionMap,
    collect: bool,
    texts: bool,
) -> steps.Op[int]:
    """One page of a sweep: read, let `sweep` decide, carry it out; returns removals confirmed."""
    values = yield steps.ReadMany(tuple(keys))
    rows: list[tuple[str, str]] = []
    cut = len(spec.prefix)
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            continue  # deleted since the scan
        if type(raw) is bytes:  # the usual row, read here without a call per row
            try:
                text_key, text = key.decode(), raw.decode()
            except UnicodeDecodeError:
                pass  # `_readable_row` says which and logs it
            else:
                if len(text_key) > cut:
                    rows.append((text_key, text))
                    continue
        if isinstance(raw, steps.NonString):
            rest = key[len(spec.prefix_bytes) :].decode(errors="replace")
            _warn_corrupt(rest, f"the Redis key holds a {raw.kind}")
        elif (row := _readable_row(spec, key, raw)) is not None:
            rows.append(row)
    prefix = spec.prefix
    # Text decoded strictly from UTF-8 encodes back to the very bytes read, so the
    # compare-and-set steps compare against exactly what Redis holds.
    now = now_ms(spec.clock)
    if collect and not texts:  # iter_sessions: the data, through the store's cache
        records = (
            (session_id, (prefix + session_id, text), data, expires_at)
            for session_id, text, data, expires_at in decode_readable(rows, prefix, spec.decode)
        )
        decided = sweep(spec.config, now, records, collect=True, into=found)
        removals, slides = decided.removals, decided.slides
    else:
        # get_all keeps texts and clean_expired nothing: each record is only checked and its
        # times read, never built into a `SessionData`, nor put through the store's cache,
        # where it would only push out the records that `get` reads again.
        times = decode_readable(rows, prefix, record_times)
        by_id = sweep_texts(spec.config, now, times, collect=collect, into=found)
        removals = [(prefix + session_id, text) for session_id, text in by_id.removals]
        slides = [((prefix + sid, text), after) for (sid, text), after in by_id.slides]
    writes: list[steps.KeyStep] = [steps.CompareAndDelete(k, text) for k, text in removals]
    writes.extend(
        steps.CompareAndSet(key, text, _with_expiry(text, expires_at), spec.ttl(now, expires_at))
        for (key, text), expires_at in slides
    )
    if not writes:
        return 0
    replies = yield steps.Batch(tuple(writes))
    # Only removals Redis confirmed count: another client may have removed or rewritten some.
    return sum(1 for deleted in replies[: len(removals)] if deleted)


def get_all(spec: StoreSpec) -> steps.Op[SessionMap]:
    """Every live session under the prefix; expired ones met are removed, corrupt ones kept.

    The map holds each record's text and decodes a session when it is read: a million
    strings are nothing for the garbage collector to walk, a million `SessionData` are.
    """
    found, _, _ = yield from _sweep(spec, None, True, texts=True)
    return found


def clean_expired(spec: StoreSpec) -> steps.Op[int]:
    """Remove expired sessions by compare-and-delete; the number this call removed."""
    _, removed, _ = yield from _sweep(spec, None, collect=False)
    return removed


def clear(spec: StoreSpec) -> steps.Op[None]:
    """Delete every key under the prefix, page by page (corrupt records included)."""

    def page(keys: list[bytes]) -> steps.Op[None]:
        yield steps.Delete(tuple(keys))

    yield from _pages(spec, None, page)


def _inspect_one(
    session_id: str, raw: steps.Key | steps.WrongType | steps.NonString
) -> SessionRecord:
    if raw is steps.WRONG_TYPE or isinstance(raw, steps.NonString):
        shown = "another type" if raw is steps.WRONG_TYPE else raw.kind
        return SessionRecord(session_id, None, None, f"the Redis key holds {shown}, not a string")
    try:
        return inspect_record(session_id, record_text(raw, session_id))
    except CorruptRecordError as exc:
        return SessionRecord(session_id, None, None, exc.reason)


def inspect(spec: StoreSpec, session_id: str | None) -> steps.Op[list[SessionRecord]]:
    """Every record under the prefix (or the one named) as it is: nothing refreshed or removed."""
    if session_id is not None:
        raw = yield steps.Read(spec.key(session_id))
        return [] if raw is None else [_inspect_one(session_id, raw)]
    records, _, _ = yield from inspect_page(spec, None, math.inf)
    return records


def _inspect_scanned(spec: StoreSpec, mine: list[bytes]) -> steps.Op[list[SessionRecord]]:
    """The records under the store's keys of one scan page, read as `inspect` shows them."""
    values = yield steps.ReadMany(tuple(mine))
    cut = len(spec.prefix_bytes)
    records: list[SessionRecord] = []
    for key, raw in zip(mine, values, strict=True):
        if raw is None:
            continue  # deleted since the scan
        sid = key[cut:].decode(errors="replace")
        if _readable_key(spec, key) is None:
            records.append(SessionRecord(sid, None, None, "the key holds no session id"))
        else:
            records.append(_inspect_one(sid, raw))
    return records


def inspect_page(
    spec: StoreSpec, cursor: object, n: float
) -> steps.Op[tuple[list[SessionRecord], object, bool]]:
    """One batch of `iter_records`: scan pages from `cursor` until `n` records are read as
    `inspect` reads them; the records, the cursor to go on from, and whether it is the end."""
    records: list[SessionRecord] = []

    def page(keys: list[bytes]) -> steps.Op[None]:
        records.extend((yield from _inspect_scanned(spec, keys)))

    after = yield from _pages(spec, cursor, page, lambda: len(records) >= n)
    return records, after, after is None


def iterate_page(
    spec: StoreSpec, cursor: object, n: int
) -> steps.Op[tuple[list[tuple[str, SessionData]], object, bool]]:
    """One batch of `iter_sessions`, swept as `get_all` sweeps, as `inspect_page` returns."""
    found, _, after = yield from _sweep(spec, cursor, True, n)
    return list(found.items()), after, after is None


def until_checkpoint(op: steps.Op[T]) -> steps.Op[T | steps.More]:
    """`op` up to its next `CHECKPOINT` (then `MORE`: run another to go on), or its result;
    closing this (a failed or abandoned call) closes `op` too."""
    reply: Any = None
    try:
        while True:
            try:
                step = op.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if step is steps.CHECKPOINT:
                return steps.MORE
            reply = yield step
    except GeneratorExit:
        op.close()
        raise
