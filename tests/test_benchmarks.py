"""The benchmark suite writes its JSON only where asked, never over the tracked results."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
BENCHMARKS = ROOT / "benchmarks"
TRACKED = BENCHMARKS / "results.json"


@pytest.fixture(scope="module")
def suite() -> ModuleType:
    """benchmarks/suite.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("benchmark_suite", BENCHMARKS / "suite.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TestOutput:
    """Where `python benchmarks/suite.py` puts its JSON results."""

    def test_quick_without_output_saves_nothing(
        self, suite: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`--quick` alone leaves results.json untouched and writes no file anywhere."""
        before = TRACKED.read_bytes()
        monkeypatch.chdir(tmp_path)
        args = suite.parse_args(["--quick"])
        assert args.output is None
        suite.write_results([{"backend": "asyncio"}], args.output)
        assert TRACKED.read_bytes() == before
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(
        "path", ["benchmarks/results.json", str(TRACKED)], ids=["relative", "absolute"]
    )
    def test_quick_refuses_the_tracked_file(
        self,
        suite: Any,
        path: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`--quick --output benchmarks/results.json` is a usage error, relative or absolute."""
        monkeypatch.chdir(ROOT)
        with pytest.raises(SystemExit) as exc:
            suite.parse_args(["--quick", "--output", path])
        assert exc.value.code == 2
        assert "results.json" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "path",
        ["docs/scaling.svg", str(ROOT / "docs" / "scaling.svg")],
        ids=["relative", "absolute"],
    )
    def test_quick_refuses_the_tracked_chart(
        self,
        suite: Any,
        path: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`--quick --chart docs/scaling.svg` is a usage error: the docs show that chart."""
        monkeypatch.chdir(ROOT)
        with pytest.raises(SystemExit) as exc:
            suite.parse_args(["--quick", "--chart", path])
        assert exc.value.code == 2
        assert "scaling.svg" in capsys.readouterr().err

    def test_full_run_may_rewrite_the_tracked_file(
        self, suite: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A full run names the tracked file explicitly to rewrite it."""
        monkeypatch.chdir(ROOT)
        args = suite.parse_args(["--output", "benchmarks/results.json"])
        assert args.output.resolve() == TRACKED.resolve()
        assert not args.quick

    def test_output_path(self, suite: Any, tmp_path: Path) -> None:
        """`--output PATH` writes the machine and the results there."""
        target = tmp_path / "quick.json"
        args = suite.parse_args(["--quick", "--output", str(target)])
        suite.write_results([{"backend": "asyncio"}], args.output)
        saved = json.loads(target.read_text(encoding="utf-8"))
        assert saved["results"] == [{"backend": "asyncio"}]
        assert "python" in saved["machine"]

    def test_output_stdout(self, suite: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """`--output -` prints the JSON instead of writing a file."""
        args = suite.parse_args(["--quick", "--output", "-"])
        suite.write_results([{"backend": "trio"}], args.output)
        assert json.loads(capsys.readouterr().out)["results"] == [{"backend": "trio"}]


def _script(name: str) -> Any:
    """benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestReports:
    """The tables and the chart in docs/performance.md come from the tracked results."""

    def test_tables_cover_every_store(self) -> None:
        """Each store's per-session rows and scaling rows are printed from results.json."""
        results = json.loads(TRACKED.read_text(encoding="utf-8"))["results"]
        tables = _script("tables")
        per_session = "\n".join(tables.per_session(results))
        for row in ("| memory | `set` |", "| sqlite | `set [process]` |", "| redis | `get` |"):
            assert row in per_session
        scaling = "\n".join(tables.scaling(results))
        assert "| memory | 1,000,000 |" in scaling
        assert "| sqlite | 1,000,000 |" in scaling
        assert "| memory | `get_all` | 1,000,000 |" in "\n".join(tables.big_stalls(results))

    def test_big_stalls_header_counts_the_runs_made(self) -> None:
        """The header says how many runs each stall is the longest of (a quick run makes 2)."""
        row = {
            "store": "memory",
            "method": "get_all",
            "sessions": 10_000,
            "runs": 2,
            "max_stall_ms": 7.9,
            "max_gc_pause_ms": 0.0,
            "median_s": 0.0448,
        }
        lines = _script("tables").big_stalls([{"big_stalls": [row]}])
        assert "longest stall, 2 runs" in lines[0]
        assert "| memory | `get_all` | 10,000 | 44.8 ms | 7.9 ms | 0.0 ms |" in lines

    def test_chart_is_an_svg_of_the_scaling(self, tmp_path: Path) -> None:
        """The chart draws from results.json: an SVG with both panels' titles."""
        results = json.loads(TRACKED.read_text(encoding="utf-8"))["results"]
        target = tmp_path / "scaling.svg"
        _script("chart").draw(results, target)
        svg = target.read_text(encoding="utf-8")
        assert svg.startswith("<?xml")
        assert "<svg" in svg
        assert "Longest stall of the event loop during get_all" in svg

    def test_docs_show_the_tracked_chart(self) -> None:
        """docs/performance.md embeds docs/scaling.svg, which exists."""
        assert (ROOT / "docs" / "scaling.svg").is_file()
        assert "](scaling.svg)" in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")


class TestBenchExtra:
    """`pip install -e '.[bench]'` brings everything the suite imports or runs on."""

    def test_has_every_backend_the_suite_runs(self) -> None:
        """The suite runs on trio as well as asyncio: the extra must install trio."""
        tomllib = pytest.importorskip("tomllib")
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        bench = project["project"]["optional-dependencies"]["bench"]
        names = {requirement.split(">")[0].split("=")[0].split("[")[0] for requirement in bench}
        assert {"redis", "matplotlib", "trio"} <= names, bench


class TestStallScript:
    """`benchmarks/get_all_stall.py`, which the performance page cites, runs on both stores."""

    @pytest.mark.parametrize("store", ["memory", "sqlite"])
    def test_small_run(self, store: str) -> None:
        command = [sys.executable, str(BENCHMARKS / "get_all_stall.py"), "--store", store]
        command += ["--sessions", "300", "--runs", "1"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert [line.split(":")[0] for line in lines] == ["get_all", "iter_sessions"]
        assert all("longest stall" in line and "over 1 runs" in line for line in lines)

    def test_noise_floor(self) -> None:
        command = [sys.executable, str(BENCHMARKS / "get_all_stall.py"), "--noise", "0.05"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert [line.split(":")[0] for line in lines] == [
            "idle loop",
            "beside a busy thread without the GIL",
        ]
        assert all("longest stall" in line and "over 0.05 s" in line for line in lines)


class TestSlideScriptBenchmark:
    """`benchmarks/bench_slide_script.py`, which the changelog and the Redis docs cite."""

    def test_small_run_against_a_revision(self) -> None:
        command = [sys.executable, str(BENCHMARKS / "bench_slide_script.py")]
        command += ["--calls", "20", "--rounds", "1", "--against", "HEAD"]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr
        rows = [line.split("|")[1].strip() for line in done.stdout.splitlines()[2:]]
        assert rows == ["now", "HEAD"]


class TestSoakScript:
    """`benchmarks/soak_sqlite.py`, whose totals docs/performance.md reports."""

    def test_small_run(self, tmp_path: Path) -> None:
        """Two processes of two stores, with reopening, lifecycles and a CPU burner: all held."""
        command = [sys.executable, str(BENCHMARKS / "soak_sqlite.py"), "--processes", "2"]
        command += ["--rounds", "12", "--sessions", "2", "--runs", "1", "--load", "1"]
        directory = tmp_path / "made" / "by the script"  # missing: the script makes it
        command += ["--reopen-every", "5", "--lifecycle-every", "4", "--dir", str(directory)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[-2].startswith("total: 1 runs, 2 processes, 4 store objects;")
        assert "acknowledged 48, lost 0, duplicated 0," in lines[-2]
        assert lines[-1] == "held: nothing lost"
        assert list(directory.iterdir()) == []

    def test_counts_a_loss_and_a_duplicate(self) -> None:
        """A counter found below the last acknowledged value is a loss; one above it by more
        than the failed calls since, a duplicate; in between, failed calls applied anyway."""
        spec = importlib.util.spec_from_file_location("soak_sqlite", BENCHMARKS / "soak_sqlite.py")
        assert spec is not None
        assert spec.loader is not None
        soak = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = soak  # its dataclasses look their module up there
        spec.loader.exec_module(soak)
        tally = soak.Tally()
        soak.settle(soak.Counted(last=5), 3, tally, "w0")
        soak.settle(soak.Counted(last=5, errors_since=1), 8, tally, "w1")
        soak.settle(soak.Counted(last=5, errors_since=2), 6, tally, "w2")
        assert (tally.lost, tally.duplicated, tally.applied_despite_error) == (2, 2, 1)
        assert tally.failed
