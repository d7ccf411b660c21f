"""TrustGraph: this node's evidence about its peers, their attestations, and global trust.

Local trust follows EigenTrust (Kamvar, Schlosser and Garcia-Molina, 2003): the node sums
the weights of its own outcomes with each peer into satisfactory and unsatisfactory
evidence, takes ``s_j = max(sat_j - unsat_j, 0)`` and normalises the row to sum 1; with no
positive evidence at all the row is the pre-trusted distribution. Evidence halves every
``half_life_s``, so a peer that turns bad cannot live on an old reputation.

Global trust is computed locally from this node's own row and the latest attestation of
every other author, by the power iteration ``t = (1 - alpha) C^T t + alpha p``, where
``p`` is uniform over the pre-trusted peers (the daemon passes its bootstrap peers and
itself). Rows that sum to less than 1, and peers that published nothing, give their
missing mass to ``p``. Trust therefore only flows out of the pre-trusted peers: a new
identity starts at 0, and a clique that only vouches for itself can hold at most
``(1 - alpha) / alpha`` times the trust that honest peers give it. Attestations not
refreshed within ``attestation_ttl_s`` are dropped. Routing reads :meth:`relative_trust`
and this node's own record, :meth:`experience`.

The evidence itself, its weights and its bounds are :mod:`meshnode.trust.evidence`.

Pure data, no I/O except :meth:`TrustGraph.save` and :meth:`TrustGraph.load`; the caller
passes the time of every event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from memory.files import write_atomic
from meshnode.errors import MeshnodeError
from meshnode.trust.evidence import Evidence, EvidenceTable, Outcome, finite
from protocols.trust import MAX_TRUST_PEERS, TrustAttestation
from protocols.trust import SUM_TOLERANCE as TOL

__all__ = ["Outcome", "TrustGraph", "TrustStateError"]
_STATE_VERSION = 1


class TrustStateError(MeshnodeError):
    """The persisted trust state cannot be read."""


@dataclass(frozen=True, slots=True)
class _Kept:
    attestation: TrustAttestation
    seen: float

    def view(self) -> dict[str, Any]:
        a = self.attestation
        return {"seq": a.seq, "issued": a.issued, "last_seen": self.seen, "peers": len(a.scores)}


def _power_iteration(
    src: NDArray[np.int_],
    dst: NDArray[np.int_],
    weights: NDArray[np.float64],
    p: NDArray[np.float64],
    alpha: float,
    eps: float,
    max_iterations: int,
) -> tuple[NDArray[np.float64], int, float]:
    """Iterate ``t = (1 - alpha) C^T t + alpha p`` from ``p``, C given as edges src -> dst.

    Returns (t, iterations, last L1 change). Mass of rows that sum to less than 1 (or are
    missing) goes to the anchor ``p``, so the total stays 1 and no peer receives trust that
    nobody trusted gave it.
    """
    t = p.copy()
    delta, iterations = float("inf"), 0
    while delta >= eps and iterations < max_iterations:
        spread = np.bincount(dst, weights=weights * t[src], minlength=len(p))
        leftover = t.sum() - spread.sum()
        new = (1.0 - alpha) * (spread + leftover * p) + alpha * p
        delta = float(np.abs(new - t).sum())
        t, iterations = new, iterations + 1
    return t / t.sum(), iterations, delta


class TrustGraph:
    def __init__(
        self,
        self_id: str,
        pre_trusted: Iterable[str],
        *,
        alpha: float = 0.15,
        max_authors: int = 1024,
        max_peers: int = 4096,
        max_skills: int = 64,
        half_life_s: float | None = 30 * 86_400.0,
        attestation_ttl_s: float = 3600.0,
        eps: float = 1e-9,
        max_iterations: int | None = None,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.self_id = self_id
        # Trust must be anchored somewhere: with no pre-trusted peers configured, on self.
        self.pre_trusted = frozenset(pre_trusted) or frozenset({self_id})
        self.alpha = alpha
        self.max_authors = max_authors
        self.max_peers = max_peers
        self.max_skills = max_skills
        self.half_life_s = half_life_s
        self.attestation_ttl_s = attestation_ttl_s
        self.eps = eps
        # Each step contracts the error by (1 - alpha) at worst (a periodic graph), so eps is
        # reached within ln(eps) / ln(1 - alpha) steps: 197 at alpha 0.1 (a fixed 200 was
        # too tight there). Twice that, unless told.
        self.max_iterations = max_iterations or (
            2 * math.ceil(math.log(eps) / math.log(1.0 - alpha)) if alpha < 1.0 else 2)
        self._evidence = EvidenceTable(max_peers=max_peers, max_skills=max_skills,
                                       half_life_s=half_life_s)
        self._attestations: dict[str, _Kept] = {}
        self._global: dict[str, float] = {}
        self._typical = 0.0  # the trust-weighted mean global trust of the other peers
        self._clock = 0.0  # the latest time any event carried; evidence is decayed to it
        self._seq = 0
        self.last_run: dict[str, Any] = {}

    # ---- evidence and local trust ---------------------------------------------------

    def record(self, peer: str, outcome: Outcome, *, skill: str | None = None, now: float) -> None:
        """Add one outcome of this node's own interaction with ``peer``."""
        if peer == self.self_id:
            return  # a node may not vouch for itself; its own agents are its operator's
        self._clock = max(self._clock, now)
        self._evidence.record(peer, outcome, skill=skill, now=now)

    def _pre_trusted_row(self) -> dict[str, float]:
        others = sorted(self.pre_trusted - {self.self_id})
        return {peer: 1.0 / len(others) for peer in others}

    def local_trust(self) -> dict[str, float]:
        """This node's normalised local trust (EigenTrust's ``c_ij``), summing to 1 or empty."""
        net: dict[str, float] = {}
        for peer, evidence in self._evidence.good():
            sat, unsat = evidence.tally.decayed(self._clock, self.half_life_s)
            if sat > unsat:
                net[peer] = sat - unsat
        total = sum(net.values())
        if total <= 0.0:
            return self._pre_trusted_row()
        return {peer: value / total for peer, value in net.items()}

    def attestation(self, now: float) -> TrustAttestation:
        """This node's local trust vector, ready to sign and publish (at most the top peers)."""
        self._clock = max(self._clock, now)
        row = self.local_trust()
        if len(row) > MAX_TRUST_PEERS:
            top = sorted(row.items(), key=lambda item: (-item[1], item[0]))[:MAX_TRUST_PEERS]
            row = dict(top)  # sums to less than 1: receivers give the rest to pre-trusted
        # Persisted, and at least the time in microseconds, so it grows across restarts.
        self._seq = max(self._seq + 1, int(now * 1_000_000))
        return TrustAttestation(author=self.self_id, seq=self._seq, issued=now, scores=row)

    def evidence_totals(self) -> dict[str, int]:
        """Evidence held, per outcome, summed over every peer (for the metrics)."""
        totals: dict[str, int] = {}
        for _, evidence in self._evidence.items():
            for outcome, count in evidence.counts.items():
                totals[outcome] = totals.get(outcome, 0) + count
        return totals

    @property
    def attestation_count(self) -> int:
        """How many authors' attestations are kept."""
        return len(self._attestations)

    def evidence_counts(self, peer: str) -> dict[str, int]:
        evidence = self._evidence.get(peer)
        return dict(evidence.counts) if evidence else {}

    @property
    def evidence_peers(self) -> tuple[int, int]:
        """How many peers are held with some good evidence, and with bad evidence only."""
        return self._evidence.sizes()

    def experience(self, peer: str, skill: str | None = None) -> float:
        """This node's own record with ``peer`` (and ``skill``) as a factor in (0, 2).

        1 with no evidence (or as much good as bad), towards 2 after good outcomes, towards
        0 after bad ones; the worse of the peer's and the skill's record counts. EigenTrust's
        local trust cannot tell a known liar from a stranger (both are 0), nor does global
        trust reflect this node's own finds until others vouch for them; routing needs both.
        """
        return self._evidence.experience(peer, skill, self._clock)

    # ---- attestations and global trust ------------------------------------------------

    def accept_attestation(self, attestation: TrustAttestation, now: float) -> bool:
        """Keep ``attestation`` if it is its author's newest; False if it was dropped.

        When ``max_authors`` are kept, a new author replaces the least trusted (then the
        stalest) one only if it is more trusted or fresher, so a flood of new identities
        can only displace each other, never the authors that carry trust.
        """
        author = attestation.author
        if author == self.self_id:
            return False
        kept = self._attestations.get(author)
        if kept is not None:
            if attestation.seq <= kept.attestation.seq:
                return False
        elif len(self._attestations) >= self.max_authors:
            victim = min(self._attestations, key=self._author_rank)
            if (self._global.get(author, 0.0), now) <= self._author_rank(victim):
                return False
            del self._attestations[victim]
        self._attestations[author] = _Kept(attestation, now)
        self._clock = max(self._clock, now)
        return True

    def _author_rank(self, author: str) -> tuple[float, float]:
        return self._global.get(author, 0.0), self._attestations[author].seen

    def compute_global(self) -> dict[str, float]:
        """Recompute global trust by power iteration; returns every known peer's value."""
        # An identity that stopped publishing is gone (or was dropped): its old praise must
        # not keep routing trust, e.g. from a Sybil's discarded identities to its new ones.
        cutoff = self._clock - self.attestation_ttl_s
        for author in [a for a, k in self._attestations.items() if k.seen < cutoff]:
            del self._attestations[author]
        rows = [(self.self_id, self.local_trust())]
        rows += [(a, k.attestation.scores) for a, k in sorted(self._attestations.items())]
        index: dict[str, int] = {}
        for peer in [self.self_id, *sorted(self.pre_trusted)]:
            index.setdefault(peer, len(index))
        src: list[int] = []
        dst: list[int] = []
        weights: list[float] = []
        for author, row in rows:
            src += [index.setdefault(author, len(index))] * len(row)
            dst += [index.setdefault(peer, len(index)) for peer in row]
            weights += row.values()
        p = np.zeros(len(index))
        p[[index[peer] for peer in self.pre_trusted]] = 1.0 / len(self.pre_trusted)
        edges = (np.array(src, dtype=np.int_), np.array(dst, dtype=np.int_), np.array(weights))
        t, iterations, delta = _power_iteration(
            *edges, p, self.alpha, self.eps, self.max_iterations
        )
        self._global = {peer: float(t[i]) for peer, i in index.items()}
        others = np.delete(t, index[self.self_id])
        held = float(others.sum())
        self._typical = float(others @ others) / held if held > 0.0 else 0.0
        self.last_run = {
            "at": self._clock,
            "iterations": iterations,
            "converged": delta < self.eps,
            "delta": delta,
            "peers": len(index),
            "edges": len(weights),
        }
        return dict(self._global)

    def global_trust(self, peer: str) -> float:
        """``peer``'s share of global trust at the last :meth:`compute_global` (sums to 1)."""
        return self._global.get(peer, 0.0)

    def relative_trust(self, peer: str) -> float:
        """Global trust as a multiple of the typical peer's, capped at 1 (self is 1).

        "Typical" is the trust-weighted mean over the other peers, so dust spread over many
        identities (a Sybil clique) neither counts as typical nor drags the bar down; and
        the pre-trusted peers, whose anchor share alone is ``alpha / len(pre_trusted)``, do
        not make every earned reputation look tiny as a comparison with the top one would.
        """
        if peer == self.self_id:
            return 1.0
        if self._typical <= 0.0:
            return 0.0
        return min(1.0, self._global.get(peer, 0.0) / self._typical)

    # ---- views and persistence --------------------------------------------------------

    def snapshot(self, limit: int = 500) -> dict[str, Any]:
        """The ``meshnode trust --json`` view: the ``limit`` most trusted peers and more."""
        local = self.local_trust()
        peers = (set(self._global) | {p for p, _ in self._evidence.good()}
                 | set(self._attestations) | set(local))
        # Peers with bad evidence only come last, worst first, after every other peer.
        ordered = sorted(peers, key=lambda p: (-self._global.get(p, 0.0), p))[:limit]
        suspects = sorted(self._evidence.suspects(), key=lambda p: (self.experience(p), p))
        ordered += [p for p in suspects if p not in peers][: max(0, limit - len(ordered))]
        listed = [
            {
                "peer_id": peer,
                "self": peer == self.self_id,
                "pre_trusted": peer in self.pre_trusted,
                "local": local.get(peer, 0.0),
                "global": self._global.get(peer, 0.0),
                "relative": self.relative_trust(peer),
                "experience": self.experience(peer),
                "evidence": self.evidence_counts(peer),
                "attestation": kept.view() if (kept := self._attestations.get(peer)) else None,
            }
            for peer in ordered
        ]
        return {
            "self_id": self.self_id,
            "pre_trusted": sorted(self.pre_trusted),
            "alpha": self.alpha,
            "half_life_s": self.half_life_s,
            "authors": len(self._attestations),
            "known_peers": len(peers | set(suspects)),
            "suspects": len(suspects),
            "last_run": dict(self.last_run),
            "peers": listed,
        }

    def to_json(self) -> dict[str, Any]:
        """Evidence, attestations and the sequence number: what must survive a restart."""
        # Iterates over copies (each ``list(...)`` of a dict is one step under the GIL), so
        # a save in a worker thread cannot fail with "dictionary changed size" while the
        # event loop keeps recording; a value may be one event old, which is harmless.
        return {
            "version": _STATE_VERSION,
            "self_id": self.self_id,
            "seq": self._seq,
            "clock": self._clock,
            "evidence": {peer: e.to_json() for peer, e in self._evidence.items()},
            "attestations": {
                author: {"seen": k.seen, "body": k.attestation.to_body()}
                for author, k in list(self._attestations.items())
            },
        }

    @classmethod
    def from_json(
        cls, data: Any, *, self_id: str, pre_trusted: Iterable[str], **options: Any
    ) -> TrustGraph:
        """Restore :meth:`to_json` output; ``options`` are the constructor's keywords.

        The configuration (pre-trusted peers, alpha, bounds) comes from the caller, not the
        file, so an operator's change takes effect on restart. Global trust is recomputed.
        """
        graph = cls(self_id, pre_trusted, **options)
        try:
            if data["version"] != _STATE_VERSION:
                raise ValueError(f"unknown version {data['version']!r}")
            graph._seq = int(data["seq"])
            graph._clock = finite(data["clock"])
            for peer, e in data["evidence"].items():
                graph._evidence.add(str(peer), Evidence.from_json(e))
            for author, k in data["attestations"].items():
                body = k["body"]
                scores = {str(p): finite(s) for p, s in body["scores"].items()}
                # NaN or a negative score would poison the power iteration for every peer.
                if not all(0 <= v <= 1 for v in scores.values()) or sum(scores.values()) > 1 + TOL:
                    raise ValueError(f"attestation of {author} has scores out of range")
                attestation = TrustAttestation(
                    str(body["author"]), int(body["seq"]), finite(body["issued"]), scores
                )
                graph._attestations[str(author)] = _Kept(attestation, finite(k["seen"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TrustStateError(f"unreadable trust state ({exc!r})") from None
        # The identity may have changed since (``meshnode init --force``): a node must hold
        # no evidence about, nor an attestation from, itself.
        graph._evidence.discard(self_id)
        graph._attestations.pop(self_id, None)
        graph.compute_global()
        return graph

    def dumps(self) -> str:
        """:meth:`to_json` as the text :meth:`save` writes."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    def save(self, path: Path, state: str | None = None) -> None:
        """Write atomically (``state``, if :meth:`dumps` made it already), so a crash never
        leaves half a state file."""
        write_atomic(path, state if state is not None else self.dumps())

    @classmethod
    def load(
        cls, path: Path, *, self_id: str, pre_trusted: Iterable[str], **options: Any
    ) -> TrustGraph:
        """The graph saved at ``path``, or a new empty one if there is no such file."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_json(data, self_id=self_id, pre_trusted=pre_trusted, **options)
        except FileNotFoundError:
            return cls(self_id, pre_trusted, **options)
        except (OSError, ValueError, TrustStateError) as exc:  # JSONDecodeError is a ValueError
            raise TrustStateError(f"{path}: {exc}; move it away to start trust afresh") from None
