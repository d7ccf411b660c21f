"""Identities and builders shared by the trust tests."""

from __future__ import annotations

from functools import cache
from typing import Any

from protocols.envelope import Envelope, decode_envelope, encode_envelope, seal
from protocols.peerid import Signer
from protocols.trust import TRUST, TrustAttestation

NET = "dev-support"
NOW = 1_800_000_000.0


@cache
def signer(i: int) -> Signer:
    """The i-th of a fixed pool of real Ed25519 identities (deterministic across runs)."""
    return Signer.from_seed(i.to_bytes(32, "big"))


def pid(i: int) -> str:
    return signer(i).peer_id


def wire(author: Signer, body: Any, type_: str = TRUST, now: float = NOW) -> Envelope:
    """Seal, encode and decode (signature checked), as a receiver sees the envelope."""
    return decode_envelope(encode_envelope(seal(author, NET, type_, body, now=now)))


def attestation(author: int, scores: dict[int, float], seq: int = 1) -> TrustAttestation:
    """An attestation of identity ``author`` scoring the identities in ``scores``."""
    return TrustAttestation(pid(author), seq, NOW, {pid(j): s for j, s in scores.items()})
