"""Asker: routes a question to the best agents of the mesh and brings back one answer.

Candidates are every agent this node knows (its own and those in presence cards), scored by
skill relevance x trust x load x latency (meshnode.ask.policy). They are asked in waves, a few
in parallel, each wave within what is left of the deadline; the answer with the best
quality x trust wins. Every step is kept for ``meshnode ask --explain``. One deadline covers
the whole ask: relevance scoring, the waves and the quality checks of their answers.

**Evidence comes only from the operator's own questions.** The outcomes of an ask become
trust evidence (failures at once, the chosen answer as accepted when its rating window
passes) only when this node's operator asked. A question asked for someone else (a peer's
forwarded question, an anonymous client of the public A2A endpoint) is routed the same way,
but its asker chose the question, and a forwarded one also its hop count and visited set:
with those it could choose whom this node asks, so that an accomplice echoing the question
earns trust, or an honest neighbour that cannot answer is blamed. Nothing it sends can
credit or blame anyone here.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from memory.errors import MemoryStoreError
from meshnode.a2a.owners import OPERATOR, Owner
from meshnode.a2a.session import A2AClient
from meshnode.a2a.tasks import (
    AGENT_KEY,
    ASKER_KEY,
    DEADLINE_KEY,
    FORWARD_KEY,
    PeerBusy,
    TaskService,
    call_agent,
)
from meshnode.agents.specs import skill_texts
from meshnode.ask.history import AskHistory
from meshnode.ask.policy import (
    DEFAULT_POLICY,
    Candidate,
    RoutingPolicy,
    Scored,
    choose_answer,
    forward_targets,
    rank,
    score,
    waves,
)
from meshnode.ask.relevance import SkillIndex
from meshnode.config import RoutingSettings
from meshnode.errors import MeshnodeError
from meshnode.node.faults import Faults
from meshnode.node.membership import Membership
from meshnode.node.transport import DialError, Host
from meshnode.trust.evidence import Outcome
from meshnode.trust.graph import TrustGraph
from protocols.a2a import (
    A2AError,
    AgentCard,
    DataPart,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
    card_from_wire,
)
from protocols.errors import ProtocolError

log = logging.getLogger(__name__)
Progress = Callable[[dict[str, Any]], Awaitable[None]]
KEPT_ANSWERS = 1000
#: Time kept back from an agent's deadline for the network and the asker's own work.
MARGIN_S = 1.0
#: Of that, what the asker keeps for itself after the answers' deadline: the quality check
#: runs within the ask's deadline too.
QUALITY_S = 0.5
#: The agent name shown for a neighbour a question was forwarded to.
FORWARDED = "(forwarded)"
#: Agents scored for relevance per ask, and skill sets embedded for the first time per ask
#: (bounds an ask's work however many agents the mesh announces; see _bounded).
MAX_SCORED = 512
MAX_NEW_EMBEDDED = 128
#: Decoded agent card sets kept, by digest.
MAX_CARD_SETS = 4096


def _decoded(wires: tuple[dict[str, Any], ...]) -> list[AgentCard]:
    cards = []
    for wire in wires:
        try:
            cards.append(card_from_wire(wire))
        except ProtocolError:
            continue  # a peer's bad card only hides that agent
    return cards


@dataclass(frozen=True, slots=True)
class Carried:
    """What an ask made on behalf of an agent's task carries (meshnode.ask.delegation):
    extra message metadata, the task's conversation, and agents it must not ask."""

    metadata: dict[str, Any]
    context_id: str | None = None
    #: (peer ID, agent name) of agents not to ask (those already in the chain).
    exclude: frozenset[tuple[str, str]] = frozenset()


class AskError(MeshnodeError):
    """No agent of the mesh produced an acceptable answer."""


class UnknownAnswer(AskError):
    """A rating for an answer that is not waiting for one here."""

    http_status = 404


@dataclass(slots=True)
class _Taken:
    peer: str
    agent: str
    at: float


@dataclass(slots=True)
class _Outcome:
    scored: Scored
    state: str = "failed"
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    quality: float | None = None
    seconds: float = 0.0


async def _ignore(_: dict[str, Any]) -> None:
    pass


class Asker:
    def __init__(
        self,
        host: Host,
        membership: Membership,
        tasks: TaskService,
        skills: SkillIndex,
        trust: TrustGraph,
        *,
        settings: RoutingSettings,
        policy: RoutingPolicy = DEFAULT_POLICY,
        rng: random.Random | None = None,
        faults: Faults | None = None,
        client: A2AClient | None = None,
    ) -> None:
        self.host = host
        #: How agents of other nodes are called (over A2A sessions); None: a stream a call.
        self.client = client
        self.membership = membership
        self.tasks = tasks
        self.skills = skills
        self.trust = trust
        self.settings = settings
        self.policy = policy
        self._rng = rng or random.Random()
        self.faults = faults if faults is not None else Faults()
        self.self_id = membership.signer.peer_id
        #: Answers this node took for its operator and that may still be rated, oldest first.
        self.answered: OrderedDict[str, _Taken] = OrderedDict()
        #: Answers dropped unrated because more than KEPT_ANSWERS were waiting.
        self.unrated_dropped = 0
        #: The recent questions routed here, for the dashboard and the metrics.
        self.history = AskHistory()
        self._cards: OrderedDict[str, tuple[AgentCard, ...]] = OrderedDict()

    # ---- who can answer ------------------------------------------------------------

    def known_agents(self) -> list[tuple[str, AgentCard]]:
        agents = [(self.self_id, card) for card in self.tasks.cards()]
        for peer, digest, wires in self.membership.agent_sets():
            cards = self._cards.get(digest)
            if cards is None:
                cards = self._cards[digest] = tuple(_decoded(wires))
                while len(self._cards) > MAX_CARD_SETS:
                    self._cards.popitem(last=False)
            agents += [(peer, card) for card in cards]
        return agents

    def _bounded(self, known: list[tuple[str, AgentCard]]) -> list[tuple[str, AgentCard]]:
        """At most MAX_SCORED agents, the most trusted peers' first (then those this node is
        connected to): a swarm of announced identities cannot make every ask score it."""
        if len(known) <= MAX_SCORED:
            return known
        connected = self.membership.verified_connected()
        order = sorted(known, key=lambda pc: (pc[0] != self.self_id,
                                              -self.trust.relative_trust(pc[0]),
                                              pc[0] not in connected, self._rng.random()))
        return order[:MAX_SCORED]

    def _candidate(self, peer: str, card: AgentCard, relevance: float) -> Candidate:
        record = self.membership.table.get(peer)
        presence = record.presence if record else None
        return Candidate(
            agent=card.name, peer_id=peer, relevance=max(0.0, relevance),
            trust=self.trust.relative_trust(peer),
            load=presence.load if presence else 0.0,
            rtt_ms=0.0 if peer == self.self_id else (record.rtt_ms if record else None),
            experience=self.trust.experience(peer),
        )

    # ---- asking --------------------------------------------------------------------

    async def ask(
        self, question: str, *, agent: str | None = None, timeout: float = 60.0,
        progress: Progress = _ignore, hops: int = 0, visited: frozenset[str] = frozenset(),
        owner: Owner = OPERATOR, carried: Carried | None = None,
    ) -> dict[str, Any]:
        """Route ``question`` for ``owner`` and return the chosen answer with how it was
        chosen; only the operator's asks yield trust evidence.

        Everything (relevance scoring, every wave, every quality check) happens within
        ``timeout`` seconds. Raises AskError when no acceptable answer came in time, or the
        embedder this node ranks with failed.
        """
        stage = ["scoring relevance"]
        started = time.monotonic()
        try:
            try:
                with trio.fail_after(timeout):
                    result = await self._route(question, agent, timeout, progress, hops,
                                               visited, stage, owner, carried)
            except trio.TooSlowError:
                raise AskError(f"the ask's deadline of {timeout:g} s passed while {stage[0]}") \
                    from None
        except AskError as exc:
            self.history.record(question, started=started, forwarded=hops > 0, error=str(exc))
            raise
        self.history.record(question, started=started, forwarded=hops > 0, result=result)
        return result

    async def _route(
        self, question: str, agent: str | None, timeout: float, progress: Progress, hops: int,
        visited: frozenset[str], stage: list[str], owner: Owner,
        carried: Carried | None = None,
    ) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        known = self.known_agents()
        if carried is not None:
            known = [(p, c) for p, c in known if (p, c.name) not in carried.exclude]
        if agent is not None:
            known = [(peer, card) for peer, card in known if card.name == agent]
            if not known:
                raise AskError(f"no agent named {agent!r} is known in the mesh "
                               "(see `meshnode agents`)")
        known = self._bounded(known)
        try:
            relevance = await self.skills.score(
                question, [(f"{peer}/{card.name}", skill_texts(card)) for peer, card in known],
                max_new=MAX_NEW_EMBEDDED,
            )
        except MemoryStoreError as exc:  # an embeddings endpoint down, say
            self.faults.record("embedder", exc, expected=True)
            raise AskError(f"cannot rank the agents: this node's embedder failed: {exc}") from None
        stage[0] = "asking agents and checking their answers"
        # Raw similarities depend on the embedder (the built-in one gives small numbers):
        # the threshold applies to them, the ranking to their share of the best one's.
        floor = 0.0 if agent else self.settings.min_relevance
        best = max(relevance.values(), default=0.0)
        candidates = [
            self._candidate(p, c, relevance[f"{p}/{c.name}"] / best if best > 0 else 0.0)
            for p, c in known
            if relevance[f"{p}/{c.name}"] >= floor
        ]
        ranked = rank(candidates, min_relevance=0.0, explore=self.settings.explore,
                      rng=self._rng, policy=self.policy)
        explain: dict[str, Any] = {
            "candidates": [s.explain() for s in ranked],
            "irrelevant": len(known) - len(ranked),
            "waves": [],
        }
        routing_s = time.monotonic() - started
        await progress({"stage": "routed", "candidates": len(ranked), "routing_s": routing_s})
        groups = waves(ranked, fanout=self.settings.fanout, max_waves=self.settings.max_waves)
        forward: dict[str, Any] | None = None
        if not ranked and agent is None:
            groups, forward = self._forwarding(hops, visited, explain, len(known))
        elif not ranked:
            raise AskError("no known agent is relevant to this question "
                           f"({len(known)} known; see `meshnode agents`)")
        for wave in groups:
            remaining = deadline - time.monotonic()
            if remaining <= MARGIN_S:
                break
            outcomes = await self._ask_wave(wave, question, remaining, progress, forward, owner,
                                            carried)
            choice = choose_answer([(o.scored.candidate, o.quality) for o in outcomes],
                                   min_quality=self.settings.min_quality, policy=self.policy)
            explain["waves"].append({
                "asked": [o.scored.candidate.agent + "@" + o.scored.candidate.peer_id
                          for o in outcomes],
                "outcomes": [
                    {"agent": o.scored.candidate.agent, "peer": o.scored.candidate.peer_id,
                     "state": o.state, "reason": o.reason, "quality": o.quality,
                     "seconds": round(o.seconds, 3)}
                    for o in outcomes
                ],
                "choice": choice.explain(),
            })
            if owner.operator:
                self._record_evidence(outcomes)
            if choice.index is not None:
                won = outcomes[choice.index]
                return self._result(won, explain, routing_s, time.monotonic() - started,
                                    rated=owner.operator)
        raise AskError("no agent gave an acceptable answer: " + "; ".join(
            f"{o['agent']}: {o['state']} {o['reason']}".strip()
            for w in explain["waves"] for o in w["outcomes"]
        ) if explain["waves"] else "the deadline passed before any agent could be asked")

    def _forwarding(
        self, hops: int, visited: frozenset[str], explain: dict[str, Any], known: int
    ) -> tuple[list[list[Scored]], dict[str, Any]]:
        """Waves of neighbours to forward to when no known agent fits the question."""
        neighbours = {p: self.trust.relative_trust(p) for p in self.membership.verified_connected()}
        plan = forward_targets(neighbours, visited | {self.self_id},
                               self.settings.hop_limit, hops, self.settings.fanout)
        explain["forwarded"] = plan.explain()
        if not plan.targets:
            raise AskError(f"no known agent is relevant to this question ({known} known), "
                           f"and it cannot be forwarded: {plan.reason}")
        wave = [score(Candidate(agent=FORWARDED, peer_id=p, relevance=1.0, trust=neighbours[p],
                                load=0.0, rtt_ms=None, experience=self.trust.experience(p)))
                for p in plan.targets]
        return [wave], {"hops": plan.hops, "visited": sorted(plan.visited)}

    async def _ask_wave(
        self, wave: list[Scored], question: str, remaining: float, progress: Progress,
        forward: dict[str, Any] | None, owner: Owner, carried: Carried | None = None,
    ) -> list[_Outcome]:
        outcomes = [_Outcome(s) for s in wave]
        async with trio.open_nursery() as nursery:
            for outcome in outcomes:
                nursery.start_soon(self._ask_one, outcome, question, remaining, progress,
                                   forward, owner, carried)
        return outcomes

    async def _ask_one(
        self, outcome: _Outcome, question: str, remaining: float, progress: Progress,
        forward: dict[str, Any] | None, owner: Owner, carried: Carried | None = None,
    ) -> None:
        candidate = outcome.scored.candidate
        await progress({"stage": "asking", "agent": candidate.agent, "peer": candidate.peer_id,
                        "explore": outcome.scored.explore})
        metadata: dict[str, Any] = {ASKER_KEY: self.self_id,
                                    DEADLINE_KEY: max(1.0, remaining - MARGIN_S)}
        if forward is None:
            metadata[AGENT_KEY] = candidate.agent
        else:
            metadata[FORWARD_KEY] = forward
        if carried is not None:
            metadata.update(carried.metadata)
        message = Message(role="user", parts=(TextPart(question),),
                          message_id=str(uuid.uuid4()), metadata=metadata,
                          context_id=carried.context_id if carried else None)
        started = time.monotonic()
        final: list[Task | None] = [None]

        async def on_event(event: StreamEvent) -> None:
            if isinstance(event, Task):
                outcome.task_id = event.id
            elif isinstance(event, TaskArtifactUpdateEvent):
                for part in event.artifact.parts:
                    if isinstance(part, DataPart):
                        outcome.data = dict(part.data)
            elif isinstance(event, TaskStatusUpdateEvent):
                outcome.task_id = event.task_id
                outcome.state = str(event.status.state)
                if event.status.message is not None:
                    outcome.reason = event.status.message.text
                await progress({"stage": "status", "agent": candidate.agent,
                                "peer": candidate.peer_id, "state": outcome.state})

        wait = max(remaining - QUALITY_S, 0.0)
        try:
            with trio.fail_after(wait):
                if candidate.peer_id == self.self_id:
                    # This node's own agent works for whoever asked (and counts against it).
                    try:
                        final[0] = await self.tasks.run_task(message, on_event, owner=owner)
                    except A2AError as exc:  # refused before it began: too many under way
                        raise PeerBusy(exc.message) from None
                elif self.client is not None:
                    await self.client.call(candidate.peer_id, message, on_event, timeout=wait)
                else:
                    await call_agent(self.host, candidate.peer_id, message, on_event,
                                     timeout=wait)
        except trio.TooSlowError:
            outcome.state, outcome.reason = "timeout", f"no answer within {wait:.0f} s"
        except (DialError, trio.BrokenResourceError) as exc:
            outcome.state, outcome.reason = "failed", f"unreachable: {exc}"
        except PeerBusy as exc:  # a budget of the peer's, mostly spent by this node itself
            outcome.state, outcome.reason = "busy", str(exc)
        except ProtocolError as exc:
            outcome.state, outcome.reason = "malformed", str(exc)
        except Exception as exc:  # a bug met by this peer's answer fails this answer only
            self.faults.record("ask", exc, peer=candidate.peer_id)
            outcome.state, outcome.reason = "failed", f"internal error: {exc}"
        outcome.seconds = time.monotonic() - started
        if outcome.state == TaskState.COMPLETED and outcome.data.get("text"):
            try:
                outcome.quality = await self._quality(question, outcome.data)
            except MemoryStoreError as exc:
                # Not the agent's fault: the answer is left unrated, and no evidence recorded.
                self.faults.record("embedder", exc, expected=True)
                outcome.reason = f"quality check failed: this node's embedder failed: {exc}"
        elif outcome.state == TaskState.COMPLETED:
            outcome.state, outcome.reason = "malformed", "completed without an answer"

    async def _quality(self, question: str, data: dict[str, Any]) -> float:
        """The asker's own estimate in [0, 1]: grounded in cited memory, and on topic."""
        grounded = 0.5 if data.get("citations") else 0.0
        text = str(data.get("body") or data.get("text") or "")
        similarity = await self.skills.similarity(question, text)
        return grounded + 0.5 * max(0.0, min(1.0, similarity))

    def _record_evidence(self, outcomes: list[_Outcome]) -> None:
        now = time.time()
        for o in outcomes:
            peer = o.scored.candidate.peer_id
            outcome = {"timeout": Outcome.TIMEOUT, "malformed": Outcome.MALFORMED}.get(
                o.state, Outcome.FAILED)
            if o.state in (TaskState.COMPLETED, "busy"):
                # An answer not chosen is neither good nor bad evidence; the chosen one counts
                # as accepted only once its rating window passes without a bad rating. A
                # peer's budget refusing us is mostly our own doing.
                continue
            self.trust.record(peer, outcome, skill=o.scored.candidate.agent, now=now)

    def _result(
        self, won: _Outcome, explain: dict[str, Any], routing_s: float, total_s: float,
        *, rated: bool,
    ) -> dict[str, Any]:
        candidate = won.scored.candidate
        # A forwarded question was answered further away: report who really answered.
        agent = str(won.data.get("agent") or candidate.agent)
        peer = str(won.data.get("peer") or candidate.peer_id)
        if won.task_id and rated:
            self.answered[won.task_id] = _Taken(candidate.peer_id, candidate.agent, time.time())
            self.settle(time.time())
        retrieval_s = float(won.data.get("retrieval_s") or 0.0)
        llm_s = float(won.data.get("llm_s") or 0.0)
        explain["chosen"] = {"agent": agent, "peer": peer, "via": candidate.peer_id,
                             "why": f"best quality x trust ({won.quality:.2f} quality)"}
        return {
            "task_id": won.task_id,
            "agent": agent,
            "peer": peer,
            "answer": won.data,
            "timings": {
                "routing_s": round(routing_s, 4),
                "retrieval_s": round(retrieval_s, 4),
                "llm_s": round(llm_s, 4),
                "network_s": round(max(0.0, won.seconds - retrieval_s - llm_s), 4),
                "total_s": round(total_s, 4),
            },
            "explain": explain,
        }

    async def answer_forwarded(
        self, question: str, hops: int, visited: frozenset[str], deadline_s: float, owner: Owner
    ) -> dict[str, Any]:
        """TaskService's forwarder: route a neighbour's question from here, one hop on, for
        ``owner`` (so with no trust evidence from it)."""
        result = await self.ask(question, timeout=deadline_s, hops=hops, visited=visited,
                                owner=owner)
        return dict(result["answer"])

    def settle(self, now: float) -> None:
        """Count as accepted the answers whose rating window passed without a rating.

        Past KEPT_ANSWERS waiting, the oldest go unrated: an answer counts as accepted only
        when its operator had the whole window to object.
        """
        window = self.settings.rating_window_s
        while len(self.answered) > KEPT_ANSWERS:
            self.answered.popitem(last=False)
            self.unrated_dropped += 1
        while self.answered:
            task_id, taken = next(iter(self.answered.items()))
            if now - taken.at < window:
                break
            del self.answered[task_id]
            self.trust.record(taken.peer, Outcome.ACCEPTED, skill=taken.agent, now=now)

    def rate(self, task_id: str, good: bool) -> dict[str, str]:
        """A person's verdict on an answer this node took: it replaces the automatic
        acceptance (a bad answer that was also counted as accepted would be half-forgiven)."""
        self.settle(time.time())
        taken = self.answered.pop(task_id, None)
        if taken is None:
            raise UnknownAnswer(f"no answer with task id {task_id} is waiting for a rating here "
                           f"(answers can be rated for {self.settings.rating_window_s:.0f} s)")
        now = time.time()
        if good:
            self.trust.record(taken.peer, Outcome.ACCEPTED, skill=taken.agent, now=now)
        self.trust.record(taken.peer, Outcome.RATED_GOOD if good else Outcome.RATED_BAD,
                          skill=taken.agent, now=now)
        return {"task_id": task_id, "peer": taken.peer, "agent": taken.agent,
                "rating": "good" if good else "bad"}
