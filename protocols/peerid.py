"""libp2p peer IDs for Ed25519 keys, and the signatures they vouch for.

A libp2p Ed25519 peer ID is the base58btc text of an identity multihash over the protobuf
``PublicKey{Type: Ed25519, Data: <32 bytes>}``. The public key is therefore inside the peer
ID itself, so any signed message can be checked against its claimed sender with no lookup.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.errors import BadSignature, DecodeError

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
# identity multihash (0x00, length 36) + protobuf PublicKey{Type=Ed25519(1), Data=32 bytes}
_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
#: Longest peer ID text we accept anywhere (Ed25519 IDs are 52 characters).
MAX_PEER_ID_LEN = 64
# y coordinates (mod p) of the Ed25519 points of small order (1, 2, 4 and 8), the same set
# as libsodium's blocklist. Nobody holds the private key of such a "public key", and
# signatures for it can be made for (almost) any message without one.
_P = 2**255 - 19
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _INDEX.get(char)
        if digit is None:
            raise DecodeError(f"invalid base58 character {char!r}")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def peer_id_from_public_key(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return b58encode(_PREFIX + public_key)


def public_key_from_peer_id(peer_id: str) -> Ed25519PublicKey:
    """The Ed25519 key embedded in ``peer_id``; DecodeError for any other kind of ID."""
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= MAX_PEER_ID_LEN:
        raise DecodeError("peer ID must be a non-empty string of at most 64 characters")
    return _public_key(peer_id)


# Records and envelopes name their author: a batch of 250 records decoded the same base58
# text 500 times (20 % of checking them). Only valid IDs are kept; a bad one raises anew.
@lru_cache(maxsize=4096)
def _public_key(peer_id: str) -> Ed25519PublicKey:
    raw = b58decode(peer_id)
    if len(raw) != len(_PREFIX) + 32 or not raw.startswith(_PREFIX):
        raise DecodeError(f"{peer_id!r} is not an Ed25519 libp2p peer ID")
    key = raw[len(_PREFIX) :]
    if (int.from_bytes(key, "little") & ((1 << 255) - 1)) % _P in _SMALL_ORDER_Y:
        raise DecodeError(f"{peer_id!r} has a small-order key that anyone can sign for")
    return Ed25519PublicKey.from_public_bytes(key)


def validate_peer_id(peer_id: str) -> str:
    public_key_from_peer_id(peer_id)
    return peer_id


def verify(peer_id: str, message: bytes, signature: bytes) -> None:
    """Raise BadSignature unless ``signature`` is ``peer_id``'s signature of ``message``."""
    key = public_key_from_peer_id(peer_id)
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise BadSignature(f"signature does not verify for {peer_id}") from None


class Signer:
    """An Ed25519 private key together with the peer ID it proves."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.peer_id = peer_id_from_public_key(public)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
