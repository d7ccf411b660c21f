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

from meshnode.ask.verdicts import KEPT_ANSWERS, Taken
from meshnode.config import RoutingSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.trust.graph import Outcome
from protocols.a2a import DataPart, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent
from tests.ask.test_ask_faults import Embedder, _node
from tests.hostile import forwarded, start_hostile
from tests.inmemory import connect, eventually, no_faults, start_nodes

#: Routing as a victim might run it: answers count as accepted as soon as they are taken.
ROUTING = RoutingSettings(explore=0.0, rating_window_s=0.0)
NONSENSE = "zqx vwk plo murr fenth"


def _final_state(events: object) -> TaskState | None:
    assert isinstance(events, list), events
    finals = [e for e in events if isinstance(e, TaskStatusUpdateEvent) and e.final]
    return finals[-1].status.state if finals else None


async def test_forwarded_questions_neither_credit_nor_blame(nursery: trio.Nursery,
                                                            tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    victim, honest = await start_nodes(nursery, mesh, tmp_path, [(), ()], routing=ROUTING)
    attacker = await start_hostile(nursery, mesh, 9)
    accomplice = await start_hostile(nursery, mesh, 10)
    accomplice.serve_echo()
    await connect(victim, honest)
    for peer in (attacker, accomplice):
        await peer.join(victim.id, victim.host.listen_addrs())
    await eventually(lambda: len(victim.services.membership.verified_connected()) == 3,
                     "the victim's three neighbours")
    graph = victim.services.trust.graph

    # Farming: every neighbour but the accomplice "visited", so the victim asks it alone.
    events = await attacker.stream_task(victim.id, forwarded(
        NONSENSE, hops=1, visited=[attacker.peer_id, honest.id]))
    assert _final_state(events) == TaskState.COMPLETED  # the victim did forward and answer
    answer = next(p.data for e in events if isinstance(e, TaskArtifactUpdateEvent)  # type: ignore[union-attr]
                  for p in e.artifact.parts if isinstance(p, DataPart))
    assert answer["peer"] == accomplice.peer_id and NONSENSE in answer["text"]
    victim.services.asker.settle(mesh.clock() + 3600)
    assert graph.evidence_counts(accomplice.peer_id) == {}
    assert not victim.services.asker.answered

    # Blame: one hop short of the limit, towards the honest node, which cannot go on.
    events = await attacker.stream_task(victim.id, forwarded(
        NONSENSE + " again", hops=1, visited=[attacker.peer_id, accomplice.peer_id]))
    assert _final_state(events) == TaskState.FAILED
    assert graph.evidence_counts(honest.id) == {}
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
