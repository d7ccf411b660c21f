"""The transport offers Noise only: a peer that speaks plaintext cannot connect at all."""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p import generate_new_ed25519_identity, new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from tests.integration.harness import Daemon, mesh

pytestmark = pytest.mark.integration


async def _plaintext_dial(addr: str) -> str:
    key_pair = generate_new_ed25519_identity()
    host = new_host(key_pair=key_pair,
                    sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)})
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            with trio.fail_after(15):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        except trio.TooSlowError:
            return "timed out"
        except Exception as exc:  # whatever py-libp2p raises for a failed upgrade
            return f"refused: {type(exc).__name__}"
        return "connected"


def test_plaintext_peers_are_refused(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        node = Daemon(tmp_path, "node", "dev-support").start()
        nodes.append(node)
        outcome = trio.run(_plaintext_dial, node.addr)
        assert outcome != "connected", outcome
        assert node.peers() == []
