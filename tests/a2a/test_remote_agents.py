"""Existing A2A servers on the mesh: a real a2a-sdk server (tests/fakes/a2a_sdk_server.py,
in a subprocess) behind an [[agents]] url, in both A2A dialects, streaming, failing,
hanging past the deadline and refusing a wrong token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from meshnode.a2a.hosted import RemoteAgent
from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.owners import OPERATOR
from meshnode.a2a.tasks import DEADLINE_KEY
from meshnode.agents.specs import AgentSpec
from meshnode.node.inmemory import InMemoryMesh
from protocols.a2a import (
    DataPart,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
)
from tests.fakes.a2a_sdk_server import running
from tests.inmemory import connect, eventually, no_faults, start_nodes

TOKEN = "s3cret"
QUESTION = "How much is 100 USD in EUR?"


@pytest.fixture(scope="module", params=["1.0", "0.3"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with running(request.param, token=TOKEN) as url:
        yield url, request.param


def _spec(url: str, token: str = TOKEN) -> AgentSpec:
    return AgentSpec(name="currency", description="", instructions="", skills=(), url=url,
                     token=token)


async def _started(nursery: trio.Nursery, spec: AgentSpec) -> RemoteAgent:
    agent = RemoteAgent(spec, peer_id="12D3KooWtest", version="test")
    await nursery.start(agent.serve)
    await eventually(lambda: agent.card() is not None, "the A2A server's card", timeout=20)
    return agent


async def _run(agent: RemoteAgent, text: str, deadline: float = 20.0
               ) -> tuple[Task, list[StreamEvent]]:
    events: list[StreamEvent] = []

    async def emit(event: StreamEvent) -> None:
        events.append(event)

    message = Message(role="user", parts=(TextPart(text),), message_id=str(uuid.uuid4()),
                      metadata={DEADLINE_KEY: deadline})
    store = TaskStore()
    async with store.run(message, emit, owner=OPERATOR) as run:
        await agent.run(run, message)
    return run.task, events


async def test_a_remote_server_answers_a_routed_question(
    nursery: trio.Nursery, tmp_path: Path, server: tuple[str, str]
) -> None:
    url, dialect = server
    mesh = InMemoryMesh()
    asker, host = await start_nodes(nursery, mesh, tmp_path, [(), (_spec(url),)])
    await connect(asker, host)
    await eventually(lambda: any(c.name == "currency" for _, c in
                                 asker.services.asker.known_agents()), "the card in presence")
    remote = host.services.tasks.hosted["currency"]
    assert isinstance(remote, RemoteAgent) and remote.server.dialect == dialect
    [card] = [c for p, c in asker.services.asker.known_agents() if p == host.id]
    assert [s.name for s in card.skills] == ["Currency conversion"]
    statuses: list[str] = []

    async def progress(update: dict[str, object]) -> None:
        statuses.append(str(update.get("state", update.get("stage"))))

    result = await asker.services.asker.ask(QUESTION, timeout=30, progress=progress)
    assert (result["agent"], result["peer"]) == ("currency", host.id)
    answer = result["answer"]
    assert answer["text"] == f"Converted: {QUESTION} = 42 EUR" and answer["mode"] == "remote"
    assert "completed" in statuses
    no_faults(mesh)


async def test_events_stream_back(nursery: trio.Nursery, server: tuple[str, str]) -> None:
    url, _ = server
    agent = await _started(nursery, _spec(url))
    task, events = await _run(agent, QUESTION)
    assert task.status.state == TaskState.COMPLETED
    working = [e.status.message.text for e in events if isinstance(e, TaskStatusUpdateEvent)
               and e.status.message is not None and e.status.state == TaskState.WORKING]
    assert "looking up rates" in working  # the server's progress, passed on
    chunks = [e.artifact.text for e in events if isinstance(e, TaskArtifactUpdateEvent)
              and e.artifact.name == "conversion"]
    assert chunks == [f"Converted: {QUESTION} ", "= 42 EUR"]
    answer = task.artifacts[-1]
    data = next(p.data for p in answer.parts if isinstance(p, DataPart))
    assert answer.name == "answer" and data["text"] == f"Converted: {QUESTION} = 42 EUR"


async def test_failures_fail_the_task_within_its_deadline(
    nursery: trio.Nursery, server: tuple[str, str]
) -> None:
    url, _ = server
    agent = await _started(nursery, _spec(url))
    failed, _ = await _run(agent, "please fail")
    assert failed.status.state == TaskState.FAILED
    assert failed.status.message is not None
    assert "rates service is down" in failed.status.message.text
    started = time.monotonic()
    hung, _ = await _run(agent, "please hang", deadline=2.0)
    assert hung.status.state == TaskState.FAILED and time.monotonic() - started < 10
    assert hung.status.message is not None and "no answer within 2 s" in hung.status.message.text
    # Still usable afterwards.
    ok, _ = await _run(agent, QUESTION)
    assert ok.status.state == TaskState.COMPLETED


async def test_a_wrong_token_is_refused(nursery: trio.Nursery, server: tuple[str, str]) -> None:
    url, _ = server
    agent = await _started(nursery, _spec(url, token="wrong"))  # the card is public
    task, _ = await _run(agent, QUESTION)
    assert task.status.state == TaskState.FAILED and task.status.message is not None
    assert "refused (HTTP 401)" in task.status.message.text


async def test_an_unreachable_server_is_not_advertised(nursery: trio.Nursery) -> None:
    agent = RemoteAgent(_spec("http://127.0.0.1:9"), peer_id="p", version="test")
    await nursery.start(agent.serve)
    await trio.sleep(0.5)
    assert agent.card() is None
    task, _ = await _run(agent, QUESTION)
    assert task.status.state == TaskState.REJECTED
