"""Asker: routes a question to the best agents of the mesh and brings back one answer.

Candidates are every agent this node knows (its own and those in presence cards), scored by
relevance (their skills, and the knowledge their node holds) x trust x load x latency
(meshnode.ask.policy). They are asked in waves, a few in parallel, each wave within what is
left of the deadline. Each answer is checked here against the records it cites
(meshnode.ask.quality: faithfulness, retrieval precision, quality); the answer with the best
quality x trust wins. When no agent is relevant, or every relevant agent found nothing, the
ask fails with an honest "no expert" rather than a wrong answer. Who can answer (the agents
known here and their relevance) is meshnode.ask.candidates; asking one agent is
meshnode.ask.calls. Every step is kept for ``meshnode ask --explain``. One deadline covers
the whole ask: relevance scoring, the waves and the quality checks of their answers.

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
from collections import OrderedDict
from typing import Any

import trio

from memory.errors import MemoryStoreError
from meshnode.a2a.owners import OPERATOR, Owner
from meshnode.a2a.session import A2AClient
from meshnode.a2a.tasks import TaskService
from meshnode.ask.calls import MARGIN_S, AgentCaller, Carried, Progress
from meshnode.ask.candidates import AgentDirectory
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
    score,
    waves,
)
from meshnode.ask.quality import AnswerChecker, QualityBook
from meshnode.ask.relevance import SkillIndex
from meshnode.ask.verdicts import Taken, Verdicts
from meshnode.config import RoutingSettings
from meshnode.errors import MeshnodeError
from meshnode.node.faults import Faults
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.membership import Membership
from meshnode.node.transport import Host
from meshnode.trust.graph import TrustGraph
from protocols.a2a import AgentCard, TaskState

log = logging.getLogger(__name__)
#: How often answers whose rating window passed are settled (at most; see Asker.run).
SETTLE_EVERY_S = 10.0


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
        self.membership = membership
        self.tasks = tasks
        self.skills = skills
        self.trust = trust
        self.settings = settings
        self.policy = policy
        self._rng = rng or random.Random()
        self.faults = faults if faults is not None else Faults()
        self.self_id = membership.signer.peer_id
        #: How one agent is asked: this node's own, or another node's over A2A.
        self.caller = AgentCaller(host, client, tasks, self.faults, self.self_id)
        #: The recent questions routed here, for the dashboard and the metrics.
        self.history = AskHistory()
        self.knowledge = knowledge
        #: Who can answer: the agents known here and their relevance to a question.
        self.directory = AgentDirectory(membership, tasks, skills, trust, knowledge, self._rng)
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

    def known_agents(self) -> list[tuple[str, AgentCard]]:
        """Every agent this node knows: its own, and those in peers' presence cards."""
        return self.directory.known_agents()

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
        known = self.directory.bounded(known)
        try:
            skills, knowledge, memory = await self.directory.relevance(question, known,
                                                                       agent is not None)
        except MemoryStoreError as exc:  # an embeddings endpoint down, say
            self.faults.record("embedder", exc, expected=True)
            raise AskError(f"cannot rank the agents: this node's embedder failed: {exc}") from None
        stage[0] = "asking agents and checking their answers"
        floor = 0.0 if agent else self.settings.min_relevance
        candidates = self.directory.candidates(known, skills, knowledge, floor)
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
        groups = waves(ranked, fanout=self.settings.fanout, max_waves=self.settings.max_waves,
                       probation_seats=self.settings.probation_seats)
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

    def _forwarding(
        self, hops: int, visited: frozenset[str], explain: dict[str, Any], known: int
    ) -> tuple[list[list[Scored]], dict[str, Any]]:
        """Waves of neighbours to forward to when no known agent fits the question: only
        while some peers' agents are still unknown here. When this node knows every agent
        of the mesh and none fits, forwarding would only reach a wrong expert."""
        if not self.directory.unknown_peers(visited | {self.self_id}):
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
        """Ask one agent (meshnode.ask.calls), then check its answer here."""
        await self.caller.call(outcome, question, remaining, progress, forward, owner, carried)
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
