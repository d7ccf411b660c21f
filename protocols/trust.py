"""Trust attestations: a node's signed local trust vector, gossiped on the trust topic.

An attestation is the body of an envelope of type ``trust`` published on
``topic(network_id, "trust")``. It carries the author's normalised local trust in other peers
(EigenTrust's row ``c_i``): each score in [0, 1] and their sum at most 1. A sum below 1 is
allowed because an author with more peers than :data:`MAX_TRUST_PEERS` sends only its top
entries; receivers give the missing mass to their pre-trusted peers. ``seq`` increases with
every attestation of one author, so receivers keep only the newest whatever the gossip order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols.codec import Fields
from protocols.envelope import Envelope
from protocols.errors import DecodeError
from protocols.peerid import MAX_PEER_ID_LEN, validate_peer_id

TRUST = "trust"
#: Most peers one attestation may score; receivers keep ``max_authors`` of these vectors.
MAX_TRUST_PEERS = 1024
#: Room for MAX_TRUST_PEERS entries (a 52-character ID and a float64 take 63 bytes).
MAX_TRUST_SIZE = 80 * 1024
#: Rounding slack on the sum of scores: floats normalised to 1 may add up to 1 + a few ulp.
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class TrustAttestation:
    author: str
    seq: int
    issued: float
    scores: dict[str, float]

    def to_body(self) -> dict[str, Any]:
        return {
            "author": self.author,
            "seq": self.seq,
            "issued": float(self.issued),
            "scores": {peer: float(score) for peer, score in self.scores.items()},
        }


def check_scores(author: str, scores: dict[Any, Any], what: str = "trust.scores") -> None:
    """Raise DecodeError unless ``scores`` is a valid trust vector of ``author``.

    Shared by the decoder and by authors, so a node never publishes what peers would refuse.
    """
    if len(scores) > MAX_TRUST_PEERS:
        raise DecodeError(f"{what}: {len(scores)} peers exceeds {MAX_TRUST_PEERS}")
    total = 0.0
    for peer, score in scores.items():
        if not isinstance(peer, str) or len(peer) > MAX_PEER_ID_LEN:
            raise DecodeError(f"{what}: keys must be peer IDs")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise DecodeError(f"{what}[{peer!r}]: expected a number, got {type(score).__name__}")
        # NaN fails both comparisons, so it is refused here too.
        if not 0.0 <= score <= 1.0:
            raise DecodeError(f"{what}[{peer!r}]: {score!r} outside 0..1")
        total += score
    if total > 1.0 + SUM_TOLERANCE:
        raise DecodeError(f"{what}: scores sum to {total:.9g}, more than 1")
    if author in scores:
        raise DecodeError(f"{what}: an author may not score itself")
    # Last, because it is the expensive check (base58 and a curve point per peer).
    for peer in scores:
        validate_peer_id(peer)


def attestation_from_envelope(env: Envelope) -> TrustAttestation:
    """Decode the trust body of a verified envelope; the body must name its signer."""
    if env.type != TRUST:
        raise DecodeError(f"expected a {TRUST!r} envelope, got {env.type!r}")
    f = Fields(env.decoded_body(max_size=MAX_TRUST_SIZE), "trust")
    author = validate_peer_id(f.str("author", max_len=MAX_PEER_ID_LEN))
    if author != env.sender:
        raise DecodeError("trust: author differs from the envelope's signer")
    seq = f.int("seq")
    issued = f.float("issued", lo=0.0)
    raw = f.map("scores", max_items=MAX_TRUST_PEERS)
    check_scores(author, raw)
    scores = {peer: float(score) for peer, score in raw.items()}
    return TrustAttestation(author=author, seq=seq, issued=issued, scores=scores)
