"""Issue 14: a js-libp2p 3.x peer and real meshnode daemons share GossipSub.

The js peer (tests/interop/js/peer.mjs: libp2p, @libp2p/gossipsub, noise, yamux, tcp) does
not speak meshnode's hello. It stays connected as a gossip-only peer: it receives the
mesh's presence, what it publishes meets meshnode's validators like anyone's gossip, and it
never gets an A2A task run or a memory sync.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.a2a import A2A_PROTOCOL, GetAgentCard, encode_request
from protocols.codec import encode_frame
from protocols.envelope import decode_envelope, encode_envelope, seal
from protocols.memsync import PROTOCOL_ID as MEMSYNC_PROTOCOL
from protocols.memsync import SyncClient
from protocols.peerid import Signer
from protocols.presence import PRESENCE, Presence, topic
from tests.integration.harness import Daemon, cli_json, mesh, wait_for
from tests.interop.jspeer import JsPeer, ensure_installed, node_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not node_available(), reason="needs Node.js and npm"),
]
NETWORK = "interop"
PRESENCE_TOPIC = topic(NETWORK, "presence")


@pytest.fixture(scope="module", autouse=True)
def _js_packages() -> None:
    ensure_installed()


def _evidence(node: Daemon, peer_id: str) -> dict[str, int]:
    peers = cli_json(node.home, "trust")["peers"]
    return next((p["evidence"] for p in peers if p["peer_id"] == peer_id), {})


def _presence_senders(js: JsPeer) -> set[str]:
    senders = set()
    for message in js.received(PRESENCE_TOPIC):
        env = decode_envelope(message["data"], max_size=64 * 1024)
        assert env.type == PRESENCE and env.network_id == NETWORK
        senders.add(env.sender)
    return senders


def test_js_peer_gossips_with_the_mesh_but_gets_no_tasks_or_memory(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes, JsPeer() as js:
        a = Daemon(tmp_path, "a", NETWORK).start()
        b = Daemon(tmp_path, "b", NETWORK).start(a.addr)
        nodes += [a, b]
        wait_for("a and b to meet", lambda: b.peer_id in a.peer_ids(connected=True), 30)
        js.command("subscribe", topic=PRESENCE_TOPIC)
        dialed = js.command("dial", addr=a.addr)
        assert dialed["event"] == "dialed"

        # Presence of both nodes reaches the js peer: a's directly, b's relayed by a.
        wait_for("presence of a and b at the js peer",
                 lambda: _presence_senders(js) >= {a.peer_id, b.peer_id}, timeout=30)
        status = cli_json(a.home, "status")
        assert status["gossip_only_peers"] == 1
        assert js.peer_id not in a.peer_ids(), "a gossip-only peer is never listed or asked"

        # Garbage from the js peer is refused by a's validator and counted against it; it
        # goes no further, so b has nothing against a (which would have forwarded it).
        js.publish(PRESENCE_TOPIC, b"\x93not an envelope")
        wait_for("a to hold the garbage against the js peer",
                 lambda: _evidence(a, js.peer_id).get("malformed", 0) >= 1, timeout=20)
        assert _evidence(b, a.peer_id).get("malformed", 0) == 0

        # A valid announcement, signed by its author and merely published by the js peer,
        # is accepted by every node, as if a meshnode peer had relayed it. (Announced again
        # on every check, as presence is: the test mesh forgets a silent peer in 6 s.)
        author = Signer(Ed25519PrivateKey.generate())

        def announce_and_check() -> bool:
            body = Presence(peer_id=author.peer_id, addrs=(), version="relayed-by-js",
                            seq=time.time_ns(), ttl_s=30.0).to_body()
            js.publish(PRESENCE_TOPIC, encode_envelope(
                seal(author, NETWORK, PRESENCE, body, now=time.time())))
            return author.peer_id in a.peer_ids() and author.peer_id in b.peer_ids()

        wait_for("a and b to learn the author from the js peer's messages",
                 announce_and_check, timeout=30)

        # Another network's announcement, validly signed, is refused.
        stranger = Signer(Ed25519PrivateKey.generate())
        body = Presence(peer_id=stranger.peer_id, addrs=(), version="x", seq=1,
                        ttl_s=30.0).to_body()
        js.publish(PRESENCE_TOPIC, encode_envelope(
            seal(stranger, "another-net", PRESENCE, body, now=time.time())))
        time.sleep(3)
        assert stranger.peer_id not in a.peer_ids() | b.peer_ids()


        # The gossip-only peer gets no tasks and no memory: both protocols stay silent.
        card_request = encode_frame(encode_request("r1", GetAgentCard()))
        reply, _ = js.request(a.addr, A2A_PROTOCOL, card_request)
        assert reply == b"", "a2a answered a peer that never said hello"
        summary = SyncClient(NETWORK, {}).data_to_send()
        reply, _ = js.request(a.addr, MEMSYNC_PROTOCOL, summary)
        assert reply == b"", "memsync answered a peer that never said hello"
