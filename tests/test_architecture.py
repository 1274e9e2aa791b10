"""docs/architecture.md matches the tree: every module of a family is named in its folder's row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "walletmesh_sessions"
PAGE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
FOLDERS = ("_core", "_local", "_redis", "_postgres", "_tools")


def row_of(folder: str) -> str:
    """The text of the tree table's row for `folder`."""
    found = re.search(rf"^\| `{folder}/` \|(.*)$", PAGE, flags=re.MULTILINE)
    assert found, f"docs/architecture.md has no row for {folder}/"
    return found[1]


def modules_of(folder: str) -> list[str]:
    """The modules and subpackages below `folder`, by name (no `__init__`)."""
    names = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        if path.name != "__init__.py":
            names.append(path.stem)
        elif path.parent != PACKAGE / folder:
            names.append(f"{path.parent.name}/")
    return names


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_module_is_named_in_its_row(folder: str) -> None:
    row = row_of(folder)
    missing = [name for name in modules_of(folder) if f"`{name}" not in row]
    assert not missing, f"docs/architecture.md's {folder}/ row does not name {missing}"


def test_every_folder_is_in_the_tree() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name.startswith("_")}
    assert folders - {"__pycache__"} == set(FOLDERS)
