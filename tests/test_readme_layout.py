"""The README's "Layout" names every module of the package, in the folder it is in."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "crmsync"


def _layout_paths() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    paths, folders = set(), {0: ""}
    package_lines = block.split("src/crmsync/\n", 1)[1].splitlines()
    for line in package_lines:
        match = re.match(r"( *)(\S+)", line)
        if not match:
            continue
        if not match.group(1):
            break  # the package's tree ends at the next top-level folder
        depth = len(match.group(1)) // 2
        name = match.group(2)
        parent = folders.get(depth - 1, "") if depth > 1 else ""
        if name.endswith("/"):
            folders[depth] = parent + name
        else:
            paths.add(parent + name)
    return paths


def test_the_layout_names_every_module_where_it_is() -> None:
    modules = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "demo_server" not in path.parts
    }

    assert modules - _layout_paths() == set()
    assert {p for p in _layout_paths() if p.endswith(".py")} - modules == set()
