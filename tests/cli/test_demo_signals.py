"""`meshnode demo` never leaves its daemons behind: SIGTERM, SIGHUP, even SIGKILL of the demo.

Real `meshnode demo` processes; the daemons are found by their command line (which names the
demo's folder), so a daemon that the demo lost track of would still be seen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def daemons_of(root: Path) -> set[int]:
    """PIDs of the `meshnode start` processes whose home is under ``root``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"start" in cmdline and any(str(root).encode() in a
                                                        for a in cmdline):
            found.add(int(entry))
    return found


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshnode.cli", "demo", "--dir", str(root)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "MESHNODE_HOME": ""},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited early: {''.join(self.lines)}")
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}: {''.join(self.lines)}")

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in daemons_of(self.root):
            os.kill(pid, signal.SIGKILL)


def _gone(root: Path, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := daemons_of(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_sigterm_while_the_mesh_runs_stops_every_daemon(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo")
    try:
        demo.wait_for("the demo to answer", lambda: demo.printed("the mesh keeps running"))
        assert len(daemons_of(demo.root)) == 4
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(60) == 0
        assert _gone(demo.root, 5) == set()
        assert demo.printed("SIGTERM: the mesh was stopped")
    finally:
        demo.kill()


def test_sighup_while_starting_stops_every_daemon(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo")
    try:
        demo.wait_for("two daemons", lambda: len(daemons_of(demo.root)) >= 2)
        demo.proc.send_signal(signal.SIGHUP)
        demo.proc.wait(60)
        assert _gone(demo.root, 5) == set()
        assert demo.printed("SIGHUP: the mesh was stopped")
    finally:
        demo.kill()


def test_a_killed_demo_takes_its_daemons_with_it(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo")
    try:
        demo.wait_for("four daemons", lambda: len(daemons_of(demo.root)) == 4)
        demo.proc.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can help
        demo.proc.wait(10)
        assert _gone(demo.root, 30) == set()
    finally:
        demo.kill()
