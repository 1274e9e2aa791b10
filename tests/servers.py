"""The one way the tests run a server process: Redis (single, cluster node, sentinel) or PostgreSQL.

A `ServerProcess` starts a command on 127.0.0.1 and a free port, waits until that very process
answers, and, if another program took the port meanwhile, starts again on another one. It can
be stopped, killed, frozen and started again on the same port, as the failure tests need.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = (
    "PORT_ATTEMPTS",
    "ServerProcess",
    "executable",
    "free_port",
    "given_url",
    "starting",
    "wait_for",
)

PORT_ATTEMPTS = 3
PORT_TAKEN = "Address already in use"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The test running now (set by conftest before its fixtures), for the checks in `starting`.
_running: list[pytest.Item] = []


def set_running_test(item: pytest.Item) -> None:
    _running[:] = [item]


def given_url(config: pytest.Config, option: str) -> str | None:
    """The URL of a running server given with ``--<option>`` (loopback only), or None."""
    url: str | None = config.getoption(option.replace("-", "_"))
    if url is not None and urlsplit(url).hostname not in LOOPBACK:
        msg = f"--{option} must name a server on 127.0.0.1, got {url!r}"
        raise pytest.UsageError(msg)
    return url


def starting(marker: str, option: str | None = None) -> None:
    """Check before a test starts servers of the kind `marker` names.

    A test without the marker would start servers in the fast lane (``-m "not server"``):
    that fails, naming the test, so the marking in conftest is fixed. With ``--<option>``
    the tests start no server of that family: the test is skipped.
    """
    if not _running:
        return
    item = _running[0]
    if item.get_closest_marker(marker) is None:
        pytest.fail(f"{item.nodeid} starts a {marker} server but is not marked {marker!r}")
    if option is not None and given_url(item.config, option) is not None:
        pytest.skip(f"needs servers the tests start; --{option} names one already running")


def _ephemeral_ports() -> range:
    """The ports the system hands out to outgoing connections (Linux; a common default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(int(low), int(high) + 1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, outside the ephemeral range.

    A server stopped and started again on its port (a restart, a killed cluster node) must
    find it free: an ephemeral port may meanwhile be the local end of any client connection.
    """
    ephemeral = _ephemeral_ports()
    candidates = [p for p in range(10_000, 30_000) if p not in ephemeral] or [0]
    for port in random.sample(candidates, min(len(candidates), 200)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = sock.getsockname()[1]
            return found
    with socket.socket() as sock:  # everything taken: any port the system gives
        sock.bind(("127.0.0.1", 0))
        port_: int = sock.getsockname()[1]
        return port_


def executable(name: str, package: str) -> str:
    """The path of `name` on PATH; a missing one fails the run (it must not skip tests)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed (it is on PATH in CI); install it, for example with "
            f"`apt-get install {package}`, to run the tests that need it"
        )
    return path


def wait_for(
    ready: Callable[[], bool], what: str, timeout: float, *processes: ServerProcess
) -> None:
    """Poll `ready` until it is true; after `timeout` seconds fail with the processes' logs."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} on port {p.port}:\n{p.output()}" for p in processes)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.02)


class ServerProcess:
    """One server process on 127.0.0.1, its output appended to ``directory/name.log``.

    `command(port)` is the command line; `answers(port, pid)` is true once the process with
    that pid serves on that port (so that another program on a reused port is not taken for
    it). `popen` options (a user to run as) go to `subprocess.Popen`. With `whole_group`,
    signals also reach the children (a PostgreSQL postmaster's backends). With `given_port`,
    the server is one someone else runs (``--redis-url``): the tests use it as it is, and a
    test that would start, stop or freeze it is skipped.
    """

    def __init__(
        self,
        name: str,
        directory: Path,
        command: Callable[[int], Sequence[str]],
        answers: Callable[[int, int], bool],
        *,
        start_timeout: float = 10.0,
        whole_group: bool = False,
        popen: dict[str, Any] | None = None,
        given_port: int | None = None,
    ) -> None:
        self.name = name
        self.directory = directory
        self.given = given_port is not None
        self.port = free_port() if given_port is None else given_port
        self.log = directory / f"{name}.log"
        self._command = command
        self._answers = answers
        self._start_timeout = start_timeout
        self._whole_group = whole_group
        self._popen = popen or {}
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def running(self) -> bool:
        return self.given or (self._process is not None and self._process.poll() is None)

    def _own(self) -> None:
        if self.given:
            pytest.skip(f"stops or freezes its {self.name} server: not one already running")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Start and wait until this very process answers.

        On its first start, a port taken meanwhile by another program moves the server to
        another free port; later starts keep the port (clients and peers know it).
        """
        self._own()
        for _attempt in range(PORT_ATTEMPTS):
            if self._spawn_and_wait():
                self._started_once = True
                return
            if self._started_once:
                break
            self.port = free_port()
        pytest.fail(f"{self.name} could not start on port {self.port}:\n{self.output()}")

    def _spawn_and_wait(self) -> bool:
        """True once the server answers; False if it exited because its port was taken."""
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                list(self._command(self.port)), stdout=log, stderr=subprocess.STDOUT, **self._popen
            )
        self._process = process
        deadline = time.monotonic() + self._start_timeout
        while True:
            if process.poll() is not None:
                if PORT_TAKEN in self.output():
                    self._process = None
                    return False
                pytest.fail(f"{self.name} exited at start:\n{self.output()}")
            if self._answers(self.port, process.pid):
                return True
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} did not answer on port {self.port}:\n{self.output()}")
            time.sleep(0.02)

    def stop(self, stop_signal: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server (`stop_signal`, then SIGKILL) and wait until it has exited."""
        self._own()
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        self._signal(process.pid, signal.SIGCONT)  # a frozen server ignores the rest
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def kill(self) -> None:
        """Kill the server outright (SIGKILL), as a crash would, and wait until it is gone."""
        self._own()
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are still accepted, nothing is answered."""
        self._own()
        self._signal(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        self._own()
        self._signal(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port: every connection is cut."""
        self.stop()
        self.start()

    def output(self) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        if self._whole_group:
            _signal_with_children(pid, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _signal_with_children(pid: int, sig: signal.Signals) -> None:
    # Children listed before (a killed parent's are adopted by init) and after (a stopped
    # parent forks no more, but may have forked one since the first look).
    before = _children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    for child in {*before, *_children(pid)}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(Path(stat).parent.name))
    return found
