"""Sybils and a hostile bootstrap peer against a node's trust, on the in-memory mesh, in
virtual time.

- A swarm of fresh identities, each sending one malformed hello, must not push the
  evidence about honest peers out of the victim's trust graph.
- A bootstrap peer that vouches for its Sybils must not hand them a newcomer's trust: a
  newcomer pre-trusts only itself and the peers its operator lists.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from meshnode.config import TrustSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.trust.graph import Outcome, TrustGraph
from tests.hostile import start_hostile
from tests.inmemory import eventually, identity, no_faults, start_peer

VICTIM, BOOTSTRAP, NEWCOMER, SYBIL = 1, 2, 3, 4


def _attested(graph: TrustGraph, author: str) -> bool:
    return any(p["peer_id"] == author and p["attestation"] for p in graph.snapshot()["peers"])
FAST = TrustSettings(publish_interval_s=5.0, recompute_interval_s=2.0)


async def test_a_swarm_of_bad_hellos_cannot_push_out_good_evidence(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    victim = await start_peer(nursery, mesh, tmp_path, VICTIM, with_trust=True)
    assert victim.trust is not None
    graph = victim.trust.graph
    kept = graph.max_peers  # 4096 by default
    honest = [identity(100 + i).peer_id for i in range(32)]
    for peer in honest:  # this node's own good record with each (answers it took)
        graph.record(peer, Outcome.ACCEPTED, now=mesh.clock())
    graph.compute_global()
    before = graph.local_trust()

    swarm = kept + len(honest)  # enough to push every honest peer out of one shared table
    for i in range(swarm):
        sybil = await start_hostile(nursery, mesh, 10_000 + i)
        sybil.answer_hellos(malformed=True)
        await sybil.host.connect(victim.id, victim.host.listen_addrs(), timeout=5)
        await sybil.hello(victim.id, malformed=True)
        await sybil.host.disconnect(victim.id)
    await eventually(lambda: victim.membership.handshakes["refused"] >= swarm,
                     "every Sybil's hello refused")

    assert all(graph.evidence_counts(p) == {"accepted": 1} for p in honest)
    assert graph.local_trust() == before
    good, suspects = graph.evidence_peers
    assert good == len(honest) and suspects == kept  # the swarm displaced only itself
    assert graph.evidence_counts(identity(10_000 + swarm - 1).peer_id)  # the newest is held
    no_faults(mesh)


async def test_a_bootstrap_peer_does_not_own_a_newcomers_trust(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    bootstrap = await start_peer(nursery, mesh, tmp_path, BOOTSTRAP, with_trust=True,
                                 trust=FAST)
    sybil = identity(SYBIL).peer_id
    assert bootstrap.trust is not None
    for _ in range(5):  # what a hostile bootstrap peer "found": its Sybil is excellent
        bootstrap.trust.graph.record(sybil, Outcome.RATED_GOOD, now=mesh.clock())
    newcomer = await start_peer(nursery, mesh, tmp_path, NEWCOMER, bootstrap=[bootstrap],
                                with_trust=True, trust=FAST)
    assert newcomer.trust is not None
    graph = newcomer.trust.graph
    assert graph.pre_trusted == {newcomer.id}
    await eventually(lambda: _attested(graph, bootstrap.id), "the bootstrap's attestation",
                     timeout=60)
    graph.compute_global()
    assert graph.global_trust(sybil) == 0.0 and graph.relative_trust(sybil) == 0.0

    # An operator who does pre-trust that peer chose to, in writing, and gets its view.
    listed = TrustSettings(pre_trusted=(bootstrap.id,), publish_interval_s=5.0)
    convinced = await start_peer(nursery, mesh, tmp_path, NEWCOMER + 10, bootstrap=[bootstrap],
                                 with_trust=True, trust=listed)
    assert convinced.trust is not None
    other = convinced.trust.graph
    await eventually(lambda: _attested(other, bootstrap.id), "the attestation", timeout=60)
    other.compute_global()
    assert other.global_trust(sybil) > 0.0
    no_faults(mesh)
