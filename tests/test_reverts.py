"""Each hostile test fails with its defence taken out (e70e586's behaviour put back).

A defence is proven by a test that fails without it. For every :class:`Revert` in
tests/reverts, the tests it names run in a child pytest with ``MESHNODE_REVERT`` set, and
every one of them must fail (a failure, not a set-up error or a skip). And every test in a
``test_hostile_*.py`` file outside tests/integration must be named by some revert, or be
listed as an honest-path check with the reason, so a new hostile test cannot go unproven.
(The real-daemon versions in tests/integration run the same attacks against processes a
monkeypatch cannot reach; their in-memory twins are the ones proven here.)
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import NO_SKIPS_VARIABLE, REVERT_VARIABLE
from tests.reverts import NOT_ATTACKS, REVERTS, Revert

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 240


def _hostile_tests() -> set[str]:
    """``path::function`` of every test function in the non-integration hostile files."""
    found = set()
    for path in sorted((ROOT / "tests").rglob("test_hostile_*.py")):
        if "integration" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                found.add(f"{path.relative_to(ROOT).as_posix()}::{node.name}")
    return found


def _function_of(node_id: str) -> str:
    return node_id.split("[", 1)[0]


def test_every_hostile_test_is_proven_by_a_revert() -> None:
    named = {_function_of(t) for r in REVERTS.values() for t in r.tests}
    missing = _hostile_tests() - named - set(NOT_ATTACKS)
    assert not missing, f"hostile tests no revert makes fail: {sorted(missing)}"
    assert all(reason.strip() for reason in NOT_ATTACKS.values())


def test_every_revert_names_tests_that_exist() -> None:
    for revert in REVERTS.values():
        assert revert.tests and revert.finding and revert.before, revert.name
        for node_id in revert.tests:
            path, _, function = _function_of(node_id).partition("::")
            assert function in (ROOT / path).read_text(encoding="utf-8"), node_id


@pytest.mark.parametrize("revert", list(REVERTS.values()), ids=lambda r: r.name)
def test_the_tests_fail_with_the_defence_taken_out(revert: Revert, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    env = {**os.environ, REVERT_VARIABLE: revert.name}
    env.pop(NO_SKIPS_VARIABLE, None)
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}", *revert.tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
    )
    assert child.returncode in (0, 1), child.stdout[-3000:] + child.stderr[-3000:]
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes = {
        f"{c.get('classname')}::{c.get('name')}": [e.tag for e in c] for c in cases
    }
    assert outcomes, child.stdout[-3000:]
    not_failed = {k: v for k, v in outcomes.items() if "failure" not in v}
    assert not not_failed, f"still pass (or error/skip) without the defence: {not_failed}"
