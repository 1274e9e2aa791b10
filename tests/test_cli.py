"""The walletmesh-sessions command, run through its real entry points in subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from walletmesh_sessions import SessionData, SessionStoreConfig, open_store
from walletmesh_sessions._sqlite_backend import SCHEMA, TABLE

ROOT = Path(__file__).parent.parent
LIVE = {
    "live-a": SessionData("a", "https://app.example.com", {"eip155:1": ["eth_accounts"]}),
    "live-b": SessionData("b", "https://app.example.com", {"eip155:137": ["personal_sign"]}),
    "live-c": SessionData("c", "https://dapp.example.org"),
}
CORRUPT = "{not json"


def run(
    *args: str, cwd: Path, url: str | None = None, stdin: str = "", module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would: the console script, or python -m."""
    env = {k: v for k, v in os.environ.items() if k != "WALLETMESH_SESSIONS_URL"}
    if url is not None:
        env["WALLETMESH_SESSIONS_URL"] = url
    script = Path(sys.executable).parent / "walletmesh-sessions"
    command = [sys.executable, "-m", "walletmesh_sessions"] if module else [str(script)]
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
            conn.execute(f"INSERT INTO {TABLE} VALUES ('wm_session_broken', ?, NULL)", (CORRUPT,))
            conn.execute(f"INSERT INTO {TABLE} VALUES ('theme', 'dark', NULL)")
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
        """clean removes the expired session, prints the count, leaves the corrupt one."""
        result = run("clean", "--store", store_url, cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
        assert run("clean", "--store", store_url, cwd=tmp_path).stdout == "0\n"
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
        assert {k: stats[k] for k in ("sessions", "expired", "unreadable", "never_expire")} == {
            "sessions": 3,
            "expired": 1,
            "unreadable": 1,
            "never_expire": 0,
        }
        assert stats["origins"] == {"https://app.example.com": 2, "https://dapp.example.org": 1}
        assert stats["soonest_expiry"] <= stats["latest_expiry"]
        text = run("stats", "--store", store_url, cwd=tmp_path).stdout
        assert "sessions:       3" in text
        assert "       2  https://app.example.com" in text


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
            (["--store", "ftp://x", "list"], 3, "unknown store URL scheme"),
            (["--store", "sqlite:///db?lifetime=-5", "list"], 3, "lifetime must be > 0"),
            (["list", "--store", "redis://127.0.0.1:1/0"], 3, "error:"),
            (["frobnicate"], 2, "invalid choice"),
            (["show"], 2, "the following arguments are required: ID"),
        ],
    )
    def test_mistakes_are_one_line(
        self, args: list[str], code: int, message: str, tmp_path: Path
    ) -> None:
        """User mistakes give an exit code and a message, never a traceback."""
        result = run(*args, cwd=tmp_path)
        assert result.returncode == code
        assert message in result.stderr
        assert "Traceback" not in result.stderr

    def test_url_password_is_not_printed(self, tmp_path: Path) -> None:
        """A password in the store URL never reaches the output."""
        result = run("--store", "redis://user:hunter2@127.0.0.1:1/0", "stats", cwd=tmp_path)
        assert result.returncode == 3
        assert "hunter2" not in result.stderr + result.stdout
