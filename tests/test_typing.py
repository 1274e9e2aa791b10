"""mypy --strict accepts tests/typing/*accepted.py and rejects every marked line of *rejected.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TYPING_DIR = Path(__file__).parent / "typing"
ROOT = Path(__file__).parent.parent


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


@pytest.fixture(scope="module")
def mypy_result() -> subprocess.CompletedProcess[str]:
    """One mypy run over every file (mypy is slow to start): the stores' and the web layer's."""
    return run_mypy(*(str(path) for path in sorted(TYPING_DIR.glob("*.py"))))


def test_mypy_passes(mypy_result: subprocess.CompletedProcess[str]) -> None:
    """Accepted usages type-check, and every rejected line's expected error is produced."""
    assert mypy_result.returncode == 0, mypy_result.stdout + mypy_result.stderr


@pytest.mark.parametrize("name", ["rejected.py", "web_rejected.py"])
def test_rejections_are_real(name: str) -> None:
    """Without its ignores, the file fails with one error per marked line."""
    source = (TYPING_DIR / name).read_text(encoding="utf-8")
    marked = sum("# type: ignore[" in line for line in source.splitlines())
    result = run_mypy(
        "--disable-error-code=unused-ignore",
        "--command",
        source.replace("# type: ignore[", "# ignored ["),
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    lines_with_errors = {line.split(":")[1] for line in errors}
    assert result.returncode == 1
    assert len(lines_with_errors) == marked, result.stdout
