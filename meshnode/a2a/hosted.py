"""Agents a node hosts that do not answer by the built-in retrieval + LLM: agents in code
(:class:`CodeAgent`, the user's handler behind a :class:`~meshnode.agents.code.Context`)
and existing A2A servers brought onto the mesh (:class:`RemoteAgent`).

The task service dispatches a task to them (:class:`~meshnode.a2a.tasks.HostedAgent`);
they drive its :class:`~meshnode.a2a.lifecycle.TaskRun`, so a failure in them fails that
task only (the lifecycle contains it). Both end a task the way built-in agents do: one
"answer" artifact whose data part has ``text``, ``mode``, ``citations``..., so the asker
routes, rates and trusts them like any other agent.

Consulting another agent (``ctx.ask``) goes through :data:`Consult`, which the node wires
to its asker (``meshnode.ask.delegation``): this package cannot import the asker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from memory.errors import MemoryStoreError
from memory.store import SearchHit
from meshnode.a2a.lifecycle import TaskRun
from meshnode.a2a.tasks import ASKER_KEY, deadline_of, received_delegation
from meshnode.agents.code import (
    Agent,
    AgentFailed,
    Context,
    Handler,
    Passage,
    Reply,
    load_handler,
)
from meshnode.agents.remote import A2AServer, RemoteAgentError
from meshnode.agents.specs import MAX_DESCRIPTION, MAX_SKILLS, AgentSpec
from meshnode.errors import ConfigError, MeshnodeError
from meshnode.node.knowledge import KnowledgeService
from protocols.a2a import (
    A2AError,
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    Artifact,
    DataPart,
    Message,
    StreamEvent,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
    check_plain,
)
from protocols.delegation import Delegation, Hop, Shared
from protocols.errors import ProtocolError

log = logging.getLogger(__name__)
MAX_ANSWER_CHARS = 100_000
#: How often an A2A server's card is read again (its skills may change), and how soon a
#: failed read is retried.
CARD_REFRESH_S = 300.0
CARD_RETRY_S = 15.0
CARD_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ConsultRequest:
    """An agent of this node asking another agent of the mesh (``agent``, or whichever
    routing picks) a sub-question, within the task it is working on."""

    question: str
    agent: str | None
    timeout: float
    context_id: str
    #: The consulting agent on this node.
    by: Hop
    #: The delegation this task itself arrived with (None if it was asked directly).
    received: Delegation | None
    #: What this task retrieved, for the consulted agent to reuse.
    shared: tuple[Shared, ...]


@dataclass(slots=True)
class Consulted:
    """The answer of a consulted agent, and the hop for ``--explain``."""

    reply: Reply
    hop: dict[str, Any] = field(default_factory=dict)


Consult = Callable[[ConsultRequest], Awaitable[Consulted]]


async def _no_consult(request: ConsultRequest) -> Consulted:
    raise MeshnodeError("this node cannot consult other agents")


def passage(hit: SearchHit) -> Passage:
    r = hit.record
    return Passage(r.id, r.text, hit.collection, r.author, float(hit.score), r.kind, r.agent)


def citation_data(p: Passage) -> dict[str, Any]:
    return {"id": p.id, "collection": p.collection, "author": p.author,
            "score": round(p.score, 4), "snippet": p.text[:240]}


def answer_artifact(text: str, data: dict[str, Any]) -> Artifact:
    """The one "answer" artifact every agent of a node ends its task with."""
    return Artifact(artifact_id=str(uuid.uuid4()), name="answer",
                    parts=(TextPart(text), DataPart(data)))


# ---- agents in code -------------------------------------------------------------------


def resolve_code_agent(spec: AgentSpec, obj: Agent | Handler | None = None
                       ) -> tuple[AgentSpec, Handler]:
    """The full spec and the handler of an agent in code: ``obj`` (given in-process), else
    the one ``spec.handler`` names. The config's name, description and skills win over the
    object's."""
    found = obj if obj is not None else load_handler(spec.handler)
    declared = found.spec() if isinstance(found, Agent) else None
    handler = found.handler if isinstance(found, Agent) else found
    name = spec.name or (declared.name if declared else "")
    description = spec.description or (declared.description if declared else "")
    skills = spec.skills or (declared.skills if declared else ())
    where = f"agent {name or spec.handler!r}"
    if not name or not description or not skills:
        raise ConfigError(f"{where}: its handler declares no card, so the config must give "
                          "name, description and skills")
    return AgentSpec(name, description, spec.instructions, skills, spec.reads, False,
                     handler=spec.handler or "(in-process)"), handler


class CodeAgent:
    """The user's handler answering this node's tasks for one agent."""

    def __init__(self, spec: AgentSpec, handler: Handler, knowledge: KnowledgeService, *,
                 card: AgentCard, consult: Consult = _no_consult) -> None:
        self.spec = spec
        self.handler = handler
        self.knowledge = knowledge
        self._card = card
        self.consult = consult

    def card(self) -> AgentCard | None:
        return self._card

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        task_status.started()

    async def run(self, run: TaskRun, message: Message) -> None:
        try:
            received = received_delegation(message, self.knowledge.config.tenant)
        except A2AError as exc:
            await run.reject(exc.message)
            return
        seconds = deadline_of(message)
        asker = message.metadata.get(ASKER_KEY)
        backend = _TaskBackend(self, run, received)
        ctx = Context(backend, question=message.text.strip(), context_id=run.task.context_id,
                      asker=asker if isinstance(asker, str) else "unknown",
                      deadline=trio.current_time() + seconds,
                      shared=[passage(SearchHit(s.record, s.score, s.record.collection))
                              for s in (received.shared if received else ())],
                      depth=received.depth if received else 0)
        await run.working()
        try:
            with trio.fail_after(seconds):
                result = await self.handler(ctx)
        except trio.TooSlowError:
            await run.fail(f"{self.spec.name}: no answer within the deadline of {seconds:g} s")
            return
        except AgentFailed as exc:
            await run.fail(f"{self.spec.name}: {exc}")
            return
        reply = Reply(result) if isinstance(result, str) else result
        if not isinstance(reply, Reply):
            raise TypeError(f"{self.spec.name}'s handler returned {type(reply).__name__}, "
                            "not a str or meshnode.Reply")
        user_data = dict(reply.data)
        check_plain(user_data, "Reply.data")
        text = reply.text[:MAX_ANSWER_CHARS]
        data: dict[str, Any] = {
            "agent": self.spec.name, "peer": self.knowledge.signer.peer_id, "text": text,
            "mode": "code", "model": None,
            "citations": [citation_data(p) for p in reply.citations[:64]],
            "retrieval_s": round(backend.retrieval_s, 4), "llm_s": 0.0, "data": user_data,
        }
        if backend.hops:
            data["consulted"] = backend.hops
        if received is not None:
            data["shared"] = {"offered": len(received.shared), "rejected": received.rejected,
                              "searched": backend.searched}
        await run.complete(answer_artifact(text, data))


class _TaskBackend:
    """What one task's :class:`Context` does on this node."""

    def __init__(self, agent: CodeAgent, run: TaskRun, received: Delegation | None) -> None:
        self.agent = agent
        self.run = run
        self.received = received
        self.retrieved: dict[str, Shared] = {
            s.record.id: s for s in (received.shared if received else ())}
        self.hops: list[dict[str, Any]] = []
        self.retrieval_s = 0.0
        self.searched = False

    async def progress(self, text: str) -> None:
        await self.run.working(text)

    async def artifact(self, name: str, text: str, data: Mapping[str, Any]) -> None:
        check_plain(dict(data), "artifact data")
        parts: list[TextPart | DataPart] = [TextPart(text[:MAX_ANSWER_CHARS])] if text else []
        if data:
            parts.append(DataPart(dict(data)))
        await self.run.artifact(Artifact(artifact_id=str(uuid.uuid4()), name=name,
                                         parts=tuple(parts)))

    async def search(self, query: str, k: int, collection: str | None) -> list[Passage]:
        started = time.perf_counter()
        try:
            hits = await self.agent.knowledge.store.search(query, k=k, collection=collection)
        except MemoryStoreError as exc:
            raise AgentFailed(f"cannot read memory: {exc}") from exc
        finally:
            self.retrieval_s += time.perf_counter() - started
        self.searched = True
        for hit in hits:
            self.retrieved.setdefault(hit.record.id, Shared(hit.record, hit.score,
                                                            self.agent.spec.name))
        return [passage(hit) for hit in hits]

    async def add(self, text: str, kind: str, collection: str,
                  meta: Mapping[str, str | int | float | bool]) -> str:
        try:
            record = await self.agent.knowledge.add(text, kind=kind, collection=collection,
                                                    meta=dict(meta), agent=self.agent.spec.name)
        except ProtocolError as exc:  # a field out of bounds
            raise ValueError(f"cannot write this record: {exc}") from None
        except MemoryStoreError as exc:
            raise AgentFailed(f"cannot write memory: {exc}") from exc
        return record.id

    async def ask(self, question: str, agent: str | None, timeout: float) -> Reply:
        me = Hop(self.agent.knowledge.signer.peer_id, self.agent.spec.name)
        request = ConsultRequest(question, agent, timeout, self.run.task.context_id, me,
                                 self.received, tuple(self.retrieved.values()))
        try:
            consulted = await self.agent.consult(request)
        except MeshnodeError as exc:
            self.hops.append({"by": me.agent, "agent": agent or "(routed)", "peer": "",
                              "question": question[:200], "state": "failed",
                              "reason": str(exc)[:300], "seconds": 0.0})
            raise
        self.hops.append(consulted.hop)
        return consulted.reply


# ---- existing A2A servers -------------------------------------------------------------


def _bounded_card(name: str, remote: AgentCard, version: str) -> AgentCard:
    """The card this node advertises for a remote agent: its name on the mesh, the
    server's description and skills, cut to what presence carries for any agent."""
    skills = tuple(
        AgentSkill(id=s.id[:64], name=s.name[:100], description=s.description[:MAX_DESCRIPTION],
                   tags=tuple(t[:64] for t in s.tags[:32]),
                   examples=tuple(e[:500] for e in s.examples[:16]))
        for s in remote.skills[:MAX_SKILLS]
    )
    return AgentCard(name=name, description=remote.description[:MAX_DESCRIPTION]
                     or remote.name[:MAX_DESCRIPTION], version=version, skills=skills,
                     capabilities=AgentCapabilities(streaming=True))


class RemoteAgent:
    """An existing A2A server answering this node's tasks for one agent: the node reads its
    card (and advertises its skills once read), sends it each task's question, passes its
    progress and artifacts on, and ends the task with its answer."""

    def __init__(self, spec: AgentSpec, *, peer_id: str, version: str) -> None:
        self.spec = spec
        self.peer_id = peer_id
        self.version = version
        self.server = A2AServer(spec.url, token=spec.token)
        self._card: AgentCard | None = None

    def card(self) -> AgentCard | None:
        return self._card

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Keep the server's card fresh: read at start (without holding the node up), again
        every CARD_REFRESH_S, and every CARD_RETRY_S while it cannot be read."""
        async with self.server.open():
            task_status.started()
            while True:
                try:
                    remote = await self.server.fetch_card(timeout=CARD_TIMEOUT_S)
                except RemoteAgentError as exc:
                    log.warning("A2A server unusable", extra={"agent": self.spec.name,
                                                              "error": str(exc)})
                    await trio.sleep(CARD_RETRY_S)
                    continue
                if self._card is None:
                    log.info("A2A server joined", extra={
                        "agent": self.spec.name, "url": self.spec.url,
                        "dialect": self.server.dialect, "skills": len(remote.skills)})
                self._card = _bounded_card(self.spec.name, remote, self.version)
                await trio.sleep(CARD_REFRESH_S)

    async def run(self, run: TaskRun, message: Message) -> None:
        if self._card is None:
            await run.reject(f"{self.spec.name}: its A2A server has not answered yet")
            return
        seconds = deadline_of(message)
        await run.working()
        # Only the question goes out: the mesh's metadata (asker, delegation) stays here.
        outgoing = Message(role="user", parts=(TextPart(message.text),),
                           message_id=str(uuid.uuid4()), context_id=run.task.context_id)
        relay = _Relay(run)
        started = time.perf_counter()
        try:
            await self.server.send(outgoing, relay.on_event, timeout=seconds)
        except RemoteAgentError as exc:
            await run.fail(f"{self.spec.name}: {exc}")
            return
        if relay.failed is not None:
            await run.fail(f"{self.spec.name}: {relay.failed}")
            return
        text = relay.text().strip()
        if not text:
            await run.fail(f"{self.spec.name}: the A2A server ended without an answer")
            return
        data: dict[str, Any] = {
                "agent": self.spec.name, "peer": self.peer_id, "text": text, "mode": "remote",
                "model": None, "citations": [], "retrieval_s": 0.0, "llm_s": 0.0,
                "remote_s": round(time.perf_counter() - started, 4)}
        await run.complete(answer_artifact(text, data))


class _Relay:
    """The events of a remote task, passed on to this node's task and gathered into the
    answer: text artifacts (chunks appended) or a direct message reply."""

    def __init__(self, run: TaskRun) -> None:
        self.run = run
        self.chunks: dict[str, list[str]] = {}
        self.message = ""
        self.failed: str | None = None
        self._size = 0

    def text(self) -> str:
        if self.chunks:
            return "\n".join("".join(parts) for parts in self.chunks.values())
        return self.message

    def _add(self, artifact_id: str, text: str, append: bool) -> None:
        self._size += len(text)
        if self._size > MAX_ANSWER_CHARS:
            raise RemoteAgentError(f"the answer is longer than {MAX_ANSWER_CHARS} characters")
        if append:
            self.chunks.setdefault(artifact_id, []).append(text)
        else:
            self.chunks[artifact_id] = [text]

    async def on_event(self, event: StreamEvent) -> None:
        if isinstance(event, Message):
            self.message = event.text[:MAX_ANSWER_CHARS]
        elif isinstance(event, TaskArtifactUpdateEvent):
            text = event.artifact.text
            self._add(event.artifact.artifact_id, text, event.append)
            if text:
                await self.run.artifact(Artifact(
                    artifact_id=event.artifact.artifact_id, name=event.artifact.name,
                    parts=(TextPart(text),)))
        elif isinstance(event, TaskStatusUpdateEvent):
            await self._status(event.status.state, event.status.message)
        else:  # a Task: its artifacts so far (SendMessage's whole answer)
            for artifact in event.artifacts:
                self._add(artifact.artifact_id, artifact.text, True)
            await self._status(event.status.state, event.status.message)

    async def _status(self, state: TaskState, message: Message | None) -> None:
        said = message.text[:500] if message is not None else ""
        if state == TaskState.WORKING and said:
            await self.run.working(said)
        elif state in (TaskState.FAILED, TaskState.REJECTED, TaskState.CANCELED):
            self.failed = f"the A2A server's task ended {state}" + (f": {said}" if said else "")
        elif state in (TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED):
            self.failed = f"the A2A server wants {state}, which a mesh question cannot give"
        elif state == TaskState.COMPLETED and said and not self.chunks:
            self.message = said
