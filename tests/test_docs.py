"""Every Python example in the README and docs runs, and prints what the page says it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from .conftest import RunOnce

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```$", re.M | re.S)
REDIS_URL_VARIABLE = "WALLETMESH_REDIS_URL"
POSTGRES_URL_VARIABLE = "WALLETMESH_POSTGRES_URL"
REDIS_CLUSTER_URL_VARIABLE = "WALLETMESH_REDIS_CLUSTER_URL"
SENTINEL_URL_VARIABLE = "WALLETMESH_SENTINEL_URL"


FILE_MARK = re.compile(r"^# file: (\S+)\n")


@attrs.frozen
class Example:
    """A ```python block and the ```text block after it, if any: its expected output."""

    page: Path
    line: int
    code: str
    expected_output: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = list(FENCE.finditer(text))
        for i, block in enumerate(blocks):
            if block.group(1) != "python":
                continue
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            expected = after.group(2) if after is not None and after.group(1) == "text" else None
            line = text.count("\n", 0, block.start()) + 1
            if not FILE_MARK.match(block.group(2)):
                found.append(Example(page, line, block.group(2), expected))
    return found


def page_files() -> dict[Path, dict[str, str]]:
    """Per page, the ```python blocks marked ``# file: name.py``: a small project to test."""
    files: dict[Path, dict[str, str]] = {}
    for page in PAGES:
        for block in FENCE.finditer(page.read_text(encoding="utf-8")):
            mark = FILE_MARK.match(block.group(2))
            if block.group(1) == "python" and mark:
                files.setdefault(page, {})[mark.group(1)] = block.group(2)
    return files


PAGE_FILES = page_files()


EXAMPLES = examples()


def test_pages_have_examples() -> None:
    """The harness finds the examples (a broken fence pattern would find none)."""
    assert len(EXAMPLES) >= 5


def run_python(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with `args` in `cwd`, capturing text output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_example_runs(example: Example, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The example exits 0 in an empty directory and prints its documented output."""
    env = dict(os.environ)
    if REDIS_URL_VARIABLE in example.code:
        env[REDIS_URL_VARIABLE] = request.getfixturevalue("redis_url")
    if SENTINEL_URL_VARIABLE in example.code:
        env[SENTINEL_URL_VARIABLE] = request.getfixturevalue("redis_sentinel").url()
    if POSTGRES_URL_VARIABLE in example.code:
        env[POSTGRES_URL_VARIABLE] = request.getfixturevalue("postgres_url")
    if REDIS_CLUSTER_URL_VARIABLE in example.code:
        env[REDIS_CLUSTER_URL_VARIABLE] = request.getfixturevalue("redis_cluster").url
    result = run_python(["-c", example.code], tmp_path, env)
    assert result.returncode == 0, result.stderr
    if example.expected_output is not None:
        assert result.stdout == example.expected_output


def strict_mypy(cache: Path) -> list[str]:
    """Arguments that run mypy --strict with the docs' own cache: these runs share their options
    (no configuration file in their directories), so each after the first is incremental."""
    return ["-m", "mypy", "--strict", f"--cache-dir={cache / 'docs'}"]


def module_name(example: Example) -> str:
    """A module name for the example, unique and importable: page stem and line."""
    stem = re.sub(r"\W", "_", example.page.stem.lower())
    return f"example_{stem}_{example.line}"


@pytest.fixture(scope="module")
def mypy_errors(
    tmp_path_factory: pytest.TempPathFactory, mypy_cache: Path, run_once: RunOnce
) -> dict[str, list[str]]:
    """mypy --strict over every example at once (mypy is slow to start): errors per module."""

    def check() -> dict[str, list[str]]:
        directory = tmp_path_factory.mktemp("examples")
        for example in EXAMPLES:
            (directory / f"{module_name(example)}.py").write_text(example.code, encoding="utf-8")
        # This checkout, whatever copy of the package is installed.
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        files = sorted(p.name for p in directory.glob("*.py"))
        run = run_python([*strict_mypy(mypy_cache), *files], directory, env)
        errors: dict[str, list[str]] = {module_name(example): [] for example in EXAMPLES}
        for line in run.stdout.splitlines():
            module = line.split(".py:", 1)[0]
            if module in errors:
                errors[module].append(line)
        assert run.returncode == 0 or any(errors.values()), run.stdout + run.stderr
        return errors

    return run_once("docs-examples-mypy", check)


# Examples mypy rejects for a reason outside the example: (page, text in its code) -> reason.
KNOWN_TYPE_ERRORS: dict[tuple[str, str], str] = {}


def typed_examples() -> list[Any]:
    """Every example, those with a known type error marked as strict xfail."""
    params = []
    for example in EXAMPLES:
        reasons = [
            reason
            for (page, text), reason in KNOWN_TYPE_ERRORS.items()
            if example.page.name == page and text in example.code
        ]
        marks = [pytest.mark.xfail(reason=reasons[0], strict=True)] if reasons else []
        params.append(pytest.param(example, marks=marks, id=example.name))
    return params


@pytest.mark.parametrize("example", typed_examples())
def test_example_type_checks(example: Example, mypy_errors: dict[str, list[str]]) -> None:
    """The example passes mypy --strict, as the code of a typed application would."""
    assert mypy_errors[module_name(example)] == [], "\n".join(mypy_errors[module_name(example)])


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_project_passes(page: Path, tmp_path: Path, mypy_cache: Path) -> None:
    """The files a page shows (a store and its tests) pass pytest and mypy --strict."""
    for name, code in PAGE_FILES[page].items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    tests = [name for name in PAGE_FILES[page] if name.startswith("test_")]
    assert tests, "a page with files shows no test file"
    # This checkout after the page's files, whatever copy of the package is installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = run_python(
        ["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "error", *tests],
        tmp_path,
        env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert int(summary.split(" passed")[0].split()[-1]) >= 100, summary
    # Only the optional rules may skip: foreign data, and two store objects over one storage
    # (the page's store shares no storage).
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    optional = ("no foreign_data fixture", "do not share their storage")
    assert all(any(reason in line for reason in optional) for line in skips), skips
    typed = run_python([*strict_mypy(mypy_cache), *PAGE_FILES[page]], tmp_path, env)
    assert typed.returncode == 0, typed.stdout


def test_readme_shows_the_quickstart() -> None:
    """The README's example is docs/quickstart.py, the file its install command runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = (ROOT / "docs" / "quickstart.py").read_text(encoding="utf-8")
    assert f"```python\n{quickstart}```" in readme
    assert "python docs/quickstart.py" in readme


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command is the one .ci/run calls."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```console\n(.*?)\n```", readme, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


UNPUBLISHED_INSTALL = re.compile(r"pip install\s+['\"]?walletmesh-sessions")


def test_install_commands_work_before_release() -> None:
    """No page tells readers to install the distribution by name: it is not on PyPI yet."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in UNPUBLISHED_INSTALL.finditer(text):
            # Quoting the library's own error message is fine; telling readers to run it is not.
            before = text[max(0, match.start() - 120) : match.start()]
            shown = text[match.start() : match.end() + 20]
            assert "message" in before, f"{page.relative_to(ROOT)}: {shown!r}"


def test_trio_examples_say_how_to_get_trio() -> None:
    """An example that runs on trio says, just before it, to install trio (no store extra does)."""
    trio_examples = [example for example in EXAMPLES if "trio" in example.code]
    assert trio_examples
    for example in trio_examples:
        lines = example.page.read_text(encoding="utf-8").splitlines()[: example.line - 1]
        assert "pip install trio" in "\n".join(lines[-4:]), example.name


def test_crontab_lines_are_absolute() -> None:
    """cron starts jobs in the home directory with a bare PATH: command and store are absolute."""
    entries = [
        line.split("crontab:", 1)[1]
        for page in PAGES
        for line in page.read_text(encoding="utf-8").splitlines()
        if "crontab:" in line
    ]
    assert entries
    for entry in entries:
        command = entry.split()[5]
        store = re.search(r"--store\s+(\S+)", entry)
        assert command.startswith("/"), entry
        assert store is not None, entry
        assert not store.group(1).startswith("sqlite:") or store.group(1).startswith("sqlite:////")
