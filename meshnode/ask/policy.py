"""Routing decisions: whom to ask, which answer to take, where to forward.

Pure functions over figures the daemon gathers (skill relevance from embeddings, trust from
the TrustGraph, load from presence, RTT from pings). Every decision carries an explanation
that ``meshnode ask --explain`` prints.

A relevant candidate (``relevance >= min_relevance``) scores

    relevance ** relevance_exp
    * experience
    * max(trust_floor, trust) ** trust_exp
    * 1 / (1 + load)
    * 1 / (1 + rtt_ms / rtt_scale_ms)

- ``relevance`` is squared by default so that a clearly better-fitting expert beats a
  slightly more trusted generalist;
- ``trust`` is global trust as a multiple of the typical peer's, capped at 1
  (TrustGraph.relative_trust). Below ``trust_floor`` it counts as the floor: that much is
  what a colluding clique spreads over its identities, so it must not lift them above
  strangers, and a stranger's score must not be 0 or nobody new would ever be asked;
- ``experience`` (TrustGraph.experience, 0..2) is this node's own record with the peer:
  1 for none, towards 2 after good outcomes, towards 0 after bad ones. Global trust gives a
  known liar and a stranger the same 0, and lags behind what this node found itself;
- load and latency only break near-ties: answers take seconds, a ping milliseconds.

``relevance`` is what :func:`relevance` makes of two signals: how well the agent's skills
fit the question (embedding similarity, as a share of the best agent's) and how relevant
the knowledge its node authored is (from the asking node's own replica of memory, as a
share of the best holder's); their mean when any node holds relevant knowledge, else the
skills alone. So, in a fresh mesh where nobody has any trust yet, relevance decides.

Exploration: with probability ``explore`` per question, one relevant newcomer (trust below
``newcomer_trust``, no bad experience) is asked *alongside* the first wave (see
:func:`waves`), and so is the most relevant candidate if its score left it out, so that
new honest agents can earn trust without the asker ever depending on an unproven answer.
Newcomers are drawn in proportion to their score without the trust factor, times their
trust plus ``explore_floor``: one that others already vouch for is explored more often
than an identity nobody vouches for. There is nothing to explore while no relevant
candidate has earned trust or experience (a fresh mesh): then the ranking stands.

Probation: a candidate vouched for (a good record here, ``experience`` above 1, or global
trust of at least ``trust_floor``, more than a clique spreads over its identities), with no
bad record here, whose trust is still below ``proven_trust``, is *on probation*
(:attr:`Scored.probation`, whenever exploration is on). Of those the score left out of the
first wave, the ``probation_seats`` (2) with the most relevance per unit of evidence held
(trust x experience: the least proven for their fit, UCB-like) are asked in it too, on
every question. Global
trust grows with the volume of vouched answers, so a newcomer that answered well a few
times still scores far below the experts vouched for since the mesh began: without the
seat it would be asked again only when chance explores it, and stay unproven. It is only
asked *beside* the trusted candidates, so it answers only by saying the same as them
(:func:`corroborated_choice`), and so earns its record; an identity nobody vouches for (a
Sybil's fresh one) never gets the seat.

Answers are taken by quality x trust x experience (:func:`choose_answer`); answers within
``near_tie`` of the best count as tied, and a tie goes to the more relevant agent, then the
nearer one, never to chance. Trust decides what the answer is; among the agents whose
answers say the same (:func:`corroborated_choice`), the most relevant one gives it. Answers
that agree with the one taken share its verdict (the asker records them as corroborated):
an honest expert asked beside a more trusted one earns trust by agreeing with it, instead
of staying unproven forever; an answer that agrees with nothing earns nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Candidate:
    agent: str
    peer_id: str
    relevance: float  # skill relevance to the question, 0..1
    trust: float  # global trust as a multiple of the typical peer's, capped: 0..1
    load: float  # from presence: 0 idle, 1 busy, more overloaded
    rtt_ms: float | None  # None until the peer was pinged
    experience: float = 1.0  # this node's own record with the peer: 0..2, 1 = none


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    relevance_exp: float = 2.0
    trust_exp: float = 1.0
    trust_floor: float = 0.02
    rtt_scale_ms: float = 1000.0
    unknown_rtt_ms: float = 250.0
    newcomer_trust: float = 0.05
    near_tie: float = 0.1
    explore_floor: float = 0.01
    proven_trust: float = 0.5


DEFAULT_POLICY = RoutingPolicy()


def _unit(x: float) -> float:
    """Clamp to [0, 1]; NaN counts as 0, so bad input can only lower a score."""
    return min(1.0, max(0.0, x)) if not math.isnan(x) else 0.0


def _nonneg(x: float) -> float:
    return max(0.0, x) if not math.isnan(x) else 0.0


def _trust(candidate: Candidate, policy: RoutingPolicy) -> float:
    return float(max(policy.trust_floor, _unit(candidate.trust)) ** policy.trust_exp)


def _experience(candidate: Candidate) -> float:
    return min(2.0, _nonneg(candidate.experience))


@dataclass(frozen=True, slots=True)
class Scored:
    candidate: Candidate
    score: float
    factors: dict[str, float]
    explore: bool = False
    probation: bool = False  # a good record here, not yet the trust to rank: see waves()

    def explain(self) -> dict[str, Any]:
        return {
            "agent": self.candidate.agent,
            "peer_id": self.candidate.peer_id,
            "score": self.score,
            "factors": dict(self.factors),
            "explore": self.explore,
            "probation": self.probation,
        }


def score(candidate: Candidate, policy: RoutingPolicy = DEFAULT_POLICY) -> Scored:
    """The documented score of one candidate, with each factor for the explanation."""
    rtt = candidate.rtt_ms if candidate.rtt_ms is not None else policy.unknown_rtt_ms
    factors = {
        "relevance": _unit(candidate.relevance) ** policy.relevance_exp,
        "experience": _experience(candidate),
        "trust": _trust(candidate, policy),
        "load": 1.0 / (1.0 + _nonneg(candidate.load)),
        "latency": 1.0 / (1.0 + _nonneg(rtt) / policy.rtt_scale_ms),
    }
    return Scored(candidate, math.prod(factors.values()), factors)


def _is_newcomer(candidate: Candidate, policy: RoutingPolicy) -> bool:
    return _unit(candidate.trust) < policy.newcomer_trust and _experience(candidate) >= 1.0


def relevance(skill: float, knowledge: float | None) -> float:
    """One agent's relevance from its skills' and its node's knowledge's (each 0..1, as a
    share of the best candidate's); ``knowledge`` is None when no node holds any."""
    if knowledge is None:
        return _unit(skill)
    return (_unit(skill) + _unit(knowledge)) / 2.0


def _established(candidate: Candidate, policy: RoutingPolicy) -> bool:
    return _unit(candidate.trust) >= policy.newcomer_trust or _experience(candidate) > 1.0


def _on_probation(candidate: Candidate, policy: RoutingPolicy) -> bool:
    # Vouched for: a good record here, or more trust than a clique's dust (the floor).
    experience, trust = _experience(candidate), _unit(candidate.trust)
    vouched = experience > 1.0 or trust >= policy.trust_floor
    return vouched and experience >= 1.0 and trust < policy.proven_trust


def rank(
    candidates: Sequence[Candidate],
    *,
    min_relevance: float,
    explore: float,
    rng: random.Random,
    policy: RoutingPolicy = DEFAULT_POLICY,
) -> list[Scored]:
    """The relevant candidates, best first; empty when none is relevant (then forward).

    With probability ``explore`` one newcomer, drawn in proportion to its score without
    the trust factor times (its trust + ``explore_floor``), is moved to the front and
    marked ``explore``. With ``explore`` above 0, the candidates on probation (vouched
    for, no bad record here, trust below ``proven_trust``) are marked ``probation``.
    """
    relevant = [score(c, policy) for c in candidates if _unit(c.relevance) >= min_relevance]
    if explore > 0.0:
        relevant = [Scored(s.candidate, s.score, s.factors, probation=True)
                    if _on_probation(s.candidate, policy) else s for s in relevant]
    # Ties (e.g. a fresh mesh where all are unknown) go to the lower peer ID, not to
    # whichever order the peer table happened to list them in.
    relevant.sort(key=lambda s: (-s.score, s.candidate.peer_id, s.candidate.agent))
    newcomers = [s for s in relevant if _is_newcomer(s.candidate, policy)]
    established = any(_established(s.candidate, policy) for s in relevant)
    if not newcomers or not established or rng.random() >= explore:
        return relevant
    weights = [math.prod(v for k, v in s.factors.items() if k != "trust")
               * (_unit(s.candidate.trust) + policy.explore_floor) for s in newcomers]
    if sum(weights) > 0.0:
        pick = rng.choices(newcomers, weights=weights)[0]
    else:
        pick = rng.choice(newcomers)
    explored = Scored(pick.candidate, pick.score, pick.factors, explore=True,
                      probation=pick.probation)
    return [explored, *(s for s in relevant if s is not pick)]


def _probation_need(s: Scored) -> float:
    # What asking it would teach, UCB-like: its fit over the evidence already held, global
    # (its trust factor) and this node's own (its experience, which grows with every good
    # outcome here), so that the least proven relevant candidate gets the seat, not one
    # this node already knows well or one nearly proven anyway.
    held = s.factors["trust"] * s.factors["experience"]
    return s.factors["relevance"] / held if held > 0.0 else 0.0


#: Candidates on probation asked in the first wave. bench_trust.py at 70 % malicious, 4
#: seeds: one seat gives honest newcomers 47 % of their fair share, two give 93 % (liars
#: 0.0 % and 0.2 % of the answers): each seat is one more call per question.
PROBATION_SEATS = 2


def waves(ranked: Sequence[Scored], *, fanout: int, max_waves: int,
          probation_seats: int = PROBATION_SEATS) -> list[list[Scored]]:
    """Groups to ask in turn, each in parallel, until one yields an acceptable answer.

    At most ``max_waves`` groups of ``fanout`` by score. Beyond ``fanout``, the first
    group also holds the exploration pick, the ``probation_seats`` neediest candidates on
    probation and the most relevant candidate, if the score left them out: asked
    beside the trusted candidates, they can corroborate their answer (and then answer, see
    :func:`corroborated_choice`) without the asker depending on them.
    """
    if fanout < 1 or max_waves < 1:
        raise ValueError("fanout and max_waves must be at least 1")
    rest = list(ranked)
    first = [rest.pop(0)] if rest and rest[0].explore else []
    first, rest = rest[:fanout] + first, rest[fanout:]
    for _ in range(probation_seats):
        on_probation = [s for s in rest if s.probation]
        if not on_probation:
            break
        chosen = max(on_probation, key=_probation_need)  # the best ranked if tied
        first.append(chosen)
        rest = [s for s in rest if s is not chosen]  # by identity: equal ones may repeat
    if rest:
        fittest = max(rest, key=lambda s: _unit(s.candidate.relevance))  # the first if tied
        if _unit(fittest.candidate.relevance) > max(_unit(s.candidate.relevance)
                                                    for s in first):
            first.append(fittest)
            rest.remove(fittest)
    groups = [first] if first else []
    while rest and len(groups) < max_waves:
        groups.append(rest[:fanout])
        del rest[:fanout]
    return groups


@dataclass(frozen=True, slots=True)
class Choice:
    """Which answer to take (``index`` into the answers, None to fail over) and why."""

    index: int | None
    scores: list[float | None]
    reasons: list[str]

    def explain(self) -> dict[str, Any]:
        return {"chosen": self.index, "scores": list(self.scores), "reasons": list(self.reasons)}


def choose_answer(
    answers: Sequence[tuple[Candidate, float | None]],
    *,
    min_quality: float = 0.0,
    policy: RoutingPolicy = DEFAULT_POLICY,
) -> Choice:
    """Take the answer with the highest quality x trust (x experience, as in the score);
    near-ties (within ``policy.near_tie``) go to the most relevant agent, then the nearest.

    ``quality`` is the asking node's estimate in [0, 1], None when the agent failed or
    timed out. Answers of quality 0 or below ``min_quality`` are never taken; with none
    left the caller fails over to the next wave.
    """
    scores: list[float | None] = []
    reasons: list[str] = []
    for candidate, quality in answers:
        if quality is None:
            scores.append(None)
            reasons.append("no answer")
        elif math.isnan(quality) or quality < min_quality or quality <= 0.0:
            scores.append(None)
            reasons.append(f"quality {quality:.2f} below {min_quality:.2f}")
        else:
            trust = _trust(candidate, policy)
            value = _unit(quality) * trust * _experience(candidate)
            scores.append(value)
            reasons.append(f"quality {quality:.2f} x trust {trust:.3f}")
    valid = [(value, i) for i, value in enumerate(scores) if value is not None]
    if not valid:
        return Choice(None, scores, reasons)
    top = max(value for value, _ in valid)
    tied = [i for value, i in valid if value >= (1.0 - policy.near_tie) * top]

    def tie_break(i: int) -> tuple[float, float, int]:
        candidate = answers[i][0]
        rtt = candidate.rtt_ms if candidate.rtt_ms is not None else policy.unknown_rtt_ms
        return (-_unit(candidate.relevance), _nonneg(rtt), i)

    best = min(tied, key=tie_break)
    if len(tied) > 1:
        reasons[best] += " (near-tie: the most relevant, then the nearest)"
    return Choice(best, scores, reasons)


def corroborated_choice(
    choice: Choice, answers: Sequence[tuple[Candidate, float | None]],
    agrees: Sequence[bool], *, min_quality: float = 0.0, policy: RoutingPolicy = DEFAULT_POLICY,
) -> Choice:
    """Who gives the answer ``choice`` took: of the acceptable answers that agree with it
    (``agrees[i]``: says the same), the most relevant agent's, then the nearest one's.

    Trust decides *what* the answer is, relevance *who* gives it: an expert, a newcomer or
    an explored candidate that says what the trusted candidates say answers the questions
    it fits best, and so earns trust of its own, instead of the most trusted generalist
    answering everything. An answer that agrees with nothing, or from an agent with more
    bad than good outcomes with this node, is never taken this way.
    """
    if choice.index is None:
        return choice
    # Not an agent with a bad record here: a liar caught before could otherwise quote the
    # truth when it can and earn back, as a corroborator, the trust it lost.
    agreeing = [i for i, (candidate, quality) in enumerate(answers)
                if i == choice.index or (agrees[i] and quality is not None
                                         and quality >= min_quality and quality > 0.0
                                         and _experience(candidate) >= 1.0)]

    def fit(i: int) -> tuple[float, float, int]:
        candidate = answers[i][0]
        rtt = candidate.rtt_ms if candidate.rtt_ms is not None else policy.unknown_rtt_ms
        return (-_unit(candidate.relevance), _nonneg(rtt), i)

    best = min(agreeing, key=fit)
    if best == choice.index:
        return choice
    reasons = list(choice.reasons)
    reasons[best] += f" (says the same as answer {choice.index}, and fits the question best)"
    return Choice(best, list(choice.scores), reasons)


@dataclass(frozen=True, slots=True)
class Forwarding:
    """Where to forward a question no known agent fits, and what to send along."""

    targets: list[str]
    hops: int  # the hop count the forwarded question carries
    visited: frozenset[str]  # the visited set it carries: the old one plus the targets
    reason: str

    def explain(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "hops": self.hops,
            "visited": sorted(self.visited),
            "reason": self.reason,
        }


def forward_targets(
    neighbours_trust: Mapping[str, float],
    visited: Collection[str],
    hop_limit: int,
    hops: int,
    fanout: int,
) -> Forwarding:
    """The ``fanout`` most trusted neighbours not yet visited, unless the hop limit is hit.

    ``visited`` should include this node. The targets join the visited set too, so that
    sibling branches do not ask the same node twice.
    """
    seen = frozenset(visited)
    if hops >= hop_limit:
        return Forwarding([], hops, seen, f"hop limit {hop_limit} reached")
    fresh = [peer for peer in neighbours_trust if peer not in seen]
    fresh.sort(key=lambda peer: (-_unit(neighbours_trust[peer]), peer))
    targets = fresh[: max(0, fanout)]
    if not targets:
        return Forwarding([], hops, seen, "every neighbour has seen the question")
    reason = f"no relevant agent; forwarding to the {len(targets)} most trusted neighbours"
    return Forwarding(targets, hops + 1, seen | set(targets), reason)
