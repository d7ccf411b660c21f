"""Tests of protocols.trust: the signed trust attestation and its bounded decoder."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import envelope as envelope_mod
from protocols.codec import pack, unpack
from protocols.envelope import (
    VERSION,
    EnvelopeGuard,
    decode_envelope,
    encode_envelope,
    seal,
)
from protocols.errors import BadSignature, DecodeError, FrameTooLarge, ProtocolError, Rejected
from protocols.presence import topic
from protocols.trust import (
    MAX_TRUST_PEERS,
    MAX_TRUST_SIZE,
    SUM_TOLERANCE,
    TRUST,
    TrustAttestation,
    attestation_from_envelope,
    check_scores,
)
from tests.trust.helpers import NET, NOW, attestation, pid, signer, wire

FUZZ = settings(
    deadline=timedelta(seconds=5),
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
ALICE, BOB, MALLORY = signer(0), signer(1), signer(2)
POOL = 40  # identities 3..42 are the peers that get scored


def body(by: int = 0, **changes: Any) -> dict[str, Any]:
    good = attestation(by, {3: 0.5, 4: 0.25, 5: 0.25}, seq=7).to_body()
    good.update(changes)
    return good


@st.composite
def attestations(draw: st.DrawFn) -> tuple[int, TrustAttestation]:
    author = draw(st.integers(0, 2))
    peers = draw(st.lists(st.integers(3, 3 + POOL - 1), unique=True, max_size=POOL))
    raw = [draw(st.floats(0.0, 1.0)) for _ in peers]
    total = sum(raw)
    # Normalised the way an author does it (or left as is when it already fits).
    scores = [v / total for v in raw] if total > 1.0 else raw
    seq = draw(st.integers(0, 2**63 - 1))
    issued = draw(st.floats(0.0, 4e9))
    return author, TrustAttestation(
        pid(author), seq, issued, {pid(p): v for p, v in zip(peers, scores, strict=True)}
    )


# -- round trip and the happy path ----------------------------------------------------


@FUZZ
@given(attestations())
def test_roundtrip(case: tuple[int, TrustAttestation]) -> None:
    author, att = case
    decoded = attestation_from_envelope(wire(signer(author), att.to_body()))
    assert decoded == att
    assert decoded.author == signer(author).peer_id


def test_example_and_topic() -> None:
    decoded = attestation_from_envelope(wire(ALICE, body()))
    assert decoded.seq == 7 and decoded.issued == NOW
    assert decoded.scores == {pid(3): 0.5, pid(4): 0.25, pid(5): 0.25}
    assert topic(NET, "trust") == f"/meshnode/{NET}/trust/1"


def test_integer_scores_and_empty_vector_are_fine() -> None:
    assert attestation_from_envelope(wire(ALICE, body(scores={pid(3): 1}))).scores == {pid(3): 1.0}
    assert attestation_from_envelope(wire(ALICE, body(scores={}))).scores == {}


def test_rounding_slack_on_the_sum() -> None:
    thirds = {pid(3): 1 / 3, pid(4): 1 / 3, pid(5): 1 / 3 + SUM_TOLERANCE / 2}
    assert len(attestation_from_envelope(wire(ALICE, body(scores=thirds))).scores) == 3


def test_limits_are_inclusive() -> None:
    peers = {pid(100 + i): 1.0 / MAX_TRUST_PEERS for i in range(MAX_TRUST_PEERS)}
    full = body(scores=peers, seq=2**63 - 1)
    assert len(pack(full)) <= MAX_TRUST_SIZE  # the size limit leaves room for a full vector
    decoded = attestation_from_envelope(wire(ALICE, full))
    assert len(decoded.scores) == MAX_TRUST_PEERS and decoded.seq == 2**63 - 1


# -- forgery, theft and self-praise ----------------------------------------------------


def test_naming_another_author_is_refused() -> None:
    env = wire(BOB, body(by=0))  # Bob validly signs a vector that claims to be Alice's
    assert env.sender == BOB.peer_id
    with pytest.raises(DecodeError, match="signer"):
        attestation_from_envelope(env)


def test_resealing_someone_elses_attestation_is_refused() -> None:
    stolen = seal(MALLORY, NET, TRUST, unpack(wire(ALICE, body()).body), now=NOW)
    with pytest.raises(DecodeError, match="signer"):
        attestation_from_envelope(decode_envelope(encode_envelope(stolen)))


def test_forged_signature_is_refused() -> None:
    # Alice's name as sender, a well-formed body, and Mallory's signature.
    items = (VERSION, NET, TRUST, ALICE.peer_id, NOW, b"n" * 16, pack(body()))
    forged = pack([*items, MALLORY.sign(envelope_mod._signed_part(*items))])
    with pytest.raises(BadSignature):
        attestation_from_envelope(decode_envelope(forged))


def test_self_score_is_refused() -> None:
    with pytest.raises(DecodeError, match="itself"):
        attestation_from_envelope(wire(ALICE, body(scores={ALICE.peer_id: 0.5})))
    with pytest.raises(DecodeError, match="itself"):
        check_scores(ALICE.peer_id, {ALICE.peer_id: 0.1})


def test_wrong_envelope_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="trust"):
        attestation_from_envelope(wire(ALICE, body(), type_="presence"))


def test_oversized_body_is_refused_before_parsing() -> None:
    huge = body(padding="x" * MAX_TRUST_SIZE)
    with pytest.raises(FrameTooLarge):
        attestation_from_envelope(wire(ALICE, huge))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"scores": {pid(3): 0.7, pid(4): 0.4}}, id="sum-above-1"),
        pytest.param({"scores": {pid(3): 1.0 + 2 * SUM_TOLERANCE}}, id="score-above-1"),
        pytest.param({"scores": {pid(3): -0.1}}, id="score-negative"),
        pytest.param({"scores": {pid(3): float("nan")}}, id="score-nan"),
        pytest.param({"scores": {pid(3): float("inf")}}, id="score-inf"),
        pytest.param({"scores": {pid(3): True}}, id="score-bool"),
        pytest.param({"scores": {pid(3): "0.5"}}, id="score-str"),
        pytest.param({"scores": {pid(3): None}}, id="score-none"),
        pytest.param({"scores": {"not-a-peer": 0.5}}, id="peer-garbage"),
        pytest.param({"scores": {"x" * 65: 0.5}}, id="peer-too-long"),
        pytest.param({"scores": {"": 0.5}}, id="peer-empty"),
        pytest.param({"scores": {pid(3)[:-1]: 0.5}}, id="peer-truncated"),
        pytest.param({"scores": {pid(3).encode(): 0.5}}, id="peer-bytes"),
        pytest.param({"scores": [[pid(3), 0.5]]}, id="scores-a-list"),
        pytest.param(
            {"scores": {pid(100 + i): 0.0 for i in range(MAX_TRUST_PEERS + 1)}},
            id="too-many-peers",
        ),
        pytest.param({"seq": -1}, id="seq-negative"),
        pytest.param({"seq": 2**63}, id="seq-too-big"),
        pytest.param({"seq": 1.0}, id="seq-float"),
        pytest.param({"seq": False}, id="seq-bool"),
        pytest.param({"issued": float("nan")}, id="issued-nan"),
        pytest.param({"issued": -1.0}, id="issued-negative"),
        pytest.param({"issued": "now"}, id="issued-str"),
        pytest.param({"author": "alice"}, id="author-garbage"),
        pytest.param({"author": None}, id="author-none"),
    ],
)
def test_invalid_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        attestation_from_envelope(wire(ALICE, body(**changes)))


@pytest.mark.parametrize("missing", ["author", "seq", "issued", "scores"])
def test_missing_fields(missing: str) -> None:
    incomplete = body()
    del incomplete[missing]
    with pytest.raises(DecodeError, match=missing):
        attestation_from_envelope(wire(ALICE, incomplete))


# -- fuzzing: whatever arrives, only the protocol's own errors come out ------------------


def receive(data: bytes, guard: EnvelopeGuard) -> TrustAttestation:
    """What the daemon does with a message from the trust topic."""
    env = decode_envelope(data, max_size=MAX_TRUST_SIZE + 1024)
    guard.admit(env, NOW)
    return attestation_from_envelope(env)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        receive(data, EnvelopeGuard(NET))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    json_like
    | st.fixed_dictionaries({}, optional={k: st.just(v) | json_like for k, v in body().items()})
)
def test_random_bodies_under_a_valid_signature(value: Any) -> None:
    # BadSignature or Rejected cannot arise here: the signature is genuine.
    with contextlib.suppress(DecodeError):
        attestation_from_envelope(wire(ALICE, value))


@FUZZ
@given(st.data())
def test_mutated_messages(data: st.DataObject) -> None:
    original = attestation_from_envelope(wire(ALICE, body()))
    frame = bytearray(encode_envelope(seal(ALICE, NET, TRUST, body(), now=NOW)))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = receive(bytes(frame), EnvelopeGuard(NET))
    except (DecodeError, BadSignature, Rejected):
        return
    # Only a change that re-encodes the same signed values can pass: never another vector.
    assert decoded == original


def test_replay_and_other_network_are_rejected() -> None:
    guard = EnvelopeGuard(NET)
    frame = encode_envelope(seal(ALICE, NET, TRUST, body(), now=NOW))
    receive(frame, guard)
    with pytest.raises(Rejected, match="replayed"):
        receive(frame, guard)
    elsewhere = encode_envelope(seal(ALICE, "other-net", TRUST, body(), now=NOW))
    with pytest.raises(Rejected, match="network"):
        receive(elsewhere, guard)
