"""Asker: routes a question to the best agents of the mesh and brings back one answer.

Candidates are every agent this node knows (its own and those in presence cards), scored by
relevance (their skills, and the knowledge their node holds) x trust x load x latency
(meshnode.ask.policy). They are asked in waves, a few in parallel, each wave within what is
left of the deadline. Each answer is checked here against the records it cites
(meshnode.ask.quality: faithfulness, retrieval precision, quality); the answer with the best
quality x trust wins. When no agent is relevant, or every relevant agent found nothing, the
ask fails with an honest "no expert" rather than a wrong answer. Every step is kept for
``meshnode ask --explain``. One deadline covers the whole ask: relevance scoring, the waves
and the quality checks of their answers.

**Evidence comes only from the operator's own questions.** The outcomes of an ask become
trust evidence (failures at once, the chosen answer as accepted when its rating window
passes) only when this node's operator asked. A question asked for someone else (a peer's
forwarded question, an anonymous client of the public A2A endpoint) is routed the same way,
but its asker chose the question, and a forwarded one also its hop count and visited set:
with those it could choose whom this node asks, so that an accomplice echoing the question
earns trust, or an honest neighbour that cannot answer is blamed. Nothing it sends can
credit or blame anyone here.

The operator's answer may be rated during ``routing.rating_window_s``; one not rated bad by
then counts as accepted. Either verdict is trust evidence, and an accepted (or well rated)
answer to a question asked here becomes a solution in shared memory (meshnode.ask.learning).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from meshnode.ask.learning import Learner
from meshnode.ask.outcomes import (
    FORWARDED,
    AgentOutcome,
    choose,
    corroborating,
    failure_evidence,
    lesson,
    taken_result,
)
from meshnode.ask.policy import (
    DEFAULT_POLICY,
    Candidate,
    RoutingPolicy,
    Scored,
    forward_targets,
    rank,
    relevance,
    score,
    waves,
)
from meshnode.ask.quality import AnswerChecker, QualityBook
from meshnode.ask.relevance import Recall, SkillIndex, recall
from meshnode.ask.verdicts import Taken, Verdicts
from meshnode.config import RoutingSettings
from meshnode.errors import MeshnodeError
from meshnode.node.faults import Faults
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.membership import Membership
from meshnode.node.transport import DialError, Host
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
#: Time kept back from an agent's deadline for the network and the asker's own work.
MARGIN_S = 1.0
#: Of that, what the asker keeps for itself after the answers' deadline: the quality check
#: runs within the ask's deadline too.
QUALITY_S = 0.5
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
#: How often answers whose rating window passed are settled (at most; see Asker.run).
SETTLE_EVERY_S = 10.0


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


class NoExpert(AskError):
    """No agent of the mesh is relevant to the question, or every one asked found nothing."""


class UnknownAnswer(AskError):
    """A rating for an answer that is not waiting for one here."""

    http_status = 404


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
        knowledge: KnowledgeService | None = None,
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
        #: The recent questions routed here, for the dashboard and the metrics.
        self.history = AskHistory()
        self._cards: OrderedDict[str, tuple[AgentCard, ...]] = OrderedDict()
        self.knowledge = knowledge
        self.checker = AnswerChecker(membership.config.tenant,
                                     knowledge.store if knowledge else None,
                                     similarity=skills.similarity)
        #: Faithfulness and retrieval precision of each agent's answers, as checked here.
        self.quality = QualityBook()
        self.learner = Learner(knowledge, faults=self.faults) if knowledge else None
        self.verdicts = Verdicts(trust, lambda: self.settings.rating_window_s, self.learner)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Settle answers whose rating window passed, and learn from the verdicts."""
        async with trio.open_nursery() as nursery:
            if self.learner is not None:
                await nursery.start(self.learner.run)
            task_status.started()
            every = min(SETTLE_EVERY_S, max(0.1, self.settings.rating_window_s / 4))
            while True:
                await trio.sleep(every)
                self.settle(time.time())

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
        owner: Owner = OPERATOR, carried: Carried | None = None, keep_records: bool = False,
    ) -> dict[str, Any]:
        """Route ``question`` for ``owner`` and return the chosen answer with how it was
        chosen; only the operator's asks yield trust evidence.

        Everything (relevance scoring, every wave, every quality check) happens within
        ``timeout`` seconds. Raises NoExpert when no agent is relevant or every one found
        nothing, AskError when no acceptable answer came in time or the embedder this node
        ranks with failed. An answer to a question the operator asked here (``hops`` 0) may
        become a solution once accepted. The answer's cited records (signed, checked
        here) are left out of the result unless ``keep_records`` (a forwarded question's
        asker checks them again).
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
        records = result["answer"].pop("records", None)
        self.history.record(question, started=started, forwarded=hops > 0, result=result)
        if keep_records and records is not None:
            result = {**result, "answer": {**result["answer"], "records": records}}
        return result

    async def _relevance(
        self, question: str, known: list[tuple[str, AgentCard]], named: bool
    ) -> tuple[dict[str, float], dict[str, float], Recall]:
        """(raw skill similarity, knowledge relevance of its node) per "peer/agent" key, and
        what this node's own memory recalls about the question."""
        try:
            skills = await self.skills.score(
                question, [(f"{peer}/{card.name}", skill_texts(card)) for peer, card in known],
                max_new=MAX_NEW_EMBEDDED,
            )
            memory = Recall({}, frozenset()) if self.knowledge is None else \
                await recall(self.knowledge.store, question)
        except MemoryStoreError as exc:  # an embeddings endpoint down, say
            self.faults.record("embedder", exc, expected=True)
            raise AskError(f"cannot rank the agents: this node's embedder failed: {exc}") from None
        holders = {} if named else memory.holders
        knowledge = {f"{p}/{c.name}": holders[p] for p, c in known if p in holders}
        return skills, knowledge, memory

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
        skills, knowledge, memory = await self._relevance(question, known, agent is not None)
        stage[0] = "asking agents and checking their answers"
        # Raw similarities depend on the embedder (the built-in one gives small numbers):
        # the threshold applies to them, the ranking to their share of the best one's. An
        # agent whose node holds relevant knowledge is a candidate whatever its skills say.
        floor = 0.0 if agent else self.settings.min_relevance
        best_skill = max(skills.values(), default=0.0)
        best_known = max(knowledge.values(), default=0.0)
        candidates = []
        for p, c in known:
            key = f"{p}/{c.name}"
            if skills[key] < floor and key not in knowledge:
                continue
            held = knowledge.get(key, 0.0) / best_known if best_known > 0 else None
            share = skills[key] / best_skill if best_skill > 0 else 0.0
            candidates.append(self._candidate(p, c, relevance(share, held)))
        ranked = rank(candidates, min_relevance=0.0, explore=self.settings.explore,
                      rng=self._rng, policy=self.policy)
        explain: dict[str, Any] = {
            "candidates": [s.explain() for s in ranked],
            "irrelevant": len(known) - len(ranked),
            "knowledge_holders": len({k.split("/", 1)[0] for k in knowledge}),
            "waves": [],
        }
        routing_s = time.monotonic() - started
        await progress({"stage": "routed", "candidates": len(ranked), "routing_s": routing_s})
        groups = waves(ranked, fanout=self.settings.fanout, max_waves=self.settings.max_waves)
        forward: dict[str, Any] | None = None
        if not ranked and agent is None:
            groups, forward = self._forwarding(hops, visited, explain, len(known))
        elif not ranked:
            raise NoExpert("no known agent is relevant to this question "
                           f"({len(known)} known; see `meshnode agents`)")
        for wave in groups:
            remaining = deadline - time.monotonic()
            if remaining <= MARGIN_S:
                break
            outcomes = await self._ask_wave(wave, question, remaining, progress, forward, owner,
                                            carried, memory.relevant)
            choice = choose(outcomes, min_quality=self.settings.min_quality,
                            policy=self.policy, explore=self.settings.explore > 0)
            explain["waves"].append({
                "asked": [o.scored.candidate.agent + "@" + o.scored.candidate.peer_id
                          for o in outcomes],
                "outcomes": [o.explain() for o in outcomes],
                "choice": choice.explain(),
            })
            if owner.operator:
                self._record_evidence(outcomes)
            for i, o in enumerate(outcomes):
                if o.check is not None:
                    self.quality.record(str(o.data.get("peer") or o.scored.candidate.peer_id),
                                        str(o.data.get("agent") or o.scored.candidate.agent),
                                        o.check, chosen=i == choice.index)
            if choice.index is not None:
                won = outcomes[choice.index]
                return self._result(question, won, explain, routing_s,
                                    time.monotonic() - started, rated=owner.operator,
                                    learn=owner.operator and hops == 0,
                                    corroborated=corroborating(won, outcomes))
        raise self._no_answer(explain)

    @staticmethod
    def _no_answer(explain: dict[str, Any]) -> AskError:
        outcomes = [o for w in explain["waves"] for o in w["outcomes"]]
        if not outcomes:
            return AskError("the deadline passed before any agent could be asked")
        listed = "; ".join(f"{o['agent']}: {o['state']} {o['reason']}".strip() for o in outcomes)
        # Every agent answered, and none had anything relevant (or grounded) to say.
        if all(o["state"] == TaskState.COMPLETED and o.get("supported", -1) == 0
               for o in outcomes):
            return NoExpert("no expert for this question: no agent of the mesh found anything "
                            f"relevant in its memory ({listed})")
        return AskError(f"no agent gave an acceptable answer: {listed}")

    def _unknown_peers(self, visited: frozenset[str]) -> int:
        """Peers this node knows of but has no agent card from: agents not yet known."""
        return sum(1 for record in self.membership.table
                   if record.presence is None and record.peer_id not in visited)

    def _forwarding(
        self, hops: int, visited: frozenset[str], explain: dict[str, Any], known: int
    ) -> tuple[list[list[Scored]], dict[str, Any]]:
        """Waves of neighbours to forward to when no known agent fits the question: only
        while some peers' agents are still unknown here. When this node knows every agent
        of the mesh and none fits, forwarding would only reach a wrong expert."""
        if not self._unknown_peers(visited | {self.self_id}):
            raise NoExpert(f"no expert for this question: none of the {known} agents known in "
                           "the mesh is relevant to it")
        neighbours = {p: self.trust.relative_trust(p) for p in self.membership.verified_connected()}
        plan = forward_targets(neighbours, visited | {self.self_id},
                               self.settings.hop_limit, hops, self.settings.fanout)
        explain["forwarded"] = plan.explain()
        if not plan.targets:
            raise NoExpert(f"no known agent is relevant to this question ({known} known), "
                           f"and it cannot be forwarded: {plan.reason}")
        wave = [score(Candidate(agent=FORWARDED, peer_id=p, relevance=1.0, trust=neighbours[p],
                                load=0.0, rtt_ms=None, experience=self.trust.experience(p)))
                for p in plan.targets]
        return [wave], {"hops": plan.hops, "visited": sorted(plan.visited)}

    async def _ask_wave(
        self, wave: list[Scored], question: str, remaining: float, progress: Progress,
        forward: dict[str, Any] | None, owner: Owner, carried: Carried | None,
        relevant: frozenset[str],
    ) -> list[AgentOutcome]:
        outcomes = [AgentOutcome(s) for s in wave]
        async with trio.open_nursery() as nursery:
            for outcome in outcomes:
                nursery.start_soon(self._ask_one, outcome, question, remaining, progress,
                                   forward, owner, carried, relevant)
        return outcomes

    async def _ask_one(
        self, outcome: AgentOutcome, question: str, remaining: float, progress: Progress,
        forward: dict[str, Any] | None, owner: Owner, carried: Carried | None,
        relevant: frozenset[str],
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
                outcome.check = await self.checker.check(question, outcome.data, relevant)
                outcome.quality = outcome.check.quality
            except MemoryStoreError as exc:
                # Not the agent's fault: the answer is left unrated, and no evidence recorded.
                self.faults.record("memory", exc, expected=True)
                outcome.reason = f"quality check failed: this node's memory failed: {exc}"
        elif outcome.state == TaskState.COMPLETED:
            outcome.state, outcome.reason = "malformed", "completed without an answer"

    def _record_evidence(self, outcomes: list[AgentOutcome]) -> None:
        now = time.time()
        for peer, outcome, skill in failure_evidence(outcomes):
            self.trust.record(peer, outcome, skill=skill, now=now)

    def _result(
        self, question: str, won: AgentOutcome, explain: dict[str, Any], routing_s: float,
        total_s: float, *, rated: bool, learn: bool,
        corroborated: tuple[tuple[str, str], ...],
    ) -> dict[str, Any]:
        candidate = won.scored.candidate
        if won.task_id and rated:
            self.verdicts.take(won.task_id, Taken(
                candidate.peer_id, candidate.agent, time.time(),
                lesson(question, won) if learn else None, corroborated))
        return taken_result(won, explain, routing_s, total_s, corroborated)

    async def answer_forwarded(
        self, question: str, hops: int, visited: frozenset[str], deadline_s: float, owner: Owner
    ) -> dict[str, Any]:
        """TaskService's forwarder: route a neighbour's question from here, one hop on, for
        ``owner`` (so with no trust evidence from it)."""
        result = await self.ask(question, timeout=deadline_s, hops=hops, visited=visited,
                                owner=owner, keep_records=True)
        return dict(result["answer"])

    def settle(self, now: float) -> None:
        """Count as accepted the answers whose rating window passed without a rating."""
        self.verdicts.settle(now)

    def rate(self, task_id: str, good: bool) -> dict[str, str]:
        """A person's verdict on an answer this node took (meshnode.ask.verdicts)."""
        taken = self.verdicts.rate(task_id, good)
        if taken is None:
            raise UnknownAnswer(f"no answer with task id {task_id} is waiting for a rating here "
                           f"(answers can be rated for {self.settings.rating_window_s:.0f} s)")
        return {"task_id": task_id, "peer": taken.peer, "agent": taken.agent,
                "rating": "good" if good else "bad"}

    @property
    def answered(self) -> OrderedDict[str, Taken]:
        """Answers this node took for its operator and that may still be rated."""
        return self.verdicts.answered

    @property
    def unrated_dropped(self) -> int:
        return self.verdicts.unrated_dropped
