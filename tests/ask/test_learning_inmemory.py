"""Memory that improves with use, on the in-memory mesh (whole nodes, Milvus Lite): a
solution is written only by the asker, only after acceptance; asking twice gives knowledge,
never the question back; near-duplicates merge; a bad rating withdraws; old echoes can be
cleaned; an off-topic question gets an honest "no expert"."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from meshnode.agents.grounding import claims, restates
from meshnode.agents.specs import data_path, demo_agents
from meshnode.ask.asker import NoExpert
from meshnode.config import RoutingSettings
from meshnode.node.inmemory import InMemoryMesh
from protocols.records import MemoryRecord
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

PYTHON, MILVUS, DEVOPS = demo_agents()
QUESTION = "How do I roll back a Kubernetes deployment?"


async def _mesh(nursery: trio.Nursery, tmp_path: Path,
                window: float = 300.0) -> tuple[InMemoryMesh, Node, Node, Node]:
    """An asking node (no agents) and the demo's DevOps and Python experts, seeded."""
    mesh = InMemoryMesh()
    routing = RoutingSettings(explore=0.0, rating_window_s=window)
    asker, devops, python = await start_nodes(nursery, mesh, tmp_path,
                                              [(), (DEVOPS,), (PYTHON,)], routing=routing)
    await devops.services.knowledge.ingest([str(data_path("kb", "devops"))])
    await python.services.knowledge.ingest([str(data_path("kb", "python"))])
    for node in (devops, python):
        await connect(asker, node)
    await connect(devops, python)

    async def replicated() -> bool:
        counts = [(await n.store.count())["expert_knowledge"] for n in (asker, devops, python)]
        return len(set(counts)) == 1 and counts[0] > 0

    await eventually(replicated, "the knowledge to replicate to every node")
    await eventually(lambda: len(asker.services.asker.known_agents()) == 2, "two agents")
    return mesh, asker, devops, python


async def _solutions(node: Node) -> list[MemoryRecord]:
    return [r async for r in node.store.export()
            if r.collection == "problem_solutions" and not r.is_tombstone]


def _echoes(question: str, text: str) -> list[str]:
    return [c.text for c in claims(text) if restates(c.text, question)]


async def test_asking_twice_gives_knowledge_not_an_echo(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    mesh, asker, devops, python = await _mesh(nursery, tmp_path)
    first = await asker.services.asker.ask(QUESTION, timeout=30)
    assert (first["agent"], first["peer"]) == ("devops-expert", devops.id)
    answer = first["answer"]
    assert answer["faithfulness"] == 1.0 and answer["quality"] > 0
    assert "records" not in answer  # checked here, not passed on to the user
    # Nothing is learnt before the asker accepted anything: no node wrote a solution.
    for node in (asker, devops, python):
        assert await _solutions(node) == []

    asker.services.asker.rate(first["task_id"], good=True)

    async def learnt() -> list[MemoryRecord]:
        return await _solutions(devops)  # written by the asker, replicated to the expert

    await eventually(learnt, "the solution to reach the expert")
    (solution,) = await _solutions(asker)
    assert solution.author == asker.id  # the asker's signed statement, not the expert's
    assert solution.meta["verdict"] == "rated_good" and solution.meta["question"] == QUESTION
    assert solution.meta["peer"] == devops.id and solution.meta["task"] == first["task_id"]
    assert solution.meta["confirmations"] == 1
    cited = {c["id"] for c in answer["citations"]}
    assert set(str(solution.meta["sources"]).split(",")) <= cited
    problem, _, body = solution.text.partition("\n\nSolution: ")
    assert problem == f"Problem: {QUESTION}" and body and QUESTION not in body

    second = await asker.services.asker.ask(QUESTION, timeout=30)
    text = second["answer"]["text"]
    assert QUESTION not in text and "Problem:" not in text and not _echoes(QUESTION, text)
    assert second["answer"]["faithfulness"] == 1.0 and second["answer"]["quality"] > 0
    assert second["answer"]["citations"]  # knowledge: the solution's answer or the KB
    no_faults(mesh)


async def test_an_answer_not_rated_bad_is_accepted_when_its_window_passes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, asker, _, _ = await _mesh(nursery, tmp_path, window=0.5)
    first = await asker.services.asker.ask(QUESTION, timeout=30)
    await eventually(lambda: _solutions(asker), "acceptance once the window passed")
    (solution,) = await _solutions(asker)
    assert solution.meta["verdict"] == "accepted" and solution.meta["task"] == first["task_id"]

    # The same question again (and a near-duplicate): merged into one solution, confirmed.
    for question in (QUESTION, "How can I roll back a Kubernetes deployment?"):
        await asker.services.asker.ask(question, timeout=30)

    async def confirmed() -> bool:
        solutions = await _solutions(asker)
        return len(solutions) == 1 and solutions[0].meta["confirmations"] == 3

    await eventually(confirmed, "one solution, confirmed three times")
    history = [r async for r in asker.store.export() if r.collection == "collaboration_history"]
    assert len([r for r in history if not r.is_tombstone]) == 3
    no_faults(mesh)


async def test_a_bad_rating_writes_no_solution_and_withdraws_the_cited_one(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, asker, devops, _ = await _mesh(nursery, tmp_path)
    first = await asker.services.asker.ask(QUESTION, timeout=30)
    asker.services.asker.rate(first["task_id"], good=True)
    await eventually(lambda: _solutions(devops), "the solution to replicate")
    (solution,) = await _solutions(asker)

    learner = asker.services.asker.learner
    assert learner is not None
    second = await asker.services.asker.ask(QUESTION, timeout=30)
    cites_it = solution.id in {c["id"] for c in second["answer"]["citations"]}
    asker.services.asker.rate(second["task_id"], good=False)

    async def verdicts() -> list[str]:
        return [str(r.meta["verdict"]) async for r in asker.store.export()
                if r.collection == "collaboration_history" and not r.is_tombstone]

    await eventually(lambda: len_is(verdicts(), 2), "both verdicts to be logged")
    assert sorted(await verdicts()) == ["rated_bad", "rated_good"]
    assert learner.withdrawn == int(cites_it)
    # A bad answer never becomes a solution; a solution it cited is withdrawn.
    remaining = await _solutions(asker)
    assert remaining == ([] if cites_it else [solution])
    no_faults(mesh)


async def test_old_echoes_and_unaccepted_solutions_can_be_cleaned(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, asker, devops, _ = await _mesh(nursery, tmp_path)
    knowledge = devops.services.knowledge
    # What the old answering path wrote at once, for every exchange: an echo...
    echo = await knowledge.add(f"Problem: {QUESTION}\n\nSolution: Problem: {QUESTION}",
                               kind="solution", collection="problem_solutions",
                               meta={"asker": asker.id, "agent": "devops-expert"})
    # ...and a real answer nobody accepted.
    unaccepted = await knowledge.add(
        f"Problem: {QUESTION}\n\nSolution: Run kubectl rollout undo deployment/web.",
        kind="solution", collection="problem_solutions", meta={"asker": asker.id})
    await eventually(lambda: len_is(_solutions(asker), 2), "the old solutions to replicate")

    learner = devops.services.asker.learner
    assert learner is not None
    listed = await learner.clean(dry_run=True)
    assert {r["id"]: r["reason"].split(":")[0] for r in listed} == {
        echo.id: "echo", unaccepted.id: "unaccepted"}
    assert len(await _solutions(devops)) == 2  # a dry run changes nothing
    cleaned = await learner.clean(dry_run=False)
    assert all(r["deleted"] for r in cleaned)
    assert await _solutions(devops) == []
    await eventually(lambda: len_is(_solutions(asker), 0), "the tombstones to replicate")
    # The asker's own accepted solutions are kept by its own clean-up.
    first = await asker.services.asker.ask(QUESTION, timeout=30)
    asker.services.asker.rate(first["task_id"], good=True)
    await eventually(lambda: len_is(_solutions(asker), 1), "a new, accepted solution")
    assert asker.services.asker.learner is not None
    assert await asker.services.asker.learner.clean(dry_run=False) == []
    no_faults(mesh)


async def len_is(records: object, n: int) -> bool:
    return len(await records) == n  # type: ignore[misc]


@pytest.mark.parametrize("question", ["What is a good recipe for chocolate cake?",
                                      "How do I knit a scarf?"])
async def test_an_off_topic_question_gets_no_expert(nursery: trio.Nursery, tmp_path: Path,
                                                    question: str) -> None:
    mesh, asker, _, _ = await _mesh(nursery, tmp_path)
    with pytest.raises(NoExpert, match="no expert"):
        await asker.services.asker.ask(question, timeout=30)
    (record,) = asker.services.asker.history.recent(1)
    assert not record.ok and "no expert" in record.error
    no_faults(mesh)
