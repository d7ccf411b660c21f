"""The import graph follows the layering the README's Layout section draws.

Each part may import only parts below it; a new upward import (say trust → ask) is a design
change and should be one on purpose, with this table changed in the same commit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Top to bottom. A part may import itself and anything on a later line.
LAYERS: list[tuple[str, ...]] = [
    ("meshnode.cli",),
    ("meshnode.daemon",),
    ("meshnode.api",),
    ("meshnode.ask",),
    ("meshnode.trust", "meshnode.a2a"),
    ("meshnode.node",),
    ("meshnode.config",),
    ("meshnode.agents",),
    ("meshnode.errors", "meshnode"),
    ("memory", "bootstrap"),
    ("protocols",),
]
RANK = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    """The layer part a dotted module name belongs to (its longest listed prefix)."""
    names = module.split(".")
    for n in range(len(names), 0, -1):
        prefix = ".".join(names[:n])
        if prefix in RANK:
            return prefix
    return None


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (not executed at run time)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and \
                node.test.id == "TYPE_CHECKING":
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def _imports(path: Path, *, facade: bool = False) -> list[str]:
    """What ``path`` imports. Of the package facade (meshnode/__init__, which names the
    public API of every layer but loads each lazily, on first use), only what it imports
    at run time counts: its ``if TYPE_CHECKING:`` imports are for type checkers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree) if facade else set()
    found: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for package in ("meshnode", "memory", "bootstrap", "protocols"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.append((".".join(p for p in parts if p != "__init__"), path))
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_imports_point_down(module: str, path: Path) -> None:
    part = _part(module)
    assert part is not None, f"{module} is in no layer: add it to LAYERS"
    upward = []
    for imported in _imports(path, facade=module == "meshnode"):
        target = _part(imported)
        if target is None or target == part:
            continue
        # meshnode/__init__ imports errors at run time (the rest lazily): it is the bottom.
        if RANK[target] < RANK[part]:
            upward.append(imported)
    assert not upward, f"{module} ({part}) imports upward: {upward}"
