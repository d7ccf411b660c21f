"""Shared set-up of the A2A tests: a hang watchdog.

A decoder or a stream of events must never hang. Hypothesis deadlines only report an example
that *finished* late, so each test here also runs under a watchdog: if one test is still
running after ``TEST_BUDGET_S``, faulthandler dumps every thread's stack and ends the process,
so that the run fails loudly instead of blocking forever. This is a hang detector, not a speed
assertion: the budget is far above what any test here needs.
"""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator

import pytest

TEST_BUDGET_S = 60.0


@pytest.fixture(autouse=True)
def _hang_watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(TEST_BUDGET_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
