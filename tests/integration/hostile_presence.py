"""A hostile node that floods a mesh with presence announcements of fresh identities.

Built from the project's own code: a real MeshHost and Membership (so it passes the hello
handshake like any member), plus a flood. For each of ``--identities`` fresh keys it sends
an announcement signed by that key, announcing ``--bait`` (some host's address) as the key's
address, two ways:

- **foreign**: published under the hostile node's own GossipSub identity (one connection
  speaking for keys it is not);
- **forged**: published as a GossipSub message of the fresh key itself (signed with it), as
  if the hostile node were only relaying it: any peer holding keys can do this.

It sends both presence formats (topic version 1, with the agent cards inline and padded to
~60 KB each, and version 2, with a card digest), so it floods a node of either version. It
prints ``flooded N`` when done and then stays connected until killed.

    python -m tests.integration.hostile_presence --connect ADDR --network dev-support \
        --identities 400 --bait /ip4/127.0.0.1/tcp/9
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX

from meshnode.config import NodeConfig
from meshnode.node.host import MeshHost
from meshnode.node.membership import Membership
from protocols.envelope import encode_envelope, seal
from protocols.peerid import Signer

FAT_CARD = 60_000


def topic(network: str, kind: str, version: int) -> str:
    # Spelled out (as protocols.presence.topic makes them) so that this also floods nodes
    # of the version before presence topic 2.
    return f"/meshnode/{network}/{kind}/{version}"


def _bodies(signer: Signer, bait: str, i: int) -> dict[int, dict[str, Any]]:
    common = {"peer_id": signer.peer_id, "addrs": [f"{bait}/p2p/{signer.peer_id}"],
              "version": "sybil", "seq": 1, "ttl_s": 86_400.0, "load": 0.0}
    card = {"name": f"sybil-{i}", "description": "x" * FAT_CARD, "version": "1", "skills": []}
    return {
        1: {**common, "agents": [card]},
        2: {**common, "cards": hashlib.sha256(b"%d" % i).hexdigest(), "agents": 1,
            "leaving": False},
    }


async def _forged(host: MeshHost, seed: bytes, topic_id: str, data: bytes) -> None:
    """Publish ``data`` as a GossipSub message of the key made from ``seed``."""
    keys = create_new_key_pair(seed)
    pubsub = host._pubsub
    msg = rpc_pb2.Message(data=data, topicIDs=[topic_id],
                          from_id=ID.from_pubkey(keys.public_key).to_bytes(),
                          seqno=os.urandom(8))
    msg.signature = keys.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = keys.public_key.serialize()
    await pubsub.push_msg(pubsub.my_id, msg)


async def flood(connect: str, network: str, identities: int, bait: str, home: Path) -> None:
    key = Ed25519PrivateKey.generate()
    # One connection is all it needs (its own dialer must not be what dials the bait).
    config = NodeConfig(home=home, network_id=network, listen=("/ip4/127.0.0.1/tcp/0",),
                        target_connections=1)
    async with MeshHost(key, listen=list(config.listen), gossip=config.gossip) as host:
        membership = Membership(config, host, Signer(key), version="hostile")
        async with trio.open_nursery() as nursery:
            await nursery.start(membership.run)
            peer_id = connect.rsplit("/p2p/", 1)[1]
            met = trio.Event()
            membership.handshake_listeners.append(lambda p: met.set() if p == peer_id else None)
            await host.connect(peer_id, [connect], timeout=30)
            with trio.fail_after(60):
                await met.wait()
            for version in (1, 2):  # be a subscriber of both, so that the target grafts us
                await host.subscribe(topic(network, "presence", version))  # (again is a no-op)
            await trio.sleep(3)  # the target's GossipSub sees our subscriptions
            for i in range(identities):
                seed = hashlib.sha256(b"sybil %d %s" % (i, os.urandom(4))).digest()
                sybil = Signer.from_seed(seed)
                for version, body in _bodies(sybil, bait, i).items():
                    data = encode_envelope(seal(sybil, network, "presence", body,
                                                now=time.time()))
                    if i % 2:
                        await _forged(host, seed, topic(network, "presence", version), data)
                    else:
                        await host.publish(topic(network, "presence", version), data)
                await trio.sleep(0.005)
            print(f"flooded {identities}", flush=True)
            await trio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", required=True)
    parser.add_argument("--network", required=True)
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--bait", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # its own full subscriptions are no news
    with tempfile.TemporaryDirectory() as home:
        try:
            trio.run(flood, args.connect, args.network, args.identities, args.bait, Path(home))
        except KeyboardInterrupt:
            sys.exit(0)


if __name__ == "__main__":
    main()
