"""benchmarks/bench_asgi.py runs end to end: a short --quick smoke run prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_asgi.py"
# Three uvicorn apps started one after another, each loaded for a few seconds.
TIMEOUT_S = 240
HEADER = "| implementation | lost grants | duplicate sessions | live copies after login storm |"


def table_rows(output: str) -> dict[str, list[str]]:
    """The printed table's cells by implementation."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith(("| implementation", "| ---")):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_quick_run_prints_the_table() -> None:
    """Our row has no lost grant, no duplicate session and one live copy; every app has a row."""
    # The mix only measures speed, which a smoke run does not judge: half a second of it shows
    # it runs. The grants and the login storm, whose counts are judged, keep their quick sizes.
    command = [sys.executable, str(SCRIPT), "--quick", "--duration", "0.5"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert HEADER in result.stdout, result.stdout
    rows = table_rows(result.stdout)
    assert set(rows) == {"ours", "starsessions", "litestar"}, result.stdout
    lost, duplicates, live_copies, *_, errors = rows["ours"]
    assert (lost, duplicates, live_copies, errors) == ("0", "0", "1", "0"), result.stdout
