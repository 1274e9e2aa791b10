"""pyright finds every type of the public API: `pyright --verifytypes` scores it 100 %."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunOnce

ROOT = Path(__file__).parent.parent
PACKAGE = "walletmesh_sessions"


def verify_types() -> dict[str, Any]:
    """A `--verifytypes` run over this checkout: pyright's report."""
    env = dict(os.environ)
    # verifytypes resolves imports with the `python` on PATH, not with --pythonpath: make it
    # this interpreter, so anyio and redis (the `test` extra) resolve to their real types.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # This checkout first, whatever copy of the package the environment has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # No request to PyPI for a newer pyright: the run stays offline and deterministic.
    env["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyright",
            "--verifytypes",
            PACKAGE,
            "--ignoreexternal",
            "--outputjson",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright printed no JSON (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    return result


@pytest.fixture(scope="module")
def report(run_once: RunOnce) -> dict[str, Any]:
    """One `--verifytypes` run per session, whichever worker asks (pyright takes seconds)."""
    return run_once("pyright-verifytypes", verify_types)


def unknown_symbols(report: dict[str, Any]) -> str:
    """Each symbol whose type pyright does not know, with pyright's reasons."""
    lines = []
    for symbol in report["typeCompleteness"]["symbols"]:
        if not symbol["isTypeKnown"] or symbol["isTypeAmbiguous"]:
            lines.append(symbol["name"])
            lines.extend(f"    {d['message']}" for d in symbol["diagnostics"])
    return "\n".join(lines)


class TestVerifyTypes:
    """The public API is fully typed for pyright, not only for mypy."""

    def test_checks_this_checkout(self, report: dict[str, Any]) -> None:
        """pyright analysed the package of this checkout, with its py.typed."""
        completeness = report["typeCompleteness"]
        assert Path(completeness["packageRootDirectory"]) == ROOT / PACKAGE
        assert Path(completeness["pyTypedPath"]) == ROOT / PACKAGE / "py.typed"
        modules = {module["name"] for module in completeness["modules"]}
        assert {PACKAGE, f"{PACKAGE}.redis", f"{PACKAGE}.testing"} <= modules

    def test_complete(self, report: dict[str, Any]) -> None:
        """Every exported and referenced symbol has a known, unambiguous type."""
        score = report["typeCompleteness"]["completenessScore"]
        assert score == 1.0, f"completeness {score:.1%}; unknown:\n{unknown_symbols(report)}"
