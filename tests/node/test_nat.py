"""NatService's parts that need no NAT: the AutoNAT dial-back (the NAT itself is tested in
tests/integration/test_nat.py, in network namespaces)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import multiaddr
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.host.autonat.autonat import AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID

from meshnode.config import GossipSettings
from meshnode.node import nat
from meshnode.node.host import MeshHost

LISTEN = ["/ip4/127.0.0.1/tcp/0"]
NOBODY = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/1").to_bytes()  # nothing listens there


def _bare(addr: str) -> bytes:
    return multiaddr.Multiaddr(addr.split("/p2p/")[0]).to_bytes()


@pytest.fixture
async def connected() -> AsyncIterator[tuple[MeshHost, MeshHost]]:
    """An AutoNAT server and a client connected to it."""
    async with (
        MeshHost(Ed25519PrivateKey.generate(), listen=LISTEN, gossip=GossipSettings()) as server,
        MeshHost(Ed25519PrivateKey.generate(), listen=LISTEN, gossip=GossipSettings()) as client,
    ):
        await client.connect(server.peer_id, server.listen_addrs()[:1], timeout=10)
        yield server, client


async def test_dial_back_makes_a_fresh_connection(
    connected: tuple[MeshHost, MeshHost], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nat, "DIALBACK_INTERVAL_S", 0.0)
    server, client = connected
    nat.DialBackAutoNAT(server.libp2p)
    asking = AutoNATService(client.libp2p, serve=False)
    server_id = ID.from_base58(server.peer_id)

    # Already connected, but nothing listens at the address it gives: not reachable.
    status, _ = await asking.query_server(server_id, addrs=[NOBODY], timeout=20)
    assert status == Message.E_DIAL_ERROR
    # At its real listen address it is reachable, and the dial-back connection is closed.
    status, dialed = await asking.query_server(
        server_id, addrs=[_bare(client.listen_addrs()[0])], timeout=20)
    assert status == Message.OK and dialed == _bare(client.listen_addrs()[0])
    assert len(server.libp2p.get_network().connections[ID.from_base58(client.peer_id)]) == 1


async def test_py_libp2p_own_dial_back_says_reachable_to_anyone_connected(
    connected: tuple[MeshHost, MeshHost],
) -> None:
    """Why DialBackAutoNAT exists: py-libp2p 0.8.1 "dials" through the open connection.
    (When this fails, py-libp2p fixed it: drop the subclass.)"""
    server, client = connected
    AutoNATService(server.libp2p, serve=True)
    asking = AutoNATService(client.libp2p, serve=False)
    status, _ = await asking.query_server(ID.from_base58(server.peer_id), addrs=[NOBODY],
                                          timeout=20)
    assert status == Message.OK


async def test_a_peer_asking_again_too_soon_is_refused(
    connected: tuple[MeshHost, MeshHost],
) -> None:
    server, client = connected
    nat.DialBackAutoNAT(server.libp2p)
    asking = AutoNATService(client.libp2p, serve=False)
    server_id = ID.from_base58(server.peer_id)
    first, _ = await asking.query_server(server_id, addrs=[NOBODY], timeout=20)
    again, _ = await asking.query_server(server_id, addrs=[NOBODY], timeout=20)
    assert (first, again) == (Message.E_DIAL_ERROR, Message.E_DIAL_REFUSED)
