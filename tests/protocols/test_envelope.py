"""Tests of protocols.envelope: sealing, the wire form, forgery, and the admission guard."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocols import envelope as envelope_mod
from protocols.codec import MAX_FRAME, pack
from protocols.envelope import (
    MAX_NETWORK_ID_LEN,
    MAX_TYPE_LEN,
    NONCE_LEN,
    VERSION,
    Envelope,
    EnvelopeGuard,
    decode_envelope,
    encode_envelope,
    seal,
    validate_network_id,
)
from protocols.errors import BadSignature, DecodeError, FrameTooLarge, Rejected
from protocols.peerid import Signer

FUZZ = settings(
    deadline=timedelta(seconds=2),
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)

ALICE = Signer.from_seed(b"A" * 32)
BOB = Signer.from_seed(b"B" * 32)
MALLORY = Signer.from_seed(b"M" * 32)
NOW = 1_700_000_000.0
NET = "dev-support"

network_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
types = st.text(min_size=1, max_size=MAX_TYPE_LEN)
bodies = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=10,
)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
nonces = st.binary(min_size=NONCE_LEN, max_size=NONCE_LEN)
signers = st.sampled_from([ALICE, BOB, MALLORY])


def signed(items: list[Any], signer: Signer) -> bytes:
    """Encode an envelope whose items may be invalid, with a genuine signature over them."""
    signature = signer.sign(envelope_mod._signed_part(*items))
    return pack([*items, signature])


def items_of(env: Envelope) -> list[Any]:
    return [env.v, env.network_id, env.type, env.sender, env.ts, env.nonce, env.body]


SAMPLE = seal(ALICE, NET, "presence", {"hello": "world", "n": [1, 2, 3]}, now=NOW)
SAMPLE_BYTES = encode_envelope(SAMPLE)


# -- round trip --------------------------------------------------------------------------


@FUZZ
@given(signers, network_ids, types, bodies, times, nonces)
def test_seal_encode_decode_roundtrip(
    signer: Signer, network_id: str, type_: str, body: Any, now: float, nonce: bytes
) -> None:
    env = seal(signer, network_id, type_, body, now=now, nonce=nonce)
    assert (env.sender, env.network_id, env.type, env.ts, env.nonce, env.v) == (
        signer.peer_id,
        network_id,
        type_,
        now,
        nonce,
        VERSION,
    )
    data = encode_envelope(env)
    decoded = decode_envelope(data)
    assert decoded == env
    assert decoded.decoded_body() == body
    assert encode_envelope(decoded) == data


def test_seal_makes_fresh_random_nonces() -> None:
    nonces_seen = {seal(ALICE, NET, "t", None, now=NOW).nonce for _ in range(50)}
    assert len(nonces_seen) == 50
    assert all(len(n) == NONCE_LEN for n in nonces_seen)


def test_integer_time_still_makes_a_decodable_envelope() -> None:
    env = seal(ALICE, NET, "t", {"x": 1}, now=1_700_000_000)
    decoded = decode_envelope(encode_envelope(env))
    assert decoded.ts == 1_700_000_000.0 and type(decoded.ts) is float


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf])
def test_non_finite_timestamps_are_refused(ts: float) -> None:
    # Well signed, but NaN would slip through every "too old / too new" comparison.
    data = signed([VERSION, NET, "t", ALICE.peer_id, ts, b"n" * 16, pack(1)], ALICE)
    with pytest.raises(DecodeError, match="timestamp"):
        decode_envelope(data)


# -- hostile bytes -----------------------------------------------------------------------


def structural_positions(env: Envelope) -> set[int]:
    """Offsets of the bytes that carry structure: array header, version, timestamp, and the
    type+length header of every string/bin item (content bytes are the rest)."""
    positions = {0}
    offset = 1
    for item in [*items_of(env), env.signature]:
        packed = pack(item)
        if isinstance(item, str | bytes):
            content = len(item.encode() if isinstance(item, str) else item)
            positions.update(range(offset, offset + len(packed) - content))
        else:
            positions.update(range(offset, offset + len(packed)))
        offset += len(packed)
    assert offset == len(encode_envelope(env))
    return positions


def test_every_single_byte_mutation_is_refused_or_harmless() -> None:
    """Every structural byte replaced by each of its 255 other values, and every content
    byte by 12 characteristic ones (bit flips, neighbours, msgpack markers)."""
    structural = structural_positions(SAMPLE)
    assert len(structural) >= 20
    outcomes = {"decode": 0, "signature": 0, "identical": 0}
    for i, original in enumerate(SAMPLE_BYTES):
        if i in structural:
            values = set(range(256))
        else:
            values = {0x00, 0x7F, 0xC0, 0xC1, 0xFF, original ^ 0x01, original ^ 0x80}
            values |= {original ^ 0xFF, (original + 1) % 256, (original - 1) % 256, 0x31, 0x7A}
        for value in values - {original}:
            mutated = SAMPLE_BYTES[:i] + bytes([value]) + SAMPLE_BYTES[i + 1 :]
            try:
                decoded = decode_envelope(mutated)
            except DecodeError:
                outcomes["decode"] += 1
            except BadSignature:
                outcomes["signature"] += 1
            else:
                assert decoded == SAMPLE, f"byte {i} -> {value:#04x} changed the envelope"
                outcomes["identical"] += 1
    # Both defences really ran: structural checks and the signature check.
    assert outcomes["decode"] > 1000
    assert outcomes["signature"] > 1000


@FUZZ
@given(signers, network_ids, types, bodies, times, nonces, st.data())
def test_random_single_byte_mutations(
    signer: Signer,
    network_id: str,
    type_: str,
    body: Any,
    now: float,
    nonce: bytes,
    data: Any,
) -> None:
    env = seal(signer, network_id, type_, body, now=now, nonce=nonce)
    encoded = encode_envelope(env)
    i = data.draw(st.integers(0, len(encoded) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    mutated = encoded[:i] + bytes([encoded[i] ^ flip]) + encoded[i + 1 :]
    try:
        decoded = decode_envelope(mutated)
    except (DecodeError, BadSignature):
        return
    assert decoded == env


@pytest.mark.parametrize(
    "field",
    ["network_id", "type", "sender", "ts", "nonce", "body", "signature"],
)
def test_a_change_inside_any_field_breaks_the_signature(field: str) -> None:
    """Flip one bit inside each field's value (keeping the format valid): BadSignature."""
    value = getattr(SAMPLE, field)
    raw = pack(value)
    start = SAMPLE_BYTES.index(raw) + len(raw) - 1  # the last byte of that field's value
    if field == "sender":  # keep it a valid peer ID: swap in another base58 character
        mutated = SAMPLE_BYTES[:start] + (b"a" if SAMPLE_BYTES[start] != ord("a") else b"b")
    elif field in ("network_id", "type"):
        mutated = SAMPLE_BYTES[:start] + (b"x" if SAMPLE_BYTES[start] != ord("x") else b"y")
    else:
        mutated = SAMPLE_BYTES[:start] + bytes([SAMPLE_BYTES[start] ^ 1])
    mutated += SAMPLE_BYTES[start + 1 :]
    assert len(mutated) == len(SAMPLE_BYTES) and mutated != SAMPLE_BYTES
    with pytest.raises(BadSignature):
        decode_envelope(mutated)


def test_every_truncation_and_any_trailer_is_refused() -> None:
    for cut in range(len(SAMPLE_BYTES)):
        with pytest.raises(DecodeError):
            decode_envelope(SAMPLE_BYTES[:cut])
    with pytest.raises(DecodeError):
        decode_envelope(SAMPLE_BYTES + b"\x00")


@FUZZ
@given(st.binary(max_size=300))
@example(b"\x98" + b"\xc0" * 8)
def test_random_garbage_is_refused(data: bytes) -> None:
    with pytest.raises((DecodeError, BadSignature)):
        decode_envelope(data)


@FUZZ
@given(st.lists(bodies | nonces | network_ids, min_size=8, max_size=8))
def test_random_eight_item_arrays_are_refused(items: list[Any]) -> None:
    with pytest.raises((DecodeError, BadSignature)):
        decode_envelope(pack(items))


@FUZZ
@given(
    network_ids, types, times, nonces, st.binary(max_size=50), st.binary(min_size=64, max_size=64)
)
def test_well_formed_envelopes_with_random_signatures_are_refused(
    network_id: str, type_: str, ts: float, nonce: bytes, body: bytes, signature: bytes
) -> None:
    data = pack([VERSION, network_id, type_, ALICE.peer_id, ts, nonce, body, signature])
    with pytest.raises(BadSignature):
        decode_envelope(data)


GOOD = items_of(SAMPLE)


def replaced(index: int, value: Any) -> list[Any]:
    items = list(GOOD)
    items[index] = value
    return items


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(replaced(0, 2), id="future-version"),
        pytest.param(replaced(0, 0), id="version-0"),
        pytest.param(replaced(0, True), id="version-bool"),
        pytest.param(replaced(0, 1.0), id="version-float"),
        pytest.param(replaced(0, "1"), id="version-str"),
        pytest.param(replaced(1, "n" * (MAX_NETWORK_ID_LEN + 1)), id="network-too-long"),
        pytest.param(replaced(1, b"net"), id="network-bytes"),
        pytest.param(replaced(2, ""), id="type-empty"),
        pytest.param(replaced(2, "t" * (MAX_TYPE_LEN + 1)), id="type-too-long"),
        pytest.param(replaced(2, 7), id="type-int"),
        pytest.param(replaced(4, 1_700_000_000), id="ts-int"),
        pytest.param(replaced(4, "now"), id="ts-str"),
        pytest.param(replaced(5, b"n" * (NONCE_LEN - 1)), id="nonce-short"),
        pytest.param(replaced(5, b"n" * (NONCE_LEN + 1)), id="nonce-long"),
        pytest.param(replaced(5, "n" * NONCE_LEN), id="nonce-str"),
        pytest.param(replaced(6, "body"), id="body-str"),
        pytest.param(replaced(6, {"a": 1}), id="body-map"),
    ],
)
def test_validly_signed_but_malformed_fields_are_decode_errors(items: list[Any]) -> None:
    # Signed for real by the claimed sender, so only field validation can refuse them.
    with pytest.raises(DecodeError):
        decode_envelope(signed(items, ALICE))


@pytest.mark.parametrize(
    "obj",
    [
        [*GOOD],  # seven items: no signature
        [*GOOD, SAMPLE.signature, b""],  # nine items
        [*GOOD[:6], SAMPLE.signature[:63]],
        [*GOOD, SAMPLE.signature[:63]],  # 63-byte signature
        [*GOOD, SAMPLE.signature + b"\0"],  # 65-byte signature
        [*GOOD, "sig"],
        dict(enumerate([*GOOD, SAMPLE.signature])),
        {"v": 1},
        None,
        "envelope",
    ],
)
def test_wrong_shapes_are_decode_errors(obj: Any) -> None:
    with pytest.raises(DecodeError):
        decode_envelope(pack(obj))


@pytest.mark.parametrize("sender", ["", "x" * 65, "not-a-peer-id", 12, None])
def test_bad_sender_is_a_decode_error(sender: Any) -> None:
    with pytest.raises(DecodeError):
        decode_envelope(pack([*replaced(3, sender), SAMPLE.signature]))


def test_size_limits() -> None:
    with pytest.raises(FrameTooLarge):
        decode_envelope(SAMPLE_BYTES, max_size=len(SAMPLE_BYTES) - 1)
    assert decode_envelope(SAMPLE_BYTES, max_size=len(SAMPLE_BYTES)) == SAMPLE
    big = seal(ALICE, NET, "t", b"\0" * MAX_FRAME, now=NOW)
    with pytest.raises(FrameTooLarge):
        decode_envelope(encode_envelope(big))
    env = seal(ALICE, NET, "t", "x" * 100, now=NOW)
    with pytest.raises(FrameTooLarge):
        env.decoded_body(max_size=50)
    assert env.decoded_body(max_size=len(env.body)) == "x" * 100


# -- forgery -----------------------------------------------------------------------------


def test_forged_sender_signed_by_another_key() -> None:
    # Mallory claims to be Alice: a perfectly formatted envelope, signed with Mallory's key.
    items = [VERSION, NET, "presence", ALICE.peer_id, NOW, b"f" * 16, pack({"evil": True})]
    with pytest.raises(BadSignature):
        decode_envelope(signed(items, MALLORY))
    # The same items signed by Alice are fine: the refusal was the key, not the format.
    assert decode_envelope(signed(items, ALICE)).sender == ALICE.peer_id


def test_relabelled_sender_is_refused() -> None:
    env = seal(MALLORY, NET, "presence", {"x": 1}, now=NOW)
    forged = dataclasses.replace(env, sender=ALICE.peer_id)
    with pytest.raises(BadSignature):
        decode_envelope(encode_envelope(forged))


def test_signature_transplants_are_refused() -> None:
    a1 = seal(ALICE, NET, "t", {"n": 1}, now=NOW)
    a2 = seal(ALICE, NET, "t", {"n": 2}, now=NOW)
    for forged in (
        dataclasses.replace(a1, signature=a2.signature),  # another message's signature
        dataclasses.replace(a1, body=a2.body),  # another message's body
        dataclasses.replace(a1, network_id="other-net"),  # replayed into another network
        dataclasses.replace(a1, type="trust"),  # reinterpreted as another type
        dataclasses.replace(a1, ts=a1.ts + 60.0),  # refreshed
        dataclasses.replace(a1, nonce=a2.nonce),  # new nonce to dodge replay detection
    ):
        with pytest.raises(BadSignature):
            decode_envelope(encode_envelope(forged))


def test_signatures_are_domain_separated() -> None:
    # Alice's signature of the same items for some other purpose (no domain prefix)
    # must not be usable as an envelope signature.
    items = items_of(SAMPLE)
    data = pack([*items, ALICE.sign(pack(items))])
    with pytest.raises(BadSignature):
        decode_envelope(data)


# -- network IDs -------------------------------------------------------------------------


@FUZZ
@given(network_ids)
def test_valid_network_ids(network_id: str) -> None:
    assert validate_network_id(network_id) == network_id


@pytest.mark.parametrize(
    "bad", ["", "a/b", "/", "a b", "x" * 65, "net\n", "a:b", "a\0", None, b"net", 5]
)
def test_invalid_network_ids(bad: Any) -> None:
    with pytest.raises(DecodeError):
        validate_network_id(bad)


# -- EnvelopeGuard -----------------------------------------------------------------------


def env_at(ts: float, *, nonce: bytes = b"n" * 16, sender: str = ALICE.peer_id) -> Envelope:
    return Envelope(NET, "t", sender, ts, nonce, pack(None), b"s" * 64)


def test_guard_admits_fresh_envelopes_once() -> None:
    guard = EnvelopeGuard(NET)
    guard.admit(decode_envelope(SAMPLE_BYTES), now=NOW)
    with pytest.raises(Rejected, match="replay"):
        guard.admit(decode_envelope(SAMPLE_BYTES), now=NOW + 1)
    # The same nonce from another sender is a different message.
    guard.admit(seal(BOB, NET, "presence", {}, now=NOW, nonce=SAMPLE.nonce), now=NOW)


def test_guard_refuses_other_networks() -> None:
    guard = EnvelopeGuard("other-net")
    with pytest.raises(Rejected, match="network"):
        guard.admit(SAMPLE, now=NOW)
    with pytest.raises(Rejected):
        EnvelopeGuard(NET.upper()).admit(SAMPLE, now=NOW)  # network IDs are case-sensitive


def test_guard_age_and_skew_bounds_are_inclusive() -> None:
    guard = EnvelopeGuard(NET, max_age_s=120.0, max_skew_s=30.0)
    now = 1000.0
    guard.admit(env_at(now - 120.0, nonce=b"a" * 16), now=now)
    guard.admit(env_at(now + 30.0, nonce=b"b" * 16), now=now)
    with pytest.raises(Rejected, match="old"):
        guard.admit(env_at(now - 120.25, nonce=b"c" * 16), now=now)
    with pytest.raises(Rejected, match="future"):
        guard.admit(env_at(now + 30.25, nonce=b"d" * 16), now=now)


def test_refused_envelopes_are_not_remembered() -> None:
    guard = EnvelopeGuard(NET, max_skew_s=30.0)
    early = env_at(NOW + 100.0)
    with pytest.raises(Rejected, match="future"):
        guard.admit(early, now=NOW)
    guard.admit(early, now=NOW + 90.0)  # now within the skew: admitted, not a "replay"
    with pytest.raises(Rejected, match="replay"):
        guard.admit(early, now=NOW + 91.0)


def test_replays_stay_refused_after_they_are_forgotten() -> None:
    guard = EnvelopeGuard(NET, max_age_s=120.0)
    old = env_at(NOW)
    guard.admit(old, now=NOW)
    guard.admit(env_at(NOW + 500.0, nonce=b"z" * 16), now=NOW + 500.0)  # expires `old`
    assert len(guard._seen) == 1
    with pytest.raises(Rejected, match="old"):
        guard.admit(old, now=NOW + 500.0)


def test_replay_memory_is_bounded_by_max_remembered() -> None:
    guard = EnvelopeGuard(NET, max_remembered=50)
    envs = [env_at(NOW, nonce=i.to_bytes(16, "big")) for i in range(500)]
    for env in envs:
        guard.admit(env, now=NOW)
        assert len(guard._seen) <= 50
    assert len(guard._seen) == 50
    for env in envs[-50:]:  # the newest are still remembered
        with pytest.raises(Rejected, match="replay"):
            guard.admit(env, now=NOW)


def test_replay_memory_expires_with_time() -> None:
    guard = EnvelopeGuard(NET, max_age_s=120.0)
    for i in range(100):
        guard.admit(env_at(NOW, nonce=i.to_bytes(16, "big")), now=NOW)
    assert len(guard._seen) == 100
    guard.admit(env_at(NOW + 121.0, nonce=b"late" * 4), now=NOW + 121.0)
    assert len(guard._seen) == 1


# Each step: time passes, then either a new envelope arrives (sender, ts offset, network)
# or an earlier one is delivered again, byte for byte (a replay, possibly much later).
guard_ops = st.lists(
    st.tuples(
        st.floats(0, 50),
        st.one_of(
            st.tuples(st.just("new"), st.integers(0, 2), st.floats(-200, 100), st.booleans()),
            st.tuples(st.just("again"), st.integers(0, 100)),
        ),
    ),
    max_size=60,
)


@FUZZ
@given(guard_ops, st.integers(1, 8))
def test_guard_matches_a_model(ops: list[tuple[float, tuple[Any, ...]]], cap: int) -> None:
    """Against a model: admitted iff right network, fresh, and not admitted before.

    The model holds while ``max_remembered`` is not exceeded within one age window, so
    the memory bound is checked on a second guard with a small ``cap``.
    """
    senders = [ALICE.peer_id, BOB.peer_id, MALLORY.peer_id]
    guard = EnvelopeGuard(NET, max_age_s=120.0, max_skew_s=30.0)
    capped = EnvelopeGuard(NET, max_age_s=120.0, max_skew_s=30.0, max_remembered=cap)
    sent: list[Envelope] = []
    admitted: set[tuple[str, bytes]] = set()
    now = NOW
    for dt, op in ops:
        now += dt
        if op[0] == "new" or not sent:
            _, sender_i, offset, right_network = op if op[0] == "new" else ("new", 0, 0.0, True)
            env = Envelope(
                NET if right_network else "elsewhere",
                "t",
                senders[sender_i],
                now + offset,
                len(sent).to_bytes(NONCE_LEN, "big"),
                b"\xc0",
                b"s" * 64,
            )
            sent.append(env)
        else:
            env = sent[op[1] % len(sent)]
        key = (env.sender, env.nonce)
        expected = (
            env.network_id == NET and now - 120.0 <= env.ts <= now + 30.0 and key not in admitted
        )
        try:
            guard.admit(env, now=now)
        except Rejected:
            assert not expected
        else:
            assert expected
            admitted.add(key)
        with contextlib.suppress(Rejected):
            capped.admit(env, now=now)
        assert len(capped._seen) <= cap
        assert len(guard._seen) <= len(admitted)
