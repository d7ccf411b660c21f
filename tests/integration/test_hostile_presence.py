"""Issue 9, item 5, against real daemons: a hostile node floods the mesh with presence
announcements of hundreds of fresh identities, each announcing the address of some other
host (the "bait"). The victim and the node behind it list only a bounded few of them, dial
the bait at most a handful of times, stay up, and still let an honest newcomer in.

(On the behaviour before, both listed every identity and dialed the bait over and over.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, mesh, wait_for

pytestmark = pytest.mark.integration
IDENTITIES = 600
#: What one neighbour may introduce (meshnode.node.admission): a burst, then a trickle.
VOUCH_BURST, VOUCH_PER_S = 64, 0.5


@contextmanager
def bait() -> Iterator[list[int]]:
    """A TCP port that counts the connections made to it (and closes them)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted = [server.getsockname()[1], 0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted[1] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield accepted
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_presence_flood_stays_bounded(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes, bait() as counted:
        # Default settings: a peer is kept for its TTL, so the flood's peak is what shows.
        victim = Daemon(tmp_path, "victim", "dev-support", fast=False).start()
        nodes.append(victim)
        behind = Daemon(tmp_path, "behind", "dev-support", fast=False).start(victim.addr)
        nodes.append(behind)
        wait_for("the two to meet", lambda: behind.peer_id in victim.peer_ids(), timeout=60)
        flood_started = time.monotonic()
        hostile = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.hostile_presence", "--connect",
             victim.addr, "--network", "dev-support", "--identities", str(IDENTITIES),
             "--bait", f"/ip4/127.0.0.1/tcp/{counted[0]}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        honest = {victim.peer_id, behind.peer_id}
        most = {"victim": 0, "behind": 0}

        def count() -> None:  # the most each lists at any time (not only at the end)
            for node in (victim, behind):
                listed = {p["peer_id"] for p in node.api("/v1/peers")}
                most[node.name] = max(most[node.name], len(listed - honest))

        try:
            assert hostile.stdout is not None
            done: list[str] = []
            reader = threading.Thread(target=lambda: done.append(hostile.stdout.readline()))
            reader.start()
            while not done:  # counting while the flood comes in
                count()
                time.sleep(0.2)
            assert done[0].strip() == f"flooded {IDENTITIES}"
            until = time.monotonic() + 20  # time to relay, admit, and dial what was admitted
            while time.monotonic() < until:
                count()
                time.sleep(0.2)
            # Per neighbour of the hostile node (behind may dial it too, and pass on what it
            # admitted), the burst and what refilled since; and the hostile node itself.
            bound = 2 * (VOUCH_BURST + VOUCH_PER_S * (time.monotonic() - flood_started)) + 1
            assert max(most.values()) <= bound, (most, bound)
            # Each node: a few dials of announced-only peers, one at a time per address, and
            # the address backing off (1, 2, 4, 8... s) whichever identity announces it.
            assert counted[1] <= 20, f"the bait was dialed {counted[1]} times"
            assert victim.status()["known_peers"] <= bound + 2
            newcomer = Daemon(tmp_path, "newcomer", "dev-support", fast=False).start(
                victim.addr)
            nodes.append(newcomer)
            wait_for("the newcomer to be listed", lambda: newcomer.peer_id in
                     victim.peer_ids(), timeout=60)
        finally:
            hostile.kill()
            hostile.wait()
