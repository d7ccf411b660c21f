"""Agents that consult each other.

:class:`Delegator` is how an agent of this node asks another agent of the mesh a
sub-question within the task it works on (an agent in code's ``ctx.ask``, or a built-in
agent with ``consults``). The ask goes through this node's :class:`~meshnode.ask.asker.Asker`,
so it is routed, deadlined and becomes trust evidence like any ask this node makes (the
node asked for it); it carries the task's context id, the consulting chain (depth-limited,
loops refused) and what the task retrieved (``protocols.delegation``), which the consulted
agent reuses instead of searching again. Each consultation becomes a hop of the answer's
``consulted`` list, which ``ask --explain`` prints: who asked whom, what was reused, how
long it took.

:class:`ConsultingAgent` is a built-in agent (retrieval + LLM or extractive) with
``consults = [...]``. It splits a question into its parts; a part is another expert's
field when a consulted agent's skills fit it better than its own do (the router's own
relevance measure), or when its own retrieval found nothing for the part and a consulted
agent's skills fit it at all. It consults on those parts (sharing what it retrieved for
them), answers the rest itself, and puts the answers together with their citations.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from typing import Any

import trio

from memory.errors import MemoryStoreError
from meshnode.a2a.hosted import Consulted, ConsultRequest
from meshnode.a2a.lifecycle import TaskRun
from meshnode.a2a.tasks import (
    TaskService,
    agent_card,
    deadline_of,
    received_delegation,
    shared_hits,
)
from meshnode.agents.answering import EXTRACTIVE_PREAMBLE, Answer, Citation
from meshnode.agents.code import Passage, Reply
from meshnode.agents.specs import AgentSpec, skill_texts
from meshnode.ask.asker import Asker, AskError
from meshnode.ask.calls import Carried
from protocols.a2a import A2AError, Message
from protocols.delegation import (
    DELEGATION_KEY,
    MAX_DEPTH,
    Delegation,
    Hop,
    Shared,
    encode_delegation,
    next_hop,
)
from protocols.records import COLLECTIONS, is_record_id

#: Seconds of its own deadline a consulting agent keeps to put the answer together.
CONSULT_MARGIN_S = 1.5
MAX_PARTS = 4
MAX_HOPS_SHOWN = 8
_MARKER = re.compile(r"\[(\d{1,3})\]")
_SENTENCE_END = re.compile(r"(?<=[.?!;])\s+")
#: Where a sentence splits into two questions: ", and" first, else a bare "and".
_ANDS = (re.compile(r",\s+(?:and also|and then|and)\s+", re.IGNORECASE),
         re.compile(r"\s+(?:and also|and then|and)\s+", re.IGNORECASE))


class ConsultFailed(AskError):
    """A consultation that produced no answer; ``hop`` describes it for --explain."""

    def __init__(self, message: str, hop: dict[str, Any]) -> None:
        super().__init__(message)
        self.hop = hop


def question_parts(question: str) -> list[str]:
    """The parts of a question: its sentences, and the halves of a sentence joined by
    "and" when both halves are substantial (at least three words each)."""
    parts: list[str] = []
    for sentence in _SENTENCE_END.split(question.strip()):
        for pattern in _ANDS:
            pieces = pattern.split(sentence, maxsplit=1)
            if len(pieces) == 2 and all(len(p.split()) >= 3 for p in pieces):
                parts += [p.strip(" ,") for p in pieces]
                break
        else:
            if sentence.strip():
                parts.append(sentence.strip())
    if len(parts) > MAX_PARTS:  # a long text: its last parts go together
        parts = [*parts[: MAX_PARTS - 1], " ".join(parts[MAX_PARTS - 1:])]
    return parts


def _finite(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) if math.isfinite(value) else default


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def peer_citations(data: Any) -> list[Passage]:
    """The citations of a peer's answer data that have the form of citations (others are
    dropped): what is shown of them is bounded."""
    out: list[Passage] = []
    for c in data.get("citations", [])[:64] if isinstance(data.get("citations"), list) else []:
        if (isinstance(c, dict) and is_record_id(c.get("id"))
                and c.get("collection") in COLLECTIONS):
            out.append(Passage(c["id"], _text(c.get("snippet"), 500), c["collection"],
                               _text(c.get("author"), 64), _finite(c.get("score"))))
    return out


def peer_hops(value: Any, depth: int = 0) -> list[dict[str, Any]]:
    """A peer's ``consulted`` list, rebuilt from the fields --explain shows (bounded in
    number and depth, every value typed): it is that peer's account, not checked fact."""
    if not isinstance(value, list) or depth >= MAX_DEPTH:
        return []
    hops = []
    for hop in value[:MAX_HOPS_SHOWN]:
        if not isinstance(hop, dict):
            continue
        hops.append({
            "by": _text(hop.get("by"), 64), "agent": _text(hop.get("agent"), 64),
            "peer": _text(hop.get("peer"), 64), "question": _text(hop.get("question"), 200),
            "state": _text(hop.get("state"), 16), "reason": _text(hop.get("reason"), 300),
            "seconds": round(_finite(hop.get("seconds")), 3),
            "shared": int(_finite(hop.get("shared"))), "reused": int(_finite(hop.get("reused"))),
            "searched": hop.get("searched") is not False,
            "consulted": peer_hops(hop.get("consulted"), depth + 1),
        })
    return hops


class Delegator:
    """Consulting through this node's asker (see the module docstring)."""

    def __init__(self, asker: Asker, *, max_depth: int = MAX_DEPTH) -> None:
        self.asker = asker
        self.max_depth = min(max_depth, MAX_DEPTH)

    def can_consult(self, received: Delegation | None) -> bool:
        return (received.depth if received else 0) < self.max_depth

    async def consult(self, request: ConsultRequest) -> Consulted:
        """Ask the consulted agent; ConsultFailed (an AskError) when it gives no answer."""
        hop: dict[str, Any] = {"by": request.by.agent, "agent": request.agent or "(routed)",
                               "peer": "", "question": request.question[:200],
                               "state": "failed", "reason": "", "seconds": 0.0,
                               "shared": len(request.shared), "reused": 0, "searched": True}
        received = request.received
        chain = (*(received.chain if received else ()), request.by)
        if not self.can_consult(received):
            hop["reason"] = f"the consulting depth limit ({self.max_depth}) is reached"
            raise ConsultFailed(hop["reason"], hop)
        if request.agent is not None and any(h.agent == request.agent for h in chain):
            hop["reason"] = f"{request.agent} is already in this consulting chain"
            raise ConsultFailed(hop["reason"], hop)
        timeout = request.timeout - CONSULT_MARGIN_S
        if timeout < 1.0:
            hop["reason"] = "no time left before the deadline to consult"
            raise ConsultFailed(hop["reason"], hop)
        delegation = next_hop(received, request.by, request.shared)
        carried = Carried({DELEGATION_KEY: encode_delegation(delegation)},
                          context_id=request.context_id,
                          exclude=frozenset((h.peer, h.agent) for h in chain))
        started = time.monotonic()
        try:
            result = await self.asker.ask(request.question, agent=request.agent,
                                          timeout=timeout, carried=carried)
        except AskError as exc:
            hop.update(reason=str(exc)[:300], seconds=round(time.monotonic() - started, 3))
            raise ConsultFailed(f"consulting {hop['agent']} failed: {exc}", hop) from None
        data = result["answer"]
        report = data.get("shared") if isinstance(data.get("shared"), dict) else {}
        hop.update(agent=_text(result.get("agent"), 64), peer=_text(result.get("peer"), 64),
                   state="completed", seconds=round(time.monotonic() - started, 3),
                   reused=int(_finite(report.get("reused"))),
                   searched=report.get("searched") is not False,
                   consulted=peer_hops(data.get("consulted")))
        extra = data.get("data")  # an agent in code's own data (plain: it was decoded)
        reply = Reply(text=_text(data.get("text"), 100_000),
                      citations=tuple(peer_citations(data)), agent=hop["agent"],
                      peer=hop["peer"], data={"mode": _text(data.get("mode"), 32),
                                              "data": extra if isinstance(extra, dict) else {}})
        return Consulted(reply, hop)


class ConsultingAgent:
    """A built-in agent with ``consults``: see the module docstring."""

    def __init__(self, spec: AgentSpec, tasks: TaskService, delegator: Delegator) -> None:
        self.spec = spec
        self.tasks = tasks
        self.delegator = delegator
        self.asker = delegator.asker

    def card(self) -> Any:
        return agent_card(self.spec, version=self.tasks.version)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        task_status.started()

    async def run(self, run: TaskRun, message: Message) -> None:
        try:
            received = received_delegation(message, self.tasks.knowledge.config.tenant)
        except A2AError as exc:
            await run.reject(exc.message)
            return
        seconds = deadline_of(message)
        deadline = trio.current_time() + seconds
        question = message.text.strip()
        await run.working()
        try:
            plan = await self._plan(question, received)
        except MemoryStoreError:
            plan = {}  # the built-in answer below meets the same failure and reports it
        hops: list[dict[str, Any]] = []
        consulted: dict[str, Consulted] = {}
        if plan:
            await run.working("consulting " + ", ".join(plan))
            async with trio.open_nursery() as nursery:
                for name, (parts, shared) in plan.items():
                    nursery.start_soon(self._consult, name, " ".join(parts), shared, received,
                                       run.task.context_id, deadline, consulted, hops)
        mine = [p for p in question_parts(question)
                if not any(p in parts for name, (parts, _) in plan.items() if name in consulted)]
        own: Answer | None = None
        if mine or not consulted:
            own = await self.tasks.answer_builtin(
                run, self.spec, " ".join(mine) or question, deadline - trio.current_time(),
                shared=shared_hits(received))
            if own is None:
                return  # the run has failed with the reason
        answer = _merge(own, [(plan[name][0], consulted[name]) for name in consulted])
        await self.tasks.finish(run, self.spec, message, answer, received=received,
                                extra={"consulted": hops} if hops else None)

    async def _plan(self, question: str, received: Delegation | None
                    ) -> dict[str, tuple[list[str], list[Shared]]]:
        """Consulted agent -> (the parts of the question that are its field, what this
        agent retrieved for them)."""
        if not self.delegator.can_consult(received):
            return {}
        chain = {(h.peer, h.agent) for h in (received.chain if received else ())}
        candidates = {card.name: card for peer, card in self.asker.known_agents()
                      if card.name in self.spec.consults and card.name != self.spec.name
                      and (peer, card.name) not in chain}
        if not candidates:
            return {}
        texts = [("", skill_texts(self.card())),
                 *((name, skill_texts(card)) for name, card in candidates.items())]
        floor = self.asker.settings.min_relevance
        plan: dict[str, tuple[list[str], list[Shared]]] = {}
        for part in question_parts(question):
            fit = await self.asker.skills.score(part, texts)
            own = fit.pop("")
            best = max(fit, key=lambda name: (fit[name], name))
            hits = await self.tasks.answerer.retrieve(self.spec, part)
            theirs = fit[best] > own or (not hits and fit[best] >= floor)
            if theirs and fit[best] >= floor:
                parts, shared = plan.setdefault(best, ([], []))
                parts.append(part)
                shared += [Shared(h.record, h.score, self.spec.name) for h in hits]
        return plan

    async def _consult(self, name: str, question: str, shared: list[Shared],
                       received: Delegation | None, context_id: str, deadline: float,
                       consulted: dict[str, Consulted], hops: list[dict[str, Any]]) -> None:
        me = Hop(self.tasks.peer_id, self.spec.name)
        request = ConsultRequest(question, name, deadline - trio.current_time(), context_id,
                                 me, received, tuple(shared))
        try:
            consulted[name] = await self.delegator.consult(request)
            hops.append(consulted[name].hop)
        except ConsultFailed as exc:
            hops.append(exc.hop)  # the part is answered here instead


def _renumbered(text: str, offset: int, count: int) -> str:
    def mark(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f"[{n + offset}]" if 1 <= n <= count else ""

    return _MARKER.sub(mark, text)


def _merge(own: Answer | None, consulted: list[tuple[list[str], Consulted]]) -> Answer:
    """This agent's answer followed by each consulted agent's, citations renumbered."""
    texts = [own.text] if own else []
    bodies = [own.body] if own else []
    citations = list(own.citations) if own else []
    for parts, c in consulted:
        text = c.reply.text.removeprefix(EXTRACTIVE_PREAMBLE).strip()
        text = _renumbered(text, len(citations), len(c.reply.citations))
        texts.append(f"{c.reply.agent} (consulted on \u201c{' '.join(parts)}\u201d): {text}")
        bodies.append(_MARKER.sub("", text))
        citations += [Citation(p.id, p.collection, p.author, p.score, p.text)
                      for p in c.reply.citations]
    base = own if own is not None else Answer("", (), "extractive", None, 0.0, 0.0)
    return replace(base, text="\n\n".join(texts), citations=tuple(citations),
                   body=" ".join(b for b in bodies if b))
