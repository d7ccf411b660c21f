"""TaskService: the agents this node hosts, answering A2A tasks over /meshnode/a2a/1.0.0.

One request per stream: the asker writes a request frame; the node answers with a result,
or, for a streaming request, with events until the task ends and an end frame. The work of
a task runs inside the stream handler, so an asker that goes away cancels it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import trio

from meshnode.agents.answering import AgentError, Answer, Answerer
from meshnode.agents.llm import LLMError
from meshnode.agents.specs import AgentSpec
from meshnode.errors import MeshnodeError
from meshnode.node.host import MeshHost
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.streams import ByteStream, read_frame, write_frame
from protocols.a2a import (
    A2A_PROTOCOL,
    INVALID_PARAMS,
    INVALID_REQUEST,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    TERMINAL_STATES,
    A2AError,
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    Artifact,
    CancelTask,
    DataPart,
    ErrorReply,
    Event,
    GetAgentCard,
    GetTask,
    ListTasks,
    Message,
    SendMessage,
    SendStreamingMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    apply_history_length,
    decode_request,
    decode_response,
    encode_end,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
    transition,
    with_artifact,
)
from protocols.codec import FrameDecoder
from protocols.errors import ProtocolError

log = logging.getLogger("meshnode.a2a.tasks")
REQUEST_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
MAX_TASK_S = 300.0
DEFAULT_TASK_S = 60.0
KEPT_TASKS = 1000
#: Message metadata keys of meshnode's own A2A extension.
AGENT_KEY = "meshnode/agent"
DEADLINE_KEY = "meshnode/deadline_s"
ASKER_KEY = "meshnode/asker"
#: {"hops": n, "visited": [peer IDs]} on a question forwarded because no agent fitted.
FORWARD_KEY = "meshnode/forward"
MAX_VISITED = 64

Emit = Callable[[StreamEvent], Awaitable[None]]
#: Whether a peer may use this node's agents: peer ID -> allowed (may wait a little).
Admit = Callable[[str], Awaitable[bool]]
#: Answers a forwarded question through this node's own routing: (question, hops,
#: visited, deadline) -> the answer data of whichever agent answered.
Forwarder = Callable[[str, int, frozenset[str], float], Awaitable[dict[str, Any]]]


def forward_params(message: Message) -> tuple[int, frozenset[str]] | None:
    """The hop count and visited set of a forwarded question; None if it is not one."""
    value = message.metadata.get(FORWARD_KEY)
    if not isinstance(value, dict):
        return None
    hops, visited = value.get("hops"), value.get("visited")
    if isinstance(hops, bool) or not isinstance(hops, int) or not 0 < hops <= MAX_VISITED:
        raise A2AError(INVALID_PARAMS, "forward.hops must be a small positive integer")
    if not isinstance(visited, list) or len(visited) > MAX_VISITED or not all(
        isinstance(p, str) and len(p) <= 64 for p in visited
    ):
        raise A2AError(INVALID_PARAMS, f"forward.visited must list at most {MAX_VISITED} peers")
    return hops, frozenset(visited)


def agent_card(spec: AgentSpec, *, version: str) -> AgentCard:
    return AgentCard(
        name=spec.name,
        description=spec.description,
        version=version,
        skills=tuple(
            AgentSkill(id=s.id, name=s.name, description=s.description, tags=s.tags,
                       examples=s.examples)
            for s in spec.skills
        ),
        capabilities=AgentCapabilities(streaming=True),
    )


def answer_data(answer: Answer, *, agent: str, peer: str) -> dict[str, Any]:
    return {"agent": agent, "peer": peer, **answer.to_dict()}


async def _no_emit(_: StreamEvent) -> None:
    pass


async def _refuse_all(_: str) -> bool:
    return False


def _deadline(message: Message) -> float:
    deadline = message.metadata.get(DEADLINE_KEY, DEFAULT_TASK_S)
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        deadline = DEFAULT_TASK_S
    return min(max(float(deadline), 1.0), MAX_TASK_S)


class TaskService:
    def __init__(
        self,
        host: MeshHost,
        specs: tuple[AgentSpec, ...],
        answerer: Answerer,
        knowledge: KnowledgeService,
        *,
        version: str,
    ) -> None:
        self.host = host
        self.specs = {spec.name: spec for spec in specs}
        self.answerer = answerer
        self.knowledge = knowledge
        self.version = version
        self.peer_id = knowledge.signer.peer_id
        self.forwarder: Forwarder | None = None
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        #: Cancel scopes of the tasks still running here (local agents and mesh asks).
        self.running: dict[str, trio.CancelScope] = {}
        self._admit: Admit = _refuse_all

    def cards(self) -> list[AgentCard]:
        return [agent_card(spec, version=self.version) for spec in self.specs.values()]

    def node_card(self) -> AgentCard:
        """One card for the whole node: every hosted agent's skills."""
        skills = tuple(s for card in self.cards() for s in card.skills)
        return AgentCard(
            name=f"meshnode {self.peer_id[-8:]}",
            description="A meshnode node: " + (", ".join(self.specs) or "no agents"),
            version=self.version, skills=skills,
        )

    def serve(self, *, admit: Admit) -> None:
        """Answer A2A streams from the peers ``admit`` lets in (the daemon's: those with a
        verified hello, so a libp2p peer outside the mesh never gets a task run)."""
        self._admit = admit
        self.host.set_stream_handler(A2A_PROTOCOL, self._serve)

    # ---- the task store ------------------------------------------------------------

    def keep(self, task: Task) -> Task:
        self._tasks[task.id] = task
        self._tasks.move_to_end(task.id)
        while len(self._tasks) > KEPT_TASKS:
            oldest = next(iter(self._tasks))
            if oldest in self.running:  # never forget a running task
                break
            del self._tasks[oldest]
        return task

    def get(self, task_id: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise A2AError(TASK_NOT_FOUND, f"no task {task_id} on this node")
        return task

    def list(self, op: ListTasks) -> tuple[Task, ...]:
        tasks = [
            apply_history_length(t, op.history_length)
            for t in reversed(self._tasks.values())
            if (op.context_id is None or t.context_id == op.context_id)
            and (op.state is None or t.status.state == op.state)
        ]
        return tuple(tasks[: op.page_size])

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        scope = self.running.get(task_id)
        if scope is None or task.status.state in TERMINAL_STATES:
            raise A2AError(TASK_NOT_CANCELABLE, f"task {task_id} is {task.status.state}")
        scope.cancel()
        return self.keep(transition(task, TaskState.CANCELED, now=time.time()))

    # ---- running a task ------------------------------------------------------------

    def _agent_for(self, message: Message) -> AgentSpec | None:
        name = message.metadata.get(AGENT_KEY)
        if isinstance(name, str):
            return self.specs.get(name)
        return next(iter(self.specs.values())) if len(self.specs) == 1 else None

    async def run_task(self, message: Message, emit: Emit = _no_emit) -> Task:
        """Answer ``message`` as the agent it names; every state change goes to ``emit``."""
        now = time.time()
        task = self.keep(Task(
            id=str(uuid.uuid4()), context_id=message.context_id or str(uuid.uuid4()),
            status=TaskStatus(TaskState.SUBMITTED, timestamp=now), history=(message,),
        ))
        await emit(task)
        forward = forward_params(message)
        if forward is not None and AGENT_KEY not in message.metadata:
            return await self._forwarded(task, message, forward, emit)
        spec = self._agent_for(message)
        if spec is None or not message.text.strip():
            reason = ("the message has no text" if spec is not None else
                      f"this node hosts no agent {message.metadata.get(AGENT_KEY)!r}")
            return await self._finish(task, TaskState.REJECTED, reason, emit)
        deadline = _deadline(message)
        task = self.keep(transition(task, TaskState.WORKING, now=time.time()))
        await emit(TaskStatusUpdateEvent(task.id, task.context_id, task.status))
        with trio.CancelScope() as scope:
            self.running[task.id] = scope
            try:
                answer = await self.answerer.answer(spec, message.text, deadline_s=deadline)
            except (LLMError, AgentError) as exc:
                return await self._finish(task, TaskState.FAILED, f"{spec.name}: {exc}", emit)
            finally:
                del self.running[task.id]
        if scope.cancelled_caught:
            return self.get(task.id)  # cancel() already recorded it
        artifact = Artifact(
            artifact_id=str(uuid.uuid4()), name="answer",
            parts=(TextPart(answer.text),
                   DataPart(answer_data(answer, agent=spec.name, peer=self.peer_id))),
        )
        task = self.keep(with_artifact(task, artifact))
        await emit(TaskArtifactUpdateEvent(task.id, task.context_id, artifact, last_chunk=True))
        task = await self._finish(task, TaskState.COMPLETED, None, emit)
        await self._record(spec, message, answer, task.id)  # after the asker has its answer
        return task

    async def _forwarded(
        self, task: Task, message: Message, forward: tuple[int, frozenset[str]], emit: Emit
    ) -> Task:
        if self.forwarder is None or not message.text.strip():
            return await self._finish(task, TaskState.REJECTED, "this node does not forward",
                                      emit)
        task = self.keep(transition(task, TaskState.WORKING, now=time.time()))
        await emit(TaskStatusUpdateEvent(task.id, task.context_id, task.status))
        hops, visited = forward
        try:
            data = await self.forwarder(message.text, hops, visited, _deadline(message))
        except MeshnodeError as exc:
            return await self._finish(task, TaskState.FAILED, str(exc), emit)
        artifact = Artifact(artifact_id=str(uuid.uuid4()), name="answer",
                            parts=(TextPart(str(data.get("text", ""))), DataPart(data)))
        task = self.keep(with_artifact(task, artifact))
        await emit(TaskArtifactUpdateEvent(task.id, task.context_id, artifact, last_chunk=True))
        return await self._finish(task, TaskState.COMPLETED, None, emit)

    async def _record(
        self, spec: AgentSpec, message: Message, answer: Answer, task_id: str
    ) -> None:
        asker = message.metadata.get(ASKER_KEY)
        try:
            await self.answerer.record_exchange(
                self.knowledge.add, spec=spec, question=message.text, answer=answer,
                asker=asker if isinstance(asker, str) else "unknown", task_id=task_id,
                accepted=answer.grounded,
            )
        except Exception as exc:  # the answer stands even if history cannot be written
            log.warning("could not record the exchange", extra={"task": task_id,
                                                               "error": str(exc)})

    async def _finish(self, task: Task, state: TaskState, reason: str | None, emit: Emit) -> Task:
        message = None
        if reason is not None:
            message = Message(role="agent", parts=(TextPart(reason),),
                              message_id=str(uuid.uuid4()), context_id=task.context_id,
                              task_id=task.id)
        task = self.keep(transition(task, state, message=message, now=time.time()))
        await emit(TaskStatusUpdateEvent(task.id, task.context_id, task.status, final=True))
        if reason is not None:
            log.info("task ended", extra={"task": task.id, "state": str(state), "reason": reason})
        return task

    # ---- the stream protocol --------------------------------------------------------

    async def _serve(self, stream: ByteStream) -> None:
        peer_id = getattr(stream, "peer_id", "?")
        if not await self._admit(peer_id):
            log.info("a2a stream refused: peer not admitted", extra={"peer": peer_id})
            return
        request_id = ""
        try:
            frame = await read_frame(stream, FrameDecoder(), timeout=REQUEST_TIMEOUT_S)
            if frame is None:
                return
            request_id, op = decode_request(frame)
            await self._dispatch(stream, request_id, op)
        except A2AError as exc:
            await self._reply(stream, encode_error(str(exc.request_id or request_id), exc.code,
                                                   exc.message))
        except ProtocolError as exc:
            await self._reply(stream, encode_error(request_id, INVALID_REQUEST, str(exc)))
        except (trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.debug("a2a stream ended early", extra={"error": str(exc) or type(exc).__name__})

    async def _reply(self, stream: ByteStream, payload: bytes) -> None:
        # If the asker is gone there is no one to tell; it times out on its side.
        with suppress(trio.TooSlowError, trio.BrokenResourceError):
            await write_frame(stream, payload, timeout=WRITE_TIMEOUT_S)

    async def _dispatch(self, stream: ByteStream, request_id: str, op: object) -> None:
        if isinstance(op, SendStreamingMessage):
            async def emit(event: StreamEvent) -> None:
                await write_frame(stream, encode_event(request_id, event), timeout=WRITE_TIMEOUT_S)

            await self.run_task(op.message, emit)
            await self._reply(stream, encode_end(request_id))
            return
        if isinstance(op, SendMessage):
            task = await self.run_task(op.message)
            result: Any = apply_history_length(task, op.history_length)
        elif isinstance(op, GetTask):
            result = apply_history_length(self.get(op.task_id), op.history_length)
        elif isinstance(op, ListTasks):
            result = self.list(op)
        elif isinstance(op, CancelTask):
            result = self.cancel(op.task_id)
        elif isinstance(op, GetAgentCard):
            result = self.node_card()
        else:
            raise A2AError(INVALID_PARAMS, f"unsupported operation {type(op).__name__}")
        await self._reply(stream, encode_result(request_id, result))


async def call_agent(
    host: MeshHost,
    peer: str,
    message: Message,
    on_event: Emit,
    *,
    timeout: float,
) -> None:
    """Send ``message`` to ``peer`` as a streaming task; each event goes to ``on_event``.

    Raises DialError or trio.BrokenResourceError when the peer cannot be reached or goes
    away, ProtocolError when it answers with an error or garbage, and trio.TooSlowError
    past ``timeout`` seconds.
    """
    with trio.fail_after(timeout):
        async with host.open_stream(peer, A2A_PROTOCOL, timeout=min(10.0, timeout)) as stream:
            request = encode_request(message.message_id, SendStreamingMessage(message))
            await write_frame(stream, request, timeout=WRITE_TIMEOUT_S)
            decoder = FrameDecoder()
            while True:
                frame = await read_frame(stream, decoder, timeout=timeout)
                if frame is None:
                    raise trio.BrokenResourceError("the agent's node closed the stream")
                reply = decode_response(frame)
                if isinstance(reply, Event):
                    await on_event(reply.event)
                    if isinstance(reply.event, TaskStatusUpdateEvent) and reply.event.final:
                        return  # what the agent's node does after this is its own business
                elif isinstance(reply, ErrorReply):
                    raise ProtocolError(f"error {reply.code}: {reply.message}")
                else:  # End, or a Result for a peer that answered without streaming
                    return
