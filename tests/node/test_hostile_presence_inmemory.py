"""A presence flood (issue 9, item 5) on the in-memory mesh, in virtual time.

The hostile node is a real node of the project (its membership answers hellos) that also
publishes presence announcements for any number of fresh keys: signed by those keys but
published under its own name, or published as if each key were a peer it relays. Each
defence is checked here: what the victim lists, relays to its other neighbours, holds in
memory and dials stays bounded, and an honest newcomer still gets in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from meshnode.config import GossipSettings
from meshnode.node.admission import VOUCH_BURST
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.transport import DialError
from protocols.envelope import encode_envelope, seal
from protocols.peerid import Signer
from protocols.presence import PRESENCE, PRESENCE_TOPIC_VERSION, Presence, topic
from tests.inmemory import NET, Peer, eventually, no_faults, start_peer

TOPIC = topic(NET, "presence", PRESENCE_TOPIC_VERSION)
BAIT = "/ip4/10.66.0.1/tcp/22"  # some host the swarm would like the mesh to hammer


def sybil(i: int) -> Signer:
    return Signer.from_seed(hashlib.sha256(b"sybil %d" % i).digest())


def announcement(signer: Signer, clock: Callable[[], float], **changes: Any) -> bytes:
    body = Presence(peer_id=signer.peer_id, addrs=(f"{BAIT}/p2p/{signer.peer_id}",),
                    version="sybil", seq=1, ttl_s=3600.0, cards="ab" * 32,
                    agents=1).to_body()
    body.update(changes)
    return encode_envelope(seal(signer, NET, PRESENCE, body, now=clock()))


async def _mesh(nursery: trio.Nursery, tmp_path: Path,
                **settings: Any) -> tuple[InMemoryMesh, Peer, Peer, Peer]:
    """victim <- honest, victim <- hostile; honest hears the hostile only through the
    victim."""
    mesh = InMemoryMesh()
    victim = await start_peer(nursery, mesh, tmp_path, 1, **settings)
    honest = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[victim])
    hostile = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[victim],
                               target_connections=1)
    mesh.cut(honest.id, hostile.id)
    await eventually(lambda: {honest.id, hostile.id} <= victim.membership.verified_connected(),
                     "the mesh")
    return mesh, victim, honest, hostile


def sybils_listed(peer: Peer, count: int) -> int:
    return sum(sybil(i).peer_id in peer.membership.table for i in range(count))


async def test_presences_signed_by_other_keys_than_their_publisher_go_nowhere(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh, victim, honest, hostile = await _mesh(nursery, tmp_path)
    for i in range(300):  # one connection, 300 fresh keys, published under its own name
        await hostile.host.publish(TOPIC, announcement(sybil(i), mesh.clock))
    await trio.sleep(30)
    assert sybils_listed(victim, 300) == 0
    assert sybils_listed(honest, 300) == 0  # and none was relayed
    assert victim.membership.admission.refused["not_publisher"] == 300
    assert hostile.id in victim.membership.table  # the hostile itself is a member like any
    no_faults(mesh)


async def test_one_connection_introduces_only_a_few_new_identities(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh, victim, honest, hostile = await _mesh(nursery, tmp_path)
    # Each message as if published by a fresh key and relayed by the hostile node, as any
    # peer holding those keys can do on GossipSub; each announcement padded to the limit.
    for i in range(1000):
        await hostile.host.publish_from(sybil(i).peer_id, TOPIC,
                                        announcement(sybil(i), mesh.clock, pad="x" * 7000))
    await trio.sleep(10)
    listed = sybils_listed(victim, 1000)
    assert 0 < listed <= VOUCH_BURST + 10
    assert sybils_listed(honest, 1000) <= listed  # relayed: only what the victim admitted
    assert victim.membership.admission.refused["vouch_budget"] >= 1000 - listed
    # What the victim holds for them is bounded by the budget, not by the flood.
    assert victim.membership.table.bytes_held < (VOUCH_BURST + 20) * 9 * 1024
    no_faults(mesh)


async def test_a_full_table_still_takes_an_honest_newcomer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh, victim, honest, hostile = await _mesh(nursery, tmp_path,
                                                gossip=GossipSettings(max_peers=32))
    for i in range(200):
        await hostile.host.publish_from(sybil(i).peer_id, TOPIC,
                                        announcement(sybil(i), mesh.clock))
    await eventually(lambda: len(victim.membership.table) == 32, "the victim's table full")
    newcomer = await start_peer(nursery, mesh, tmp_path, 4, bootstrap=[victim])
    await eventually(lambda: newcomer.id in victim.membership.table, "the newcomer listed")
    await trio.sleep(30)
    assert {honest.id, hostile.id, newcomer.id} <= set(r.peer_id for r in
                                                       victim.membership.table)
    assert len(victim.membership.table) == 32 and victim.membership.table.evicted >= 1
    no_faults(mesh)


async def test_addresses_a_swarm_announces_are_not_dialed_again_and_again(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh, victim, _, hostile = await _mesh(nursery, tmp_path)
    dialed: list[str] = []
    connect = victim.host.connect

    async def counting(peer_id: str, addrs: list[str], *, timeout: float) -> None:
        if any(a.startswith(BAIT) for a in addrs):
            dialed.append(peer_id)
            await trio.sleep(1)
            raise DialError("connection refused")  # the bait is no libp2p node
        await connect(peer_id, addrs, timeout=timeout)

    victim.host.connect = counting  # type: ignore[method-assign]
    for i in range(60):  # within the vouching budget: all of them get listed
        await hostile.host.publish_from(sybil(i).peer_id, TOPIC,
                                        announcement(sybil(i), mesh.clock))
    await eventually(lambda: sybils_listed(victim, 60) == 60, "the swarm listed")
    await trio.sleep(300)
    # The victim keeps 8 connections if it can; it has 2, and 60 peers to try. Without
    # limits it would dial 6 a second, every one of them failing, for five minutes. With
    # them, the one address they all announce backs off after each failed dial, 1 s
    # doubling up to 60 s, each wait cut by a random jitter to as little as half: at most
    # 15 dials of 1 s each fit in 300 s (12 with the average jitter).
    assert 1 <= len(dialed) <= 15
    no_faults(mesh)
