"""Issue 2 end to end: five real daemons find each other by gossip; other networks stay out."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, mesh, wait_for

pytestmark = pytest.mark.integration


def _lists_exactly(daemon: Daemon, expected: set[str]) -> bool:
    return daemon.peer_ids() == expected


def _presence_received(daemon: Daemon) -> int:
    return int(daemon.api("/v1/gossip")["presence_received"])


def test_five_nodes_find_each_other_and_other_networks_stay_out(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        # Each node bootstraps only from the previous one.
        for i in range(5):
            node = Daemon(tmp_path, f"n{i}", "dev-support")
            node.start(*([nodes[-1].addr] if nodes else []))
            nodes.append(node)
        ids = {n.peer_id for n in nodes}
        for node in nodes:
            others = ids - {node.peer_id}
            wait_for(f"{node.name} to list the other four", lambda n=node, o=others:
                     _lists_exactly(n, o), timeout=45)
        # Memory opens in the background of a serving node; its state is in the status.
        for node in nodes:
            wait_for(f"{node.name}'s memory to open",
                     lambda n=node: n.status().get("memory") == "open", timeout=60)

        # A node of another network bootstrapping from n2 is refused, both ways.
        outsider = Daemon(tmp_path, "outsider", "another-mesh")
        outsider.start(nodes[2].addr)
        nodes.append(outsider)
        wait_for("the outsider to refuse n2 as another network", lambda:
                 outsider.status()["handshakes"].get("wrong_network", 0) >= 1, timeout=20)
        # Let several presence rounds of the mesh go by (every node announces each second):
        # time enough for the outsider to show up somewhere, had it been let in.
        heard = _presence_received(nodes[2])
        wait_for("n2 to hear three more rounds of presence", lambda:
                 _presence_received(nodes[2]) >= heard + 12, timeout=30)
        assert outsider.peers() == []
        for node in nodes[:5]:
            assert outsider.peer_id not in node.peer_ids()

        # SIGKILL n3: the others drop it from `connected`, then forget it.
        victim = nodes[3]
        victim.kill()
        survivors = [nodes[i] for i in (0, 1, 2, 4)]
        for node in survivors:
            wait_for(f"{node.name} to see n3 disconnected",
                     lambda n=node: victim.peer_id not in n.peer_ids(connected=True), timeout=20)
        for node in survivors:
            wait_for(f"{node.name} to expire n3",
                     lambda n=node: victim.peer_id not in n.peer_ids(), timeout=30)

        # Stopping the first bootstrap node does not split the rest: n1, n2, n4 keep hearing
        # fresh presence from each other after n0 is gone.
        assert nodes[0].stop(signal.SIGTERM) == 0
        stopped_at = time.time()
        rest = [nodes[1], nodes[2], nodes[4]]
        rest_ids = {n.peer_id for n in rest}

        def fresh_and_connected(node: Daemon) -> bool:
            peers = {p["peer_id"]: p for p in node.peers()}
            return all(
                peers.get(other, {}).get("connected")
                and (peers[other]["last_presence"] or 0) > stopped_at + 1
                for other in rest_ids - {node.peer_id}
            )

        for node in rest:
            wait_for(f"{node.name} to keep hearing the others", lambda n=node:
                     fresh_and_connected(n), timeout=30)


def test_private_network_refuses_nodes_without_the_secret(tmp_path: Path) -> None:
    secret = {"MESHNODE_NETWORK_SECRET": "correct horse battery staple"}
    with mesh(tmp_path) as nodes:
        a = Daemon(tmp_path, "a", "private-mesh").start(env=secret)
        nodes.append(a)
        b = Daemon(tmp_path, "b", "private-mesh").start(a.addr, env=secret)
        nodes.append(b)
        wait_for("b to join a", lambda: b.peer_ids(connected=True) == {a.peer_id}, timeout=30)
        status = b._status()
        assert status is not None and status["private"] is True

        # Same network ID, no secret: the transport handshake itself fails.
        intruder = Daemon(tmp_path, "intruder", "private-mesh").start(a.addr)
        nodes.append(intruder)
        # It keeps trying (with backoff) and keeps failing: two failures, not one, so that
        # the checks below come after a retry, not before the first answer.
        wait_for("the intruder's dials to fail twice", lambda:
                 intruder.status()["dials"].get("failed", 0) >= 2, timeout=30)
        assert intruder.status()["handshakes"] == {}  # never got as far as a hello
        assert intruder.peers() == []
        assert intruder.peer_id not in a.peer_ids()
        assert intruder.peer_id not in b.peer_ids()
