"""MeshA2A: the whole mesh as one A2A agent, for standard A2A clients and for the CLI.

A question sent here is routed by the Asker to the best agents of the mesh; the client sees
one task go submitted → working (with progress messages) → completed with the routed,
cited answer as an artifact, or failed with the reason. Streams are fed from tasks owned by
this service's nursery, so no cancel scope crosses a ``yield``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

import trio

from meshnode.a2a.tasks import AGENT_KEY, TaskService
from meshnode.ask.asker import Asker, AskError
from protocols.a2a import (
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    Artifact,
    CancelTask,
    DataPart,
    GetTask,
    ListTasks,
    Message,
    SendMessage,
    SendStreamingMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
    transition,
    with_artifact,
)
from protocols.a2a import (
    TaskStatus as A2ATaskStatus,
)

DEFAULT_TIMEOUT_S = 60.0
TIMEOUT_KEY = "meshnode/timeout_s"
Emit = Callable[[StreamEvent], Awaitable[None]]


def _agent_message(task: Task, text: str) -> Message:
    return Message(role="agent", parts=(TextPart(text),), message_id=str(uuid.uuid4()),
                   context_id=task.context_id, task_id=task.id)


def _describe(progress: dict[str, Any]) -> str:
    stage = progress.get("stage")
    if stage == "routed":
        return f"routing: {progress.get('candidates')} relevant agent(s)"
    if stage == "asking":
        return f"asking {progress.get('agent')} on {str(progress.get('peer'))[-8:]}"
    if stage == "status":
        return f"{progress.get('agent')}: {progress.get('state')}"
    return json.dumps(progress)


class MeshA2A:
    def __init__(self, asker: Asker, tasks: TaskService, *, network_id: str, version: str) -> None:
        self.asker = asker
        self.tasks = tasks
        self.network_id = network_id
        self.version = version
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # ---- A2AHandler ----------------------------------------------------------------

    async def card(self) -> AgentCard:
        skills: dict[str, AgentSkill] = {}
        for _, card in self.asker.known_agents():
            for skill in card.skills:
                skills.setdefault(skill.id, skill)
        return AgentCard(
            name=f"meshnode mesh {self.network_id}",
            description="A peer-to-peer mesh of expert agents. Each question is routed to "
            "the most relevant, most trusted agent; answers cite the shared memory they use.",
            version=self.version, skills=tuple(skills.values()),
            capabilities=AgentCapabilities(streaming=True),
        )

    async def send_message(self, op: SendMessage) -> Task:
        return await self.run_question(op.message)

    def send_streaming(self, op: SendStreamingMessage) -> AsyncIterator[StreamEvent]:
        return self.stream(op.message)

    async def get_task(self, op: GetTask) -> Task:
        return self.tasks.get(op.task_id)

    async def list_tasks(self, op: ListTasks) -> tuple[Task, ...]:
        return self.tasks.list(op)

    async def cancel_task(self, op: CancelTask) -> Task:
        return self.tasks.cancel(op.task_id)

    # ---- running a question --------------------------------------------------------

    async def stream(self, message: Message) -> AsyncIterator[StreamEvent]:
        assert self._nursery is not None, "MeshA2A.run() must be running"
        send, receive = trio.open_memory_channel[StreamEvent](64)
        self._nursery.start_soon(self._produce, message, send)
        async with receive:
            async for event in receive:
                yield event

    async def _produce(self, message: Message, send: trio.MemorySendChannel[StreamEvent]) -> None:
        async with send:
            async def emit(event: StreamEvent) -> None:
                # If the client left, the question still completes and its task is kept.
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send(event)

            await self.run_question(message, emit)

    async def run_question(self, message: Message, emit: Emit | None = None) -> Task:
        async def ignore(_: StreamEvent) -> None:
            pass

        emit = emit or ignore
        task = self.tasks.keep(Task(
            id=str(uuid.uuid4()), context_id=message.context_id or str(uuid.uuid4()),
            status=A2ATaskStatus(TaskState.SUBMITTED, timestamp=time.time()), history=(message,),
        ))
        await emit(task)
        if not message.text.strip():
            return await self._end(task, TaskState.REJECTED, "the message has no text", emit)
        task = self.tasks.keep(transition(task, TaskState.WORKING, now=time.time()))
        await emit(TaskStatusUpdateEvent(task.id, task.context_id, task.status))

        async def progress(update: dict[str, Any]) -> None:
            status = A2ATaskStatus(TaskState.WORKING, _agent_message(task, _describe(update)),
                                   time.time())
            await emit(TaskStatusUpdateEvent(task.id, task.context_id, status,
                                             metadata={"meshnode/progress": update}))

        agent = message.metadata.get(AGENT_KEY)
        timeout = message.metadata.get(TIMEOUT_KEY, DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            timeout = DEFAULT_TIMEOUT_S
        result: dict[str, Any] | None = None
        with trio.CancelScope() as scope:
            self.tasks.running[task.id] = scope
            try:
                result = await self.asker.ask(
                    message.text, agent=agent if isinstance(agent, str) else None,
                    timeout=float(timeout), progress=progress,
                )
            except AskError as exc:
                return await self._end(task, TaskState.FAILED, str(exc), emit)
            finally:
                del self.tasks.running[task.id]
        if result is None:  # cancelled through CancelTask, which recorded it
            return self.tasks.get(task.id)
        answer = result["answer"]
        artifact = Artifact(
            artifact_id=str(uuid.uuid4()), name="answer",
            parts=(TextPart(str(answer.get("text", ""))), DataPart(result)),
        )
        task = self.tasks.keep(with_artifact(task, artifact))
        await emit(TaskArtifactUpdateEvent(task.id, task.context_id, artifact, last_chunk=True))
        return await self._end(task, TaskState.COMPLETED, None, emit)

    async def _end(self, task: Task, state: TaskState, reason: str | None, emit: Emit) -> Task:
        message = _agent_message(task, reason) if reason else None
        task = self.tasks.keep(transition(task, state, message=message, now=time.time()))
        await emit(TaskStatusUpdateEvent(task.id, task.context_id, task.status, final=True))
        return task
