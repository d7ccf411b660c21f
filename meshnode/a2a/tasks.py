"""TaskService: the agents this node hosts, answering A2A tasks over /meshnode/a2a/1.0.0.

One request per stream: the asker writes a request frame; the node answers with a result,
or, for a streaming request, with events until the task ends and an end frame. The work of
a task runs inside the stream handler, so an asker that goes away cancels it.

A task sent over a stream belongs to the peer at the other end of it (the connection
authenticated it): GetTask, ListTasks and CancelTask show and touch that peer's tasks only.
A forwarded question is routed on for its sender, never back to it, and what comes of it is
no trust evidence here (see meshnode.ask.asker).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Protocol

import trio

from memory.store import SearchHit
from meshnode.a2a.lifecycle import Emit, TaskRun, TaskStore, no_emit
from meshnode.a2a.owners import Owner, peer_owner
from meshnode.agents.answering import AgentError, Answer, Answerer
from meshnode.agents.llm import LLMError
from meshnode.agents.specs import AgentSpec
from meshnode.errors import MeshnodeError
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.streams import ByteStream, read_frame, write_frame
from meshnode.node.transport import Host, Stream
from protocols.a2a import (
    A2A_PROTOCOL,
    BUSY,
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
from protocols.codec import MAX_FRAME, FrameDecoder
from protocols.delegation import DELEGATION_KEY, Delegation, decode_delegation
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

#: Whether a peer may use this node's agents: peer ID -> allowed (may wait a little).
Admit = Callable[[str], Awaitable[bool]]
#: Answers a forwarded question through this node's own routing: (question, hops,
#: visited, deadline, the task's owner) -> the answer data of whichever agent answered.
Forwarder = Callable[[str, int, frozenset[str], float, Owner], Awaitable[dict[str, Any]]]


class PeerBusy(MeshnodeError):
    """The peer refused a task because too many of ours (or of everyone's) are under way."""


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


def received_delegation(message: Message, tenant: str) -> Delegation | None:
    """The delegation a consulting agent sent along (protocols.delegation), with only the
    shared records of this node's tenant; None if the question was asked directly.
    A2AError (INVALID_PARAMS) if it is malformed."""
    value = message.metadata.get(DELEGATION_KEY)
    if value is None:
        return None
    try:
        delegation = decode_delegation(value)
    except ProtocolError as exc:
        raise A2AError(INVALID_PARAMS, f"delegation: {exc}") from None
    kept = tuple(s for s in delegation.shared if s.record.tenant == tenant)
    return Delegation(delegation.depth, delegation.chain, kept,
                      delegation.rejected + len(delegation.shared) - len(kept))


def shared_hits(delegation: Delegation | None) -> list[SearchHit]:
    """The shared records as search hits (scored by the sender: the answerer re-scores)."""
    return [SearchHit(s.record, s.score, s.record.collection)
            for s in (delegation.shared if delegation else ())]


class HostedAgent(Protocol):
    """An agent behind a spec that does not answer by the built-in retrieval + LLM: an agent
    in code, an existing A2A server, an agent that consults others (see a2a.hosted and
    ask.delegation). It drives the task's run to a final state."""

    def card(self) -> AgentCard | None:
        """Its card, None while it cannot be advertised (an A2A server not read yet)."""
        ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Whatever it runs in the background for as long as the node runs."""
        ...

    async def run(self, run: TaskRun, message: Message) -> None: ...


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


async def _refuse_all(_: str) -> bool:
    return False


def deadline_of(message: Message) -> float:
    """The seconds a task may take: what its asker said, within 1..MAX_TASK_S."""
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
        self._admit: Admit = _refuse_all
        #: The agents (by name, one per spec) not answered by the built-in answering.
        self.hosted: dict[str, HostedAgent] = {}

    def cards(self) -> list[AgentCard]:
        cards = []
        for spec in self.specs.values():
            hosted = self.hosted.get(spec.name)
            card = hosted.card() if hosted else agent_card(spec, version=self.version)
            if card is not None:
                cards.append(card)
        return cards

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

    async def admits(self, peer_id: str) -> bool:
        """Whether ``peer_id`` may use this node's agents (no one before :meth:`serve`)."""
        return await self._admit(peer_id)

    # ---- running a task ------------------------------------------------------------

    def _agent_for(self, message: Message) -> AgentSpec | None:
        name = message.metadata.get(AGENT_KEY)
        if isinstance(name, str):
            return self.specs.get(name)
        return next(iter(self.specs.values())) if len(self.specs) == 1 else None

    async def run_task(self, message: Message, emit: Emit = no_emit, *, owner: Owner) -> Task:
        """Answer ``message`` for ``owner`` as the agent it names; every state change goes
        to ``emit``.

        Never raises for a failure of the work (the task fails instead); A2AError for a
        malformed forward marker or an owner with too many tasks (BUSY), before any task
        exists.
        """
        forward = forward_params(message)
        async with self.store.run(message, emit, owner=owner, where="a2a task") as run:
            if forward is not None and AGENT_KEY not in message.metadata:
                await self._forwarded(run, message, forward, owner)
            else:
                await self._answer(run, message)
        return run.task

    async def _answer(self, run: TaskRun, message: Message) -> None:
        spec = self._agent_for(message)
        if spec is None or not message.text.strip():
            await run.reject("the message has no text" if spec is not None else
                             f"this node hosts no agent {message.metadata.get(AGENT_KEY)!r}")
            return
        hosted = self.hosted.get(spec.name)
        if hosted is not None:
            await hosted.run(run, message)
            return
        received = None
        if DELEGATION_KEY in message.metadata:  # a question from an agent consulting this one
            try:
                received = received_delegation(message, self.knowledge.config.tenant)
            except A2AError as exc:
                await run.reject(exc.message)
                return
        await run.working()
        answer = await self.answer_builtin(run, spec, message.text, deadline_of(message),
                                           shared=shared_hits(received))
        if answer is not None:
            await self.finish(run, spec, message, answer, received=received)

    async def answer_builtin(
        self, run: TaskRun, spec: AgentSpec, question: str, deadline_s: float, *,
        shared: list[SearchHit] | None = None,
    ) -> Answer | None:
        """The built-in answer (retrieval + LLM or extractive) of ``spec``; None when it
        failed, and then ``run`` has failed with the reason."""
        try:
            if shared:
                return await self.answerer.answer(spec, question, deadline_s=deadline_s,
                                                  shared=shared)
            return await self.answerer.answer(spec, question, deadline_s=deadline_s)
        except LLMError as exc:
            if exc.kind != "timeout":
                self.store.faults.record("llm", exc, expected=True, agent=spec.name)
            await run.fail(f"{spec.name}: {exc}")
        except AgentError as exc:
            if exc.kind == "memory":
                self.store.faults.record("memory", exc, expected=True, agent=spec.name)
            await run.fail(f"{spec.name}: {exc}")
        return None

    async def finish(
        self, run: TaskRun, spec: AgentSpec, message: Message, answer: Answer, *,
        received: Delegation | None = None, extra: dict[str, Any] | None = None,
    ) -> None:
        """Complete ``run`` with a built-in ``answer`` (and ``extra`` answer data). Nothing
        is written to memory here: only the asker may keep an answer it accepted
        (meshnode.ask.learning); ``learnable`` says whether this agent allows that."""
        data = answer_data(answer, agent=spec.name, peer=self.peer_id, learnable=spec.writes)
        if received is not None:
            data["shared"] = {"offered": len(received.shared) + received.rejected,
                              "rejected": received.rejected, "reused": answer.reused,
                              "searched": answer.searched}
        data.update(extra or {})
        await run.complete(Artifact(
            artifact_id=str(uuid.uuid4()), name="answer",
            parts=(TextPart(answer.text), DataPart(data)),
        ))

    async def _forwarded(
        self, run: TaskRun, message: Message, forward: tuple[int, frozenset[str]], owner: Owner
    ) -> None:
        if self.forwarder is None or not message.text.strip():
            await run.reject("this node does not forward")
            return
        await run.working()
        hops, visited = forward
        if owner.peer is not None:
            visited |= {owner.peer}  # never back to the sender, whatever it says it visited
        try:
            data = await self.forwarder(message.text, hops, visited, deadline_of(message), owner)
        except MeshnodeError as exc:
            await run.fail(str(exc))
            return
        await run.complete(Artifact(artifact_id=str(uuid.uuid4()), name="answer",
                                    parts=(TextPart(str(data.get("text", ""))), DataPart(data))))

    # ---- the stream protocol --------------------------------------------------------

    async def _serve(self, stream: Stream) -> None:
        peer_id = stream.peer_id
        if not await self.admits(peer_id):
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

    async def _dispatch(self, stream: Stream, request_id: str, op: object) -> None:
        # The peer the connection authenticated: the owner of what it sends, and the only
        # one whose tasks it may see.
        owner = peer_owner(stream.peer_id)
        if isinstance(op, SendStreamingMessage):
            async def emit(event: StreamEvent) -> None:
                await write_frame(stream, encode_event(request_id, event), timeout=WRITE_TIMEOUT_S)

            await self.run_task(op.message, emit, owner=owner)
            await self._reply(stream, encode_end(request_id))
            return
        if isinstance(op, SendMessage):
            task = await self.run_task(op.message, owner=owner)
            result: Any = apply_history_length(task, op.history_length)
        elif isinstance(op, GetTask):
            result = apply_history_length(self.store.get(op.task_id, owner), op.history_length)
        elif isinstance(op, ListTasks):
            result = _fitting(request_id, self.store.list(op, owner))
        elif isinstance(op, CancelTask):
            result = self.store.cancel(op.task_id, owner)
        elif isinstance(op, GetAgentCard):
            result = self.node_card()
        else:
            raise A2AError(INVALID_PARAMS, f"unsupported operation {type(op).__name__}")
        await self._reply(stream, encode_result(request_id, result))


def _fitting(request_id: str, tasks: tuple[Task, ...]) -> tuple[Task, ...]:
    """The newest of ``tasks`` that fit in one result frame (a page of big tasks may not)."""
    while len(tasks) > 1 and len(encode_result(request_id, tasks)) > MAX_FRAME:
        tasks = tasks[: len(tasks) // 2]
    return tasks


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
    away, PeerBusy when it refuses the task for now, ProtocolError when it answers with
    another error or garbage, and trio.TooSlowError past ``timeout`` seconds.
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
                elif isinstance(reply, ErrorReply) and reply.code == BUSY:
                    raise PeerBusy(f"busy: {reply.message}")
                elif isinstance(reply, ErrorReply):
                    raise ProtocolError(f"error {reply.code}: {reply.message}")
                else:  # End, or a Result for a peer that answered without streaming
                    return
