"""Issue 14: nodes of one mesh on one LAN find each other by mDNS, with no bootstrap address.

Three network namespaces on one bridge (multicast flows between them, nothing leaves the
lab): two nodes of one mesh and one of another mesh, all with mDNS on and no bootstrap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import Daemon, mesh, wait_for
from tests.integration.netns import lab, lab_available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(lab_available() is not None, reason=str(lab_available()))]
MDNS_ON = {"network": {"mdns": True}}


def test_nodes_of_one_mesh_find_each_other_on_a_lan(tmp_path: Path) -> None:
    with lab() as net, mesh(tmp_path) as nodes:
        hub = net.netns("lan")
        net.bridge(hub)
        started = []
        for name, network, ip in (("a", "lan-mesh", "10.77.0.1"), ("b", "lan-mesh", "10.77.0.2"),
                                  ("c", "other-mesh", "10.77.0.3")):
            ns = net.netns(name)
            net.wire(ns, f"{ip}/24", to=hub, bridge="br0")
            node = Daemon(tmp_path, name, network, MDNS_ON, prefix=net.exec_prefix(ns))
            nodes.append(node)
            started.append(node.start(listen=f"/ip4/{ip}/tcp/4001"))
        a, b, c = started

        wait_for("a and b to connect by mDNS alone",
                 lambda: b.peer_id in a.peer_ids(connected=True)
                 and a.peer_id in b.peer_ids(connected=True), timeout=45)
        lan = a.json("status")["lan"]
        assert lan["announced"] == [f"/ip4/10.77.0.1/tcp/4001/p2p/{a.peer_id}"]
        assert lan["discovered"] >= 1
        # The node of the other mesh is on the same LAN but never joins this mesh.
        assert c.peer_id not in a.peer_ids() | b.peer_ids()
        assert c.peers() == []
