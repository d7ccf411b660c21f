"""MeshA2A: the whole mesh as one A2A agent, for standard A2A clients and for the CLI.

A question sent here is routed by the Asker to the best agents of the mesh; the client sees
one task go submitted → working (with progress messages) → completed with the routed,
cited answer as an artifact, or failed with the reason. Streams are fed from tasks owned by
this service's nursery, so no cancel scope crosses a ``yield``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import trio

from meshnode.a2a.lifecycle import Emit, TaskRun, no_emit
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
    TextPart,
)

DEFAULT_TIMEOUT_S = 60.0
TIMEOUT_KEY = "meshnode/timeout_s"


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
    def __init__(
        self, asker: Asker, tasks: TaskService, *, network_id: str, version: str,
        learn_from_a2a: bool = True,
    ) -> None:
        self.asker = asker
        #: Whether questions from the A2A binding may become solutions once accepted (not
        #: when anyone may send them without the token).
        self.learn_from_a2a = learn_from_a2a
        self.tasks = tasks
        #: Mesh asks are tasks of this node like its agents' ones: one store, one lifecycle.
        self.store = tasks.store
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
        return await self.run_question(op.message, learn=self.learn_from_a2a)

    def send_streaming(self, op: SendStreamingMessage) -> AsyncIterator[StreamEvent]:
        return self.stream(op.message, learn=self.learn_from_a2a)

    async def get_task(self, op: GetTask) -> Task:
        return self.store.get(op.task_id)

    async def list_tasks(self, op: ListTasks) -> tuple[Task, ...]:
        return self.store.list(op)

    async def cancel_task(self, op: CancelTask) -> Task:
        return self.store.cancel(op.task_id)

    # ---- running a question --------------------------------------------------------

    async def stream(self, message: Message, *, learn: bool = True) -> AsyncIterator[StreamEvent]:
        assert self._nursery is not None, "MeshA2A.run() must be running"
        send, receive = trio.open_memory_channel[StreamEvent](64)
        self._nursery.start_soon(self._produce, message, send, learn)
        async with receive:
            async for event in receive:
                yield event

    async def _produce(
        self, message: Message, send: trio.MemorySendChannel[StreamEvent], learn: bool
    ) -> None:
        async with send:
            async def emit(event: StreamEvent) -> None:
                # If the client left, the question still completes and its task is kept.
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send(event)

            await self.run_question(message, emit, learn=learn)

    async def run_question(
        self, message: Message, emit: Emit = no_emit, *, learn: bool = True
    ) -> Task:
        async with self.store.run(message, emit, where="mesh ask") as run:
            if not message.text.strip():
                await run.reject("the message has no text")
            else:
                await self._route(run, message, learn)
        return run.task

    async def _route(self, run: TaskRun, message: Message, learn: bool) -> None:
        await run.working()

        async def progress(update: dict[str, Any]) -> None:
            await run.working(_describe(update), {"meshnode/progress": update})

        agent = message.metadata.get(AGENT_KEY)
        timeout = message.metadata.get(TIMEOUT_KEY, DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            timeout = DEFAULT_TIMEOUT_S
        try:
            result = await self.asker.ask(
                message.text, agent=agent if isinstance(agent, str) else None,
                timeout=float(timeout), progress=progress, learn=learn,
            )
        except AskError as exc:
            await run.fail(str(exc))
            return
        answer = result["answer"]
        await run.complete(Artifact(
            artifact_id=str(uuid.uuid4()), name="answer",
            parts=(TextPart(str(answer.get("text", ""))), DataPart(result)),
        ))
