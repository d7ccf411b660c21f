"""Agents in code on the in-memory mesh, wired by the daemon's NodeServices: routed like any
agent, their failures fail their task only, and their Context reaches memory, streams
progress and consults other agents with the task's context and retrieval."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

import meshnode
from meshnode.a2a.owners import OPERATOR
from meshnode.a2a.tasks import AGENT_KEY, ASKER_KEY
from meshnode.agents.specs import AgentSpec
from meshnode.ask.asker import AskError
from meshnode.node.inmemory import InMemoryMesh
from protocols.a2a import DataPart, Message, StreamEvent, TaskStatusUpdateEvent, TextPart
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

TIP = "HNSW is the Milvus index for low-latency vector search."
SKILL = meshnode.Skill("Testing", "Answers test questions.", tags=("test",))


def _in_code(handler: str, name: str = "") -> AgentSpec:
    """An [[agents]] table naming a handler (the card from the object, or given here)."""
    skills = (SKILL.spec(),) if name else ()
    return AgentSpec(name=name, description="A test agent." if name else "",
                     instructions="", skills=skills, handler=handler)


async def _boom(ctx: meshnode.Context) -> str:
    raise RuntimeError("a bug in the user's code")


async def _refuse(ctx: meshnode.Context) -> str:
    raise meshnode.AgentFailed("I only answer on Tuesdays")


async def _sleep(ctx: meshnode.Context) -> str:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def _wrong_type(ctx: meshnode.Context) -> Any:
    return 42


async def _librarian(ctx: meshnode.Context) -> meshnode.Reply:
    """Says what it was given: the shared passages (quoted and cited, so that the asker's
    check finds the answer grounded), the context and the depth."""
    quoted = " ".join(f"{p.text} [{i}]" for i, p in enumerate(ctx.shared, 1))
    return meshnode.Reply(f"I was given {len(ctx.shared)} passages. {quoted}", ctx.shared,
                          data={"context": ctx.context_id, "depth": ctx.depth,
                                "shared": [p.id for p in ctx.shared]})


async def _researcher(ctx: meshnode.Context) -> meshnode.Reply:
    await ctx.progress("searching memory")
    found = await ctx.memory.search(ctx.question, k=2)
    await ctx.artifact("notes", text=f"{len(found)} passages", data={"n": len(found)})
    written = await ctx.memory.add(f"Researched: {ctx.question}", kind="note")
    consulted = await ctx.ask(ctx.question, agent="librarian")
    return meshnode.Reply(f"{consulted.agent} says: {consulted.text}", found,
                          data={"written": written, "librarian": dict(consulted.data)})


boom = meshnode.Agent("boom", "Fails.", [SKILL], _boom)
refuser = meshnode.Agent("refuser", "Refuses.", [SKILL], _refuse)
sleeper = meshnode.Agent("sleeper", "Never answers.", [SKILL], _sleep)
wrong = meshnode.Agent("wrong", "Returns a number.", [SKILL], _wrong_type)
librarian = meshnode.Agent("librarian", "Lists what it was given.", [SKILL], _librarian)
researcher = meshnode.Agent("researcher", "Searches and consults.", [SKILL], _researcher)
HERE = "tests.a2a.test_code_agents_inmemory"


async def _pair(nursery: trio.Nursery, tmp_path: Path, *agents: AgentSpec
                ) -> tuple[InMemoryMesh, Node, Node]:
    mesh = InMemoryMesh()
    asker, host = await start_nodes(nursery, mesh, tmp_path, [(), agents])
    await connect(asker, host)
    await eventually(lambda: len(asker.services.asker.known_agents()) == len(agents),
                     "the asker to know the agents")
    return mesh, asker, host


async def test_a_config_handler_answers_through_routing(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    mesh, asker, host = await _pair(
        nursery, tmp_path, _in_code("meshnode.examples.calculator:agent"))
    events: list[dict[str, Any]] = []

    async def progress(update: dict[str, Any]) -> None:
        events.append(update)

    result = await asker.services.asker.ask("What is 12 * (3 + 4)?", timeout=20,
                                            progress=progress)
    assert (result["agent"], result["peer"]) == ("calculator", host.id)
    answer = result["answer"]
    assert "12 * (3 + 4) = 84" in answer["text"] and answer["mode"] == "code"
    assert answer["data"] == {"expression": "12 * (3 + 4)", "numerator": "84",
                              "denominator": "1"}
    assert any(e.get("state") == "completed" for e in events)
    no_faults(mesh)


async def test_failures_in_user_code_fail_the_task_not_the_node(nursery: trio.Nursery,
                                                                tmp_path: Path) -> None:
    names = ("boom", "refuser", "sleeper", "wrong")
    mesh, asker, host = await _pair(
        nursery, tmp_path, *(_in_code(f"{HERE}:{name}") for name in names),
        _in_code("meshnode.examples.calculator:agent"))
    ask = asker.services.asker.ask
    reasons = {}
    for name in names:
        with pytest.raises(AskError) as caught:
            await ask("a test question", agent=name, timeout=6)
        reasons[name] = str(caught.value)
    assert "internal error (RuntimeError)" in reasons["boom"]
    assert "a bug in the user's code" not in reasons["boom"]  # details stay in the log
    assert "I only answer on Tuesdays" in reasons["refuser"]
    assert "sleeper" in reasons["sleeper"] and ("deadline" in reasons["sleeper"]
                                                or "timeout" in reasons["sleeper"])
    assert "internal error (TypeError)" in reasons["wrong"]
    assert host.services.tasks.store.faults.counts().get("a2a task", 0) >= 2
    # The node still serves.
    result = await ask("What is 2 + 2?", agent="calculator", timeout=10)
    assert "2 + 2 = 4" in result["answer"]["text"]
    no_faults(mesh)


async def test_context_memory_progress_and_consulting(nursery: trio.Nursery,
                                                      tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    asker, first, second = await start_nodes(
        nursery, mesh, tmp_path, [(), (_in_code(f"{HERE}:researcher"),),
                                  (_in_code(f"{HERE}:librarian"),)])
    tip = await first.services.knowledge.add(TIP, kind="tip")
    for a, b in ((asker, first), (first, second), (asker, second)):
        await connect(a, b)
    await eventually(lambda: len(first.services.asker.known_agents()) == 2, "two agents")
    await eventually(lambda: second.services.knowledge.store.get([tip.id]), "replication")
    statuses: list[str] = []

    async def on_event(event: StreamEvent) -> None:
        if isinstance(event, TaskStatusUpdateEvent) and event.status.message is not None:
            statuses.append(event.status.message.text)

    message = Message(role="user", parts=(TextPart("Which Milvus index is low-latency?"),),
                      message_id=str(uuid.uuid4()), context_id="conversation-7",
                      metadata={AGENT_KEY: "researcher", ASKER_KEY: asker.id})
    task = await first.services.tasks.run_task(message, on_event, owner=OPERATOR)
    assert task.status.state == "completed", task.status
    assert "searching memory" in statuses
    assert [a.name for a in task.artifacts] == ["notes", "answer"]
    data = next(p.data for p in task.artifacts[-1].parts if isinstance(p, DataPart))
    # The consulted agent got this task's context and what it retrieved, verified.
    librarian = data["data"]["librarian"]["data"]
    assert librarian["context"] == "conversation-7" and librarian["depth"] == 1
    assert tip.id in librarian["shared"]
    [hop] = data["consulted"]
    assert (hop["by"], hop["agent"], hop["peer"], hop["state"]) == (
        "researcher", "librarian", second.id, "completed")
    assert hop["shared"] >= 1
    assert "I was given 1 passages" in data["text"] or "I was given 2 passages" in data["text"]
    assert [c["id"] for c in data["citations"]] and data["citations"][0]["id"] == tip.id
    written = await first.services.knowledge.store.get([data["data"]["written"]])
    assert written and written[0].agent == "researcher"
    no_faults(mesh)
