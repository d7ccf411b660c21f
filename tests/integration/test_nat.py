"""Issue 14: two nodes behind separate NATs find each other through the mesh and answer an
ask, first through a relay, then over a hole-punched direct connection.

The lab (network namespaces, all removed at the end): an "internet" bridge 192.0.2.0/24
with a public relay node (relay_service on) and two home routers, each masquerading its own
private network (10.1.0.0/24, 10.2.0.0/24) and dropping connections that start outside,
as home routers do. Node A asks, node B hosts the Milvus expert seeded with its knowledge
base. At first the two routers also drop all traffic between each other, so the only way
between A and B is the relay; then that block is lifted and hole punching (DCUtR, TCP
simultaneous open through both NATs) must find the direct path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshnode.agents.specs import data_path, demo_agents
from meshnode.cli.demo import agent_toml
from tests.integration.harness import Daemon, mesh, wait_for
from tests.integration.netns import lab, lab_available, two_nats

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(lab_available(nat=True) is not None,
                                 reason=str(lab_available(nat=True)))]
NETWORK = "nat-mesh"
# Fast checks for a test; everything else is the default (hole punching on, relay client).
NETWORK_SETTINGS = {"mdns": False, "hole_punch_retry_s": 5.0, "autonat_confirmations": 1}
QUESTION = "Which Milvus index type should I use, HNSW or IVF_FLAT?"


def _connection(node: Daemon, peer_id: str) -> str | None:
    row = next((p for p in node.peers() if p["peer_id"] == peer_id and p["connected"]), None)
    return row["connection"] if row else None


def _ask(asker: Daemon, expert: Daemon) -> dict[str, Any]:
    answer: dict[str, Any] = asker.json("ask", "--timeout", "60", QUESTION)
    assert answer["agent"] == "milvus-expert" and answer["peer"] == expert.peer_id
    assert answer["answer"]["citations"], "answered from the expert's seeded memory"
    return answer


def test_nodes_behind_two_nats_ask_relayed_then_direct(tmp_path: Path) -> None:
    with lab() as net, mesh(tmp_path) as nodes:
        world = two_nats(net)
        world.separate()

        relay = Daemon(tmp_path, "relay", NETWORK,
                       {"network": {**NETWORK_SETTINGS, "relay_service": True}},
                       prefix=net.exec_prefix(world.relay))
        nodes.append(relay)
        relay.start(listen=f"/ip4/{world.relay_ip}/tcp/4001")
        a = Daemon(tmp_path, "a", NETWORK, {"network": NETWORK_SETTINGS},
                   prefix=net.exec_prefix(world.hosts["a"]))
        b = Daemon(tmp_path, "b", NETWORK, {"network": NETWORK_SETTINGS},
                   prefix=net.exec_prefix(world.hosts["b"]))
        b.add_agent(agent_toml(next(s for s in demo_agents() if s.name == "milvus-expert")))
        nodes += [a, b]
        a.start(relay.addr, listen=f"/ip4/{world.host_ips['a']}/tcp/4001")
        b.start(relay.addr, listen=f"/ip4/{world.host_ips['b']}/tcp/4001")
        assert b.json("memory", "ingest", str(data_path("kb", "milvus")))["records"] > 5

        # AutoNAT: the relay is public, both NATed nodes find out they are private and
        # reserve a slot on the relay, whose relayed address they advertise.
        wait_for("reachability to settle", lambda: (
            relay.json("status")["reachability"], a.json("status")["reachability"],
            b.json("status")["reachability"]) == ("public", "private", "private"), timeout=90)
        wait_for("both NATed nodes to hold a relay slot", lambda: all(
            [r["peer_id"] for r in n.json("status")["relays"]] == [relay.peer_id]
            for n in (a, b)), timeout=60)
        status_b = b.json("status")
        assert f"/p2p/{relay.peer_id}/p2p-circuit/p2p/{b.peer_id}" in " ".join(
            status_b["listen_addrs"])
        assert relay.json("status")["relay_service"]["reservations"] == 2

        # They learn each other from presence through the relay and connect through it.
        wait_for("a and b to connect through the relay",
                 lambda: _connection(a, b.peer_id) == "relayed", timeout=90)
        wait_for("the asker to know the expert",
                 lambda: any(x["agent"] == "milvus-expert" for x in a.json("agents")),
                 timeout=30)
        _ask(a, b)
        assert _connection(a, b.peer_id) == "relayed", "the ask went through the relay"

        # The routers stop blocking each other: hole punching opens a direct connection.
        world.join()
        wait_for("hole punching to connect a and b directly",
                 lambda: _connection(a, b.peer_id) == "direct", timeout=90)
        assert a.json("status")["hole_punching"]["direct_peers"] + \
            b.json("status")["hole_punching"]["direct_peers"] >= 1
        # Proof that it is the direct path: with the relay cut off from A, B still answers.
        world.block("a", world.relay_ip, "no_relay")
        _ask(a, b)
        assert _connection(a, b.peer_id) == "direct"
