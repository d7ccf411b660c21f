"""This node's evidence about its peers: outcomes, their weights, decay, and bounded tables.

Each outcome of this node's own dealings with a peer has a weight (:class:`Outcome`);
positive weights sum into satisfactory evidence, negative ones into unsatisfactory, both
halving every ``half_life_s``. Per peer (and per skill) the two sums make its local trust
(in meshnode.trust.graph) and its :meth:`EvidenceTable.experience`.

The table is bounded without letting new identities push out the evidence that carries
trust: peers with some satisfactory evidence are kept in one table of ``max_peers``,
where the worst record (then the stalest) makes room; peers with only unsatisfactory
evidence (a malformed hello, refused work) go to a second table as big, where the stalest
makes room. A flood of Sybils with one bad message each can therefore only displace each
other.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    RATED_GOOD = "rated_good"
    RATED_BAD = "rated_bad"
    FAILED = "failed"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    #: The peer went over one of this node's budgets (streams, requests, tasks).
    REFUSED = "refused"

    @property
    def weight(self) -> float:
        """Positive weights count as satisfactory evidence, negative ones as unsatisfactory."""
        return _WEIGHTS[self]


_WEIGHTS = {
    Outcome.ACCEPTED: 1.0,
    Outcome.RATED_GOOD: 2.0,  # a person confirmed it: stronger than an automatic accept
    # A wrong answer costs its asker more than a right one helps, and most go unnoticed
    # (counted as accepted): at -4 a liar caught only 40 % of the time still ends net
    # negative (0.6 x 1 - 0.4 x 4 < 0).
    Outcome.RATED_BAD: -4.0,
    Outcome.FAILED: -1.0,
    Outcome.TIMEOUT: -0.5,  # often the network's fault rather than the peer's
    Outcome.MALFORMED: -2.0,
    # Record this against the peer on the authenticated connection that delivered the
    # message, never against the signer it claims: anyone can claim a name.
    Outcome.BAD_SIGNATURE: -4.0,
    # Reported at most once per peer every few seconds, however hard it floods: the
    # flooder's cost, without letting a burst sink an honest but busy peer.
    Outcome.REFUSED: -0.5,
}


@dataclass(slots=True)
class Tally:
    """Satisfactory and unsatisfactory weight, decayed to time ``at``."""

    sat: float = 0.0
    unsat: float = 0.0
    at: float = 0.0

    def decayed(self, now: float, half_life_s: float | None) -> tuple[float, float]:
        if half_life_s is None or now <= self.at:
            return self.sat, self.unsat
        factor = 0.5 ** ((now - self.at) / half_life_s)
        return self.sat * factor, self.unsat * factor

    def add(self, weight: float, now: float, half_life_s: float | None) -> None:
        self.sat, self.unsat = self.decayed(now, half_life_s)
        self.at = max(self.at, now)
        if weight > 0:
            self.sat += weight
        else:
            self.unsat -= weight

    def experience(self, now: float, half_life_s: float | None) -> float:
        # Twice the Beta(1, 1) posterior mean of satisfaction: 1 with no evidence, towards
        # 2 with good evidence, towards 0 with bad.
        sat, unsat = self.decayed(now, half_life_s)
        return 2.0 * (sat + 1.0) / (sat + unsat + 2.0)


@dataclass(slots=True)
class Evidence:
    """Everything this node knows first-hand of one peer."""

    tally: Tally
    last: float
    counts: dict[str, int] = field(default_factory=dict)  # never decayed: for display
    skills: dict[str, Tally] = field(default_factory=dict)

    def standing(self, now: float, half_life_s: float | None) -> tuple[float, float]:
        """What eviction compares: net satisfaction now, then how recent."""
        sat, unsat = self.tally.decayed(now, half_life_s)
        return sat - unsat, self.last

    def to_json(self) -> dict[str, Any]:
        return {
            "tally": [self.tally.sat, self.tally.unsat, self.tally.at],
            "last": self.last,
            "counts": dict(self.counts),
            "skills": {s: [t.sat, t.unsat, t.at] for s, t in list(self.skills.items())},
        }

    @classmethod
    def from_json(cls, e: Any) -> Evidence:
        """Raises KeyError, TypeError, ValueError or AttributeError for a bad entry."""
        evidence = cls(_tally(e["tally"]), last=finite(e["last"]))
        evidence.counts = {str(k): int(v) for k, v in e["counts"].items()}
        evidence.skills = {str(s): _tally(t) for s, t in e["skills"].items()}
        return evidence


def finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _tally(values: Any) -> Tally:
    sat, unsat, at = map(finite, values)
    if sat < 0.0 or unsat < 0.0:
        raise ValueError("negative evidence")
    return Tally(sat, unsat, at)


class EvidenceTable:
    """The evidence about at most ``max_peers`` peers with some good evidence, and as many
    with bad evidence only (see the module's docstring)."""

    def __init__(self, *, max_peers: int, max_skills: int, half_life_s: float | None) -> None:
        self.max_peers = max_peers
        self.max_skills = max_skills
        self.half_life_s = half_life_s
        #: Peers with some satisfactory evidence.
        self._good: dict[str, Evidence] = {}
        #: Peers with only unsatisfactory evidence, stalest first.
        self._suspects: OrderedDict[str, Evidence] = OrderedDict()

    def record(self, peer: str, outcome: Outcome, *, skill: str | None, now: float) -> None:
        evidence = self._good.get(peer)
        if evidence is None:
            evidence = self._suspects.pop(peer, None) or Evidence(Tally(at=now), last=now)
            if outcome.weight > 0:
                self._keep(peer, evidence, now)
            else:
                self._suspect(peer, evidence)
        evidence.tally.add(outcome.weight, now, self.half_life_s)
        evidence.last = max(evidence.last, now)
        evidence.counts[outcome.value] = evidence.counts.get(outcome.value, 0) + 1
        if skill is not None:
            tally = evidence.skills.get(skill)
            if tally is None and len(evidence.skills) < self.max_skills:
                tally = evidence.skills[skill] = Tally(at=now)
            if tally is not None:
                tally.add(outcome.weight, now, self.half_life_s)

    def _keep(self, peer: str, evidence: Evidence, now: float) -> None:
        """Into the table of peers with good evidence; the worst record (then the stalest)
        makes room."""
        if len(self._good) >= self.max_peers:
            worst = min(self._good, key=lambda p: self._good[p].standing(now, self.half_life_s))
            del self._good[worst]
        self._good[peer] = evidence

    def _suspect(self, peer: str, evidence: Evidence) -> None:
        """Into the table of peers with only bad evidence; the stalest makes room."""
        self._suspects[peer] = evidence
        while len(self._suspects) > self.max_peers:
            self._suspects.popitem(last=False)

    def add(self, peer: str, evidence: Evidence) -> None:
        """Restore a saved peer's evidence into the table it belongs to."""
        if evidence.tally.sat > 0.0:
            self._good[peer] = evidence
        else:
            self._suspect(peer, evidence)

    def discard(self, peer: str) -> None:
        self._good.pop(peer, None)
        self._suspects.pop(peer, None)

    def get(self, peer: str) -> Evidence | None:
        return self._good.get(peer) or self._suspects.get(peer)

    def good(self) -> Iterator[tuple[str, Evidence]]:
        """The peers with some good evidence (the only ones local trust can name)."""
        return iter(list(self._good.items()))

    def items(self) -> list[tuple[str, Evidence]]:
        # Copies (one step under the GIL each), so that a worker thread saving the state
        # cannot fail with "dictionary changed size" while the event loop records.
        return list(self._good.items()) + list(self._suspects.items())

    def suspects(self) -> list[str]:
        return list(self._suspects)

    def sizes(self) -> tuple[int, int]:
        """How many peers are held with some good evidence, and with bad evidence only."""
        return len(self._good), len(self._suspects)

    def __contains__(self, peer: object) -> bool:
        return peer in self._good or peer in self._suspects

    def experience(self, peer: str, skill: str | None, now: float) -> float:
        evidence = self.get(peer)
        if evidence is None:
            return 1.0
        factor = evidence.tally.experience(now, self.half_life_s)
        tally = evidence.skills.get(skill) if skill is not None else None
        if tally is not None:
            factor = min(factor, tally.experience(now, self.half_life_s))
        return factor
