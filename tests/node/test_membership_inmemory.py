"""Membership on the in-memory mesh, in virtual time: handshake, refusal of other networks,
discovery through a neighbour, and expiry of a silent peer."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from meshnode.config import GossipSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.membership import NetworkMismatch
from protocols.errors import ProtocolError
from tests.inmemory import VERSION, eventually, no_faults, start_peer

CARD = {"name": "milvus-expert", "description": "Milvus", "version": "1", "skills": []}


async def test_a_node_joins_through_its_bootstrap_peer_with_a_signed_hello(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1)
    shook: list[str] = []
    a.membership.handshake_listeners.append(shook.append)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a])
    await eventually(lambda: b.id in a.membership.table and a.id in b.membership.table,
                     "the hello both ways")
    assert shook[0] == b.id
    record = a.membership.table.get(b.id)
    assert record is not None and record.version == VERSION
    assert record.addrs == (b.addr,)  # what b's hello said, signed
    assert a.membership.verified_connected() == {b.id}
    no_faults(mesh)


async def test_a_node_of_another_network_is_refused_and_left_alone(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1)
    refused: list[tuple[str, ProtocolError]] = []
    a.membership.bad_message_listeners.append(lambda p, e: refused.append((p, e)))
    x = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a], network_id="other-net")
    await eventually(lambda: refused, "a refusing x")
    assert refused[0][0] == x.id and isinstance(refused[0][1], NetworkMismatch)
    await eventually(lambda: not a.host.connected_peers(), "a dropping the connection")
    attempts = len(refused)
    await trio.sleep(120)  # two minutes of virtual time: x is banned, not redialed
    assert len(refused) == attempts
    assert x.id not in a.membership.table and a.id not in x.membership.table
    assert not mesh.linked(a.id, x.id)
    no_faults(mesh)


async def test_a_third_node_is_discovered_through_a_second(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1, agent_cards=lambda: [CARD])
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a])
    c = await start_peer(nursery, mesh, tmp_path, 3)
    mesh.cut(a.id, c.id)  # c can only hear of a through b
    await c.host.connect(b.id, [b.addr], timeout=1)
    await eventually(lambda: a.id in c.membership.table, "c learning of a")
    record = c.membership.table.get(a.id)
    assert record is not None and record.presence is not None
    assert [dict(card) for card in record.presence.agents] == [CARD]
    assert record.addrs == (a.addr,)
    assert not mesh.linked(a.id, c.id)
    assert c.membership.presence_received >= 1 and c.membership.presence_rejected == 0
    await eventually(lambda: c.id in a.membership.table, "a learning of c")
    no_faults(mesh)


async def test_a_silent_peer_is_forgotten_after_its_ttl_and_not_before(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    gossip = GossipSettings(presence_interval_s=5.0, peer_ttl_s=30.0)
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=gossip)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a], gossip=gossip)
    c = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[a], gossip=gossip)
    await eventually(lambda: b.id in a.membership.table and c.id in a.membership.table
                     and c.id in b.membership.table, "everyone knowing everyone")
    await trio.sleep(12)  # a few presence rounds, so that c's last one is recent
    mesh.drop(c.id)
    dropped = trio.current_time()
    await eventually(lambda: c.id not in a.membership.table, "a forgetting c", timeout=60)
    silent_for = trio.current_time() - dropped
    # c's last presence was at most one interval before the drop; expiry runs every second.
    assert gossip.peer_ttl_s - gossip.presence_interval_s <= silent_for <= gossip.peer_ttl_s + 2
    await eventually(lambda: c.id not in b.membership.table, "b forgetting c", timeout=5)
    assert b.id in a.membership.table  # those who keep talking stay
    no_faults(mesh)


async def test_a_node_that_comes_back_rejoins(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a])
    await eventually(lambda: b.id in a.membership.table, "b joining")
    mesh.drop(b.id)
    await eventually(lambda: b.id not in a.membership.table, "a forgetting b", timeout=120)
    mesh.restore(b.id)
    await eventually(lambda: b.id in a.membership.verified_connected(), "b rejoining",
                     timeout=120)
    no_faults(mesh)
