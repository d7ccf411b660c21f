"""What the agents asked in one wave answered, and which answer the asker takes.

:class:`AgentOutcome` is one agent's outcome (its state, its answer data and the asker's
check of it). :func:`choose` takes the answer with the best quality x trust, given by the
most relevant agent that says the same (:func:`meshnode.ask.policy.corroborated_choice`);
:func:`corroborating` lists the other answers that say the same (they share its verdict);
:func:`failure_evidence` is what a wave's failures say about the agents that failed;
:func:`taken_result` is what an ask returns for the answer taken, and :func:`lesson` what
may be learnt from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from meshnode.ask.learning import Lesson
from meshnode.ask.policy import Choice, RoutingPolicy, Scored, choose_answer, corroborated_choice
from meshnode.ask.quality import AnswerQuality
from meshnode.trust.evidence import Outcome
from protocols.a2a import TaskState

#: The agent name shown for a neighbour a question was forwarded to.
FORWARDED = "(forwarded)"


@dataclass(slots=True)
class AgentOutcome:
    scored: Scored
    state: str = "failed"
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    quality: float | None = None
    check: AnswerQuality | None = None
    seconds: float = 0.0

    def explain(self) -> dict[str, Any]:
        return {"agent": self.scored.candidate.agent, "peer": self.scored.candidate.peer_id,
                "state": self.state, "reason": self.reason, "quality": self.quality,
                **(self.check.figures() if self.check else {}),
                "seconds": round(self.seconds, 3)}

    def says_as(self, other: AgentOutcome) -> bool:
        """Whether this answer corroborates ``other``: it says nothing beyond it, from its
        own node's records (AnswerQuality.agrees, rests_on_own; a forwarded answer, whose
        agent is not known here, corroborates nothing)."""
        return (self.check is not None and other.check is not None
                and self.scored.candidate.agent != FORWARDED and self.check.agrees(other.check)
                and self.check.rests_on_own(self.scored.candidate.peer_id))


def choose(outcomes: list[AgentOutcome], *, min_quality: float, policy: RoutingPolicy,
           explore: bool = True) -> Choice:
    """The answer to take: by quality x trust, given by the most relevant agent that says
    the same. Letting another agent than the most trusted give it is a form of
    exploration: not when the operator turned exploration off (``explore``)."""
    answers = [(o.scored.candidate, o.quality) for o in outcomes]
    choice = choose_answer(answers, min_quality=min_quality, policy=policy)
    if choice.index is None or not explore:
        return choice
    best = outcomes[choice.index]
    agrees = [o.says_as(best) for o in outcomes]
    return corroborated_choice(choice, answers, agrees, min_quality=min_quality, policy=policy)


def corroborating(won: AgentOutcome, outcomes: list[AgentOutcome]) -> tuple[tuple[str, str], ...]:
    """(peer, agent) of the other answers of the wave that say the same as the one taken."""
    return tuple((o.scored.candidate.peer_id, o.scored.candidate.agent) for o in outcomes
                 if o is not won and o.says_as(won))


def failure_evidence(outcomes: list[AgentOutcome]) -> Iterator[tuple[str, Outcome, str]]:
    """(peer, outcome, skill) for each agent whose failure is evidence against it."""
    for o in outcomes:
        if o.state in (TaskState.COMPLETED, "busy"):
            # An answer not chosen is neither good nor bad evidence; the chosen one counts
            # as accepted only once its rating window passes without a bad rating. A
            # peer's budget refusing us is mostly our own doing.
            continue
        outcome = {"timeout": Outcome.TIMEOUT, "malformed": Outcome.MALFORMED}.get(
            o.state, Outcome.FAILED)
        yield o.scored.candidate.peer_id, outcome, o.scored.candidate.agent


def lesson(question: str, won: AgentOutcome) -> Lesson:
    """What may become a solution if the answer taken is accepted: its supported text."""
    check = won.check
    assert check is not None and won.task_id is not None
    return Lesson(
        question=question, task_id=won.task_id, peer=answerer(won)[0],
        agent=answerer(won)[1], text=str(won.data.get("text", "")),
        solution=check.supported_text(), sources=tuple(check.sources()),
        cited=tuple(i for i in check.cited if i),
        learnable=won.data.get("learnable", True) is not False,
    )


def answerer(won: AgentOutcome) -> tuple[str, str]:
    """(peer, agent) that really answered: a forwarded question was answered further away."""
    return (str(won.data.get("peer") or won.scored.candidate.peer_id),
            str(won.data.get("agent") or won.scored.candidate.agent))


def taken_result(won: AgentOutcome, explain: dict[str, Any], routing_s: float,
                 total_s: float, corroborated: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    check = won.check
    assert check is not None  # only checked answers have a quality to be chosen by
    peer, agent = answerer(won)
    retrieval_s = float(won.data.get("retrieval_s") or 0.0)
    llm_s = float(won.data.get("llm_s") or 0.0)
    explain["chosen"] = {"agent": agent, "peer": peer, "via": won.scored.candidate.peer_id,
                         "why": f"best quality x trust ({won.quality:.2f} quality)",
                         "corroborated_by": [f"{a}@{p}" for p, a in corroborated],
                         "checks": check.explain()}
    return {
        "task_id": won.task_id,
        "agent": agent,
        "peer": peer,
        # The asker's own figures replace any the answering node may have claimed.
        "answer": {**won.data, **check.figures()},
        "timings": {
            "routing_s": round(routing_s, 4),
            "retrieval_s": round(retrieval_s, 4),
            "llm_s": round(llm_s, 4),
            "network_s": round(max(0.0, won.seconds - retrieval_s - llm_s), 4),
            "total_s": round(total_s, 4),
        },
        "explain": explain,
    }
