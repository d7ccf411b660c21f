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


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
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
    for imported in _imports(path):
        target = _part(imported)
        if target is None or target == part:
            continue
        # meshnode/__init__ re-exports errors only; it is the bottom of the meshnode layers.
        if RANK[target] < RANK[part]:
            upward.append(imported)
    assert not upward, f"{module} ({part}) imports upward: {upward}"
