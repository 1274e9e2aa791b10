"""Progress lines on stderr, for people watching a long command on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import anyio

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ("Progress", "stderr_is_terminal", "stdout_is_terminal", "waiting")

T = TypeVar("T")


def stderr_is_terminal() -> bool:
    """Progress is for people: shown only when stderr is a terminal (tests replace this)."""
    return _is_terminal(sys.stderr)


def stdout_is_terminal() -> bool:
    """Whether the output itself is on a terminal, where a progress line would cut into it."""
    return _is_terminal(sys.stdout)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def _bar(description: str, bar_format: str) -> tqdm[Any] | None:
    """A tqdm progress line on stderr, or `None`: not a terminal, or no tqdm (the `cli` extra)."""
    if not stderr_is_terminal():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        desc=description,
        file=sys.stderr,
        leave=False,  # the line goes once the command prints its result
        unit=" records",
        mininterval=0.25,
        bar_format=bar_format,
    )


class Progress:
    """A progress line on stderr while a command reads or waits; nothing where no one watches."""

    RECORDS = "{desc}: {n_fmt} records [{elapsed}, {rate_fmt}]"
    WAITING = "{desc}... {elapsed}"

    def __init__(
        self, description: str, bar_format: str = RECORDS, *, beside_output: bool = False
    ) -> None:
        # Beside output that lists the records: on the terminal, they are the progress.
        show = not (beside_output and stdout_is_terminal())
        self._bar = _bar(description, bar_format) if show else None

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def refresh(self) -> None:
        if self._bar is not None:
            self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()


async def waiting(description: str, call: Callable[[], Awaitable[T]]) -> T:
    """``await call()``, one store call that may take long, with a line counting the time."""
    with Progress(description, Progress.WAITING) as progress:
        if not progress.shown:
            return await call()
        results: list[T] = []
        failures: list[Exception] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_tick, progress)
            try:
                results.append(await call())
            except Exception as exc:  # raised as it is below, not wrapped in a group
                failures.append(exc)
            tasks.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return results[0]


async def _tick(progress: Progress) -> None:
    while True:
        await anyio.sleep(0.5)
        progress.refresh()
