"""The task service over /meshnode/a2a/1.0.0 on the in-memory mesh: send, stream, get and
cancel, against a node wired as the daemon wires it (Milvus Lite store, extractive agent)."""

from __future__ import annotations

import uuid
from pathlib import Path

import trio

from meshnode.a2a.tasks import AGENT_KEY, call_agent
from meshnode.agents.answering import Answer, Answerer
from meshnode.agents.specs import AgentSpec, SkillSpec
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.streams import read_frame, write_frame
from protocols.a2a import (
    A2A_PROTOCOL,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    CancelTask,
    DataPart,
    ErrorReply,
    GetTask,
    Message,
    Operation,
    Result,
    SendMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
    decode_response,
    encode_request,
)
from protocols.codec import FrameDecoder
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

EXPERT = AgentSpec(name="milvus-expert", description="Milvus indexes", instructions="",
                   skills=(SkillSpec(id="milvus", name="Milvus", description="Milvus indexes",
                                     tags=("milvus",)),))
TIP = "HNSW is the Milvus index for low-latency vector search."
QUESTION = "Which Milvus index gives low-latency vector search?"


def _message(text: str = QUESTION, agent: str = "milvus-expert") -> Message:
    return Message(role="user", parts=(TextPart(text),), message_id=str(uuid.uuid4()),
                   metadata={AGENT_KEY: agent})


async def _request(client: Node, server: Node, op: Operation) -> Result | ErrorReply:
    async with client.host.open_stream(server.id, A2A_PROTOCOL, timeout=5) as stream:
        await write_frame(stream, encode_request("r1", op), timeout=5)
        frame = await read_frame(stream, FrameDecoder(), timeout=20)
    assert frame is not None
    reply = decode_response(frame)
    assert isinstance(reply, Result | ErrorReply)
    return reply


async def _task(client: Node, server: Node, op: Operation) -> Task:
    reply = await _request(client, server, op)
    assert isinstance(reply, Result) and isinstance(reply.value, Task), reply
    return reply.value


async def _pair(nursery: trio.Nursery, tmp_path: Path) -> tuple[InMemoryMesh, Node, Node]:
    mesh = InMemoryMesh()
    client, server = await start_nodes(nursery, mesh, tmp_path, [(), (EXPERT,)])
    await server.services.knowledge.add(TIP, kind="tip")
    await connect(client, server)
    return mesh, client, server


async def test_send_then_get(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    task = await _task(client, server, SendMessage(_message()))
    assert task.status.state == TaskState.COMPLETED
    [artifact] = task.artifacts
    data = next(p.data for p in artifact.parts if isinstance(p, DataPart))
    assert data["agent"] == "milvus-expert" and data["peer"] == server.id
    assert data["citations"] and "HNSW" in artifact.text
    again = await _task(client, server, GetTask(task.id))
    assert (again.id, again.status.state) == (task.id, TaskState.COMPLETED)
    missing = await _request(client, server, GetTask("no-such-task"))
    assert isinstance(missing, ErrorReply) and missing.code == TASK_NOT_FOUND
    unknown = await _task(client, server, SendMessage(_message(agent="nobody")))
    assert unknown.status.state == TaskState.REJECTED
    no_faults(mesh)


async def test_stream_reports_each_step(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    events: list[StreamEvent] = []

    async def collect(event: StreamEvent) -> None:
        events.append(event)

    await call_agent(client.host, server.id, _message(), collect, timeout=20)
    first, *rest = events
    assert isinstance(first, Task) and first.status.state == TaskState.SUBMITTED
    states = [e.status.state for e in rest if isinstance(e, TaskStatusUpdateEvent)]
    assert states == [TaskState.WORKING, TaskState.COMPLETED]
    assert any(isinstance(e, TaskArtifactUpdateEvent) for e in rest)
    assert isinstance(rest[-1], TaskStatusUpdateEvent) and rest[-1].final
    kept = await _task(client, server, GetTask(first.id))
    assert kept.status.state == TaskState.COMPLETED
    no_faults(mesh)


class Gated:
    """The node's real answerer behind a gate: a task stays working until released."""

    def __init__(self, inner: Answerer) -> None:
        self.inner = inner
        self.entered = trio.Event()
        self.release = trio.Event()
        self.cancelled = False

    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
        self.entered.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled = True
            raise
        return await self.inner.answer(spec, question, deadline_s=deadline_s)


async def test_cancel_stops_a_running_task(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    gate = Gated(server.services.tasks.answerer)
    server.services.tasks.answerer = gate  # type: ignore[assignment]
    events: list[StreamEvent] = []
    stream_ended = trio.Event()

    async def stream() -> None:
        async def collect(event: StreamEvent) -> None:
            events.append(event)

        await call_agent(client.host, server.id, _message(), collect, timeout=30)
        stream_ended.set()

    nursery.start_soon(stream)
    await gate.entered.wait()
    task_id = events[0].id if isinstance(events[0], Task) else ""
    canceled = await _task(client, server, CancelTask(task_id))
    assert canceled.status.state == TaskState.CANCELED
    with trio.fail_after(10):
        await stream_ended.wait()
    assert gate.cancelled  # the agent's work was really stopped, not only relabelled
    kept = await _task(client, server, GetTask(task_id))
    assert kept.status.state == TaskState.CANCELED
    again = await _request(client, server, CancelTask(task_id))
    assert isinstance(again, ErrorReply) and again.code == TASK_NOT_CANCELABLE
    await eventually(lambda: not server.services.tasks.store.running(), "no task left running")
    no_faults(mesh)
