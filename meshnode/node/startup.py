"""Where a node's start-up went: wall time since launch and CPU time at each phase."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _process_age() -> float:
    """Seconds since this process was launched (Linux: from /proc; else since import)."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()


class StartupClock:
    """Where start-up went: wall seconds since launch and CPU seconds of this process (all
    its threads) at each phase, logged once the node serves and once it has met a peer."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}
        self.mark("imported")

    def mark(self, phase: str) -> None:
        if phase not in self.marks:
            self.marks[phase] = (round(_process_age(), 3), round(time.process_time(), 3))

    def report(self) -> dict[str, list[float]]:
        return {phase: [wall, cpu] for phase, (wall, cpu) in self.marks.items()}
