"""Membership on the in-memory mesh, in virtual time: handshake, refusal of other networks,
discovery through a neighbour (members push-pull, cards by digest), failure detection
(suspicion, refutation, goodbye), and what membership costs as the mesh grows."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from meshnode.config import GossipSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.members import PROTOCOL_ID as MEMBERS_PROTOCOL
from meshnode.node.membership import NetworkMismatch
from meshnode.node.transport import Stream
from protocols.errors import ProtocolError
from tests.inmemory import VERSION, eventually, identity, no_faults, start_peer

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
    assert record.addrs == (a.addr,)
    # The announcement named the cards by digest; c fetched them from b, which had them.
    assert record.presence.agents == 1 and len(record.presence.cards) == 64
    await eventually(lambda: c.membership.agent_cards_of(a.id), "c fetching a's cards")
    assert [dict(card) for card in c.membership.agent_cards_of(a.id)] == [CARD]
    assert not mesh.linked(a.id, c.id)
    assert c.membership.presence_rejected == 0
    await eventually(lambda: c.id in a.membership.table, "a learning of c")
    no_faults(mesh)


async def test_a_peer_gone_silent_is_suspected_and_forgotten_by_everyone(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    gossip = GossipSettings(presence_interval_s=60.0, peer_ttl_s=180.0, ping_interval_s=1.0)
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=gossip)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a], gossip=gossip)
    c = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[a], gossip=gossip)
    await eventually(lambda: b.id in a.membership.table and c.id in a.membership.table
                     and c.id in b.membership.table, "everyone knowing everyone")
    await trio.sleep(5)
    mesh.drop(c.id)
    dropped = trio.current_time()
    await eventually(lambda: c.id not in a.membership.table, "a forgetting c", timeout=120)
    gone_after = trio.current_time() - dropped
    # Not by the TTL (three minutes), nor at once: the lost connection could not be
    # redialed, so c became suspect, and was declared dead when the suspicion timed out.
    floor = a.membership.detector.timeout_s(2)  # two accusers: a and b
    assert floor <= gone_after <= a.membership.detector.timeout_s(1) + 15
    assert gone_after < gossip.peer_ttl_s / 2
    await eventually(lambda: c.id not in b.membership.table, "b forgetting c", timeout=30)
    assert b.id in a.membership.table  # those who keep talking stay
    no_faults(mesh)


async def test_a_live_peer_suspected_by_a_neighbour_refutes_and_stays(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    gossip = GossipSettings(presence_interval_s=60.0, peer_ttl_s=180.0, ping_interval_s=1.0)
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=gossip)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a], gossip=gossip)
    c = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[a], gossip=gossip)
    await eventually(lambda: all(x.id in y.membership.table for x in (a, b, c)
                                 for y in (a, b, c) if x is not y), "everyone knowing everyone")
    await eventually(lambda: mesh.linked(b.id, c.id), "b and c connecting")
    mesh.cut(b.id, c.id)  # b and c cannot talk any more; both still talk to a
    await eventually(lambda: a.membership.detector.heard["suspicion"] >= 2,
                     "suspicions of b and of c reaching a", timeout=60)
    await eventually(lambda: b.membership.detector.heard["refuting"]
                     and c.membership.detector.heard["refuting"], "b and c refuting")
    # Each suspect announced a newer incarnation: nobody forgets anybody.
    await trio.sleep(a.membership.detector.timeout_s(1) + 10)
    for x in (a, b, c):
        for y in (a, b, c):
            if x is not y:
                assert y.id in x.membership.table, (x.id[-4:], y.id[-4:])
    assert not any(r.suspicion for r in a.membership.table)
    no_faults(mesh)


async def test_a_stopping_node_says_goodbye(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a])
    c = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[a])
    await eventually(lambda: c.id in b.membership.table and b.id in c.membership.table,
                     "b and c knowing each other")
    stopped = trio.current_time()
    c.stop()
    await eventually(lambda: c.id not in a.membership.table and c.id not in b.membership.table,
                     "a and b forgetting c", timeout=60)
    assert trio.current_time() - stopped < 3  # the goodbye, not a timeout
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


async def test_a_failed_first_members_pull_is_retried_soon(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # Refreshes ten minutes apart: what b does not pull, it would not hear of for that long.
    slow = GossipSettings(presence_interval_s=600.0, peer_ttl_s=1800.0)
    mesh = InMemoryMesh()
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=slow)
    c = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[a], gossip=slow)
    await eventually(lambda: c.id in a.membership.table, "a learning of c")
    await trio.sleep(30)  # c's joining announcements are over
    serve_members = a.host._handlers[MEMBERS_PROTOCOL]
    asked: list[str] = []

    async def busy_at_first(stream: Stream) -> None:
        asked.append(stream.peer_id)
        if len(asked) == 1:
            await stream.close()  # a peer too busy to answer the first pull
            return
        await serve_members(stream)

    a.host.set_stream_handler(MEMBERS_PROTOCOL, busy_at_first)
    mesh.cut(identity(2).peer_id, c.id)  # b can only hear of c through a
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a], gossip=slow)
    await eventually(lambda: c.id in b.membership.table, "b learning of c", timeout=30)
    assert asked[:2] == [b.id, b.id] and b.membership.pulled["failed"] == 1
    no_faults(mesh)
