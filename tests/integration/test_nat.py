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
from tests.integration.netns import Lab, lab, lab_available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(lab_available(nat=True) is not None,
                                 reason=str(lab_available(nat=True)))]
NETWORK = "nat-mesh"
RELAY_IP = "192.0.2.10"
# Fast checks for a test; everything else is the default (hole punching on, relay client).
NETWORK_SETTINGS = {"mdns": False, "hole_punch_retry_s": 5.0, "autonat_confirmations": 1}
QUESTION = "Which Milvus index type should I use, HNSW or IVF_FLAT?"


def _home_router(net: Lab, inet: str, side: str, public_ip: str, lan: str) -> str:
    """A home network behind NAT; returns the namespace of its one host (lan + ".2")."""
    router = net.netns(f"r{side}")
    public_if = net.wire(router, f"{public_ip}/24", to=inet, bridge="br0")
    host = net.netns(f"h{side}")
    net.wire(host, f"{lan}.2/24", to=router, peer_addr=f"{lan}.1/24")
    net.route_default(host, f"{lan}.1")
    net.masquerade(router, private=f"{lan}.0/24", public_if=public_if)
    return router


def _block(net: Lab, router: str, table: str, ip: str) -> None:
    net.nft(router, f"table ip {table} {{ chain gate {{ type filter hook forward "
                    f"priority -10; policy accept; ip daddr {ip} drop; ip saddr {ip} drop; }}; }}")


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
        inet = net.netns("inet")
        net.bridge(inet)
        relay_ns = net.netns("relay")
        net.wire(relay_ns, f"{RELAY_IP}/24", to=inet, bridge="br0")
        router_a = _home_router(net, inet, "a", "192.0.2.21", "10.1.0")
        router_b = _home_router(net, inet, "b", "192.0.2.22", "10.2.0")
        _block(net, router_a, "no_direct", "192.0.2.22")
        _block(net, router_b, "no_direct", "192.0.2.21")

        relay = Daemon(tmp_path, "relay", NETWORK,
                       {"network": {**NETWORK_SETTINGS, "relay_service": True}},
                       prefix=net.exec_prefix(relay_ns))
        nodes.append(relay)
        relay.start(listen=f"/ip4/{RELAY_IP}/tcp/4001")
        a = Daemon(tmp_path, "a", NETWORK, {"network": NETWORK_SETTINGS},
                   prefix=net.exec_prefix(f"{net.tag}-ha"))
        b = Daemon(tmp_path, "b", NETWORK, {"network": NETWORK_SETTINGS},
                   prefix=net.exec_prefix(f"{net.tag}-hb"))
        b.add_agent(agent_toml(next(s for s in demo_agents() if s.name == "milvus-expert")))
        nodes += [a, b]
        a.start(relay.addr, listen="/ip4/10.1.0.2/tcp/4001")
        b.start(relay.addr, listen="/ip4/10.2.0.2/tcp/4001")
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
        net.nft(router_a, "delete table ip no_direct")
        net.nft(router_b, "delete table ip no_direct")
        wait_for("hole punching to connect a and b directly",
                 lambda: _connection(a, b.peer_id) == "direct", timeout=90)
        assert a.json("status")["hole_punching"]["direct_peers"] + \
            b.json("status")["hole_punching"]["direct_peers"] >= 1
        # Proof that it is the direct path: with the relay cut off from A, B still answers.
        _block(net, router_a, "no_relay", RELAY_IP)
        _ask(a, b)
        assert _connection(a, b.peer_id) == "direct"
