"""The wallet-router app on our ASGI middleware next to starsessions and Litestar, under uvicorn.

docs/wallet_app.py itself, on `SessionMiddleware` over our Redis store, and the same app on
starsessions (its Redis store, `SessionMiddleware` + `SessionAutoloadMiddleware`) and on
Litestar's server-side sessions (litestar's `RedisStore`), both in asgi_peers.py. One
redis-server (started here on a free 127.0.0.1 port, or --redis-url), every app served by
its own uvicorn with --workers on 127.0.0.1 (all at once: an idle one costs nothing), driven by
concurrent httpx clients (one per concurrent caller, see `Client`), one app at a time. Per app:

- lost grants: one logged-in session, --grants grants of distinct methods, --grant-concurrency
  at a time; then the methods /me shows are counted against the grants answered 200;
- duplicate sessions: --storm concurrent connects of one (origin, wallet) without cookies;
  the distinct ids handed out that /me still finds for that wallet, minus 1 (ideal 0);
- live copies after a login storm: --storm concurrent logins presenting one session's
  cookie; of the old id and every id the logins handed out, how many /me finds (ideal 1);
- requests/s: --concurrency clients, each over its own logged-in session, cycling /me,
  /rpc and /grant (methods from a fixed set of 8) for --duration seconds (or --requests
  requests, whichever comes first), after a warm-up. The time is cut into --rounds rounds,
  each app measured once per round in a rotating order, so that load from elsewhere on the
  machine hits every app alike (as bench_redis.py interleaves its rounds): the median
  round's requests/s, p50/p99 latency over all rounds, and the CPU time the app's processes
  and Redis spent per request (/proc and INFO cpu; with --redis-url, whatever else that
  server serves counts too), a figure less swayed by a busy machine.

The client sends each session's cookie by hand in a ``Cookie`` header and reads every
``Set-Cookie`` itself: our cookie is ``__Host-`` and Secure, which a cookie jar drops over the
plain HTTP spoken to uvicorn here. "errors" counts 5xx answers and transport failures; the
lines under the table add what uvicorn logged (errors, workers that died), the requests/s of
each round, and the client's own CPU time per request (on a small machine it competes).

Run: pip install -e .[bench]; python benchmarks/bench_asgi.py [--workers 4] [--redis-url URL]
    [--grants 2000] [--grant-concurrency 100] [--storm 100] [--concurrency 64]
    [--duration 15] [--rounds 5] [--requests N] [--only ours|starsessions|litestar] [--quick]
    [--store-query "lifetime=900&refresh_on_access=true&max_lifetime=3600"] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import os
import secrets
import shlex
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import redis
from bench_redis import start_server

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "https://dapp.example"
CHAIN = "eip155:1"
# The timeouts of our app's store, as docs/wallet_app.py's default URL has them.
TIMEOUTS = "lifetime=900&refresh_on_access=true&max_lifetime=3600"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 20.0
REQUEST_TIMEOUT_S = 60.0
# What a cookie is set to when a layer clears it: ours and Litestar's expire it, starsessions'
# sets it to two quotes.
CLEARED = ("", "''", '""', "null")


@dataclass(frozen=True)
class Implementation:
    """One app under uvicorn: where it is, how it is configured, which cookie carries the id."""

    name: str
    app: str
    app_dir: str
    factory: bool
    cookie: str
    rotates: bool
    needs: tuple[str, ...]

    def environment(self, redis_url: str, prefix: str, store_query: str) -> dict[str, str]:
        if self.name == "ours":
            joiner = "&" if "?" in redis_url else "?"
            query = f"prefix={prefix}&{store_query}" if store_query else f"prefix={prefix}"
            return {"SESSIONS_URL": f"{redis_url}{joiner}{query}"}
        return {"BENCH_ASGI_REDIS_URL": redis_url, "BENCH_ASGI_PREFIX": prefix}


PEERS = ("starsessions", "litestar")  # asgi_peers.py imports both
IMPLEMENTATIONS = {
    "ours": Implementation(
        "ours", "wallet_app:app", "docs", False, "__Host-wm_session", True, ("fastapi",)
    ),
    "starsessions": Implementation(
        "starsessions", "asgi_peers:starsessions_app", "benchmarks", True, "session", True, PEERS
    ),
    "litestar": Implementation(
        "litestar", "asgi_peers:litestar_app", "benchmarks", True, "session", False, PEERS
    ),
}


class BenchError(Exception):
    """A step the measurements depend on failed: the run stops with this message."""


@dataclass
class Row:
    name: str
    rotates: bool
    grants_ok: int = 0
    lost: int = 0
    duplicates: int = 0
    live_copies: int = 0
    cleared_by_losers: int = 0
    requests: int = 0
    mix_failures: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    app_cpu_ms: float | None = None
    redis_cpu_us: float = 0.0
    rates: list[float] = field(default_factory=list)
    client_cpu_ms: float = 0.0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    logged_errors: int = 0
    worker_deaths: int = 0


# --- serving ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path, workers: int) -> None:
    """Until 127.0.0.1:port accepts and every worker has logged its startup, within a deadline."""
    deadline = time.monotonic() + START_DEADLINE_S
    listening = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"uvicorn exited with {process.returncode} at start:\n{_tail(log)}"
            raise BenchError(msg)
        if not listening:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                listening = True
        if listening:
            text = log.read_text(errors="replace")
            if "Application startup failed" in text:
                raise BenchError(f"the app's startup failed:\n{_tail(log)}")
            if text.count("Application startup complete") >= workers:
                return
        time.sleep(0.05)
    msg = f"uvicorn on 127.0.0.1:{port} not ready within {START_DEADLINE_S:.0f} s:\n{_tail(log)}"
    raise BenchError(msg)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to uvicorn (it stops its workers), SIGKILL to its process group if it hangs."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group of the process started here
        process.wait(STOP_DEADLINE_S)


@contextlib.contextmanager
def serving(
    impl: Implementation, redis_url: str, prefix: str, args: argparse.Namespace, logs: Path
) -> Iterator[Server]:
    """`impl` under uvicorn on a free 127.0.0.1 port until the block ends (also on errors)."""
    port = free_port()
    log = logs / f"uvicorn-{impl.name}.log"
    command = [
        sys.executable, "-m", "uvicorn", impl.app,
        "--app-dir", str(ROOT / impl.app_dir),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(args.workers),
        "--log-level", "info", "--no-access-log",  # info: each worker logs its startup
        # "on", not "auto": a failing startup (a refused store URL) must stop uvicorn, where
        # "auto" would take it for an app without lifespan and answer every request with 500.
        "--lifespan", "on",
        # Idle pooled connections outlive the pauses between phases: a server closing one
        # just as the client reuses it would count as an error that is neither app's.
        "--timeout-keep-alive", "300",
    ]  # fmt: skip
    if impl.factory:
        command.append("--factory")
    env = {**os.environ, **impl.environment(redis_url, prefix, args.store_query)}
    with log.open("wb") as out:
        # Its own session: a Ctrl-C here reaches only this script, which then stops uvicorn.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(process, port, log, args.workers)
        yield Server(port, process.pid, log)
    finally:
        _stop(process)


def group_cpu_s(pgid: int) -> float | None:
    """CPU seconds (user + system) of every live process in group `pgid`; None without /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- the client side --------------------------------------------------------------------------


@dataclass
class Tally:
    """5xx answers and transport failures of one app's clients, with the first few described."""

    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 3:
            self.samples.append(what)


class Client:
    """One client of one app, one request at a time, each presenting the session id it is
    given in a Cookie header.

    Each concurrent caller has a client of its own, with one connection: httpx's pool looks
    over every connection and waiting request at each step, so one client shared by 64 callers
    spends several milliseconds of CPU per request and would measure itself, not the app.
    """

    def __init__(self, http: httpx.AsyncClient, impl: Implementation, tally: Tally) -> None:
        self.http = http
        self.impl = impl
        self.tally = tally

    async def call(
        self, method: str, path: str, session_id: str | None = None, body: Any = None
    ) -> httpx.Response | None:
        headers = {} if session_id is None else {"cookie": f"{self.impl.cookie}={session_id}"}
        try:
            response = await self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.tally.add(f"{method} {path}: {type(exc).__name__} {exc}")
            return None
        if response.status_code >= 500:
            self.tally.add(f"{method} {path}: {_shown(response)}")
        return response

    def set_id(self, response: httpx.Response | None) -> str | None:
        """The id this response's Set-Cookie gives ('' if it clears the cookie, None if none)."""
        if response is None:
            return None
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name.strip() == self.impl.cookie:
                value = rest.split(";", 1)[0].strip()
                return "" if value in CLEARED else value
        return None

    async def connect(self, wallet: str) -> httpx.Response | None:
        return await self.call("POST", "/connect", body={"origin": ORIGIN, "wallet": wallet})

    async def login(self, session_id: str, wallet: str) -> httpx.Response | None:
        return await self.call("POST", "/login", session_id, {"signature": f"signed-by-{wallet}"})

    async def grant(self, session_id: str, *methods: str) -> httpx.Response | None:
        return await self.call("POST", "/grant", session_id, {"chain": CHAIN, "methods": methods})

    async def me(self, session_id: str) -> httpx.Response | None:
        return await self.call("GET", "/me", session_id)

    async def logged_in(self, wallet: str) -> str:
        """A new session for `wallet`, logged in: its (rotated) id."""
        connected = await self.connect(wallet)
        session_id = self.set_id(connected)
        if connected is None or connected.status_code != 200 or not session_id:
            raise BenchError(f"{self.impl.name}: connect failed: {_shown(connected)}")
        answer = await self.login(session_id, wallet)
        if answer is None or answer.status_code != 200:
            raise BenchError(f"{self.impl.name}: login failed: {_shown(answer)}")
        return self.set_id(answer) or session_id


def _shown(response: httpx.Response | None) -> str:
    if response is None:
        return "no response"
    return f"{response.status_code} {response.text[:200]!r}"


_wallets = itertools.count()


def fresh_wallet(tag: str) -> str:
    return f"0x{tag}{next(_wallets):06d}{secrets.token_hex(4)}"


async def lost_grants(clients: Sequence[Client], grants: int, at_once: int) -> tuple[int, int]:
    """(grants answered 200, of those the methods /me does not show afterwards)."""
    session_id = await clients[0].logged_in(fresh_wallet("a"))
    numbers = iter(range(grants))  # shared: each caller takes the next grant to send
    granted: set[str] = set()

    async def caller(client: Client) -> None:
        for n in numbers:
            answer = await client.grant(session_id, f"method_{n}")
            if answer is not None and answer.status_code == 200:
                granted.add(f"method_{n}")

    await asyncio.gather(*(caller(client) for client in clients[:at_once]))
    shown = await clients[0].me(session_id)
    if shown is None or shown.status_code != 200:
        raise BenchError(f"{clients[0].impl.name}: /me after the grants: {_shown(shown)}")
    present = set(shown.json()["permissions"].get(CHAIN, ()))
    return len(granted), len(granted - present)


async def live_for(clients: Sequence[Client], ids: set[str], wallet: str) -> int:
    """How many of `ids` /me finds as a live session of `wallet`."""
    # More ids than clients (a storm's answers and the old id): some clients take two.
    answers = await asyncio.gather(
        *(clients[n % len(clients)].me(session_id) for n, session_id in enumerate(ids))
    )
    return sum(
        1
        for answer in answers
        if answer is not None
        and answer.status_code == 200
        and answer.json().get("wallet") == wallet
    )


async def duplicate_sessions(clients: Sequence[Client], storm: int) -> int:
    """Live sessions of one wallet after `storm` concurrent cookieless connects, minus 1."""
    wallet = fresh_wallet("d")
    answers = await asyncio.gather(*(client.connect(wallet) for client in clients[:storm]))
    ids = {
        session_id
        for answer in answers
        if answer is not None and answer.status_code == 200
        if (session_id := clients[0].set_id(answer))
    }
    return await live_for(clients, ids, wallet) - 1


async def login_storm(clients: Sequence[Client], storm: int) -> tuple[int, int]:
    """(live ids among the old and all handed out, answers other than 200 that clear the cookie)
    after `storm` concurrent logins presenting one session's id."""
    wallet = fresh_wallet("l")
    connected = await clients[0].connect(wallet)
    old = clients[0].set_id(connected)
    if not old:
        raise BenchError(f"{clients[0].impl.name}: connect failed: {_shown(connected)}")
    answers = await asyncio.gather(*(client.login(old, wallet) for client in clients[:storm]))
    ids = {old}
    cleared = 0
    for answer in answers:
        given = clients[0].set_id(answer)
        if answer is not None and answer.status_code == 200 and given:
            ids.add(given)
        elif given == "":
            cleared += 1
    return await live_for(clients, ids, wallet), cleared


@dataclass
class Mix:
    latencies: list[float]
    failures: int = 0


async def run_mix(
    clients: Sequence[Client], sessions: Sequence[str], seconds: float, limit: int
) -> Mix:
    """Each session's own client cycles /me, /rpc, /grant until `seconds` or `limit` requests."""
    mix = Mix([])
    end = time.monotonic() + seconds
    issued = 0

    async def caller(client: Client, session_id: str) -> None:
        nonlocal issued
        for n in itertools.count():
            if issued >= limit or time.monotonic() >= end:
                return
            issued += 1
            kind = n % 3
            started = time.perf_counter()
            if kind == 0:
                answer = await client.me(session_id)
            elif kind == 1:
                answer = await client.call("POST", f"/rpc/{CHAIN}/eth_accounts", session_id)
            else:
                answer = await client.grant(session_id, f"method_{n % 8}")
            mix.latencies.append(time.perf_counter() - started)
            if answer is None or answer.status_code != 200:
                mix.failures += 1

    await asyncio.gather(
        *(caller(client, session_id) for client, session_id in zip(clients, sessions, strict=False))
    )
    return mix


@dataclass
class Subject:
    """One app being measured: its server, its clients, its sessions and what the mix measured."""

    impl: Implementation
    server: Server
    clients: list[Client]
    tally: Tally
    row: Row
    sessions: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    app_cpu_s: float | None = 0.0
    redis_cpu_s: float = 0.0
    own_cpu_s: float = 0.0


async def correctness(subject: Subject, args: argparse.Namespace) -> None:
    clients, row = subject.clients, subject.row
    row.grants_ok, row.lost = await lost_grants(clients, args.grants, args.grant_concurrency)
    row.duplicates = await duplicate_sessions(clients, args.storm)
    row.live_copies, row.cleared_by_losers = await login_storm(clients, args.storm)


async def prepare_mix(subject: Subject, args: argparse.Namespace) -> None:
    """A logged-in session per mix client, each allowed eth_accounts; then the warm-up."""

    async def ready_session(client: Client) -> str:
        session_id = await client.logged_in(fresh_wallet("r"))
        answer = await client.grant(session_id, "eth_accounts")
        if answer is None or answer.status_code != 200:
            raise BenchError(f"{client.impl.name}: grant failed: {_shown(answer)}")
        return session_id

    clients = subject.clients[: args.concurrency]
    subject.sessions = await asyncio.gather(*(ready_session(client) for client in clients))
    await run_mix(subject.clients, subject.sessions, args.warm_up, args.requests)


async def mix_round(
    subject: Subject, redis_client: redis.Redis, seconds: float, limit: int
) -> None:
    """One round of the mix, its requests, latencies and CPU time added to the subject's."""
    app_cpu, store_cpu = group_cpu_s(subject.server.pid), redis_cpu_s(redis_client)
    wall, own_cpu = time.perf_counter(), time.process_time()
    mix = await run_mix(subject.clients, subject.sessions, seconds, limit)
    wall, own_cpu = time.perf_counter() - wall, time.process_time() - own_cpu
    app_after, store_after = group_cpu_s(subject.server.pid), redis_cpu_s(redis_client)
    subject.latencies += mix.latencies
    subject.rates.append(len(mix.latencies) / wall)
    subject.row.mix_failures += mix.failures
    subject.wall_s += wall
    subject.own_cpu_s += own_cpu
    subject.redis_cpu_s += store_after - store_cpu
    if app_cpu is None or app_after is None or subject.app_cpu_s is None:
        subject.app_cpu_s = None
    else:
        subject.app_cpu_s += app_after - app_cpu


def summarize(subject: Subject) -> None:
    row, count = subject.row, len(subject.latencies)
    if count < 2:
        raise BenchError(f"{subject.impl.name}: only {count} requests in the mix")
    cuts = statistics.quantiles(subject.latencies, n=100, method="inclusive")
    row.requests, row.rps, row.rates = count, statistics.median(subject.rates), subject.rates
    row.p50_ms, row.p99_ms = cuts[49] * 1e3, cuts[98] * 1e3
    if subject.app_cpu_s is not None:
        row.app_cpu_ms = subject.app_cpu_s / count * 1e3
    row.redis_cpu_us = subject.redis_cpu_s / count * 1e6
    row.client_cpu_ms = subject.own_cpu_s / count * 1e3
    row.errors, row.error_samples = subject.tally.errors, subject.tally.samples


async def measure(
    served: Sequence[tuple[Implementation, Server]], redis_url: str, args: argparse.Namespace
) -> list[Row]:
    """Every app's correctness phases, then the mix in rounds, the apps in turn in each round
    (in a rotating order), so that load from elsewhere on the machine hits them alike."""
    lanes = max(args.concurrency, args.storm, args.grant_concurrency)
    # Made once and never used (plain HTTP): a context per client would cost 40 ms each.
    tls = ssl.create_default_context()
    redis_client = redis.Redis.from_url(redis_url)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(redis_client.close)
        subjects = []
        for impl, server in served:
            tally, clients = Tally(), []
            for _ in range(lanes):
                http = httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{server.port}",
                    # A jar that keeps nothing: each request presents exactly the id it is given.
                    cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                    timeout=REQUEST_TIMEOUT_S,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    verify=tls,
                    trust_env=False,  # no proxy from the environment between us and 127.0.0.1
                )
                clients.append(Client(await stack.enter_async_context(http), impl, tally))
            subjects.append(Subject(impl, server, clients, tally, Row(impl.name, impl.rotates)))
        for subject in subjects:
            await correctness(subject, args)
        for subject in subjects:
            await prepare_mix(subject, args)
        seconds, limit = args.duration / args.rounds, -(-args.requests // args.rounds)
        for turn in range(args.rounds):
            for n in range(len(subjects)):
                await mix_round(subjects[(turn + n) % len(subjects)], redis_client, seconds, limit)
        for subject in subjects:
            summarize(subject)
    return [subject.row for subject in subjects]


# --- running ----------------------------------------------------------------------------------


def _log_problems(log: Path) -> tuple[int, int, str]:
    """Errors and worker deaths in uvicorn's log, and its lines from the first error on."""
    lines = log.read_text(errors="replace").splitlines()
    errors = sum(line.startswith("ERROR:") for line in lines)
    deaths = sum("died" in line for line in lines if line.startswith("INFO:"))
    first = next((n for n, line in enumerate(lines) if line.startswith("ERROR:")), None)
    return errors, deaths, "" if first is None else "\n".join(lines[first : first + 60])


def _drop_keys(redis_url: str, pattern: str) -> None:
    """Remove this run's keys from a server the caller gave (at most a million, in batches)."""
    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in itertools.islice(client.scan_iter(match=pattern, count=1000), 1_000_000):
            batch.append(key)
            if len(batch) == 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def run(args: argparse.Namespace, names: Sequence[str]) -> list[Row]:
    """Every app served at once (an idle one costs nothing), measured, stopped; then Redis."""
    run_tag = f"bench_asgi_{secrets.token_hex(4)}_"
    with tempfile.TemporaryDirectory(prefix="bench_asgi_") as directory:
        logs = Path(directory) if args.logs is None else Path(args.logs)
        logs.mkdir(parents=True, exist_ok=True)
        redis_server = None
        if args.redis_url is None:
            redis_server, port = start_server(directory)
            redis_url = f"redis://127.0.0.1:{port}/0"
        else:
            redis_url = args.redis_url
        try:
            served = []
            with contextlib.ExitStack() as stack:
                for name in names:
                    impl = IMPLEMENTATIONS[name]
                    server = stack.enter_context(
                        serving(impl, redis_url, f"{run_tag}{name}_", args, logs)
                    )
                    served.append((impl, server))
                rows = asyncio.run(measure(served, redis_url, args))
            for row, (_, server) in zip(rows, served, strict=True):
                row.logged_errors, row.worker_deaths, first = _log_problems(server.log)
                if first:
                    print(
                        f"{row.name}: uvicorn's log, from its first error:\n{first}",
                        file=sys.stderr,
                    )
        finally:
            if redis_server is not None:
                redis_server.terminate()
                redis_server.wait(STOP_DEADLINE_S)
            else:
                with contextlib.suppress(redis.RedisError):  # never hide why the run stopped
                    _drop_keys(redis_url, f"{run_tag}*")
    return rows


def print_table(rows: Sequence[Row], args: argparse.Namespace) -> None:
    print(
        f"uvicorn --workers {args.workers}; lost grants: {args.grants:,} grants, "
        f"{args.grant_concurrency} at a time; storms: {args.storm} concurrent requests; "
        f"mix: {args.concurrency} clients, {args.duration:g} s in {args.rounds} interleaved "
        f"rounds after {args.warm_up:g} s warm-up; "
        f"ours: SESSIONS_URL ...?prefix=...&{args.store_query}"
    )
    print(
        "| implementation | lost grants | duplicate sessions | live copies after login storm "
        "| requests/s | p50 ms | p99 ms | app CPU ms/req | Redis CPU us/req | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        copies = f"{row.live_copies}" if row.rotates else f"{row.live_copies}*"
        app_cpu = "-" if row.app_cpu_ms is None else f"{row.app_cpu_ms:.2f}"
        print(
            f"| {row.name} | {row.lost} | {row.duplicates} | {copies} | {row.rps:,.0f} "
            f"| {row.p50_ms:.1f} | {row.p99_ms:.1f} | {app_cpu} | {row.redis_cpu_us:.0f} "
            f"| {row.errors} |"
        )
    for row in rows:
        notes = [f"{row.grants_ok:,} of {args.grants:,} grants answered 200"]
        notes.append(f"{row.requests:,} mix requests, {row.mix_failures} not answered 200")
        notes.append("requests/s by round " + ", ".join(f"{rate:,.0f}" for rate in row.rates))
        notes.append(f"client CPU {row.client_cpu_ms:.2f} ms/req")
        if row.cleared_by_losers:
            notes.append(f"{row.cleared_by_losers} losing logins' answers cleared the cookie")
        if row.logged_errors:
            notes.append(f"{row.logged_errors} errors in uvicorn's log")
        if row.worker_deaths:
            notes.append(f"{row.worker_deaths} workers died (or missed uvicorn's health check)")
        if row.error_samples:
            notes.append("errors such as: " + " / ".join(row.error_samples))
        print(f"{row.name}: " + "; ".join(notes))
    if any(not row.rotates for row in rows):
        print("* no id rotation at login (Litestar has none): one copy is all there can be")


# What each option is unless given: a full run, and a --quick smoke run.
FULL = {"workers": 4, "grants": 2000, "grant_concurrency": 100, "concurrency": 64,
        "duration": 15.0, "rounds": 5}  # fmt: skip
QUICK = {"workers": 1, "grants": 200, "grant_concurrency": 50, "concurrency": 16,
         "duration": 2.0, "rounds": 1}  # fmt: skip
COUNTS = ("workers", "grants", "grant_concurrency", "storm", "concurrency", "rounds", "requests")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, help="uvicorn workers per app (4; --quick: 1)")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument(
        "--store-query",
        default=TIMEOUTS,
        help=f"our app's SESSIONS_URL query after its prefix (default: {TIMEOUTS})",
    )
    parser.add_argument("--grants", type=int, help="grants to one session (2000; --quick: 200)")
    parser.add_argument("--grant-concurrency", type=int, help="grants at a time (100; quick: 50)")
    parser.add_argument("--storm", type=int, default=100, help="concurrent connects, logins")
    parser.add_argument("--concurrency", type=int, help="clients in the mix (64; --quick: 16)")
    parser.add_argument(
        "--duration", type=float, help="seconds of the mix, per app (15; --quick: 2)"
    )
    parser.add_argument("--rounds", type=int, help="the mix's duration in rounds (5; --quick: 1)")
    parser.add_argument(
        "--requests", type=int, default=1_000_000, help="at most this many mix requests"
    )
    parser.add_argument(
        "--only", action="append", choices=tuple(IMPLEMENTATIONS), help="(repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--logs", help="keep uvicorn's logs in this directory")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.warm_up = 0.5 if args.quick else 3.0
    for key in COUNTS:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


def main() -> None:
    args = parse_args()
    names = list(dict.fromkeys(args.only or IMPLEMENTATIONS))
    missing = {
        name: [
            need for need in IMPLEMENTATIONS[name].needs if importlib.util.find_spec(need) is None
        ]
        for name in names
    }
    for name, needs in missing.items():
        if needs and args.only:
            raise SystemExit(f"{name} needs {', '.join(needs)}: pip install -e .[bench]")
        if needs:
            print(f"skipping {name}: {', '.join(needs)} not installed", file=sys.stderr)
    names = [name for name in names if not missing[name]]
    print("python benchmarks/bench_asgi.py " + shlex.join(sys.argv[1:]))
    try:
        rows = run(args, names)
    except BenchError as exc:
        raise SystemExit(f"bench_asgi: {exc}") from None
    except KeyboardInterrupt:  # every server is stopped by now
        raise SystemExit("bench_asgi: interrupted") from None
    print_table(rows, args)


if __name__ == "__main__":
    main()
