"""What the per-call benchmarks share: timing a call in a loop, and rounds interleaved.

Each store's script (bench_redis.py, bench_postgres.py) measures variants (the store on
asyncio and trio, raw clients) with `timed`, and runs every variant once per round with
`interleaved`, so that machine noise hits all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

__all__ = ("WARM_UP", "cpu_log", "interleaved", "timed")

WARM_UP = 50
# Client CPU time per call (µs) of each `timed` measurement, in the order they were made.
cpu_log: list[float] = []


async def timed(ops: int, call: Callable[[int], Awaitable[Any]]) -> float:
    """ops/s of `call(0)`, `call(1)`... after `WARM_UP` calls. Its CPU time per call in this
    process (every thread) goes to `cpu_log`: what the client side costs, whatever the
    server and a busy machine add to the wall time."""
    for n in range(WARM_UP):
        await call(n)
    start, cpu = time.perf_counter(), time.process_time()
    for n in range(ops):
        await call(n)
    cpu_log.append((time.process_time() - cpu) / ops * 1e6)
    return ops / (time.perf_counter() - start)


def interleaved(
    rounds: int,
    variants: Sequence[tuple[str, str]],
    measure: Mapping[str, Callable[..., Awaitable[dict[str, float]]]],
    *args: Any,
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """ops/s and CPU µs per call samples per (variant, operation): each round runs every
    ``(name, backend)`` variant once, as ``measure[name](*args, run)`` on its backend."""
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for run in range(rounds):
        for name, backend in variants:
            cpu_log.clear()
            measured = anyio.run(measure[name], *args, run, backend=backend)
            for (operation, value), used in zip(measured.items(), cpu_log, strict=True):
                results.setdefault((name, operation), []).append(value)
                cpu.setdefault((name, operation), []).append(used)
    return results, cpu
