"""Tests of protocols.peerid: base58, Ed25519 peer IDs, and signature checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocols.errors import BadSignature, DecodeError
from protocols.peerid import (
    MAX_PEER_ID_LEN,
    Signer,
    b58decode,
    b58encode,
    peer_id_from_public_key,
    public_key_from_peer_id,
    validate_peer_id,
    verify,
)

FUZZ = settings(
    deadline=timedelta(seconds=2),
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
seeds = st.binary(min_size=32, max_size=32)


def raw_public(signer: Signer) -> bytes:
    return signer._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# -- base58 ------------------------------------------------------------------------------

# The Bitcoin Core base58 test vectors (hex, base58).
B58_VECTORS = [
    ("", ""),
    ("61", "2g"),
    ("626262", "a3gV"),
    ("636363", "aPEr"),
    ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    ("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ("516b6fcd0f", "ABnLTmg"),
    ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
    ("572e4794", "3EFU7m"),
    ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
    ("10c8511e", "Rt5zm"),
    ("00000000000000000000", "1111111111"),
]


@pytest.mark.parametrize(("hex_data", "text"), B58_VECTORS)
def test_base58_vectors(hex_data: str, text: str) -> None:
    assert b58encode(bytes.fromhex(hex_data)) == text
    assert b58decode(text) == bytes.fromhex(hex_data)


@FUZZ
@given(st.binary(max_size=80))
@example(b"\0")
@example(b"\0\0\x01")
def test_base58_roundtrip(data: bytes) -> None:
    text = b58encode(data)
    assert set(text) <= set(ALPHABET)
    assert b58decode(text) == data
    # Leading zero bytes are exactly the leading '1's.
    zeros = len(data) - len(data.lstrip(b"\0"))
    assert len(text) - len(text.lstrip("1")) == zeros


@FUZZ
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_base58_text_is_canonical(text: str) -> None:
    assert b58encode(b58decode(text)) == text


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc+", "12D3 Koo", "é", "abc\0", "-"])
def test_base58_rejects_foreign_characters(bad: str) -> None:
    with pytest.raises(DecodeError):
        b58decode(bad)


# -- peer IDs ----------------------------------------------------------------------------


@FUZZ
@given(seeds)
def test_peer_id_public_key_roundtrip(seed: bytes) -> None:
    signer = Signer.from_seed(seed)
    public = raw_public(signer)
    assert signer.peer_id == peer_id_from_public_key(public)
    # Every libp2p Ed25519 peer ID (identity multihash) looks like this:
    assert signer.peer_id.startswith("12D3KooW")
    assert len(signer.peer_id) == 52
    key = public_key_from_peer_id(signer.peer_id)
    assert key.public_bytes(Encoding.Raw, PublicFormat.Raw) == public
    assert validate_peer_id(signer.peer_id) == signer.peer_id


def test_signer_is_deterministic_and_keys_differ() -> None:
    a1, a2 = Signer.from_seed(b"a" * 32), Signer.from_seed(b"a" * 32)
    b = Signer.from_seed(b"b" * 32)
    assert a1.peer_id == a2.peer_id != b.peer_id
    assert Signer.generate().peer_id != Signer.generate().peer_id


def test_rfc8032_vector() -> None:
    # RFC 8032 section 7.1, TEST 1: the Signer really is plain Ed25519 over a raw seed.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    signer = Signer.from_seed(seed)
    assert raw_public(signer) == public
    assert signer.sign(b"") == signature
    assert signer.peer_id == peer_id_from_public_key(public)
    verify(signer.peer_id, b"", signature)


def test_interoperates_with_py_libp2p() -> None:
    peer_id_mod = pytest.importorskip("libp2p.peer.id")
    ed25519 = pytest.importorskip("libp2p.crypto.ed25519")
    for seed in (bytes(32), b"\x01" * 32, bytes(range(32))):
        signer = Signer.from_seed(seed)
        theirs = peer_id_mod.ID.from_pubkey(ed25519.Ed25519PublicKey.from_bytes(raw_public(signer)))
        assert theirs.to_base58() == signer.peer_id
        extracted = peer_id_mod.ID.from_base58(signer.peer_id).extract_public_key()
        assert extracted.to_bytes() == raw_public(signer)


def test_peer_id_from_public_key_needs_32_bytes() -> None:
    for n in (0, 31, 33):
        with pytest.raises(ValueError):
            peer_id_from_public_key(b"\x01" * n)


@FUZZ
@given(st.text(max_size=70) | st.text(alphabet=ALPHABET, min_size=40, max_size=60))
def test_garbage_peer_ids_raise_decode_error(text: str) -> None:
    try:
        key = public_key_from_peer_id(text)
    except DecodeError:
        return
    # Only a genuine Ed25519 peer ID may be accepted, and it is its key's canonical ID.
    assert peer_id_from_public_key(key.public_bytes(Encoding.Raw, PublicFormat.Raw)) == text


PEER = Signer.from_seed(b"p" * 32).peer_id
# 0x00 0x24 0x08 0x01 0x12 0x20 is the identity-multihash + protobuf prefix of Ed25519 IDs.
_BODY = b58decode(PEER)
BAD_PEER_IDS: list[Any] = [
    "",
    "1",
    "x" * (MAX_PEER_ID_LEN + 1),
    PEER + "1",  # one more base58 digit: 58 times the number, too long
    "1" + PEER,  # a leading zero byte
    PEER[:-1],  # truncated
    b58encode(_BODY[:-1]),  # a 31-byte key
    b58encode(_BODY + b"\x00"),  # a 33-byte key
    b58encode(b"\x12\x20" + _BODY[6:]),  # sha256 multihash (an RSA-style ID), not identity
    b58encode(_BODY[:2] + b"\x08\x02" + _BODY[4:]),  # protobuf key type secp256k1
    b58encode(_BODY[:2] + b"\x08\x00" + _BODY[4:]),  # protobuf key type RSA
    b58encode(b"\x00\x25" + _BODY[2:] + b"\x00"),  # wrong multihash length
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # a real RSA peer ID
    "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",  # a real secp256k1 peer ID
    PEER.replace("K", "0"),  # foreign character
    None,
    b"12D3KooW",
    42,
]


@pytest.mark.parametrize("bad", BAD_PEER_IDS)
def test_bad_peer_ids(bad: Any) -> None:
    with pytest.raises(DecodeError):
        public_key_from_peer_id(bad)
    with pytest.raises(DecodeError):
        validate_peer_id(bad)
    with pytest.raises(DecodeError):  # DecodeError, not BadSignature: the ID itself is bad
        verify(bad, b"message", b"\0" * 64)


@FUZZ
@given(seeds, st.data())
def test_single_character_change_never_yields_the_same_key(seed: bytes, data: Any) -> None:
    peer_id = Signer.from_seed(seed).peer_id
    i = data.draw(st.integers(0, len(peer_id) - 1), label="position")
    char = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != peer_id[i]), label="char")
    changed = peer_id[:i] + char + peer_id[i + 1 :]
    try:
        key = public_key_from_peer_id(changed)
    except DecodeError:
        return
    assert key.public_bytes(Encoding.Raw, PublicFormat.Raw) != raw_public(Signer.from_seed(seed))


# -- signatures --------------------------------------------------------------------------


@FUZZ
@given(seeds, seeds, st.binary(max_size=200), st.binary(max_size=200))
def test_verify(seed: bytes, other_seed: bytes, message: bytes, other_message: bytes) -> None:
    signer, other = Signer.from_seed(seed), Signer.from_seed(other_seed)
    signature = signer.sign(message)
    assert len(signature) == 64
    assert verify(signer.peer_id, message, signature) is None
    if other.peer_id != signer.peer_id:
        with pytest.raises(BadSignature):
            verify(other.peer_id, message, signature)  # wrong key
    if other_message != message:
        with pytest.raises(BadSignature):
            verify(signer.peer_id, other_message, signature)  # wrong message


@FUZZ
@given(seeds, st.binary(max_size=100), st.integers(0, 64 * 8 - 1))
def test_any_bit_flip_in_a_signature_is_refused(seed: bytes, message: bytes, bit: int) -> None:
    signer = Signer.from_seed(seed)
    signature = bytearray(signer.sign(message))
    signature[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BadSignature):
        verify(signer.peer_id, message, bytes(signature))


@pytest.mark.parametrize("length", [0, 1, 63, 65, 128])
def test_wrong_length_signatures_are_bad_signatures(length: int) -> None:
    signer = Signer.from_seed(b"s" * 32)
    signature = (signer.sign(b"m") * 2)[:length]
    with pytest.raises(BadSignature):
        verify(signer.peer_id, b"m", signature)


_P = 2**255 - 19
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
# Encodings of every small-order point, both signs of x, and the non-canonical y = p, p + 1.
SMALL_ORDER = [
    (y | sign << 255).to_bytes(32, "little")
    for y in (0, 1, _P - 1, _Y8, _P - _Y8, _P, _P + 1)
    for sign in (0, 1)
]


@pytest.mark.parametrize("public", SMALL_ORDER, ids=lambda b: b.hex()[:8] + b.hex()[-2:])
def test_small_order_keys_are_refused(public: bytes) -> None:
    # With such a key, (R = a small-order point, S = 0) "verifies" for many messages, e.g.
    # for the identity key 01 00..00 it verifies every message: nobody's signature at all.
    peer_id = peer_id_from_public_key(public)
    with pytest.raises(DecodeError, match="small-order"):
        public_key_from_peer_id(peer_id)
    for message in (b"", b"m", b"x", b"message"):
        for r in SMALL_ORDER[:4]:
            with pytest.raises(DecodeError):
                verify(peer_id, message, r + bytes(32))


@FUZZ
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
@example(bytes(32), bytes(64))
@example(b"\x01" + bytes(31), b"\x01" + bytes(63))
def test_any_claimed_key_only_raises_protocol_errors(public: bytes, signature: bytes) -> None:
    # Peers may claim arbitrary (even invalid-point) keys: checks must still just say no.
    peer_id = peer_id_from_public_key(public)
    try:
        validate_peer_id(peer_id)
    except DecodeError:
        assert public in SMALL_ORDER
        return
    with pytest.raises(BadSignature):
        verify(peer_id, b"message", signature)
