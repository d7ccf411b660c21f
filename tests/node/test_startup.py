"""The start-up clock the daemon logs: wall time since this process was launched, CPU time."""

from __future__ import annotations

import time

from meshnode.node.startup import StartupClock


def test_marks_count_from_the_launch_and_keep_the_first_time_of_a_phase() -> None:
    clock = StartupClock()
    wall, cpu = clock.marks["imported"]
    # This test process was launched before the clock was made (pytest imported first).
    assert wall > 0 and 0 < cpu <= wall + 1
    clock.mark("later")
    first = clock.marks["later"]
    time.sleep(0.05)
    clock.mark("later")
    assert clock.marks["later"] == first
    clock.mark("last")
    assert clock.marks["last"][0] >= first[0] + 0.05
    assert list(clock.report()) == ["imported", "later", "last"]
