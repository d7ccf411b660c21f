"""MeshA2A: the whole mesh as one A2A agent, for standard A2A clients and for the CLI.

A question sent here is routed by the Asker to the best agents of the mesh; the client sees
one task go submitted → working (with progress messages) → completed with the routed,
cited answer as an artifact, or failed with the reason. Streams are fed from tasks owned by
this service's nursery, so no cancel scope crosses a ``yield``.

Each caller gets its own view (:meth:`MeshA2A.handler`): the task of a question belongs to
whoever asked it (the operator, or an anonymous client of the public A2A endpoint), and
GetTask, ListTasks and CancelTask show and touch that owner's tasks only (the operator's
view shows all).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import trio

from meshnode.a2a.lifecycle import Emit, TaskRun, no_emit
from meshnode.a2a.owners import OPERATOR, Owner
from meshnode.a2a.tasks import AGENT_KEY, TaskService
from meshnode.ask.asker import Asker, AskError
from protocols.a2a import (
    A2AError,
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
    def __init__(self, asker: Asker, tasks: TaskService, *, network_id: str, version: str) -> None:
        self.asker = asker
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

    def handler(self, owner: Owner) -> OwnerView:
        """The A2A operations as ``owner`` may use them (an A2AHandler of the HTTP binding)."""
        return OwnerView(self, owner)

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

    # ---- running a question --------------------------------------------------------

    async def stream(self, message: Message, owner: Owner = OPERATOR
                     ) -> AsyncIterator[StreamEvent]:
        """The events of ``owner``'s question; A2AError (BUSY) if it may not ask now."""
        assert self._nursery is not None, "MeshA2A.run() must be running"
        # Checked here too, so that a refusal is an error of the request, not of a stream.
        self.store.admit(owner)
        send, receive = trio.open_memory_channel[StreamEvent](64)
        self._nursery.start_soon(self._produce, message, owner, send)
        async with receive:
            async for event in receive:
                yield event

    async def _produce(self, message: Message, owner: Owner,
                       send: trio.MemorySendChannel[StreamEvent]) -> None:
        async with send:
            async def emit(event: StreamEvent) -> None:
                # If the client left, the question still completes and its task is kept.
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send(event)

            with suppress(A2AError):  # refused (BUSY): the stream ends without events
                await self.run_question(message, emit, owner)

    async def run_question(self, message: Message, emit: Emit = no_emit,
                           owner: Owner = OPERATOR) -> Task:
        async with self.store.run(message, emit, owner=owner, where="mesh ask") as run:
            if not message.text.strip():
                await run.reject("the message has no text")
            else:
                await self._route(run, message, owner)
        return run.task

    async def _route(self, run: TaskRun, message: Message, owner: Owner) -> None:
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
                timeout=float(timeout), progress=progress, owner=owner,
            )
        except AskError as exc:
            await run.fail(str(exc))
            return
        answer = result["answer"]
        await run.complete(Artifact(
            artifact_id=str(uuid.uuid4()), name="answer",
            parts=(TextPart(str(answer.get("text", ""))), DataPart(result)),
        ))


class OwnerView:
    """The A2A operations of a MeshA2A for one owner (see :class:`A2AHandler`)."""

    def __init__(self, mesh: MeshA2A, owner: Owner) -> None:
        self.mesh = mesh
        self.owner = owner

    async def card(self) -> AgentCard:
        return await self.mesh.card()

    async def send_message(self, op: SendMessage) -> Task:
        return await self.mesh.run_question(op.message, owner=self.owner)

    def send_streaming(self, op: SendStreamingMessage) -> AsyncIterator[StreamEvent]:
        return self.mesh.stream(op.message, self.owner)

    async def get_task(self, op: GetTask) -> Task:
        return self.mesh.store.get(op.task_id, self.owner)

    async def list_tasks(self, op: ListTasks) -> tuple[Task, ...]:
        return self.mesh.store.list(op, self.owner)

    async def cancel_task(self, op: CancelTask) -> Task:
        return self.mesh.store.cancel(op.task_id, self.owner)
