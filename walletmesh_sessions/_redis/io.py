"""Running `_redis_ops` operations on one Redis server: a sans-IO core and two runners.

The core is written once. `exchange` turns one step into the commands that carry it out and
reads their replies (a missing script is loaded and run again, a key of another type becomes
`WRONG_TYPE` or a `NonString`, a `Batch` becomes one pipeline); `Conversation` walks an
operation from step to step. Replies come back as values, error replies as exception objects.
The runners only move bytes: `AsyncioRunner` awaits `redis.asyncio`, `ThreadRunner` blocks on
the synchronous client in anyio worker threads, a whole operation (or a page of a scan) per
thread hop. Errors leave through `translate`, whose messages never echo command arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, NamedTuple, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import redis
import redis.asyncio
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

from .._core.deadline import let_thread_end
from .._core.errors import (
    InvalidConfigError,
    NotReplicatedError,
    SessionStoreError,
    StoreUnavailableError,
)
from .ops import (
    CHECKPOINT,
    SCAN_BATCH,
    WRONG_TYPE,
    Batch,
    Checkpoint,
    CompareAndDelete,
    CompareAndSet,
    Delete,
    Move,
    NonString,
    Op,
    Read,
    ReadAndSlide,
    ReadMany,
    Scan,
    ScanPage,
    Slide,
    Step,
    Verdict,
    Write,
)

__all__ = (
    "COMPARE_AND_DELETE",
    "COMPARE_AND_SET",
    "MOVE",
    "READ_AND_SLIDE",
    "AsyncioRunner",
    "Conversation",
    "ReplicaWait",
    "Script",
    "ThreadRunner",
    "exchange",
    "replica_wait",
    "translate",
)

T = TypeVar("T")

Args = tuple[Any, ...]
Exchange = Generator[list[Args], list[Any], Any]
"""Yields the commands to send (one round trip), receives their replies, returns the reply."""


class Script(NamedTuple):
    """A Lua script, run by EVALSHA and loaded again when Redis answers NOSCRIPT."""

    source: str
    sha: str


def _script(source: str) -> Script:
    return Script(source, hashlib.sha1(source.encode()).hexdigest())


# Both scripts compare the exact stored bytes and touch one key, so they are atomic and
# cluster-safe; pcall makes a key of another type simply "not equal" instead of an error.
COMPARE_AND_SET = _script(
    """\
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
  return 1
end
return 0
"""
)
"""KEYS[1] holds exactly ARGV[1]? then write ARGV[2], with a TTL of ARGV[3] ms if given."""

COMPARE_AND_DELETE = _script(
    """\
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
"""KEYS[1] holds exactly ARGV[1]? then delete it. 1 if deleted."""

# The one script on two keys: both compared, then both changed, with nothing in between. On
# Redis Cluster it runs only when both keys hash to one slot (see `_redis_ops.Move`).
MOVE = _script(
    """\
local held = redis.pcall('GET', KEYS[2])
if #ARGV >= 4 then
  if held ~= ARGV[4] then return 0 end
elseif held ~= false then
  return 0
end
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
"""
)
"""KEYS[1] holds exactly ARGV[1], and KEYS[2] exactly ARGV[4] (no ARGV[4]: nothing)? then
delete KEYS[1] and write ARGV[2] under KEYS[2], with a TTL of ARGV[3] ms unless it is ''."""

# `_expiry.after_read` for a store that slides on read, on the record's text. It reads only
# the top-level "expiresAt" and "data"."createdAt" (integers of at most 15 digits, or null),
# rewrites only the bytes of the expiresAt value, and removes nothing: whether the rest of the
# record is readable is for the caller to judge. Any shape it does not read with certainty
# (an escaped or repeated name, no expiresAt, a fraction) it leaves to the caller: verdict 3.
#
# `quick` reads the shape the TypeScript store and this package write, `{"data":{...},
# "expiresAt":N}` with no backslash anywhere (so every quote is a string's edge, and each
# name is counted exactly): cjson checks that the text is JSON, and the tail gives the span of
# the one top-level expiresAt. Anything else goes to `walked`, which reads the record a
# character class at a time: so do texts cjson reads more leniently than `walked` (it stops
# at a NUL byte, reads `nan(...)` as a number, and keeps the last of a repeated createdAt).
# On a small record the whole script took the server 46 us per call with `walked` alone and
# 28 us with `quick` when the expiry stays, 60 and 34 us when it slides
# (`python benchmarks/bench_slide_script.py --against c94825c`).
READ_AND_SLIDE = _script(
    """\
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local function once(name)
  local i = string.find(raw, name, 1, true)
  return i and not string.find(raw, name, i + 1, true)
end
local function quick()
  if string.sub(raw, 1, 9) ~= '{"data":{' or string.find(raw, '\\\\', 1, true) then return nil end
  local s, _, num = string.find(raw, ',"expiresAt":(%-?%d+)}[ \\t\\n\\r]*$')
  if not s or #string.match(num, '%d+') > 15 then return nil end
  if not once('"data"') or not once('"expiresAt"') then return nil end
  if string.find(raw, '\\0', 1, true) then return nil end
  if string.find(raw, '(', 1, true) and string.find(raw, '[nN][aA][nN]%(') then return nil end
  local ok, top = pcall(cjson.decode, raw)
  if not ok then return nil end
  local created = top.data.createdAt
  if created ~= nil then
    if not once('"createdAt"') then return nil end
    if created == cjson.null then
      created = nil
    else
      local digits = string.match(raw, '"createdAt":(%-?%d+)[,}]')
      if not digits or #string.match(digits, '%d+') > 15 then return nil end
      created = tonumber(digits)
    end
  end
  return {s + 13, s + 13 + #num}, tonumber(num), created
end
local function space(i)
  local _, e = string.find(raw, '^[ \\t\\n\\r]*', i)
  return e + 1
end
local function str(i)
  local j, esc = i + 1, false
  while true do
    local k = string.find(raw, '["\\\\]', j)
    if not k then return nil end
    if string.byte(raw, k) == 34 then return k + 1, esc end
    esc, j = true, k + 2
  end
end
local function value(i)
  local c = string.sub(raw, i, i)
  if c == '"' then return (str(i)) end
  if c == '{' or c == '[' then
    local depth, j = 0, i
    while true do
      local k = string.find(raw, '[%[%]{}"]', j)
      if not k then return nil end
      local d = string.sub(raw, k, k)
      if d == '"' then
        j = str(k)
        if not j then return nil end
      else
        depth = (d == '{' or d == '[') and depth + 1 or depth - 1
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  local _, e = string.find(raw, '^[%w%.%+%-]+', i)
  return e and e + 1
end
local function members(i, wanted)
  local found = {}
  i = space(i + 1)
  if string.sub(raw, i, i) == '}' then return i + 1, found end
  while string.sub(raw, i, i) == '"' do
    local j, esc = str(i)
    if not j or esc then return nil end
    local name = string.sub(raw, i + 1, j - 2)
    j = space(j)
    if string.sub(raw, j, j) ~= ':' then return nil end
    local s = space(j + 1)
    local e = value(s)
    if not e then return nil end
    if wanted[name] then
      if found[name] then return nil end
      found[name] = {s, e}
    end
    i = space(e)
    local c = string.sub(raw, i, i)
    if c == '}' then return i + 1, found end
    if c ~= ',' then return nil end
    i = space(i + 1)
  end
  return nil
end
local function ms(span)
  local t = string.sub(raw, span[1], span[2] - 1)
  if t == 'null' then return nil end
  local digits = string.match(t, '^%-?(%d+)$')
  if not digits or #digits > 15 then return false end
  return tonumber(t)
end
local function walked()
  local start = space(1)
  if string.sub(raw, start, start) ~= '{' then return nil end
  local stop, top = members(start, {expiresAt = true, data = true})
  if not stop or space(stop) ~= #raw + 1 then return nil end
  local exp, data = top.expiresAt, top.data
  if not exp or not data or string.sub(raw, data[1], data[1]) ~= '{' then return nil end
  local _, inner = members(data[1], {createdAt = true})
  if not inner then return nil end
  local stored = ms(exp)
  if stored == false then return nil end
  local created = nil
  if inner.createdAt then
    created = ms(inner.createdAt)
    if created == false then return nil end
  end
  return exp, stored, created
end
local exp, stored, created = quick()
if not exp then exp, stored, created = walked() end
if not exp then return {3, raw} end
if stored == 0 then stored = nil end
local now, lifetime, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), nil
if stored and now > stored then return {2, raw} end
if ARGV[3] ~= '' and created then cap = created + tonumber(ARGV[3]) end
if cap and now > cap then return {2, raw} end
local after = now + lifetime
if cap and after > cap then after = cap end
if after == stored then return {0, raw} end
local new = string.sub(raw, 1, exp[1] - 1) .. string.format('%.0f', after)
new = new .. string.sub(raw, exp[2])
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], new, 'PX', ARGV[4])
return {1, raw, new, ttl}
"""
)
"""KEYS[1] as `_expiry.after_read` decides at now ARGV[1] for a lifetime of ARGV[2] ms and a
max_lifetime of ARGV[3] ms ('' for none), a slide writing a TTL of ARGV[4] ms. Reply: nil if
missing, else {verdict, text read[, text written, TTL before]}: 0 kept, 1 slid, 2 expired
(left in place), 3 not judged (left in place). A key of another type: the WRONGTYPE error."""

_SLIDE_WRITE = """\
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], new, 'PX', ARGV[4])
return {1, raw, new, ttl}
"""
if _SLIDE_WRITE not in READ_AND_SLIDE.source:  # pragma: no cover - a guard for edits above
    raise RuntimeError("READ_AND_SLIDE no longer ends with the write LOOK_BEFORE_SLIDE drops")
LOOK_BEFORE_SLIDE = _script(READ_AND_SLIDE.source.replace(_SLIDE_WRITE, "return {1, raw}\n"))
"""READ_AND_SLIDE that writes nothing: where it would slide, it replies {1, text read}."""


# -- the sans-IO core ----------------------------------------------------------------------


def _code(exc: BaseException) -> str:
    """An error reply's kind: its first word (``WRONGTYPE``, ``OOM``, ``ERR``...)."""
    words = str(exc).split(maxsplit=1)
    word = words[0] if words else ""
    return word if word.isalpha() and word.isupper() else "ERR"


def _checked(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def _read(step: Read) -> Exchange:
    (reply,) = yield [("GET", step.key)]
    if isinstance(reply, ResponseError) and _code(reply) == "WRONGTYPE":
        return WRONG_TYPE
    return _checked(reply)


def _write(step: Write) -> Exchange:
    if step.ttl_ms is None:
        (reply,) = yield [("SET", step.key, step.text)]
    else:
        (reply,) = yield [("SET", step.key, step.text, "PX", step.ttl_ms)]
    _checked(reply)


def _run_script(script: Script, keys: tuple[Any, ...], *args: Any) -> Exchange:
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    (reply,) = yield [command]
    if isinstance(reply, NoScriptError):
        # After a restart or SCRIPT FLUSH: load it and run it again in the same round trip.
        loaded, reply = yield [("SCRIPT", "LOAD", script.source), command]
        _checked(loaded)
    return bool(_checked(reply))


def _compare_and_set(step: CompareAndSet) -> Exchange:
    if step.old is None:
        return _set_if_absent(step)
    ttl = () if step.ttl_ms is None else (step.ttl_ms,)
    return _run_script(COMPARE_AND_SET, (step.key,), step.old, step.new, *ttl)


def _set_if_absent(step: CompareAndSet) -> Exchange:
    # SET NX is atomic by itself; a key of any type counts as present.
    ttl = () if step.ttl_ms is None else ("PX", step.ttl_ms)
    (reply,) = yield [("SET", step.key, step.new, "NX", *ttl)]
    return bool(_checked(reply))


def _compare_and_delete(step: CompareAndDelete) -> Exchange:
    return _run_script(COMPARE_AND_DELETE, (step.key,), step.old)


def _move(step: Move) -> Exchange:
    ttl = "" if step.ttl_ms is None else step.ttl_ms
    expected = () if step.new_old is None else (step.new_old,)
    return _run_script(MOVE, (step.old_key, step.new_key), step.old, step.text, ttl, *expected)


_VERDICTS = (Verdict.KEPT, Verdict.SLID, Verdict.EXPIRED, Verdict.UNDECIDED)


def _read_and_slide(step: ReadAndSlide) -> Exchange:
    if step.look_first:
        looked = yield from _slide_script(LOOK_BEFORE_SLIDE, step)
        if not isinstance(looked, Slide) or looked.verdict is not Verdict.SLID:
            return looked
    return (yield from _slide_script(READ_AND_SLIDE, step))


def _slide_script(script: Script, step: ReadAndSlide) -> Exchange:
    cap = "" if step.max_lifetime_ms is None else step.max_lifetime_ms
    command = (
        "EVALSHA",
        script.sha,
        1,
        step.key,
        step.now,
        step.lifetime_ms,
        cap,
        step.ttl_ms,
    )
    (reply,) = yield [command]
    if isinstance(reply, NoScriptError):
        # After a restart or SCRIPT FLUSH: load it and run it again in the same round trip.
        loaded, reply = yield [("SCRIPT", "LOAD", script.source), command]
        _checked(loaded)
    if isinstance(reply, ResponseError) and _code(reply) == "WRONGTYPE":
        return WRONG_TYPE
    reply = _checked(reply)
    if reply is None:
        return None
    verdict = _VERDICTS[int(reply[0])]
    if verdict is not Verdict.SLID or len(reply) < 4:  # LOOK_BEFORE_SLIDE: {1, text}
        return Slide(verdict, reply[1])
    ttl = int(reply[3])
    return Slide(verdict, reply[1], reply[2], ttl if ttl > 0 else None)


def _delete(step: Delete) -> Exchange:
    (reply,) = yield [("DEL", *step.keys)]
    return int(_checked(reply))


def _scan(step: Scan) -> Exchange:
    cursor = 0 if step.cursor is None else step.cursor
    (reply,) = yield [("SCAN", cursor, "MATCH", step.pattern, "COUNT", SCAN_BATCH)]
    after, keys = _checked(reply)
    return ScanPage(list(keys), None if int(after) == 0 else after)


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_many(step: ReadMany) -> Exchange:
    (reply,) = yield [("MGET", *step.keys)]
    values: list[Any] = list(_checked(reply))
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        # MGET answers nil both for a missing key and for one of another type: ask which.
        kinds = yield [("TYPE", step.keys[i]) for i in missing]
        for i, kind in zip(missing, kinds, strict=True):
            shown = _as_text(_checked(kind))
            if shown not in ("none", "string"):
                values[i] = NonString(shown)
    return values


def _batch(step: Batch) -> Exchange:
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


_EXCHANGES: dict[type, Callable[[Any], Exchange]] = {
    Read: _read,
    Write: _write,
    CompareAndSet: _compare_and_set,
    CompareAndDelete: _compare_and_delete,
    Delete: _delete,
    Move: _move,
    ReadAndSlide: _read_and_slide,
    Scan: _scan,
    ReadMany: _read_many,
    Batch: _batch,
}


def exchange(step: Step) -> Exchange:
    """The commands that carry out `step` on one Redis server, and what their replies mean.

    Each value it yields is one round trip's commands (sent as one pipeline when more than
    one); it must be sent the replies, in order, error replies as exception objects. It
    returns the step's reply, or raises the redis-py exception of an error it cannot absorb.
    """
    return _EXCHANGES[type(step)](step)


class Conversation(Generic[T]):
    """One operation in progress: which commands to send next, and what the replies mean.

    `exchanges` maps each step type to its exchange: one Redis server's here; a subclass may
    carry the same operations out on other topologies (a cluster).
    """

    __slots__ = ("_exchange", "_op", "name", "result", "shortfall")

    exchanges: dict[type, Callable[[Any], Exchange]] = _EXCHANGES

    def __init__(self, op: Op[T], name: str) -> None:
        self._op = op
        self._exchange: Exchange | None = None
        self.name = name
        self.result: T
        self.shortfall: str | None = None  # writes too few replicas confirmed, if any

    def advance(self, replies: list[Any] | None) -> list[Args] | Checkpoint | None:
        """Feed the replies to the last commands (`None` at first and after a checkpoint).

        Returns the commands of the next round trip, `CHECKPOINT` where a runner may return
        to its event loop, or `None` once the operation is done (its value in `result`).
        """
        reply: Any = None
        if isinstance(replies, _Unconfirmed):
            self.shortfall = self.shortfall or replies.shortfall
        talk = self._exchange
        if talk is not None:
            try:
                return talk.send(replies)  # type: ignore[arg-type]
            except StopIteration as stop:
                reply = stop.value
                self._exchange = None
        try:
            step = self._op.send(reply)
        except StopIteration as stop:
            self.result = stop.value
            if self.shortfall is not None:
                raise _ReplicasBehind(self.shortfall) from None
            return None
        if step is CHECKPOINT:
            return CHECKPOINT
        talk = self._exchange = self.exchanges[type(step)](step)
        return next(talk)

    def fail(self, exc: Exception) -> SessionStoreError:
        """Abandon the operation; the library's error for `exc` (chain it as the cause)."""
        self._op.close()
        if self._exchange is not None:
            self._exchange.close()
        return translate(exc, self.name)


class ReplicaWait(NamedTuple):
    """Follow every round trip that writes with ``WAIT replicas timeout_ms``, in the same
    pipeline, and fail the call if fewer replicas than `replicas` confirmed the write."""

    replicas: int
    timeout_ms: int


def replica_wait(
    replicas: object, timeout: object, call_timeout: float | None
) -> ReplicaWait | None:
    """The checked setting for `wait_for_replicas` and `replica_timeout`; `None` for 0.

    `replica_timeout` must be shorter than `call_timeout`, which bounds the wait's reply.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        msg = f"wait_for_replicas must be an int >= 0, got {replicas!r}"
        raise InvalidConfigError(msg)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf  # WAIT takes whole milliseconds: infinity has none
    ):
        msg = f"replica_timeout must be a positive, finite number of seconds, got {timeout!r}"
        raise InvalidConfigError(msg)
    if replicas and call_timeout is not None and not timeout < call_timeout:
        msg = f"replica_timeout ({timeout!r} s) must be shorter than timeout ({call_timeout!r} s)"
        raise InvalidConfigError(msg)
    return ReplicaWait(replicas, max(1, round(timeout * 1000))) if replicas else None


# Commands that may write, and the scripts that never do: a round trip with none of the
# former is not followed by WAIT, which would wait for nothing (or for earlier writes).
_WRITES = frozenset({"SET", "DEL", "EVALSHA"})
_READ_ONLY_SCRIPTS = frozenset({LOOK_BEFORE_SLIDE.sha})


def _writes(command: Args) -> bool:
    if command[0] == "EVALSHA":
        return command[1] not in _READ_ONLY_SCRIPTS
    return command[0] in _WRITES


class _ReplicasBehind(redis.RedisError):
    """WAIT counted fewer replicas than asked for: the write is on the primary only."""


def _with_wait(commands: list[Args], wait: ReplicaWait | None) -> list[Args]:
    if wait is None or not any(_writes(command) for command in commands):
        return commands
    return [*commands, ("WAIT", wait.replicas, wait.timeout_ms)]


def _wrote(command: Args, reply: Any) -> bool:
    """Whether `command`, answered `reply`, changed anything (what WAIT has to confirm)."""
    if isinstance(reply, Exception) or not _writes(command):
        return False
    if command[0] == "EVALSHA" and command[1] == READ_AND_SLIDE.sha:
        return int(reply[0]) == 1 if isinstance(reply, list) else False
    if command[0] == "SET":
        return reply is not None  # SET NX on a taken key: nil
    return bool(reply)  # DEL: how many; the other scripts: 1 or 0


def _without_wait(commands: list[Args], replies: list[Any], wait: ReplicaWait) -> list[Any]:
    """The replies to `commands`, once WAIT's reply shows enough replicas for what they
    wrote. A round trip that wrote nothing (a compare that failed, a script not loaded yet)
    has nothing to confirm."""
    acked = replies.pop()
    if not any(_wrote(c, r) for c, r in zip(commands, replies, strict=True)):
        return replies
    if isinstance(acked, Exception):
        raise acked
    if int(acked) < wait.replicas:
        msg = f"{int(acked)} of {wait.replicas} replicas confirmed within {wait.timeout_ms} ms"
        return _Unconfirmed(replies, msg)
    return replies


class _Unconfirmed(list[Any]):
    """Replies to a round trip whose writes too few replicas confirmed: the operation goes
    on to its end (an undo it has to make included), then fails with `NotReplicatedError`."""

    def __init__(self, replies: list[Any], shortfall: str) -> None:
        super().__init__(replies)
        self.shortfall = shortfall


# A cluster without an owner for a slot (failover under way) is unavailable too.
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    ReadOnlyError,
    OSError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
)


def translate(exc: Exception, operation: str) -> SessionStoreError:
    """The library's error for a redis-py exception raised during `operation`.

    The message names the operation and the kind of error only: Redis error replies may echo
    command arguments (keys, so session ids, and records), so an error reply's own text is
    cut down to its code in place too, and only then kept as the cause.
    """
    if isinstance(exc, _ReplicasBehind):
        return NotReplicatedError(f"Redis wrote ({operation}) on the primary only: {exc}")
    if isinstance(exc, ResponseError):
        code = _code(exc)
        exc.args = (f"{code} (the rest of the reply is withheld: it may echo arguments)",)
        kind = f"{type(exc).__name__} {code}"
    else:
        kind = type(exc).__name__
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(f"Redis is unavailable ({operation}): {kind}")
    return SessionStoreError(f"Redis refused a command ({operation}): {kind}")


def _late(operation: str, budget: float | None) -> StoreUnavailableError:
    within = "before the call's deadline" if budget is None else f"within {budget:.3g} s"
    return StoreUnavailableError(
        f"Redis did not answer ({operation}) {within}: no reply, or no free connection"
    )


# -- the runners: I/O only --------------------------------------------------------------------


class _Watched:
    """One call under `_Deadlines`: its task until it finishes, and whether it was cancelled."""

    __slots__ = ("cancelling", "deadline", "fired", "task")

    task: asyncio.Task[Any] | None
    deadline: float
    cancelling: int
    fired: bool

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        if sys.version_info < (3, 11):  # pragma: no cover
            raise NotImplementedError  # Python 3.10 takes `asyncio.wait_for` instead
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        self.fired = False


class _Deadlines:
    """One timer for every call of a runner, instead of a timeout per call.

    Each call's deadline is when it was made plus the same budget, so deadlines come in
    order: a queue holds the calls, and the one timer wakes at the oldest unfinished call's
    deadline and cancels whatever is overdue. A call costs an append and a flag, not a timer
    handle scheduled and cancelled on the loop (the bulk of a per-call ``asyncio.timeout``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: deque[_Watched] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], deadline: float) -> _Watched:
        calls = self._calls
        while calls and calls[0].task is None:
            calls.popleft()  # finished: sequential calls keep the queue at one or two
        call = _Watched(task, deadline)
        calls.append(call)
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._expire)
        return call

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        calls = self._calls
        while calls:
            call = calls[0]
            if call.task is not None and call.deadline > now:
                self._timer = self.loop.call_at(call.deadline, self._expire)
                return
            calls.popleft()
            if call.task is not None:
                call.fired = True
                call.task.cancel()


class AsyncioRunner:
    """Runs operations on a `redis.asyncio.Redis` client, on asyncio only.

    With `limit`, at most that many operations run at once (the store's pool holds `limit`
    connections; redis-py's blocking pool would wait too, at a higher cost per command). With
    `budget`, each call finishes or fails within that many seconds of being made, waiting for
    its turn included.
    """

    conversation: type[Conversation[Any]] = Conversation

    def __init__(
        self, client: redis.asyncio.Redis, limit: int | None = None, budget: float | None = None
    ) -> None:
        self.client = client
        # redis-py leaves execute_command untyped; every reply is Any to us anyway.
        self._command: Callable[..., Awaitable[Any]] = client.execute_command
        self._slots = None if limit is None else asyncio.Semaphore(limit)
        self._budget = budget
        self._deadlines: _Deadlines | None = None
        self.replica_wait: ReplicaWait | None = None

    @property
    def budget(self) -> float | None:
        """Seconds each call may take, or `None` (the client's own timeouts apply)."""
        return self._budget

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        """Drive `op` to its result; Redis errors become the library's, with the cause kept.

        `deadline` (on `anyio.current_time`'s clock) replaces the runner's own budget.
        """
        budget = self._budget
        loop = asyncio.get_running_loop()
        if deadline is None:
            if budget is None:
                return await self._guarded(op, name)
            if sys.version_info >= (3, 11):
                return await self._watched(op, name, loop, budget)
            deadline = loop.time() + budget  # pragma: no cover
        else:
            budget = None
        try:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout_at(deadline):
                    return await self._guarded(op, name)
            else:  # pragma: no cover
                left = max(0.0, deadline - loop.time())
                return await asyncio.wait_for(self._guarded(op, name), left)
        except asyncio.TimeoutError:
            op.close()
            raise _late(name, budget) from None

    async def _watched(
        self, op: Op[T], name: str, loop: asyncio.AbstractEventLoop, budget: float
    ) -> T:
        """`_guarded` within `budget` of now, under the runner's one deadline timer.

        Cancels as ``asyncio.timeout`` does: only this call's own expiry becomes
        `StoreUnavailableError`; a cancellation from outside stays a cancellation.
        """
        if sys.version_info < (3, 11):  # pragma: no cover
            raise NotImplementedError  # Python 3.10 takes `asyncio.wait_for` instead
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        task = asyncio.current_task()
        assert task is not None  # a coroutine awaited on asyncio always runs in a task
        call = deadlines.watch(task, loop.time() + budget)
        try:
            return await self._guarded(op, name)
        except asyncio.CancelledError:
            if call.fired:
                call.fired = False
                if task.uncancel() <= call.cancelling:
                    op.close()
                    raise _late(name, budget) from None
            raise
        finally:
            call.task = None
            if call.fired:  # expired just as it finished: take back the cancellation
                task.uncancel()

    async def _guarded(self, op: Op[T], name: str) -> T:
        slots = self._slots
        talk: Conversation[T] = self.conversation(op, name)
        if slots is None:
            return await self._drive(talk)
        async with slots:
            return await self._drive(talk)

    async def _drive(self, talk: Conversation[T]) -> T:
        try:
            commands = talk.advance(None)
            while commands is not None:
                if commands is CHECKPOINT:
                    commands = talk.advance(None)
                else:
                    commands = talk.advance(await self._send(commands))
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise talk.fail(exc) from exc
        return talk.result

    async def _send(self, commands: list[Args]) -> list[Any]:
        wait = self.replica_wait
        sent = _with_wait(commands, wait)
        if len(sent) == 1:
            try:
                return [await self._command(*sent[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        queue: Callable[..., Any] = pipe.execute_command
        for args in sent:
            queue(*args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return (
            replies if sent is commands or wait is None else _without_wait(commands, replies, wait)
        )

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self.client.aclose()


class ThreadRunner:
    """Runs operations on a synchronous `redis.Redis` client in anyio worker threads.

    With `limit`, the store's own thread limiter (sized to its pool) replaces anyio's shared
    default, so the store never queues behind other code's threads. With `budget`, each call
    finishes or fails within that many seconds of being made: a thread still blocked then is
    abandoned (its socket timeout ends it soon after) and keeps its limiter token until then.
    """

    conversation: type[Conversation[Any]] = Conversation

    def __init__(
        self, client: redis.Redis, limit: int | None = None, budget: float | None = None
    ) -> None:
        self.client = client
        self._command: Callable[..., Any] = client.execute_command
        self._limit = limit
        self._limiter: anyio.CapacityLimiter | None = None
        self._budget = budget
        self.replica_wait: ReplicaWait | None = None

    @property
    def budget(self) -> float | None:
        """Seconds each call may take, or `None` (the client's own timeouts apply)."""
        return self._budget

    def new_loop(self) -> None:
        """Forget what belongs to the previous event loop (a limiter is bound to its run)."""
        self._limiter = None

    async def run(self, op: Op[T], name: str, deadline: float | None = None) -> T:
        """Drive `op` to its result, one thread hop per stretch between checkpoints.

        A thread cannot be interrupted. A call cancelled from outside lets the stretch in
        flight end (`let_thread_end`: what it began has settled when the call returns) and
        goes no further; a stretch still blocked then (a server that does not answer) is
        left to its thread, and the call returns. At its own deadline a call
        leaves its thread at once and raises `StoreUnavailableError`. `deadline` (on
        `anyio.current_time`'s clock) replaces the runner's own budget. A call made in a
        cancelled scope starts nothing.
        """
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            op.close()
            raise
        talk: Conversation[T] = self.conversation(op, name)
        limiter = self._limiter
        if limiter is None and self._limit is not None:
            limiter = self._limiter = anyio.CapacityLimiter(self._limit)
        budget = self._budget
        if deadline is None:
            deadline = math.inf if budget is None else anyio.current_time() + budget
        else:
            budget = None
        while True:
            ended = threading.Event()
            with anyio.CancelScope(deadline=deadline) as scope:
                try:
                    done = await anyio.to_thread.run_sync(
                        self._advance, talk, ended, limiter=limiter, abandon_on_cancel=True
                    )
                except anyio.get_cancelled_exc_class():
                    if not scope.cancel_called:  # from outside, not the call's deadline
                        await let_thread_end(ended, deadline)
                    raise
            if scope.cancelled_caught:
                raise _late(name, budget)
            if done:
                return talk.result

    def _advance(self, talk: Conversation[T], ended: threading.Event | None = None) -> bool:
        """Run the operation in this thread until it is done (True) or at a checkpoint."""
        try:
            commands = talk.advance(None)
            while commands is not None:
                if commands is CHECKPOINT:
                    return False
                commands = talk.advance(self._send(commands))
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise talk.fail(exc) from exc
        finally:
            if ended is not None:
                ended.set()
        return True

    def _send(self, commands: list[Args]) -> list[Any]:
        wait = self.replica_wait
        sent = _with_wait(commands, wait)
        if len(sent) == 1:
            try:
                return [self._command(*sent[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        queue: Callable[..., Any] = pipe.execute_command
        for args in sent:
            queue(*args)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return (
            replies if sent is commands or wait is None else _without_wait(commands, replies, wait)
        )

    async def aclose(self) -> None:
        """Close the client's connections (in a thread: disconnecting may block briefly)."""
        await anyio.to_thread.run_sync(self.client.close)
