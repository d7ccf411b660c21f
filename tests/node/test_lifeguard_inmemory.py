"""Failure detection under stress, on the in-memory mesh in virtual time (Lifeguard): a peer
declared dead comes back as soon as it shows it is alive, and a node whose own loop is
starved stops accusing the peers it cannot keep up with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from meshnode.config import GossipSettings
from meshnode.node.admission import PresenceAdmission, Refused
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.transport import GossipMessage
from protocols.envelope import decode_envelope, encode_envelope, seal
from protocols.presence import PRESENCE, SUSPECT, Suspect
from tests.inmemory import NET, Peer, eventually, identity, no_faults, start_peer

# Refreshes ten minutes apart, as at 50 nodes (nodes / 0.1 s): what gossip loses is not
# repaired by the next refresh within any of these tests.
SLOW = GossipSettings(presence_interval_s=600.0, peer_ttl_s=1800.0, ping_interval_s=1.0)


def declared_dead(by: Peer, peer: Peer) -> bool:
    """Whether ``by`` forgot ``peer`` (it may list it again the same moment, so whether it
    lists it does not tell)."""
    return by.membership.table.forgotten(peer.id) is not None


def kind(message: GossipMessage) -> str:
    return decode_envelope(message.data).type


def lose_at(peer: Peer, lost: Callable[[GossipMessage], bool], *,
            every: bool = False) -> list[GossipMessage]:
    """Make ``peer`` lose (neither deliver nor relay) the first presence-topic message for
    which ``lost`` is true (``every`` one), as a full py-libp2p subscription buffer does
    under load."""
    topic = peer.membership.presence_topic.topic
    validate = peer.host._validators[topic]
    dropped: list[GossipMessage] = []

    def validator(message: GossipMessage) -> bool:
        if (every or not dropped) and lost(message):
            dropped.append(message)
            return False
        return validate(message)

    peer.host.set_topic_validator(topic, validator)
    return dropped


async def four_nodes(nursery: trio.Nursery, mesh: InMemoryMesh,
                     tmp_path: Path) -> tuple[Peer, Peer, Peer, Peer]:
    """a, b, c, x with every link but c-x: c knows x only by gossip, as most pairs of a
    mesh larger than target_connections."""
    mesh.cut(identity(3).peer_id, identity(4).peer_id)
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=SLOW)
    b = await start_peer(nursery, mesh, tmp_path, 2, bootstrap=[a], gossip=SLOW)
    c = await start_peer(nursery, mesh, tmp_path, 3, bootstrap=[a], gossip=SLOW)
    x = await start_peer(nursery, mesh, tmp_path, 4, bootstrap=[a], gossip=SLOW)
    peers = (a, b, c, x)
    await eventually(lambda: all(p.id in q.membership.table for p in peers for q in peers
                                 if p is not q), "everyone knowing everyone")
    await eventually(lambda: mesh.linked(a.id, x.id) and mesh.linked(b.id, x.id),
                     "x connected to a and b")
    await trio.sleep(30)  # joining announcements and first pulls are over
    return peers


async def dead_then_back(mesh: InMemoryMesh,
                         peers: tuple[Peer, Peer, Peer, Peer],
                         lost: list[GossipMessage]) -> None:
    """Cut a from x, so that a suspects x; wait for c to declare x dead (``lost`` must
    have lost a message by then); then a and c must know x again within a few probe
    periods, not at x's next refresh (10 min)."""
    a, _, c, x = peers
    mesh.cut(a.id, x.id)
    await eventually(lambda: declared_dead(c, x), "c declaring x dead", timeout=120)
    assert lost, "the message was not lost"
    dead_at = trio.current_time()
    await eventually(lambda: x.id in c.membership.table and x.id in a.membership.table,
                     "a and c knowing x again", timeout=60)
    assert trio.current_time() - dead_at < 10 * SLOW.ping_interval_s


async def test_a_peer_declared_dead_after_its_refutation_was_lost_comes_back_soon(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    mesh = InMemoryMesh()
    peers = a, b, c, x = await four_nodes(nursery, mesh, tmp_path)
    # c loses x's refutation of a's suspicion: only c declares x dead.
    lost = lose_at(c, lambda m: m.origin == x.id and kind(m) == PRESENCE)
    await dead_then_back(mesh, peers, lost)
    assert not declared_dead(a, x) and not declared_dead(b, x)
    no_faults(mesh)


async def test_a_peer_that_never_heard_it_was_suspected_comes_back_soon(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    mesh = InMemoryMesh()
    peers = a, b, _, x = await four_nodes(nursery, mesh, tmp_path)
    # x loses a's suspicion of it: nobody refutes, and c (not connected to x) declares it
    # dead; b, still connected to x, never acts on a suspicion.
    lost = lose_at(x, lambda m: m.origin == a.id and kind(m) == SUSPECT)
    await dead_then_back(mesh, peers, lost)
    assert x.id in b.membership.table and not declared_dead(b, x)
    no_faults(mesh)


async def test_a_peer_declared_dead_comes_back_through_relays_that_spent_their_budget(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    mesh = InMemoryMesh()
    peers = a, b, c, x = await four_nodes(nursery, mesh, tmp_path)
    # a and b introduced as many new identities to c as they may for now (as the
    # neighbours of a node joining a mesh of 50 do), and their budgets refill slowly.
    admission = c.membership.admission = PresenceAdmission(c.id, vouch_per_s=0.001)
    for relay in (a, b):
        with pytest.raises(Refused):
            for i in range(1000):
                admission.vouch(relay.id, identity(100 + i).peer_id, mesh.clock())
    spent = admission.refused["vouch_budget"]
    lost = lose_at(c, lambda m: m.origin == x.id and kind(m) == PRESENCE)
    # x, whom c listed before, is no new identity: its refutation is not over a budget.
    await dead_then_back(mesh, peers, lost)
    assert admission.refused["vouch_budget"] == spent
    no_faults(mesh)


class Starved:
    """A monotonic clock as a starved process sees it: every timer fires ``lag_s`` late."""

    def __init__(self, lag_s: float) -> None:
        self.lag_s = lag_s
        self.calls = 0

    def __call__(self) -> float:
        # Each reading lags_s further ahead: between the detector's readings before and
        # after a sleep, the sleep took lag_s longer than asked.
        self.calls += 1
        return trio.current_time() + self.lag_s * self.calls


async def three_and_starved(nursery: trio.Nursery, mesh: InMemoryMesh, tmp_path: Path,
                            rtt_s: float, slow: int = 3) -> tuple[list[Peer], Peer]:
    """Four nodes, all connected; then the fourth starves: its timers fire late and the
    answers to its pings from the first ``slow`` others reach it only after ``rtt_s``."""
    fast = GossipSettings(ping_interval_s=1.0)
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=fast)
    others = [a] + [await start_peer(nursery, mesh, tmp_path, i, bootstrap=[a], gossip=fast)
                    for i in (2, 3)]
    s = await start_peer(nursery, mesh, tmp_path, 4, bootstrap=[a], gossip=fast)
    await eventually(lambda: all(mesh.linked(p.id, s.id) for p in others), "s connected")
    await trio.sleep(10)
    s.membership.detector.monotonic = Starved(lag_s=3.0)
    for p in others[:slow]:
        mesh.set_rtt(s.id, p.id, rtt_s)
    return others, s


async def test_a_starved_node_accuses_nobody_and_stretches_its_timers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    # s's pings of a get no answer in time (its answers are queued behind the starvation);
    # its other probes are answered: the misses alone would not stop it from accusing a.
    others, s = await three_and_starved(nursery, mesh, tmp_path, rtt_s=60.0, slow=1)
    detector = s.membership.detector
    await trio.sleep(60)
    # Every ping of a failed, twice and more, yet s accused nobody: its own loop ran late,
    # so its score rose and it left accusing to the healthy nodes.
    assert detector.probes["missed"] >= 2
    assert detector.probes["late"] > 0
    assert detector.health.score >= detector.health.withhold_at
    assert detector.sent["accused"] == 0 and detector.sent["withheld"] > 0
    assert detector.interval_s > detector.base_interval_s
    assert not any(r.suspicion and s.id in r.suspicion.accusers
                   for p in others for r in p.membership.table)
    # Starvation over: answered pings bring its score back down.
    detector.monotonic = trio.current_time
    mesh.set_rtt(s.id, others[0].id, mesh.rtt_s)
    await eventually(lambda: detector.health.score == 0, "s healthy again", timeout=300)
    assert all(p.id in s.membership.table and s.id in p.membership.table for p in others)
    no_faults(mesh)


async def test_a_starved_node_whose_answers_come_late_keeps_probing(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    # Answers reach s after 3 s, longer than the ping timeout (two probe periods).
    _, s = await three_and_starved(nursery, mesh, tmp_path, rtt_s=3.0)
    detector = s.membership.detector
    assert detector.ping_timeout_s() < 3.0
    before = detector.probes["ok"]
    await trio.sleep(60)
    # Its late loop stretched its ping timeout: the late answers still count as answers.
    assert detector.probes["late"] > 0
    assert detector.probes["ok"] > before
    assert detector.sent["accused"] == 0
    no_faults(mesh)


async def test_a_peer_declared_dead_comes_back_by_a_pull_from_a_relay_over_budget(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    mesh = InMemoryMesh()
    a, b, c, x = await four_nodes(nursery, mesh, tmp_path)
    admission = c.membership.admission = PresenceAdmission(c.id, vouch_per_s=0.001)
    with pytest.raises(Refused):
        for i in range(1000):
            admission.vouch(b.id, identity(100 + i).peer_id, mesh.clock())
    # c hears nothing x says, so neither refutation nor notice brings it back; b has x's
    # newest announcement, and c pulls the members b holds.
    lost = lose_at(c, lambda m: m.origin == x.id and kind(m) == PRESENCE, every=True)
    mesh.cut(a.id, x.id)
    await eventually(lambda: declared_dead(c, x), "c declaring x dead", timeout=120)
    assert lost and x.id not in c.membership.table
    await c.membership.handshake.pull(b.id)
    # x, whom c listed before, is no new identity b introduces: the pull is not over budget.
    assert x.id in c.membership.table
    assert not c.membership.pulled["over_budget"]
    no_faults(mesh)


async def test_a_hostile_death_notice_makes_no_one_forget_or_suspect_a_live_peer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    mesh = InMemoryMesh()
    a, b, c, x = await four_nodes(nursery, mesh, tmp_path)
    # a (listed by everyone, so its suspicions are admitted) says x is dead, again and
    # again; c cannot hear x's refutations, and is not connected to x.
    lose_at(c, lambda m: m.origin == x.id and kind(m) == PRESENCE, every=True)
    record = c.membership.table.get(x.id)
    assert record is not None and record.presence is not None
    notice = Suspect(x.id, record.presence.seq, dead=True).to_body()
    topic = a.membership.presence_topic.topic
    for _ in range(10):
        await a.host.publish(topic, encode_envelope(
            seal(a.signer, NET, SUSPECT, notice, now=mesh.clock())))
        await trio.sleep(c.membership.detector.timeout_s(1))
    # Another node's word is not evidence: nobody suspects x, nobody forgot it.
    assert c.membership.detector.heard["dead"] >= 10
    for p in (b, c):
        held = p.membership.table.get(x.id)
        assert held is not None and held.suspicion is None and not declared_dead(p, x)
    no_faults(mesh)


async def test_nodes_that_declare_a_peer_dead_together_send_about_one_notice(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    mesh = InMemoryMesh()
    fast = GossipSettings(ping_interval_s=1.0)
    a = await start_peer(nursery, mesh, tmp_path, 1, gossip=fast)
    peers = [a] + [await start_peer(nursery, mesh, tmp_path, i, bootstrap=[a], gossip=fast)
                   for i in range(2, 7)]
    x, rest = peers[-1], peers[:-1]
    await eventually(lambda: all(x.id in p.membership.table for p in rest), "x known")
    await trio.sleep(10)
    mesh.drop(x.id)
    await eventually(lambda: all(declared_dead(p, x) for p in rest),
                     "everyone declaring x dead", timeout=120)
    await trio.sleep(10)
    # Each of the five forgot x on its own timer; the first notice spared the others theirs.
    sent = sum(p.membership.detector.sent["dead_notices"] for p in rest)
    assert 1 <= sent <= 2, sent
    no_faults(mesh)
