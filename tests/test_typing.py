"""mypy --strict accepts tests/typing/*accepted.py and rejects every marked line of *rejected.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import RunOnce

TYPING_DIR = Path(__file__).parent / "typing"
ROOT = Path(__file__).parent.parent
REJECTED = ("rejected.py", "web_rejected.py")
UNIGNORED = "unignored_"


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-incremental",
            "--cache-dir=/dev/null",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def unignored(source: str) -> str:
    """`source` with each expected-error comment turned into a plain one."""
    return source.replace("# type: ignore[", "# ignored [")


@pytest.fixture(scope="module")
def mypy_result(
    tmp_path_factory: pytest.TempPathFactory, run_once: RunOnce
) -> subprocess.CompletedProcess[str]:
    """One mypy run (mypy is slow to start): every file as written, the stores' and the web
    layer's, and each rejected file again without its ignores, under another module name."""

    def check() -> tuple[int, str, str]:
        directory = tmp_path_factory.mktemp("unignored")
        for name in REJECTED:
            source = (TYPING_DIR / name).read_text(encoding="utf-8")
            (directory / f"{UNIGNORED}{name}").write_text(unignored(source), encoding="utf-8")
        files = [*sorted(TYPING_DIR.glob("*.py")), *sorted(directory.glob("*.py"))]
        run = run_mypy(*(str(path) for path in files))
        return run.returncode, run.stdout, run.stderr

    returncode, stdout, stderr = run_once("typing-mypy", check)
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


def output_of(result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    """The lines mypy printed about the file called `name`."""
    return [line for line in result.stdout.splitlines() if Path(line.split(":")[0]).name == name]


def test_mypy_passes(mypy_result: subprocess.CompletedProcess[str]) -> None:
    """Accepted usages type-check, and every rejected line's expected error is produced."""
    # Errors are expected in the unignored copies only (exit 1 is errors found, 2 a crash).
    assert mypy_result.returncode == 1, mypy_result.stdout + mypy_result.stderr
    for path in sorted(TYPING_DIR.glob("*.py")):
        assert output_of(mypy_result, path.name) == [], mypy_result.stdout
    summary = [line for line in mypy_result.stdout.splitlines() if line.startswith("Found ")]
    copies = [line for name in REJECTED for line in output_of(mypy_result, UNIGNORED + name)]
    assert len(mypy_result.stdout.splitlines()) == len(copies) + len(summary), mypy_result.stdout


@pytest.mark.parametrize("name", REJECTED)
def test_rejections_are_real(name: str, mypy_result: subprocess.CompletedProcess[str]) -> None:
    """Without its ignores, the file fails with one error per marked line."""
    source = (TYPING_DIR / name).read_text(encoding="utf-8")
    marked = sum("# type: ignore[" in line for line in source.splitlines())
    errors = [line for line in output_of(mypy_result, UNIGNORED + name) if ": error:" in line]
    lines_with_errors = {line.split(":")[1] for line in errors}
    assert mypy_result.returncode == 1
    assert len(lines_with_errors) == marked, mypy_result.stdout
