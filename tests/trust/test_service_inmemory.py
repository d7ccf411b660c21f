"""TrustService on the in-memory mesh, in virtual time: attestations are published, travel,
and give trust to a peer on a node that never dealt with it; forgeries count against the
peer that relayed them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import trio
import trio.testing

from meshnode.config import TrustSettings
from meshnode.node.inmemory import InMemoryHost, InMemoryMesh
from meshnode.trust.graph import Outcome
from protocols.envelope import encode_envelope, seal
from protocols.presence import topic
from protocols.trust import TRUST, TrustAttestation
from tests.inmemory import NET, Peer, eventually, identity, no_faults, start_peer

ANCHOR, EXPERT, OBSERVER, NEWCOMER, INTRUDER = 1, 2, 3, 4, 5
SETTINGS = TrustSettings(pre_trusted=(identity(ANCHOR).peer_id,), publish_interval_s=10.0,
                         recompute_interval_s=5.0)


async def _mesh(nursery: trio.Nursery, tmp_path: Path) -> tuple[InMemoryMesh, dict[int, Peer]]:
    mesh = InMemoryMesh()
    anchor = await start_peer(nursery, mesh, tmp_path, ANCHOR, with_trust=True,
                              trust=SETTINGS)
    peers = {ANCHOR: anchor}
    for i in (EXPERT, OBSERVER, NEWCOMER):
        peers[i] = await start_peer(nursery, mesh, tmp_path, i, bootstrap=[anchor],
                                    with_trust=True, trust=SETTINGS)
    await eventually(lambda: len(anchor.membership.verified_connected()) == 3, "the mesh")
    return mesh, peers


async def test_a_node_that_never_asked_learns_whom_to_trust(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh, peers = await _mesh(nursery, tmp_path)
    anchor, expert, observer, newcomer = (peers[i] for i in (ANCHOR, EXPERT, OBSERVER, NEWCOMER))
    assert anchor.trust and observer.trust
    for outcome in (Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.RATED_GOOD):
        anchor.trust.graph.record(expert.id, outcome, skill="milvus", now=mesh.clock())
    assert observer.trust.graph.global_trust(expert.id) == 0.0
    await eventually(lambda: observer.trust.graph.global_trust(expert.id) > 0.0,
                     "the observer trusting the expert", timeout=60)
    graph = observer.trust.graph
    assert graph.global_trust(expert.id) > graph.global_trust(newcomer.id)
    assert graph.relative_trust(expert.id) > graph.relative_trust(newcomer.id)
    assert graph.evidence_counts(expert.id) == {}  # all of it came from the anchor's word
    assert observer.trust.topic.accepted >= 1 and observer.trust.rejected == 0
    no_faults(mesh)


async def test_a_forged_attestation_counts_against_its_relay_not_its_claimed_author(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh, peers = await _mesh(nursery, tmp_path)
    observer, anchor = peers[OBSERVER], peers[ANCHOR]
    assert observer.trust
    intruder = mesh.host(identity(INTRUDER).peer_id)

    async def run(host: InMemoryHost, *, task_status: trio.TaskStatus[None]) -> None:
        async with host:
            task_status.started()
            await trio.sleep_forever()

    await nursery.start(run, intruder)
    await intruder.connect(observer.id, [observer.addr], timeout=1)
    # The anchor's name, a body the anchor never signed: all trust to the intruder.
    honest = seal(identity(ANCHOR), NET, TRUST,
                  TrustAttestation(anchor.id, 1, mesh.clock(), {anchor.id: 1.0}).to_body(),
                  now=mesh.clock())
    lie = TrustAttestation(anchor.id, 2, mesh.clock(), {intruder.peer_id: 1.0}).to_body()
    forged = replace(honest, body=encode_envelope(seal(identity(INTRUDER), NET, TRUST, lie,
                                                       now=mesh.clock())))
    await intruder.publish(topic(NET, "trust"), encode_envelope(forged))
    await eventually(lambda: observer.trust is not None and observer.trust.rejected == 1,
                     "the observer rejecting the forgery")
    assert observer.trust.topic.rejected == {"BadSignature": 1}
    graph = observer.trust.graph
    assert graph.evidence_counts(intruder.peer_id) == {"bad_signature": 1}
    assert graph.evidence_counts(anchor.id) == {}
    await trio.sleep(SETTINGS.recompute_interval_s * 2)
    assert graph.global_trust(intruder.peer_id) == 0.0
    no_faults(mesh)
