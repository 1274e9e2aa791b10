"""Each step's exchange with one Redis server: the commands that carry it out, and what the
replies mean (sans-IO). A missing script is loaded and run again, a key of another type becomes
`WRONG_TYPE` or a `NonString`, and a `Batch` becomes one pipeline per round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from . import steps
from .scripts import (
    COMPARE_AND_DELETE,
    COMPARE_AND_SET,
    LOOK_BEFORE_SLIDE,
    MOVE,
    READ_AND_SLIDE,
    Script,
)

__all__ = (
    "EXCHANGES",
    "Args",
    "Exchange",
    "Exchanges",
    "as_text",
    "checked",
    "compare_and_delete",
    "compare_and_set",
    "error_code",
    "exchange",
    "is_wrong_type",
    "move",
)

Args = tuple[Any, ...]
Exchange = Generator[list[Args], list[Any], Any]
"""Yields the commands to send (one round trip), receives their replies, returns the reply."""
Exchanges = dict[type, Callable[[Any], Exchange]]
"""Each step type's exchange: a topology's way of carrying the steps out."""


def error_code(exc: BaseException) -> str:
    """An error reply's kind: its first word (``WRONGTYPE``, ``OOM``, ``ERR``...)."""
    words = str(exc).split(maxsplit=1)
    word = words[0] if words else ""
    return word if word.isalpha() and word.isupper() else "ERR"


def checked(reply: Any) -> Any:
    """`reply`, or raised if it is an error (error replies come back as exception objects)."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def as_text(value: Any) -> str:
    """A reply that is text, as str (our clients answer bytes; a caller's may decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def is_wrong_type(reply: Any) -> bool:
    """Whether `reply` is the error a command on a key of another type gets (WRONGTYPE)."""
    return isinstance(reply, ResponseError) and error_code(reply) == "WRONGTYPE"


def _read(step: steps.Read) -> Exchange:
    (reply,) = yield [("GET", step.key)]
    return steps.WRONG_TYPE if is_wrong_type(reply) else checked(reply)


def _write(step: steps.Write) -> Exchange:
    if step.ttl_ms is None:
        (reply,) = yield [("SET", step.key, step.text)]
    else:
        (reply,) = yield [("SET", step.key, step.text, "PX", step.ttl_ms)]
    checked(reply)


def _evalsha(script: Script, keys: tuple[Any, ...], *args: Any) -> Exchange:
    """Run `script`; its reply, an error reply as a value."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    (reply,) = yield [command]
    if isinstance(reply, NoScriptError):
        # After a restart or SCRIPT FLUSH: load it and run it again in the same round trip.
        loaded, reply = yield [("SCRIPT", "LOAD", script.source), command]
        checked(loaded)
    return reply


def _run_script(script: Script, keys: tuple[Any, ...], *args: Any) -> Exchange:
    return bool(checked((yield from _evalsha(script, keys, *args))))


def compare_and_set(step: steps.CompareAndSet) -> Exchange:
    if step.old is None:
        return _set_if_absent(step)
    ttl = () if step.ttl_ms is None else (step.ttl_ms,)
    return _run_script(COMPARE_AND_SET, (step.key,), step.old, step.new, *ttl)


def _set_if_absent(step: steps.CompareAndSet) -> Exchange:
    # SET NX is atomic by itself; a key of any type counts as present.
    ttl = () if step.ttl_ms is None else ("PX", step.ttl_ms)
    (reply,) = yield [("SET", step.key, step.new, "NX", *ttl)]
    return bool(checked(reply))


def compare_and_delete(step: steps.CompareAndDelete) -> Exchange:
    return _run_script(COMPARE_AND_DELETE, (step.key,), step.old)


def move(step: steps.Move) -> Exchange:
    ttl = "" if step.ttl_ms is None else step.ttl_ms
    expected = () if step.new_old is None else (step.new_old,)
    return _run_script(MOVE, (step.old_key, step.new_key), step.old, step.text, ttl, *expected)


_VERDICTS = (steps.Verdict.KEPT, steps.Verdict.SLID, steps.Verdict.EXPIRED, steps.Verdict.UNDECIDED)


def _read_and_slide(step: steps.ReadAndSlide) -> Exchange:
    if step.look_first:
        looked = yield from _slide_script(LOOK_BEFORE_SLIDE, step)
        if not isinstance(looked, steps.Slide) or looked.verdict is not steps.Verdict.SLID:
            return looked
    return (yield from _slide_script(READ_AND_SLIDE, step))


def _slide_script(script: Script, step: steps.ReadAndSlide) -> Exchange:
    cap = "" if step.max_lifetime_ms is None else step.max_lifetime_ms
    args = (step.now, step.lifetime_ms, cap, step.ttl_ms)
    reply = yield from _evalsha(script, (step.key,), *args)
    if is_wrong_type(reply):
        return steps.WRONG_TYPE
    reply = checked(reply)
    if reply is None:
        return None
    verdict = _VERDICTS[int(reply[0])]
    if verdict is not steps.Verdict.SLID or len(reply) < 4:  # LOOK_BEFORE_SLIDE: {1, text}
        return steps.Slide(verdict, reply[1])
    ttl = int(reply[3])
    return steps.Slide(verdict, reply[1], reply[2], ttl if ttl > 0 else None)


def _delete(step: steps.Delete) -> Exchange:
    (reply,) = yield [("DEL", *step.keys)]
    return int(checked(reply))


def _scan(step: steps.Scan) -> Exchange:
    cursor = 0 if step.cursor is None else step.cursor
    (reply,) = yield [("SCAN", cursor, "MATCH", step.pattern, "COUNT", steps.SCAN_BATCH)]
    after, keys = checked(reply)
    return steps.ScanPage(list(keys), None if int(after) == 0 else after)


def _read_many(step: steps.ReadMany) -> Exchange:
    (reply,) = yield [("MGET", *step.keys)]
    values = checked(reply)
    if all(values):  # no nil (checked in C): the reply as it came, never changed here
        return values
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        # A copy to change: the client's reply may be a tuple, or held by its reply cache.
        values = list(values)
        # MGET answers nil both for a missing key and for one of another type: ask which.
        kinds = yield [("TYPE", step.keys[i]) for i in missing]
        for i, kind in zip(missing, kinds, strict=True):
            shown = as_text(checked(kind))
            if shown not in ("none", "string"):
                values[i] = steps.NonString(shown)
    return values


def _batch(step: steps.Batch) -> Exchange:
    """Every step's exchange in lockstep: each round trip one pipeline of all their commands."""
    replies: list[Any] = [None] * len(step.steps)
    waiting: dict[int, tuple[Exchange, list[Args]]] = {}
    for i, inner in enumerate(step.steps):
        talk = exchange(inner)
        waiting[i] = (talk, next(talk))
    while waiting:
        commands: list[Args] = []
        slots: dict[Args, int] = {}
        where: dict[int, list[int]] = {}
        for i, (_talk, wanted) in waiting.items():
            places = where[i] = []
            for command in wanted:
                if command[:2] == ("SCRIPT", "LOAD") and command in slots:
                    places.append(slots[command])  # a script is loaded once per pipeline
                    continue
                slots[command] = len(commands)
                places.append(len(commands))
                commands.append(command)
        answers = yield commands
        still: dict[int, tuple[Exchange, list[Args]]] = {}
        for i, (talk, _wanted) in waiting.items():
            try:
                still[i] = (talk, talk.send([answers[n] for n in where[i]]))
            except StopIteration as stop:
                replies[i] = stop.value
        waiting = still
    return replies


EXCHANGES: Exchanges = {
    steps.Read: _read,
    steps.Write: _write,
    steps.CompareAndSet: compare_and_set,
    steps.CompareAndDelete: compare_and_delete,
    steps.Delete: _delete,
    steps.Move: move,
    steps.ReadAndSlide: _read_and_slide,
    steps.Scan: _scan,
    steps.ReadMany: _read_many,
    steps.Batch: _batch,
}


def exchange(step: steps.Step) -> Exchange:
    """The exchange of `step` on one Redis server: it yields each round trip's commands, is
    sent their replies (errors as exception objects), and returns the step's reply or raises
    the redis-py error it cannot absorb."""
    return EXCHANGES[type(step)](step)
