"""One defence taken out again: the code as it behaved at e70e586, for one finding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Revert:
    """What e70e586 did for one finding of the hostile-peers issue, and the tests that must
    fail when it is put back.

    ``apply`` restores the old behaviour with ``monkeypatch`` (a function of e70e586's,
    adapted only as far as today's call signatures need, or a limit set back to what it
    was); it runs in every test of the process before the test's own fixtures.
    """

    name: str  # a short slug, the value of MESHNODE_REVERT
    finding: str  # which finding of the issue, e.g. "3. sync gaps hide records"
    before: str  # what e70e586 did, with its file:line
    apply: Callable[[pytest.MonkeyPatch], None]
    tests: tuple[str, ...]  # pytest node ids (relative to the repository root)
