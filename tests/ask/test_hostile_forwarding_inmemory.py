"""Trust farming and blame through forwarded questions, on the in-memory mesh.

A hostile peer sends the victim a question no agent fits, with a forward marker whose hop
count and visited set choose whom the victim forwards it to: its accomplice, which echoes
a grounded-looking answer (one the victim's quality check scores high), or an honest
neighbour that cannot forward any further (so it fails). Neither may change what the
victim thinks of anyone: work done for a remote asker is no evidence.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from meshnode.a2a.owners import OPERATOR
from meshnode.ask.verdicts import KEPT_ANSWERS, Taken
from meshnode.config import RoutingSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.trust.graph import Outcome
from protocols.a2a import (
    DataPart,
    ListTasks,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from tests.ask.test_ask_faults import Embedder, _node
from tests.hostile import Hostile, forwarded, start_hostile
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

#: Routing as a victim might run it: answers count as accepted as soon as they are taken.
ROUTING = RoutingSettings(explore=0.0, rating_window_s=0.0)
NONSENSE = "zqx vwk plo murr fenth"


def _final_state(events: object) -> TaskState | None:
    assert isinstance(events, list), events
    finals = [e for e in events if isinstance(e, TaskStatusUpdateEvent) and e.final]
    return finals[-1].status.state if finals else None


async def _victim_and_neighbours(
    nursery: trio.Nursery, tmp_path: Path, mesh: InMemoryMesh
) -> tuple[Node, Node, Hostile, Hostile]:
    """A victim with three neighbours: an honest node, an attacker, and its accomplice
    (which echoes a grounded-looking answer to whatever it is forwarded)."""
    victim, honest = await start_nodes(nursery, mesh, tmp_path, [(), ()], routing=ROUTING)
    attacker = await start_hostile(nursery, mesh, 9)
    accomplice = await start_hostile(nursery, mesh, 10)
    accomplice.serve_echo()
    await connect(victim, honest)
    for peer in (attacker, accomplice):
        await peer.join(victim.id, victim.host.listen_addrs())
    await eventually(lambda: len(victim.services.membership.verified_connected()) == 3,
                     "the victim's three neighbours")
    return victim, honest, attacker, accomplice


async def test_forwarded_questions_farm_no_trust(nursery: trio.Nursery,
                                                 tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    victim, honest, attacker, accomplice = await _victim_and_neighbours(nursery, tmp_path,
                                                                        mesh)
    # Every neighbour but the accomplice "visited", so the victim asks it alone.
    events = await attacker.stream_task(victim.id, forwarded(
        NONSENSE, hops=1, visited=[attacker.peer_id, honest.id]))
    assert _final_state(events) == TaskState.COMPLETED  # the victim did forward and answer
    answer = next(p.data for e in events if isinstance(e, TaskArtifactUpdateEvent)  # type: ignore[union-attr]
                  for p in e.artifact.parts if isinstance(p, DataPart))
    assert answer["peer"] == accomplice.peer_id and NONSENSE in answer["text"]
    victim.services.asker.settle(mesh.clock() + 3600)
    assert victim.services.trust.graph.evidence_counts(accomplice.peer_id) == {}
    assert not victim.services.asker.answered
    no_faults(mesh)


async def test_forwarded_questions_blame_no_one(nursery: trio.Nursery,
                                                tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    victim, honest, attacker, accomplice = await _victim_and_neighbours(nursery, tmp_path,
                                                                        mesh)
    # A member whose agents the victim has not learnt yet (it is no longer connected): so
    # the victim does forward a question none of the agents it knows fits.
    bystander = await start_hostile(nursery, mesh, 11)
    await bystander.join(victim.id, victim.host.listen_addrs())
    await eventually(lambda: bystander.peer_id in victim.services.membership.table,
                     "the bystander listed")
    mesh.cut(victim.id, bystander.peer_id)
    await eventually(lambda: len(victim.services.membership.verified_connected()) == 3,
                     "the bystander gone")
    # One hop short of the limit, towards the honest node, which cannot go on.
    events = await attacker.stream_task(victim.id, forwarded(
        NONSENSE, hops=1, visited=[attacker.peer_id, accomplice.peer_id]))
    assert _final_state(events) == TaskState.FAILED
    asked = honest.services.tasks.store.list(ListTasks(), OPERATOR)
    assert [t.history[0].text for t in asked] == [NONSENSE]  # the victim did forward to it
    assert victim.services.trust.graph.evidence_counts(honest.id) == {}
    assert honest.services.trust.graph.evidence_counts(victim.id) == {}
    no_faults(mesh)


async def test_the_operators_own_asks_still_make_evidence(nursery: trio.Nursery,
                                                          tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    (asker,) = await start_nodes(nursery, mesh, tmp_path, [()], routing=ROUTING)
    # A neighbour whose agents are not known yet (it never announced them), so the asker
    # forwards its operator's question to it; it serves no A2A, so the question fails.
    silent = await start_hostile(nursery, mesh, 9)
    await silent.join(asker.id, asker.host.listen_addrs())
    await eventually(lambda: asker.services.membership.verified_connected(), "a neighbour")
    try:
        await asker.services.asker.ask(NONSENSE, timeout=20)
    except Exception as exc:  # the neighbour does not answer
        assert "no answer" in str(exc) or "fail" in str(exc), exc
    assert asker.services.trust.graph.evidence_counts(silent.peer_id) == {"failed": 1}
    no_faults(mesh)


def test_answers_past_the_pending_limit_are_dropped_not_accepted() -> None:
    asker, _, _, _ = _node(Embedder())
    now = time.time()
    for i in range(KEPT_ANSWERS + 5):
        asker.answered[f"task-{i}"] = Taken(f"peer-{i}", "agent", now)
    asker.settle(now)  # nobody had time to rate any of them
    assert len(asker.answered) == KEPT_ANSWERS and asker.unrated_dropped == 5
    assert asker.trust.evidence_totals() == {}
    asker.settle(now + ROUTING.rating_window_s + 301)  # past the window: accepted
    assert asker.trust.evidence_totals() == {Outcome.ACCEPTED.value: KEPT_ANSWERS}
