"""The walletmesh-sessions command, run through its real entry points in subprocesses."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from walletmesh_sessions import (
    SessionData,
    SessionRecord,
    SessionStoreConfig,
    StoreUnavailableError,
    open_store,
)
from walletmesh_sessions._core.codec import inspect_record
from walletmesh_sessions._local.sqlite import SCHEMA, TABLE
from walletmesh_sessions._local.sqlite import backend as sqlite_backend
from walletmesh_sessions._tools import cli as _cli
from walletmesh_sessions._tools.cli import arguments, entry, progress

ROOT = Path(__file__).parent.parent
LIVE = {
    "live-a": SessionData("a", "https://app.example.com", {"eip155:1": ["eth_accounts"]}),
    "live-b": SessionData("b", "https://app.example.com", {"eip155:137": ["personal_sign"]}),
    "live-c": SessionData("c", "https://dapp.example.org"),
}
CORRUPT = "{not json"


SCRIPT = Path(sys.executable).parent / "walletmesh-sessions"


def environment(url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without the command's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETMESH_SESSIONS_")}
    if url is not None:
        env["WALLETMESH_SESSIONS_URL"] = url
    return {**env, **extra}


def run(
    *args: str,
    cwd: Path,
    url: str | None = None,
    stdin: str = "",
    module: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would: the console script, or python -m."""
    env = environment(url, **(env or {}))
    command = [sys.executable, "-m", "walletmesh_sessions"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def populate(url: str) -> None:
    """Three live sessions, one expired an hour ago (by the real clock) and one corrupt."""

    async def write() -> None:
        async with open_store(url, SessionStoreConfig(lifetime=3600)) as store:
            for session_id, data in LIVE.items():
                await store.set(session_id, data)
        past = time.time() - 7200
        config = SessionStoreConfig(lifetime=3600)
        async with open_store(url, config, clock=lambda: past) as store:
            await store.set("old", SessionData("o", "https://old.example"))

    anyio.run(write)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A populated store of each durable kind, with a corrupt record planted raw."""
    if request.param == "sqlite":
        path = tmp_path / "ops.db"
        url = f"sqlite:///{path}"
        populate(url)
        with sqlite3.connect(path) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {TABLE} (key, value) VALUES ('wm_session_broken', ?)", (CORRUPT,)
            )
            conn.execute(f"INSERT INTO {TABLE} (key, value) VALUES ('theme', 'dark')")
        return url
    client = request.getfixturevalue("redis_client")
    url = str(request.getfixturevalue("redis_url"))
    populate(url)
    client.set("wm_session_broken", CORRUPT)
    client.set("theme", "dark")
    return url


class TestCommands:
    """Every command against SQLite and Redis."""

    def test_list_table(self, store_url: str, tmp_path: Path) -> None:
        """A readable table with every record and its state."""
        result = run("list", "--store", store_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split() == [
            "SESSION",
            "ID",
            "STATE",
            "EXPIRES",
            "(UTC)",
            "ORIGIN",
            "PERMISSIONS",
        ]
        states = {line.split()[0]: line.split()[1] for line in lines[1:-1]}
        assert states == {
            "broken": "unreadable",
            "live-a": "live",
            "live-b": "live",
            "live-c": "live",
            "old": "expired",
        }
        assert "eip155:1(1)" in result.stdout
        assert lines[-1].startswith("5 record(s) in ")

    def test_list_json(self, store_url: str, tmp_path: Path) -> None:
        """--json gives the wire-format data of each record."""
        result = run("list", "--json", cwd=tmp_path, url=store_url)
        assert result.returncode == 0, result.stderr
        records = {r["sessionId"]: r for r in json.loads(result.stdout)}
        assert records["live-a"]["data"] == {
            "id": "a",
            "origin": "https://app.example.com",
            "permissions": {"eip155:1": ["eth_accounts"]},
        }
        assert records["broken"]["state"] == "unreadable"
        assert records["broken"]["error"]
        assert records["old"]["state"] == "expired"

    def test_show(self, store_url: str, tmp_path: Path) -> None:
        """show prints one session; a missing id is exit 1 with one line on stderr."""
        result = run("show", "live-b", "--store", store_url, cwd=tmp_path, module=True)
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["data"]["permissions"] == {"eip155:137": ["personal_sign"]}
        assert shown["expires"].endswith("Z")
        missing = run("show", "nope", "--store", store_url, cwd=tmp_path)
        assert missing.returncode == 1
        assert missing.stdout == ""
        assert missing.stderr.count("\n") == 1
        assert "no session with id 'nope'" in missing.stderr

    def test_delete(self, store_url: str, tmp_path: Path) -> None:
        """delete removes one session; deleting a missing one is exit 1."""
        assert run("delete", "live-a", "--store", store_url, cwd=tmp_path).returncode == 0
        assert run("show", "live-a", "--store", store_url, cwd=tmp_path).returncode == 1
        assert run("show", "live-b", "--store", store_url, cwd=tmp_path).returncode == 0
        assert run("delete", "live-a", "--store", store_url, cwd=tmp_path).returncode == 1

    def test_clean(self, store_url: str, tmp_path: Path) -> None:
        """clean removes the expired session, says how many, leaves the corrupt one."""
        result = run("clean", "--store", store_url, cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, "removed 1 expired session(s)\n")
        again = run("clean", "--store", store_url, cwd=tmp_path).stdout
        assert again == "removed 0 expired session(s)\n"
        assert run("show", "broken", "--store", store_url, cwd=tmp_path).returncode == 0

    def test_clear_asks(self, store_url: str, tmp_path: Path) -> None:
        """clear asks first: 'n' (or no answer) keeps everything; 'y' removes the store's keys."""
        for answer in ("n\n", ""):
            refused = run("clear", "--store", store_url, cwd=tmp_path, stdin=answer)
            assert refused.returncode == 1
            assert "aborted" in refused.stderr
        stats = json.loads(run("stats", "--json", "--store", store_url, cwd=tmp_path).stdout)
        assert stats["sessions"] == 3
        accepted = run("clear", "--store", store_url, cwd=tmp_path, stdin="y\n")
        assert accepted.returncode == 0, accepted.stderr
        assert "removed 5 record(s)" in accepted.stdout
        listing = json.loads(run("list", "--json", "--store", store_url, cwd=tmp_path).stdout)
        assert listing == []

    def test_clear_yes(self, store_url: str, tmp_path: Path) -> None:
        """--yes does not ask."""
        result = run("clear", "--yes", "--store", store_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "[y/N]" not in result.stderr

    def test_stats(self, store_url: str, tmp_path: Path) -> None:
        """Counts, the expiry range and sessions per origin, as text and as JSON."""
        result = run("stats", "--json", "--store", store_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        stats = json.loads(result.stdout)
        assert {k: stats[k] for k in ("sessions", "expired", "unreadable", "neverExpire")} == {
            "sessions": 3,
            "expired": 1,
            "unreadable": 1,
            "neverExpire": 0,
        }
        assert stats["origins"] == {"https://app.example.com": 2, "https://dapp.example.org": 1}
        assert stats["soonestExpiry"] <= stats["latestExpiry"]
        text = run("stats", "--store", store_url, cwd=tmp_path).stdout
        assert "sessions:       3" in text
        assert "never expire:   0" in text
        assert "       2  https://app.example.com" in text

    def test_json_keys_are_camel_case(self, store_url: str, tmp_path: Path) -> None:
        """list --json and stats --json share one key style: the wire format's camelCase."""
        stats = json.loads(run("stats", "--json", "--store", store_url, cwd=tmp_path).stdout)
        listing = json.loads(run("list", "--json", "--store", store_url, cwd=tmp_path).stdout)
        assert set(stats) == {
            "store",
            "sessions",
            "expired",
            "unreadable",
            "neverExpire",
            "soonestExpiry",
            "latestExpiry",
            "origins",
        }
        assert set(listing[0]) == {"sessionId", "state", "expiresAt", "expires", "data", "error"}
        for key in [*stats, *listing[0]]:
            assert "_" not in key


class TestUsage:
    """Defaults, help and user mistakes."""

    def test_default_store_is_sqlite_in_cwd(self, tmp_path: Path) -> None:
        """Without --store or the variable, the command uses sessions.db here."""
        populate(f"sqlite:///{tmp_path / 'sessions.db'}")
        result = run("stats", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["sessions"] == 3

    def test_missing_file_is_not_created(self, tmp_path: Path) -> None:
        """Pointing at a SQLite file that does not exist is an error, and creates nothing."""
        result = run("stats", cwd=tmp_path)
        assert result.returncode == 3
        assert "no session file at 'sessions.db'" in result.stderr
        assert not (tmp_path / "sessions.db").exists()

    @pytest.mark.parametrize(
        "command", [[], ["list"], ["show"], ["delete"], ["clean"], ["clear"], ["stats"]]
    )
    def test_help(self, command: list[str], tmp_path: Path) -> None:
        """--help works everywhere and mentions the store option."""
        result = run(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert "--store URL" in result.stdout

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["--store", "ftp://x", "list"], 2, "unknown store URL scheme"),
            (["--store", "sqlite:///db?lifetime=-5", "list"], 2, "lifetime must be > 0"),
            (["--store", "sqlite:///db?max_lifetime=soon", "list"], 2, "max_lifetime in"),
            (["--store", "sqlite:///db?max_lifetime=0", "list"], 2, "max_lifetime must be > 0"),
            (["--store", "sqlite:///db?lifetime=1&lifetime=2", "list"], 2, "given twice"),
            (["--store", "sqlite:///s.db?colour=red", "list"], 2, "unknown option(s) colour"),
            (["--store", "memory://", "stats"], 2, "a memory store lives inside one process"),
            (["--store", "MEMORY://", "list"], 2, "a memory store lives inside one process"),
            (["--store", "sqlite:///%00x.db", "stats"], 2, "must not hold a NUL"),
            (["--store", "redis://127.0.0.1:1/0?colour=red", "list"], 2, "unknown parameter"),
            (["--store", "redis://127.0.0.1:notaport/0", "list"], 2, "not a Redis URL"),
            (["list", "--store", "redis://127.0.0.1:1/0"], 3, "error:"),
            (["frobnicate"], 2, "invalid choice"),
            (["--bogus", "list"], 2, "unrecognized arguments: --bogus"),
            (["show"], 2, "the following arguments are required: ID"),
            (["--store", "redis://127.0.0.1:1/0", "show", ""], 2, "session id must be a non"),
            (["show", "-abc"], 2, "use -- before an id that starts with '-'"),
        ],
    )
    def test_mistakes_are_one_line(
        self, args: list[str], code: int, message: str, tmp_path: Path
    ) -> None:
        """User mistakes give an exit code and a one-line message, never a traceback."""
        result = run(*args, cwd=tmp_path)
        assert result.returncode == code
        assert message in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr

    def test_url_password_is_not_printed(self, tmp_path: Path) -> None:
        """A password in the store URL never reaches the output."""
        result = run("--store", "redis://user:hunter2@127.0.0.1:1/0", "stats", cwd=tmp_path)
        assert result.returncode == 3
        assert "hunter2" not in result.stderr + result.stdout

    @pytest.mark.parametrize("where", ["option", "variable"])
    def test_libpq_key_value_string_is_refused_masked(self, tmp_path: Path, where: str) -> None:
        """A libpq key=value string is a usage error (2), in one line, its password masked."""
        dsn = "host=127.0.0.1 port=1 dbname=app password=hun%ter2"
        args = ("--store", dsn, "stats") if where == "option" else ("stats",)
        result = run(*args, cwd=tmp_path, url=dsn if where == "variable" else None)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert "key=value" in result.stderr
        for form in ("hun%ter2", "hun%25ter2", "ter2"):
            assert form not in result.stderr + result.stdout
        assert not list(tmp_path.iterdir())  # no SQLite file made of it


def plant(path: Path, records: dict[str, str]) -> None:
    """Raw rows in a SQLite store file: key (without prefix) -> value as written."""
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            f"INSERT INTO {TABLE} (key, value) VALUES (?, ?)",
            [(f"wm_session_{k}", v) for k, v in records.items()],
        )


def record(session_id: str, expires_at: str = "") -> str:
    """A wire-format record, with `expires_at` as literal JSON text if given."""
    data = json.dumps({"id": session_id, "origin": "https://far.example", "permissions": {}})
    return f'{{"data":{data}' + (f',"expiresAt":{expires_at}' if expires_at else "") + "}"


class TestIds:
    """Ids that start with '-' are reachable with --, and the error says so."""

    def test_double_dash(self, tmp_path: Path) -> None:
        """show -- -abc and delete -- -abc work on a session whose id starts with '-'."""
        plant(tmp_path / "sessions.db", {"-abc": record("-abc")})
        shown = run("show", "--", "-abc", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["sessionId"] == "-abc"
        assert run("delete", "--", "-abc", cwd=tmp_path).returncode == 0
        assert run("show", "--", "-abc", cwd=tmp_path).returncode == 1

    @pytest.mark.parametrize("command", ["show", "delete"])
    def test_hint(self, command: str, tmp_path: Path) -> None:
        """Without --, the one-line error shows the command line that works."""
        result = run(command, "-abc", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1
        expected = (
            f"use -- before an id that starts with '-': walletmesh-sessions {command} -- -abc"
        )
        assert expected in result.stderr


class TestStoreOption:
    """--store takes a URL or a bare SQLite path; --version names the release."""

    def test_relative_path(self, tmp_path: Path) -> None:
        """A bare relative path is that SQLite file, relative to the working directory."""
        populate(f"sqlite:///{tmp_path / 'here.db'}")
        result = run("stats", "--json", "--store", "here.db", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["sessions"] == 3

    def test_absolute_path_and_variable(self, tmp_path: Path) -> None:
        """A bare absolute path works too, also from the environment variable."""
        path = tmp_path / "dir with space" / "abs#1.db"
        path.parent.mkdir()
        populate(f"sqlite:///{path}".replace("#", "%23").replace(" ", "%20"))
        result = run("stats", "--json", "--store", str(path), cwd=ROOT)
        assert json.loads(result.stdout)["sessions"] == 3, result.stderr
        assert json.loads(run("stats", "--json", cwd=ROOT, url=str(path)).stdout)["sessions"] == 3

    def test_home_expanded(self, tmp_path: Path) -> None:
        """A leading ~ is the user's home directory."""
        populate(f"sqlite:///{tmp_path / 'home.db'}")
        result = run("list", "--store", "~/home.db", cwd=ROOT, env={"HOME": str(tmp_path)})
        assert result.returncode == 0, result.stderr
        assert "4 record(s)" in result.stdout

    def test_missing_path(self, tmp_path: Path) -> None:
        """A bare path that does not exist is the usual missing-file error, and creates nothing."""
        result = run("list", "--store", "nope.db", cwd=tmp_path)
        assert result.returncode == 3
        assert "no session file at 'nope.db'" in result.stderr
        assert not (tmp_path / "nope.db").exists()

    def test_whole_configuration_in_the_url(self, tmp_path: Path) -> None:
        """max_lifetime in the URL (here from the variable) reaches the store: clean uses it."""
        path = tmp_path / "aged.db"
        now = round(time.time() * 1000)

        async def write() -> None:
            async with open_store(f"sqlite:///{path}", SessionStoreConfig(lifetime=3600)) as store:
                aged = SessionData("aged", "https://a.example", created_at=now - 7_200_000)
                await store.set("aged", aged)
                await store.set("young", SessionData("young", "https://a.example", created_at=now))

        anyio.run(write)
        url = f"sqlite:///{path}?lifetime=3600&refresh_on_access=true&max_lifetime=3600"
        plain = run("clean", "--store", f"sqlite:///{path}", cwd=tmp_path).stdout
        assert plain == "removed 0 expired session(s)\n"
        result = run("clean", cwd=tmp_path, url=url)
        assert (result.returncode, result.stdout) == (0, "removed 1 expired session(s)\n")
        listed = json.loads(run("list", "--json", cwd=tmp_path, url=url).stdout)
        assert [record["sessionId"] for record in listed] == ["young"]

    def test_version(self, tmp_path: Path) -> None:
        """--version prints the installed distribution's version."""
        result = run("--version", cwd=tmp_path)
        assert result.returncode == 0
        assert result.stdout == f"walletmesh-sessions {metadata.version('walletmesh-sessions')}\n"


class TestFarFuture:
    """Expiries beyond what a datetime holds never crash the command."""

    @pytest.fixture
    def far(self, tmp_path: Path) -> Path:
        """One session stored with lifetime=timedelta.max and two planted far in the future."""
        path = tmp_path / "sessions.db"
        plant(path, {"e20": record("e20", "1e20"), "int": record("int", "10" + "0" * 19)})

        async def write() -> None:
            async with open_store(
                f"sqlite:///{path}", SessionStoreConfig(lifetime=timedelta.max)
            ) as s:
                await s.set("max", SessionData("max", "https://far.example"))

        anyio.run(write)
        return tmp_path

    def test_list(self, far: Path) -> None:
        """The table says "far future"; --json keeps the raw ms next to it."""
        result = run("list", cwd=far)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("far future") == 3
        listing = json.loads(run("list", "--json", cwd=far).stdout)
        assert {r["expires"] for r in listing} == {"far future"}
        assert all(r["expiresAt"] > 10**15 for r in listing)

    @pytest.mark.parametrize("session_id", ["e20", "int", "max"])
    def test_show(self, far: Path, session_id: str) -> None:
        """show prints the session."""
        result = run("show", session_id, cwd=far)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["expires"] == "far future"

    def test_stats(self, far: Path) -> None:
        """stats counts them as live and gives the range."""
        result = run("stats", "--json", cwd=far)
        assert result.returncode == 0, result.stderr
        stats = json.loads(result.stdout)
        assert (stats["sessions"], stats["latestExpiry"]) == (3, "far future")
        assert run("stats", cwd=far).returncode == 0


class TestFailures:
    """Every failure is one line on stderr with its exit code."""

    @pytest.mark.parametrize("args", [["list"], ["list", "--json"]])
    def test_closed_pipe(self, args: list[str], tmp_path: Path) -> None:
        """A reader that stops early (| head) ends the command quietly, exit 1, no traceback."""
        plant(tmp_path / "sessions.db", {f"s{i:05}": record(f"s{i:05}") for i in range(3000)})
        with subprocess.Popen(
            [str(SCRIPT), *args],
            cwd=tmp_path,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            assert process.stdout.readline()
            process.stdout.close()  # far more output is still to come than a pipe holds
            stderr = process.stderr.read()
            assert process.wait(timeout=60) == 1
        assert stderr == ""

    def test_unexpected_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bug is one masked line and exit 3; the traceback only with the debug variable."""

        def broken(url: str) -> None:
            raise RuntimeError(f"boom\nat {url}")

        monkeypatch.setattr(entry, "open_store", broken)
        monkeypatch.delenv("WALLETMESH_SESSIONS_DEBUG", raising=False)
        url = "redis://u:Sekr3t@h:6379/0?password=Sekr3t"
        assert _cli.main(["--store", url, "stats"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "unexpected error: RuntimeError: boom" in err
        assert "WALLETMESH_SESSIONS_DEBUG=1" in err
        assert "Sekr3t" not in err
        assert "Traceback" not in err
        monkeypatch.setenv("WALLETMESH_SESSIONS_DEBUG", "1")
        assert _cli.main(["--store", url, "stats"]) == 3
        err = capsys.readouterr().err
        assert "Traceback" in err
        assert "Sekr3t" not in err

    def test_interrupted(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Ctrl-C is exit 130 and one line."""

        def interrupted(url: str) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(entry, "open_store", interrupted)
        assert _cli.main(["--store", "redis://127.0.0.1:1/0", "stats"]) == 130
        assert capsys.readouterr().err == "walletmesh-sessions: interrupted\n"


class TestSecrets:
    """A password in the store URL never reaches the output, in any command."""

    @pytest.fixture
    def secret_url(self, redis_client: redis.Redis, redis_url: str) -> str:
        """A populated Redis store reached as a user whose password is in the query."""
        redis_client.acl_setuser(
            "cli-user", enabled=True, passwords=["+Sekr3t"], keys=["*"], commands=["+@all"]
        )
        url = redis_url.replace("redis://", "redis://cli-user@") + "?password=Sekr3t"
        populate(url)
        return url

    @pytest.mark.parametrize(
        "args", [["stats"], ["stats", "--json"], ["list"], ["list", "--json"], ["show", "nope"]]
    )
    def test_commands(self, secret_url: str, args: list[str], tmp_path: Path) -> None:
        """stats and list name the store with the password masked; so does show's error."""
        result = run(*args, "--store", secret_url, cwd=tmp_path)
        assert result.returncode == (1 if args[0] == "show" else 0), result.stderr
        assert "Sekr3t" not in result.stdout + result.stderr
        if args[0] != "show":
            assert "https://app.example.com" in result.stdout  # it did reach the store
        if args != ["list", "--json"]:
            assert "password=***" in result.stdout + result.stderr

    @pytest.mark.parametrize(
        "url",
        [
            "redis://127.0.0.1:1/0?password=Sekr3t",
            "redis://127.0.0.1:notaport/0?password=Sekr3t",
            "redis://127.0.0.1:1/0?colour=red&password=Sekr3t",
            "redis://:Sekr3t@127.0.0.1:1/0",
            "redis://:Sekr3t@127.0.0.1:1/0?max_lifetime=soon",
            "postgresql://u:Sekr3t@127.0.0.1:1/db?max_lifetime=1&max_lifetime=2",
            "redis://user:Sek#r3t@127.0.0.1:1/0",
            "sqlite:///s.db?password=Sekr3t",
            "ftp://u:Sekr3t@h/",
        ],
    )
    def test_errors(self, url: str, tmp_path: Path) -> None:
        """Failing to open or reach the store: one line, exit 2 or 3, no password."""
        result = run("stats", "--store", url, cwd=tmp_path)
        assert result.returncode in (2, 3)
        assert result.stderr.count("\n") == 1, result.stderr
        for piece in ("Sekr3t", "Sek", "r3t"):
            assert piece not in result.stdout + result.stderr


# Records the command reads per store call (its `PAGE`).
PAGE = 500


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command in this process (the test's working directory, no variables)."""
    code = _cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's directory as the working directory, without the command's variables."""
    monkeypatch.chdir(tmp_path)
    for name in ("WALLETMESH_SESSIONS_URL", "WALLETMESH_SESSIONS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def many(path: Path, n: int) -> None:
    """`n` readable sessions s00000, s00001, ... in a SQLite store file."""
    plant(path, {f"s{i:05}": record(f"s{i:05}") for i in range(n)})


class Counted:
    """Counts, while installed, the records the SQLite backend decodes and the pages it reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records = self.pages = 0
        decode = inspect_record
        page = sqlite_backend.SqliteBackend.inspect_page

        def counting_decode(session_id: str, text: object) -> SessionRecord:
            self.records += 1
            return decode(session_id, text)

        def counting_page(backend: Any, wait: bool, cursor: object, n: int) -> Any:
            answer = page(backend, wait, cursor, n)
            self.pages += wait  # the call that reads; without `wait` it only defers
            return answer

        monkeypatch.setattr(sqlite_backend, "inspect_record", counting_decode)
        monkeypatch.setattr(sqlite_backend.SqliteBackend, "inspect_page", counting_page)


class TestListOptions:
    """list --limit, --origin, --jsonl and --sort."""

    def test_limit_reads_one_page(
        self, here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--limit 5 over 3,000 records prints 5 and reads one page of 5 from the store."""
        many(here / "sessions.db", 3000)
        counted = Counted(monkeypatch)
        code, out, err = cli(capsys, "list", "--limit", "5", "--jsonl")
        assert (code, err) == (0, "")
        assert [json.loads(line)["sessionId"] for line in out.splitlines()] == [
            f"s{i:05}" for i in range(5)
        ]
        assert (counted.pages, counted.records) == (1, 5)

    def test_limit_table_says_so(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The table's last line says the limit cut the listing."""
        many(here / "sessions.db", 30)
        code, out, _ = cli(capsys, "list", "--limit", "3")
        lines = out.splitlines()
        assert code == 0
        assert len(lines) == 5  # header, three rows, summary
        assert lines[-1] == "3 record(s) in sqlite:///sessions.db (the --limit)"

    @pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
    def test_bad_limit(self, value: str, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A limit that is not a whole number of at least 1 is a one-line usage error."""
        code, out, err = cli(capsys, "list", "--limit", value)
        assert (code, out) == (2, "")
        assert "--limit: must be a whole number of at least 1" in err
        assert err.count("\n") == 1

    def test_origin(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--origin keeps that dApp's sessions only (not unreadable ones), up to --limit."""
        other = json.dumps({"data": {"id": "o", "origin": "https://other.example"}})
        plant(
            here / "sessions.db",
            {"a": record("a"), "b": other, "c": record("c"), "d": CORRUPT, "e": record("e")},
        )
        code, out, _ = cli(capsys, "list", "--jsonl", "--origin", "https://far.example")
        assert code == 0
        assert [json.loads(line)["sessionId"] for line in out.splitlines()] == ["a", "c", "e"]
        _, out, _ = cli(capsys, "list", "--origin", "https://far.example", "--limit", "2")
        assert out.splitlines()[-1] == (
            "2 record(s) of origin https://far.example in sqlite:///sessions.db (the --limit)"
        )
        _, out, _ = cli(capsys, "list", "--json", "--origin", "https://none.example")
        assert out == "[]\n"

    def test_jsonl_same_objects_as_json(
        self, store_url: str, here: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--jsonl: one object per line, the very objects --json prints (as json.dump would)."""
        code, lines, _ = cli(capsys, "list", "--jsonl", "--store", store_url)
        assert code == 0
        objects = [json.loads(line) for line in lines.splitlines()]
        assert len(objects) == 5
        _, text, _ = cli(capsys, "list", "--json", "--store", store_url)
        assert json.loads(text) == objects
        assert text == json.dumps(objects, indent=2, ensure_ascii=False) + "\n"

    def test_store_order(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """On SQLite the store's order is key order; --help says which order is used."""
        plant(here / "sessions.db", {k: record(k) for k in ("b", "c", "a")})
        _, out, _ = cli(capsys, "list", "--jsonl")
        assert [json.loads(line)["sessionId"] for line in out.splitlines()] == ["a", "b", "c"]
        with pytest.raises(SystemExit):
            arguments.build_parser().parse_args(["list", "--help"])
        assert "in the store's order" in " ".join(capsys.readouterr().out.split())

    def test_sort(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--sort with --limit: the N soonest- or latest-expiring, unreadable ones last."""
        plant(
            here / "sessions.db",
            {
                "late": record("late", "3000"),
                "never": record("never"),
                "bad": CORRUPT,
                "soon": record("soon", "1000"),
                "mid": record("mid", "2000"),
                "mid2": record("mid2", "2000"),
            },
        )

        def ids(*args: str) -> list[str]:
            code, out, _ = cli(capsys, "list", "--jsonl", *args)
            assert code == 0
            return [json.loads(line)["sessionId"] for line in out.splitlines()]

        assert ids("--sort", "soonest", "--limit", "3") == ["soon", "mid", "mid2"]
        assert ids("--sort", "latest", "--limit", "2") == ["never", "late"]
        assert ids("--sort", "soonest", "--limit", "9")[-2:] == ["never", "bad"]
        assert ids("--sort", "latest", "--limit", "1", "--origin", "nowhere") == []

    def test_sort_needs_limit(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--sort alone would hold every record: refused in one line, exit 2."""
        many(here / "sessions.db", 3)
        code, out, err = cli(capsys, "list", "--sort", "soonest")
        assert (code, out) == (2, "")
        assert "--sort needs --limit N" in err
        assert err.count("\n") == 1

    def test_json_and_jsonl_exclusive(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json and --jsonl together are a usage error."""
        code, _, err = cli(capsys, "list", "--json", "--jsonl")
        assert code == 2
        assert "not allowed with argument" in err


class InspectedStore:
    """A store without iter_records that counts the records it handed out still alive.

    Delegates to `inner`; `peak` is the most alive at once (weakly held), checked at each.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.alive: weakref.WeakSet[SessionRecord] = weakref.WeakSet()
        self.peak = 0

    def __getattr__(self, name: str) -> Any:
        if name == "iter_records":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _handed(self, record: SessionRecord) -> SessionRecord:
        self.alive.add(record)
        self.peak = max(self.peak, len(self.alive))
        return record

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        return [self._handed(r) for r in await self.inner.inspect(session_id)]

    async def __aenter__(self) -> InspectedStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.aclose()


class WatchedStore(InspectedStore):
    """`InspectedStore` with iter_records, whose records it counts too."""

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        async for record in self.inner.iter_records(batch_size):
            yield self._handed(record)


@pytest.fixture
def watched(here: Path, monkeypatch: pytest.MonkeyPatch) -> list[WatchedStore]:
    """The stores the command opens, watched (appended as they are opened)."""
    opened: list[WatchedStore] = []

    def watching(url: str) -> WatchedStore:
        opened.append(WatchedStore(open_store(url)))
        return opened[-1]

    monkeypatch.setattr(entry, "open_store", watching)
    return opened


class TestStreaming:
    """list and stats hold about a page of records at a time, whatever the store's size."""

    N = 10_000

    @pytest.mark.parametrize(
        "args", [["stats"], ["stats", "--json"], ["list", "--jsonl"], ["list"], ["clear", "--yes"]]
    )
    def test_at_most_a_page_alive(
        self,
        args: list[str],
        watched: list[WatchedStore],
        here: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Over 10,000 records, never more than one page (500) of them alive at once."""
        many(here / "sessions.db", self.N)
        code, out, _ = cli(capsys, *args)
        assert code == 0
        assert str(self.N) in out or len(out.splitlines()) >= self.N
        assert 0 < watched[0].peak <= PAGE

    def test_stats_counts_every_record(
        self, watched: list[WatchedStore], here: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Streaming changes no number: 10,000 live sessions, one origin."""
        many(here / "sessions.db", self.N)
        stats = json.loads(cli(capsys, "stats", "--json")[1])
        assert (stats["sessions"], stats["origins"]) == (self.N, {"https://far.example": self.N})

    def test_falls_back_to_inspect(
        self, here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A store without iter_records is read with one inspect(): the same output."""
        many(here / "sessions.db", 3)
        expected = cli(capsys, "list", "--jsonl")
        monkeypatch.setattr(entry, "open_store", lambda url: InspectedStore(open_store(url)))
        assert cli(capsys, "list", "--jsonl") == expected

    @pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["list", "--jsonl"]])
    def test_closed_output_stops_the_reads(self, args: list[str], tmp_path: Path) -> None:
        """A reader gone before the first line: one page read of 3,000 records, exit 1, quiet."""
        many(tmp_path / "sessions.db", 3000)
        counts = tmp_path / "counts.json"
        code = (
            "import json, sys\n"
            "import pytest\n"
            "from tests.test_cli import Counted\n"
            "from walletmesh_sessions._tools import cli as _cli\n"
            "with pytest.MonkeyPatch.context() as patch:\n"
            "    counted = Counted(patch)\n"
            "    status = _cli.main(sys.argv[2:])\n"
            "with open(sys.argv[1], 'w') as f:\n"
            "    json.dump([counted.pages, counted.records], f)\n"
            "sys.exit(status)\n"
        )
        env = environment(PYTHONPATH=str(ROOT))
        command = [sys.executable, "-c", code, str(counts), *args]
        with subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            process.stdout.close()  # as `| head` that has already read what it wanted
            stderr = process.stderr.read()
            assert process.wait(timeout=60) == 1
        assert stderr == b""
        assert json.loads(counts.read_text()) == [1, PAGE]

    def test_head_exits_quietly(self, tmp_path: Path) -> None:
        """`list --jsonl | head -1` in a shell: one line out, and the command exits 1, quietly."""
        many(tmp_path / "sessions.db", 3000)
        shell = f"'{SCRIPT}' list --jsonl | head -1; echo \"status ${{PIPESTATUS[0]}}\""
        result = subprocess.run(
            ["bash", "-c", shell],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        lines = result.stdout.splitlines()
        assert json.loads(lines[0])["sessionId"] == "s00000"
        assert lines[1:] == ["status 1"]
        assert result.stderr == ""


class TestProgress:
    """A progress line on stderr, only on a terminal and only with tqdm installed."""

    @pytest.fixture
    def terminal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Stderr seen as a terminal."""
        monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)

    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (["stats"], "counting records"),
            (["list"], "reading records"),
            (["clean"], "removing expired sessions"),
            (["clear", "--yes"], "removing every record"),
        ],
    )
    @pytest.mark.usefixtures("terminal")
    def test_on_a_terminal(
        self, args: list[str], line: str, here: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each long command shows its line on stderr, and its output stays as it is."""
        many(here / "sessions.db", 1200)
        code, out, err = cli(capsys, *args)
        assert code == 0
        assert line in err
        assert "Traceback" not in err
        assert "\n" not in out.splitlines()[-1]

    @pytest.mark.usefixtures("terminal")
    def test_records_counted(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The line counts the records read."""
        many(here / "sessions.db", 1200)
        err = cli(capsys, "stats")[2]
        assert re.search(r"counting records: \d+ records", err), err

    @pytest.mark.parametrize("args", [["stats"], ["list"], ["clean"], ["clear", "--yes"]])
    def test_not_a_terminal(
        self, args: list[str], here: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Stderr not a terminal (a pipe, a log, cron): nothing on it."""
        many(here / "sessions.db", 1200)
        code, _, err = cli(capsys, *args)
        assert (code, err) == (0, "")

    @pytest.mark.usefixtures("terminal")
    def test_not_over_the_listing(
        self, here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """list to the terminal itself: the records are the progress, no line cuts into them."""
        monkeypatch.setattr(progress, "stdout_is_terminal", lambda: True)
        many(here / "sessions.db", 1200)
        code, _, err = cli(capsys, "list")
        assert (code, err) == (0, "")

    @pytest.mark.usefixtures("terminal")
    def test_without_tqdm(
        self, here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without the `cli` extra: the same output, no progress, no error."""
        many(here / "sessions.db", 1200)
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
        for args in (["stats"], ["list", "--limit", "3"], ["clean"]):
            code, out, err = cli(capsys, *args)
            assert (code, err) == (0, "")
            assert out

    @pytest.mark.anyio
    @pytest.mark.usefixtures("terminal")
    async def test_store_error_while_waiting(self) -> None:
        """A store call that fails under the progress line raises its own error, ungrouped."""

        async def failing() -> None:
            raise StoreUnavailableError("the store is down")

        with pytest.raises(StoreUnavailableError, match="the store is down"):
            await progress.waiting("removing expired sessions", failing)


class TestPlainWords:
    """Outputs a newcomer reads without the manual."""

    def test_empty_stats(self, here: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An empty store's stats say so in words; --json keeps its keys."""
        plant(here / "sessions.db", {})
        assert cli(capsys, "stats") == (0, "no sessions in sqlite:///sessions.db\n", "")
        stats = json.loads(cli(capsys, "stats", "--json")[1])
        assert stats == {
            "store": "sqlite:///sessions.db",
            "sessions": 0,
            "expired": 0,
            "unreadable": 0,
            "neverExpire": 0,
            "soonestExpiry": None,
            "latestExpiry": None,
            "origins": {},
        }

    def test_clean_says_what_it_counts(
        self, here: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """clean names the number it prints."""
        plant(here / "sessions.db", {"old": record("old", "1000"), "new": record("new")})
        assert cli(capsys, "clean") == (0, "removed 1 expired session(s)\n", "")


class TestPostgres:
    """PostgreSQL from the command line: one line with libpq's cause, and no table created."""

    @pytest.fixture
    def host(self, postgres_server: Any) -> str:
        return f"127.0.0.1:{postgres_server.port}"

    def test_refused_is_one_line(self, tmp_path: Path) -> None:
        """Nothing listening: one line saying so, exit 3, well before the 5 s timeout."""
        from tests.redis_server import free_port

        start = time.monotonic()
        result = run("--store", f"postgresql://127.0.0.1:{free_port()}/x", "stats", cwd=tmp_path)
        assert time.monotonic() - start < 4.5
        assert result.returncode == 3, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Connection refused" in result.stderr

    def test_missing_database_is_one_line(self, host: str, tmp_path: Path) -> None:
        """A database that does not exist: one line naming it, exit 3."""
        result = run("--store", f"postgresql://postgres@{host}/nope", "stats", cwd=tmp_path)
        assert result.returncode == 3, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert 'database "nope" does not exist' in result.stderr
        assert "within the timeout" not in result.stderr

    @pytest.mark.parametrize(
        "args",
        [["stats"], ["list"], ["show", "x"], ["delete", "x"], ["clean"], ["clear", "--yes"]],
    )
    def test_missing_table_is_not_created(
        self,
        args: list[str],
        postgres_url: str,
        postgres_table: str,
        postgres_conn: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A mistyped table= is an error, exit 3, as a missing SQLite file is; none is made."""
        url = f"{postgres_url}?table={postgres_table}"
        assert _cli.main(["--store", url, *args]) == 3
        err = capsys.readouterr().err
        assert err == f"walletmesh-sessions: error: no session table {postgres_table!r} in {url}\n"
        found = postgres_conn.execute("SELECT to_regclass(%s)", (postgres_table,)).fetchone()
        assert found == (None,)

    def test_existing_table_is_used(
        self, postgres_url: str, postgres_table: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A table a store made is read as before."""
        url = f"{postgres_url}?table={postgres_table}"

        async def plant() -> None:
            async with open_store(url) as store:
                await store.set("abc", SessionData("a", "https://app.example.com"))

        anyio.run(plant)
        assert _cli.main(["--store", url, "show", "abc"]) == 0
        assert "https://app.example.com" in capsys.readouterr().out


class TestClosedOutput:
    def test_a_command_started_with_stdout_closed_still_works(self, tmp_path: Path) -> None:
        """`walletmesh-sessions clean >&-`, as cron may run it: the work is done, exit 0."""
        db = tmp_path / "sessions.db"
        populate(f"sqlite:///{db}")
        done = subprocess.run(
            ["/bin/sh", "-c", '"$0" --store "$1" clean >&-', str(SCRIPT), str(db)],
            capture_output=False,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        shown = run("stats", "--json", cwd=tmp_path, url=f"sqlite:///{db}")
        assert json.loads(shown.stdout)["expired"] == 0
