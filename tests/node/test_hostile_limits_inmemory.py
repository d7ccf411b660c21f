"""Per-peer budgets against hostile peers on the in-memory mesh: a peer that opens too many
streams, sends requests too fast or repeats its handshake is refused before any work is
done, each refusal is counted by reason and per peer, is evidence against that peer, and
costs no other peer anything."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio

from meshnode.config import LimitSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.limits import KEPT_PEERS, REPORT_EVERY_S, PeerLimits
from protocols.a2a import A2A_PROTOCOL, ListTasks, Result
from tests.hostile import start_hostile
from tests.inmemory import connect, eventually, no_faults, start_nodes


async def test_a_fast_peer_is_refused_and_others_are_not(nursery: trio.Nursery,
                                                         tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    limits = LimitSettings(a2a_requests_per_s=1.0)  # bursts of 4
    victim, honest = await start_nodes(nursery, mesh, tmp_path, [(), ()], limits=limits)
    attacker = await start_hostile(nursery, mesh, 9)
    await attacker.join(victim.id, victim.host.listen_addrs())
    await connect(victim, honest)
    replies = [await attacker.request(victim.id, ListTasks()) for _ in range(10)]
    served = [r for r in replies if r is not None]
    assert 4 <= len(served) <= 5 and all(isinstance(r, Result) for r in served)
    budget = victim.services.limits
    assert budget.refused["rate:a2a"] == 10 - len(served)
    assert budget.refused_by(attacker.peer_id) == {"rate:a2a": 10 - len(served)}
    # One piece of evidence for the whole burst, however long it was.
    assert victim.services.trust.graph.evidence_counts(attacker.peer_id) == {"refused": 1}
    # Another peer has its own budget.
    async with honest.host.open_stream(victim.id, A2A_PROTOCOL, timeout=5):
        pass
    assert budget.refused_by(honest.id) == {}
    no_faults(mesh)


async def test_a_peer_cannot_hold_more_streams_than_its_budget(nursery: trio.Nursery,
                                                               tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    [victim] = await start_nodes(nursery, mesh, tmp_path, [()],
                                 limits=LimitSettings(streams_per_peer=2))
    attacker = await start_hostile(nursery, mesh, 9)
    await attacker.join(victim.id, victim.host.listen_addrs())
    async with AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(
            attacker.host.open_stream(victim.id, A2A_PROTOCOL, timeout=5)) for _ in range(3)]
        # The first two wait for a request; the third is closed at once, unread.
        with trio.fail_after(5):
            assert await idle[2].read(10) == b""
        with trio.move_on_after(0.2) as waited:
            await idle[0].read(10)
        assert waited.cancelled_caught
    assert victim.services.limits.refused["streams:a2a"] == 1
    no_faults(mesh)


async def test_repeated_handshakes_are_refused(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    [victim] = await start_nodes(nursery, mesh, tmp_path, [()],
                                 limits=LimitSettings(hellos_per_min=6.0))  # bursts of 3
    attacker = await start_hostile(nursery, mesh, 9)
    await attacker.join(victim.id, victim.host.listen_addrs())  # its first hello
    handshakes = victim.services.membership.handshakes
    await eventually(lambda: handshakes["accepted"] == 2, "the victim's own greeting too")
    answers = [await attacker.hello(victim.id) for _ in range(4)]
    assert [a is not None for a in answers] == [True, True, False, False]
    assert victim.services.limits.refused["rate:hello"] == 2
    assert handshakes["accepted"] == 4
    no_faults(mesh)


def test_the_budget_tables_are_bounded() -> None:
    clock = [0.0]
    limits = PeerLimits(LimitSettings(), clock=lambda: clock[0])
    told: list[tuple[str, str]] = []
    limits.listeners.append(lambda peer, reason: told.append((peer, reason)))
    assert limits.open_stream("busy", "/p")
    for i in range(KEPT_PEERS + 100):
        limits.refuse(f"sybil-{i}", "rate:a2a")
        assert limits.take(f"sybil-{i}", "/p", 1.0, 1.0)
    assert len(limits._peers) == KEPT_PEERS
    # A peer with a stream open is never forgotten: its stream's end must find its count.
    assert not limits.open_stream("busy", "/p") or limits._peers["busy"].open["/p"] == 2
    assert limits.refused["rate:a2a"] == KEPT_PEERS + 100
    # A peer is reported once per REPORT_EVERY_S, however often it is refused.
    for _ in range(5):
        limits.refuse("again", "x")
    clock[0] += REPORT_EVERY_S
    limits.refuse("again", "x")
    assert told.count(("again", "x")) == 2 and limits.refused_by("again") == {"x": 6}


async def test_a_neighbour_delivering_junk_gossip_is_dropped_unread(nursery: trio.Nursery,
                                                                    tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    [victim] = await start_nodes(nursery, mesh, tmp_path, [()],
                                 limits=LimitSettings(invalid_gossip_per_min=5.0))
    attacker = await start_hostile(nursery, mesh, 9)
    await attacker.join(victim.id, victim.host.listen_addrs())
    presence = victim.services.membership.presence_topic
    for i in range(30):
        await attacker.host.publish(presence.topic, b"\x81\xa1v" + bytes([i]))
    budget = victim.services.limits
    await eventually(lambda: presence.rejected_total + budget.refused["gossip"] == 30,
                     "every junk message handled")
    # Five were decoded and rejected (its burst); the other 25 were dropped unread.
    assert presence.rejected_total == 5
    assert budget.refused_by(attacker.peer_id) == {"gossip": 25}
    assert victim.services.trust.graph.evidence_counts(attacker.peer_id).get("refused") == 1
    no_faults(mesh)
