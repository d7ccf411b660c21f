"""Asker: routes a question to the best agents of the mesh and brings back one answer.

Candidates are every agent this node knows (its own and those in presence cards), scored by
skill relevance x trust x load x latency (meshnode.routing). They are asked in waves, a few
in parallel, each wave within what is left of the deadline; the answer with the best
quality x trust wins, and each outcome becomes trust evidence. Every step is kept for
``meshnode ask --explain``.
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

from meshnode.config import RoutingSettings
from meshnode.errors import MeshnodeError
from meshnode.host import DialError, MeshHost
from meshnode.membership import Membership
from meshnode.relevance import SkillIndex
from meshnode.routing import (
    DEFAULT_POLICY,
    Candidate,
    RoutingPolicy,
    Scored,
    choose_answer,
    rank,
    waves,
)
from meshnode.streams import read_frame, write_frame
from meshnode.tasks import AGENT_KEY, ASKER_KEY, DEADLINE_KEY, TaskService
from meshnode.trust import Outcome, TrustGraph
from protocols.a2a import (
    A2A_PROTOCOL,
    AgentCard,
    DataPart,
    End,
    ErrorReply,
    Event,
    Message,
    Result,
    SendStreamingMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
    card_from_wire,
    decode_response,
    encode_request,
)
from protocols.codec import FrameDecoder
from protocols.errors import ProtocolError

log = logging.getLogger("meshnode.asking")
Progress = Callable[[dict[str, Any]], Awaitable[None]]
KEPT_ANSWERS = 1000
#: Time kept back from an agent's deadline for the network and the asker's own work.
MARGIN_S = 1.0


class AskError(MeshnodeError):
    """No agent of the mesh produced an acceptable answer."""


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
        host: MeshHost,
        membership: Membership,
        tasks: TaskService,
        skills: SkillIndex,
        trust: TrustGraph,
        *,
        settings: RoutingSettings,
        policy: RoutingPolicy = DEFAULT_POLICY,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.membership = membership
        self.tasks = tasks
        self.skills = skills
        self.trust = trust
        self.settings = settings
        self.policy = policy
        self._rng = rng or random.Random()
        self.self_id = membership.signer.peer_id
        #: task id -> (peer, agent) of answers this node took, for `meshnode rate`.
        self.answered: OrderedDict[str, tuple[str, str]] = OrderedDict()

    # ---- who can answer ------------------------------------------------------------

    def known_agents(self) -> list[tuple[str, AgentCard]]:
        agents = [(self.self_id, card) for card in self.tasks.cards()]
        for record in self.membership.table:
            for wire in record.presence.agents if record.presence else ():
                try:
                    agents.append((record.peer_id, card_from_wire(wire)))
                except ProtocolError:
                    continue  # a peer's bad card only hides that agent
        return agents

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
        progress: Progress = _ignore,
    ) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        known = self.known_agents()
        if agent is not None:
            known = [(peer, card) for peer, card in known if card.name == agent]
            if not known:
                raise AskError(f"no agent named {agent!r} is known in the mesh "
                               "(see `meshnode agents`)")
        if not known:
            raise AskError("no agents are known in the mesh yet (see `meshnode agents`)")
        relevance = await self.skills.score(
            question, [(f"{peer}/{card.name}", _skill_texts(card)) for peer, card in known]
        )
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
        if not ranked:
            raise AskError("no known agent is relevant to this question "
                           f"({len(known)} known; see `meshnode agents`)")
        for wave in waves(ranked, fanout=self.settings.fanout, max_waves=self.settings.max_waves):
            remaining = deadline - time.monotonic()
            if remaining <= MARGIN_S:
                break
            outcomes = await self._ask_wave(wave, question, remaining, progress)
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
            self._record_evidence(outcomes, choice.index)
            if choice.index is not None:
                won = outcomes[choice.index]
                return self._result(won, explain, routing_s, time.monotonic() - started)
        raise AskError("no agent gave an acceptable answer: " + "; ".join(
            f"{o['agent']}: {o['state']} {o['reason']}".strip()
            for w in explain["waves"] for o in w["outcomes"]
        ) if explain["waves"] else "the deadline passed before any agent could be asked")

    async def _ask_wave(
        self, wave: list[Scored], question: str, remaining: float, progress: Progress
    ) -> list[_Outcome]:
        outcomes = [_Outcome(s) for s in wave]
        async with trio.open_nursery() as nursery:
            for outcome in outcomes:
                nursery.start_soon(self._ask_one, outcome, question, remaining, progress)
        return outcomes

    async def _ask_one(
        self, outcome: _Outcome, question: str, remaining: float, progress: Progress
    ) -> None:
        candidate = outcome.scored.candidate
        await progress({"stage": "asking", "agent": candidate.agent, "peer": candidate.peer_id,
                        "explore": outcome.scored.explore})
        message = Message(
            role="user", parts=(TextPart(question),), message_id=str(uuid.uuid4()),
            metadata={AGENT_KEY: candidate.agent, ASKER_KEY: self.self_id,
                      DEADLINE_KEY: max(1.0, remaining - MARGIN_S)},
        )
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

        try:
            with trio.fail_after(remaining):
                if candidate.peer_id == self.self_id:
                    final[0] = await self.tasks.run_task(message, on_event)
                else:
                    await self._remote(candidate.peer_id, message, on_event, remaining)
        except trio.TooSlowError:
            outcome.state, outcome.reason = "timeout", f"no answer within {remaining:.0f} s"
        except (DialError, trio.BrokenResourceError) as exc:
            outcome.state, outcome.reason = "failed", f"unreachable: {exc}"
        except ProtocolError as exc:
            outcome.state, outcome.reason = "malformed", str(exc)
        outcome.seconds = time.monotonic() - started
        if outcome.state == TaskState.COMPLETED and outcome.data.get("text"):
            outcome.quality = await self._quality(question, outcome.data)
        elif outcome.state == TaskState.COMPLETED:
            outcome.state, outcome.reason = "malformed", "completed without an answer"

    async def _remote(
        self, peer: str, message: Message, on_event: Callable[[StreamEvent], Awaitable[None]],
        remaining: float,
    ) -> None:
        async with self.host.open_stream(peer, A2A_PROTOCOL, timeout=min(10.0, remaining)) as s:
            request_id = message.message_id
            await write_frame(s, encode_request(request_id, SendStreamingMessage(message)),
                              timeout=10.0)
            decoder = FrameDecoder()
            while True:
                frame = await read_frame(s, decoder, timeout=remaining)
                if frame is None:
                    raise trio.BrokenResourceError("the agent's node closed the stream")
                reply = decode_response(frame)
                if isinstance(reply, Event):
                    await on_event(reply.event)
                elif isinstance(reply, ErrorReply):
                    raise ProtocolError(f"error {reply.code}: {reply.message}")
                elif isinstance(reply, End | Result):
                    return

    async def _quality(self, question: str, data: dict[str, Any]) -> float:
        """The asker's own estimate in [0, 1]: grounded in cited memory, and on topic."""
        grounded = 0.5 if data.get("citations") else 0.0
        text = str(data.get("body") or data.get("text") or "")
        similarity = await self.skills.similarity(question, text)
        return grounded + 0.5 * max(0.0, min(1.0, similarity))

    def _record_evidence(self, outcomes: list[_Outcome], chosen: int | None) -> None:
        now = time.time()
        for i, o in enumerate(outcomes):
            peer = o.scored.candidate.peer_id
            outcome = {"timeout": Outcome.TIMEOUT, "malformed": Outcome.MALFORMED}.get(
                o.state, Outcome.FAILED)
            if o.state == TaskState.COMPLETED:
                if i != chosen:
                    continue  # answered but not chosen: neither good nor bad evidence
                outcome = Outcome.ACCEPTED
            self.trust.record(peer, outcome, skill=o.scored.candidate.agent, now=now)

    def _result(
        self, won: _Outcome, explain: dict[str, Any], routing_s: float, total_s: float
    ) -> dict[str, Any]:
        candidate = won.scored.candidate
        if won.task_id:
            self.answered[won.task_id] = (candidate.peer_id, candidate.agent)
            while len(self.answered) > KEPT_ANSWERS:
                self.answered.popitem(last=False)
        retrieval_s = float(won.data.get("retrieval_s") or 0.0)
        llm_s = float(won.data.get("llm_s") or 0.0)
        explain["chosen"] = {"agent": candidate.agent, "peer": candidate.peer_id,
                             "why": f"best quality x trust ({won.quality:.2f} quality)"}
        return {
            "task_id": won.task_id,
            "agent": candidate.agent,
            "peer": candidate.peer_id,
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

    def rate(self, task_id: str, good: bool) -> dict[str, str]:
        found = self.answered.get(task_id)
        if found is None:
            raise AskError(f"no answer with task id {task_id} was taken on this node")
        peer, agent = found
        self.trust.record(peer, Outcome.RATED_GOOD if good else Outcome.RATED_BAD,
                          skill=agent, now=time.time())
        return {"task_id": task_id, "peer": peer, "agent": agent,
                "rating": "good" if good else "bad"}


def _skill_texts(card: AgentCard) -> list[str]:
    texts = [f"{s.name}. {s.description} {' '.join(s.tags)} {' '.join(s.examples)}"
             for s in card.skills]
    return texts or [f"{card.name}. {card.description}"]
