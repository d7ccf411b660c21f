"""TaskService: the agents this node hosts, answering A2A tasks over /meshnode/a2a/1.0.0.

One request per stream: the asker writes a request frame; the node answers with a result,
or, for a streaming request, with events until the task ends and an end frame. The work of
a task runs inside the stream handler, so an asker that goes away cancels it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import trio

from meshnode.a2a.lifecycle import Emit, TaskRun, TaskStore, no_emit
from meshnode.agents.answering import AgentError, Answer, Answerer
from meshnode.agents.llm import LLMError
from meshnode.agents.specs import AgentSpec
from meshnode.errors import MeshnodeError
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.streams import ByteStream, read_frame, write_frame
from meshnode.node.transport import Host
from protocols.a2a import (
    A2A_PROTOCOL,
    INVALID_PARAMS,
    INVALID_REQUEST,
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
)
from protocols.codec import FrameDecoder
from protocols.errors import ProtocolError

log = logging.getLogger("meshnode.a2a.tasks")
REQUEST_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
MAX_TASK_S = 300.0
DEFAULT_TASK_S = 60.0
#: Message metadata keys of meshnode's own A2A extension.
AGENT_KEY = "meshnode/agent"
DEADLINE_KEY = "meshnode/deadline_s"
ASKER_KEY = "meshnode/asker"
#: {"hops": n, "visited": [peer IDs]} on a question forwarded because no agent fitted.
FORWARD_KEY = "meshnode/forward"
MAX_VISITED = 64

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


def answer_data(
    answer: Answer, *, agent: str, peer: str, learnable: bool = True
) -> dict[str, Any]:
    return {"agent": agent, "peer": peer, **answer.to_dict(), "learnable": learnable}


def _deadline(message: Message) -> float:
    deadline = message.metadata.get(DEADLINE_KEY, DEFAULT_TASK_S)
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        deadline = DEFAULT_TASK_S
    return min(max(float(deadline), 1.0), MAX_TASK_S)


class TaskService:
    def __init__(
        self,
        host: Host,
        specs: tuple[AgentSpec, ...],
        answerer: Answerer,
        knowledge: KnowledgeService,
        *,
        version: str,
        store: TaskStore | None = None,
    ) -> None:
        self.host = host
        self.specs = {spec.name: spec for spec in specs}
        self.answerer = answerer
        self.knowledge = knowledge
        self.version = version
        self.peer_id = knowledge.signer.peer_id
        self.forwarder: Forwarder | None = None
        #: This node's tasks: its agents' and (through MeshA2A) the mesh asks made here.
        self.store = store if store is not None else TaskStore()

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

    def serve(self) -> None:
        self.host.set_stream_handler(A2A_PROTOCOL, self._serve)

    # ---- running a task ------------------------------------------------------------

    def _agent_for(self, message: Message) -> AgentSpec | None:
        name = message.metadata.get(AGENT_KEY)
        if isinstance(name, str):
            return self.specs.get(name)
        return next(iter(self.specs.values())) if len(self.specs) == 1 else None

    async def run_task(self, message: Message, emit: Emit = no_emit) -> Task:
        """Answer ``message`` as the agent it names; every state change goes to ``emit``.

        Never raises for a failure of the work (the task fails instead); A2AError for a
        malformed forward marker, before any task exists.
        """
        forward = forward_params(message)
        async with self.store.run(message, emit, where="a2a task") as run:
            if forward is not None and AGENT_KEY not in message.metadata:
                await self._forwarded(run, message, forward)
            else:
                await self._answer(run, message)
        return run.task

    async def _answer(self, run: TaskRun, message: Message) -> None:
        spec = self._agent_for(message)
        if spec is None or not message.text.strip():
            await run.reject("the message has no text" if spec is not None else
                             f"this node hosts no agent {message.metadata.get(AGENT_KEY)!r}")
            return
        await run.working()
        try:
            answer = await self.answerer.answer(spec, message.text,
                                                deadline_s=_deadline(message))
        except LLMError as exc:
            if exc.kind != "timeout":
                self.store.faults.record("llm", exc, expected=True, agent=spec.name)
            await run.fail(f"{spec.name}: {exc}")
            return
        except AgentError as exc:
            if exc.kind == "memory":
                self.store.faults.record("memory", exc, expected=True, agent=spec.name)
            await run.fail(f"{spec.name}: {exc}")
            return
        # Nothing is written to memory here: only the asker may keep an answer it accepted
        # (meshnode.ask.learning); ``learnable`` says whether this agent allows that.
        await run.complete(Artifact(
            artifact_id=str(uuid.uuid4()), name="answer",
            parts=(TextPart(answer.text),
                   DataPart(answer_data(answer, agent=spec.name, peer=self.peer_id,
                                        learnable=spec.writes))),
        ))

    async def _forwarded(
        self, run: TaskRun, message: Message, forward: tuple[int, frozenset[str]]
    ) -> None:
        if self.forwarder is None or not message.text.strip():
            await run.reject("this node does not forward")
            return
        await run.working()
        hops, visited = forward
        try:
            data = await self.forwarder(message.text, hops, visited, _deadline(message))
        except MeshnodeError as exc:
            await run.fail(str(exc))
            return
        await run.complete(Artifact(artifact_id=str(uuid.uuid4()), name="answer",
                                    parts=(TextPart(str(data.get("text", ""))), DataPart(data))))

    # ---- the stream protocol --------------------------------------------------------

    async def _serve(self, stream: ByteStream) -> None:
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
            result = apply_history_length(self.store.get(op.task_id), op.history_length)
        elif isinstance(op, ListTasks):
            result = self.store.list(op)
        elif isinstance(op, CancelTask):
            result = self.store.cancel(op.task_id)
        elif isinstance(op, GetAgentCard):
            result = self.node_card()
        else:
            raise A2AError(INVALID_PARAMS, f"unsupported operation {type(op).__name__}")
        await self._reply(stream, encode_result(request_id, result))


async def call_agent(
    host: Host,
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
