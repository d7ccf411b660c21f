"""The real MeshHost against a peer that breaks py-libp2p's own protocols: it must not stop.

py-libp2p's gossip handler lets the protobuf DecodeError of a malformed RPC escape, which
ended the whole daemon (found by bench/fuzz_live.py); MeshHost contains it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings
from meshnode.node.host import GOSSIPSUB_PROTOCOLS, MeshHost
from tests.inmemory import eventually


async def test_a_malformed_gossip_rpc_fails_that_stream_not_the_host() -> None:
    gossip = GossipSettings(heartbeat_s=0.2)
    async with AsyncExitStack() as stack:
        victim, attacker, friend = [await stack.enter_async_context(
            MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                     gossip=gossip)) for _ in range(3)]
        for peer in (attacker, friend):
            await peer.connect(victim.peer_id, victim.listen_addrs(), timeout=10)
        for garbage in (b"\x05\xff\xff\xff\xff\xff", b"\x03\x0a\xff\x01"):
            async with attacker.open_stream(victim.peer_id, GOSSIPSUB_PROTOCOLS[0],
                                            timeout=10) as stream:
                await stream.write(garbage)
                with trio.move_on_after(2):
                    await stream.read(1024)
        await eventually(lambda: victim.faults.counts().get("gossip stream", 0) >= 1,
                         "the fault to be contained", timeout=10)
        # The host lives on: it answers pings and still relays gossip.
        assert await friend.ping(victim.peer_id, timeout=10) >= 0
        received = await victim.subscribe("t")
        await friend.subscribe("t")
        await eventually(lambda: victim.topic_peers("t") >= 1, "the gossip mesh", timeout=20)
        with trio.fail_after(20):
            while True:
                await friend.publish("t", b"still here")
                with trio.move_on_after(0.5):
                    message = await received.__anext__()
                    break
        assert message.data == b"still here"
