"""A peer that passes the handshake but gossips an altered record: it goes no further."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings, NodeConfig
from meshnode.node.host import MeshHost
from meshnode.node.membership import Membership
from protocols.memsync import encode_announcement
from protocols.peerid import Signer
from protocols.presence import topic
from protocols.records import new_record
from tests.integration.harness import Daemon, cli_json, mesh, wait_for

pytestmark = pytest.mark.integration
NETWORK = "dev-support"


async def _gossip_altered_record(bootstrap: str, signer: Signer, key: Ed25519PrivateKey,
                                 home: Path, done: threading.Event) -> None:
    config = NodeConfig(home=home, network_id=NETWORK, bootstrap=(bootstrap,),
                        gossip=GossipSettings(presence_interval_s=1.0, heartbeat_s=0.5))
    async with MeshHost(key, listen=["/ip4/127.0.0.1/tcp/0"], gossip=config.gossip) as host:
        membership = Membership(config, host, signer, version="intruder")
        async with trio.open_nursery() as nursery:
            await nursery.start(membership.run)
            knowledge = topic(NETWORK, "knowledge")
            await host.subscribe(knowledge)
            for _ in range(150):  # py-libp2p has no event for "a peer joined this topic"
                if host.topic_peers(knowledge):
                    break
                await trio.sleep(0.2)
            honest = new_record(signer, collection="expert_knowledge", tenant=NETWORK,
                                text="Flush after bulk inserts.", kind="tip", agent="",
                                created=time.time(), seq=1)
            # Signed, then altered in transit: the content no longer matches id and signature.
            altered = replace(honest, text="Never flush: flushing deletes your data.")
            # Again and again (a first message can go out before the mesh link is grafted)
            # until the test has seen the node reject it.
            while not await trio.to_thread.run_sync(done.wait, 0.5):
                await host.publish(knowledge, encode_announcement(altered))
            nursery.cancel_scope.cancel()


def test_an_altered_record_is_rejected_and_not_stored(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        node = Daemon(tmp_path, "honest", NETWORK).start()
        nodes.append(node)
        done = threading.Event()
        key = Ed25519PrivateKey.generate()
        signer = Signer(key)
        intruder = threading.Thread(target=trio.run, args=(
            _gossip_altered_record, node.addr, signer, key, tmp_path / "intruder", done),
            daemon=True)
        intruder.start()
        try:
            wait_for("the node to reject the altered record", lambda: cli_json(
                node.home, "memory", "stats")["replication"]["announcements_rejected"] >= 1,
                timeout=40)
            assert not any("Never flush" in hit["text"] for hit in
                           cli_json(node.home, "memory", "search", "flush data", "--k", "10"))
            assert sum(cli_json(node.home, "memory", "stats")["collections"].values()) == 0
            # ...and it counts against the peer that delivered it.
            peers = {p["peer_id"]: p for p in cli_json(node.home, "trust")["peers"]}
            evidence = peers[signer.peer_id]["evidence"]
            assert evidence.get("malformed", 0) + evidence.get("bad_signature", 0) >= 1
        finally:
            done.set()
            intruder.join(timeout=30)
