"""benchmarks/capacity.py runs; docs/capacity.md's tables and chart are what its JSON renders."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

ROOT = Path(__file__).parent.parent
BENCHMARKS = ROOT / "benchmarks"
TRACKED = BENCHMARKS / "capacity.json"
PAGE = ROOT / "docs" / "capacity.md"
CHART = ROOT / "docs" / "capacity.svg"
MATPLOTLIB = re.compile(r"Matplotlib v[^,<]+")


def _script(name: str) -> Any:
    """benchmarks/<name>.py as a module (the scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def capacity() -> Any:
    return _script("capacity")


@pytest.fixture(scope="module")
def report() -> Any:
    return _script("capacity_report")


@pytest.fixture(scope="module")
def tracked() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(TRACKED.read_text(encoding="utf-8"))
    return document


class TestQuickRun:
    """`--quick`: memory and SQLite, tiny counts, every kind of figure."""

    def test_measures_every_figure_and_saves_only_where_asked(self, tmp_path: Path) -> None:
        before = TRACKED.read_bytes()
        target = tmp_path / "quick.json"
        command = [sys.executable, str(BENCHMARKS / "capacity.py"), "--quick"]
        command += ["--output", str(target)]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert TRACKED.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["quick.json"]
        document = json.loads(target.read_text(encoding="utf-8"))
        cases = {(r["store"], r["workload"], r["tasks"]) for r in document["per_process"]}
        assert cases == {
            (store, workload, tasks)
            for store in ("memory", "sqlite")
            for workload in ("mix", "get")
            for tasks in (1, 100)
        }
        scaled = {(r["store"], r["processes"]) for r in document["processes"]}
        assert scaled == {("sqlite", 1), ("sqlite", 2)}
        assert all(r["ops_per_s"] > 0 for r in document["per_process"] + document["processes"])
        for store in ("memory", "sqlite"):
            rows = sorted(
                (r for r in document["bytes"] if r["store"] == store),
                key=lambda r: r["record_bytes"],
            )
            assert [r["size"] for r in rows] == ["typical", "+1 KiB", "+4 KiB"]
            assert rows[0]["bytes_per_session"] < rows[-1]["bytes_per_session"]
        assert "<!-- capacity:per_process -->" in done.stdout

    def test_on_the_test_servers_leaves_nothing_behind(
        self, redis_url: str, postgres_url: str, tmp_path: Path
    ) -> None:
        """Servers given by URL: measured, then emptied of the run's keys and tables."""
        target = tmp_path / "quick.json"
        command = [sys.executable, str(BENCHMARKS / "capacity.py"), "--quick", "--output"]
        command += [str(target), "--stores", "redis,postgres"]
        command += ["--redis-url", redis_url, "--postgres-url", postgres_url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        document = json.loads(target.read_text(encoding="utf-8"))
        assert {r["store"] for r in document["per_process"]} == {"redis", "postgres"}
        assert {(r["store"], r["processes"]) for r in document["processes"]} == {
            (store, count) for store in ("redis", "postgres") for count in (1, 2)
        }
        assert {r["store"] for r in document["bytes"]} == {"redis", "postgres"}
        with redis.Redis.from_url(redis_url) as client:
            assert list(client.scan_iter(match="capacity*")) == []
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute("SELECT to_regclass('capacity')").fetchone()
        assert row == (None,)

    @pytest.mark.parametrize(
        ("option", "path"),
        [
            ("--output", TRACKED),
            ("--output", "benchmarks/capacity.json"),
            ("--chart", CHART),
            ("--docs", "docs/capacity.md"),
        ],
    )
    def test_refuses_the_tracked_files(
        self,
        capacity: Any,
        option: str,
        path: str | Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A quick run may not overwrite the tracked JSON or chart with rough numbers."""
        monkeypatch.chdir(ROOT)
        with pytest.raises(SystemExit) as exc:
            capacity.parse_args(["--quick", option, str(path)])
        assert exc.value.code == 2
        assert "tracked" in capsys.readouterr().err

    def test_without_output_saves_nothing(self, capacity: Any) -> None:
        assert capacity.parse_args(["--quick"]).output is None

    def test_a_page_without_the_blocks_is_a_usage_error(
        self, capacity: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Refused before measuring: the tables would have nowhere to go."""
        page = tmp_path / "page.md"
        page.write_text("<!-- capacity:setup -->\n<!-- /capacity:setup -->\n", encoding="utf-8")
        with pytest.raises(SystemExit) as exc:
            capacity.parse_args(["--quick", "--docs", str(page)])
        assert exc.value.code == 2
        assert "'per_process'" in capsys.readouterr().err

    def test_unknown_store_is_a_usage_error(self, capacity: Any) -> None:
        with pytest.raises(SystemExit) as exc:
            capacity.parse_args(["--stores", "memory,mongo"])
        assert exc.value.code == 2


class TestDocs:
    """docs/capacity.md and docs/capacity.svg cannot drift from benchmarks/capacity.json."""

    def test_tables_are_what_the_json_renders(self, report: Any, tracked: dict[str, Any]) -> None:
        text = PAGE.read_text(encoding="utf-8")
        blocks = report.markdown(tracked)
        assert tuple(blocks) == report.BLOCKS
        for name in blocks:
            assert f"<!-- capacity:{name} -->" in text, name
        assert report.rewrite_docs(text, blocks) == text

    def test_chart_is_what_the_json_draws(self, tracked: dict[str, Any], tmp_path: Path) -> None:
        """The tracked chart names the digest of the tracked figures; drawn again by the same
        matplotlib release (the SVG names it), it is the same file byte for byte."""
        chart = _script("capacity_chart")
        svg = CHART.read_text(encoding="utf-8")
        assert chart.fingerprint(tracked) in svg
        target = tmp_path / "capacity.svg"
        chart.draw(tracked, target)
        drawn = target.read_text(encoding="utf-8")
        release = MATPLOTLIB.search(svg)
        assert release is not None
        if release[0] in drawn:
            assert drawn == svg

    def test_page_shows_the_chart_and_is_in_the_nav(self) -> None:
        assert "](capacity.svg)" in PAGE.read_text(encoding="utf-8")
        assert "capacity.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")

    def test_the_tracked_figures_cover_every_store(self, tracked: dict[str, Any]) -> None:
        stores = {r["store"] for r in tracked["per_process"]}
        assert stores == {"memory", "sqlite", "redis", "redis-cluster-3", "postgres"}
        scaled = {r["store"] for r in tracked["processes"]}
        assert scaled == {"sqlite", "redis", "postgres", "redis-cluster-3", "redis-cluster-1"}


class TestRendering:
    """The tables and the deployment arithmetic, on figures made up for the test."""

    @staticmethod
    def document(bytes_per_session: float, ops_per_s: float) -> dict[str, Any]:
        rows = [
            {"store": "redis", "workload": w, "tasks": t, "ops_per_s": ops_per_s, "errors": 0}
            | {"cpu_us": 50.0}
            for w in ("mix", "get")
            for t in (1, 100)
        ]
        scaled = [
            {"store": "redis", "workload": "mix", "processes": n, "ops_per_s": ops_per_s * n}
            | {"errors": 0}
            for n in (1, 2)
        ]
        size = {"store": "redis", "size": "typical", "record_bytes": 400}
        size["bytes_per_session"] = bytes_per_session
        return {"per_process": rows, "processes": scaled, "bytes": [size]}

    def test_deployment_rounds_up(self, report: Any) -> None:
        """Memory for 1e9 sessions half a primary over a whole number needs one more."""
        sessions = report.WALLETS * report.DAPPS
        per_session = report.PRIMARY_MAX_MEMORY * 2.5 / sessions
        (row,) = report.deployment(self.document(per_session, 10_000))
        assert row["primaries"] == 3
        peak = sessions * report.TOUCHES_PER_DAY / 86_400 * report.PEAK_FACTOR
        assert row["processes"] == math.ceil(peak / 10_000)
        assert row["servers_by_rate"] == math.ceil(peak / 20_000)
        assert row["client_cores"] == math.ceil(peak * 50 / 1e6)

    def test_processes_table_shows_the_ratio(self, report: Any) -> None:
        lines = report.processes_table(self.document(700, 5_000))
        assert lines[2] == "| Redis | 5,000 | 10,000 | 2.00x |"

    def test_rewrite_touches_only_the_blocks(self, report: Any) -> None:
        text = "a\n<!-- capacity:x -->\nold\n<!-- /capacity:x -->\nb\n"
        assert report.rewrite_docs(text, {"x": "new"}) == text.replace("old", "new")
