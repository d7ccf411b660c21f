"""The signed envelope every gossip message and handshake travels in.

Wire form: a msgpack array ``[v, network_id, type, sender, ts, nonce, body, signature]``
where ``body`` is itself msgpack bytes and ``signature`` is the sender's Ed25519 signature
of the first seven items. Signing the encoded body (rather than re-encoding a decoded one)
means the receiver checks exactly the bytes that were sent.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from protocols.codec import MAX_FRAME, pack, unpack
from protocols.errors import DecodeError, Rejected
from protocols.peerid import MAX_PEER_ID_LEN, Signer, verify

VERSION = 1
_DOMAIN = b"meshnode/envelope/v1\0"
NONCE_LEN = 16
MAX_NETWORK_ID_LEN = 64
MAX_TYPE_LEN = 32


def validate_network_id(network_id: str) -> str:
    """Network IDs are short, printable and free of '/', since topics embed them."""
    if (
        not isinstance(network_id, str)
        or not 0 < len(network_id) <= MAX_NETWORK_ID_LEN
        or not all(c.isalnum() or c in "-_." for c in network_id)
    ):
        raise DecodeError(
            f"invalid network ID {network_id!r}: use 1-64 letters, digits, '-', '_' or '.'"
        )
    return network_id


@dataclass(frozen=True, slots=True)
class Envelope:
    network_id: str
    type: str
    sender: str
    ts: float
    nonce: bytes
    body: bytes
    signature: bytes
    v: int = VERSION

    def decoded_body(self, *, max_size: int = MAX_FRAME) -> Any:
        return unpack(self.body, max_size=max_size)


def _signed_part(
    v: int, network_id: str, type_: str, sender: str, ts: float, nonce: bytes, body: bytes
) -> bytes:
    return _DOMAIN + pack([v, network_id, type_, sender, ts, nonce, body])


def seal(
    signer: Signer,
    network_id: str,
    type_: str,
    body: Any,
    *,
    now: float,
    nonce: bytes | None = None,
) -> Envelope:
    """Sign ``body`` (plain data) as ``signer`` for ``network_id`` at time ``now``."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_LEN)
    now = float(now)  # an int would be packed as an int, which decode_envelope refuses
    body_bytes = pack(body)
    signature = signer.sign(
        _signed_part(VERSION, network_id, type_, signer.peer_id, now, nonce, body_bytes)
    )
    return Envelope(network_id, type_, signer.peer_id, now, nonce, body_bytes, signature)


def encode_envelope(env: Envelope) -> bytes:
    return pack(
        [env.v, env.network_id, env.type, env.sender, env.ts, env.nonce, env.body, env.signature]
    )


def decode_envelope(data: bytes, *, max_size: int = MAX_FRAME) -> Envelope:
    """Parse and signature-check an envelope. Raises DecodeError or BadSignature."""
    obj = unpack(data, max_size=max_size)
    if not isinstance(obj, list) or len(obj) != 8:
        raise DecodeError("envelope: expected an array of 8 items")
    v, network_id, type_, sender, ts, nonce, body, signature = obj
    if isinstance(v, bool) or not isinstance(v, int):
        raise DecodeError("envelope: version must be an integer")
    if v != VERSION:
        raise DecodeError(f"envelope: unsupported version {v} (this node speaks {VERSION})")
    if not isinstance(network_id, str) or len(network_id) > MAX_NETWORK_ID_LEN:
        raise DecodeError("envelope: bad network ID")
    if not isinstance(type_, str) or not 0 < len(type_) <= MAX_TYPE_LEN:
        raise DecodeError("envelope: bad type")
    if not isinstance(sender, str) or len(sender) > MAX_PEER_ID_LEN:
        raise DecodeError("envelope: bad sender")
    if not isinstance(ts, float) or not math.isfinite(ts):
        # NaN compares false both ways, so it would slip through EnvelopeGuard's age checks.
        raise DecodeError("envelope: timestamp must be a finite float")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
        raise DecodeError(f"envelope: nonce must be {NONCE_LEN} bytes")
    if not isinstance(body, bytes):
        raise DecodeError("envelope: body must be bytes")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise DecodeError("envelope: signature must be 64 bytes")
    verify(sender, _signed_part(v, network_id, type_, sender, ts, nonce, body), signature)
    return Envelope(network_id, type_, sender, ts, nonce, body, signature, v)


class NetworkMismatch(Rejected):
    """A well-signed envelope of another network: its sender is not of this mesh."""


class EnvelopeGuard:
    """Admission policy for verified envelopes: right network, fresh, and not a replay.

    Sans-IO: the caller passes the current time. Remembers nonces for ``max_age_s``
    (bounded to ``max_remembered`` entries; the oldest are forgotten first, and since
    envelopes older than ``max_age_s`` are refused anyway, forgetting them is safe as long
    as the bound is not hit within one window).
    """

    def __init__(
        self,
        network_id: str,
        *,
        max_age_s: float = 120.0,
        max_skew_s: float = 30.0,
        max_remembered: int = 100_000,
    ) -> None:
        self.network_id = network_id
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self.max_remembered = max_remembered
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    def check(self, env: Envelope, now: float) -> None:
        """Network and freshness only; no memory is touched (for gossip validators)."""
        if env.network_id != self.network_id:
            raise NetworkMismatch(
                f"envelope for network {env.network_id!r}, not {self.network_id!r}"
            )
        if env.ts < now - self.max_age_s:
            raise Rejected(f"envelope is {now - env.ts:.0f} s old (limit {self.max_age_s:.0f} s)")
        if env.ts > now + self.max_skew_s:
            raise Rejected(f"envelope is {env.ts - now:.0f} s in the future")

    def admit(self, env: Envelope, now: float) -> None:
        """Network, freshness, and not seen before; remembers the envelope."""
        self.check(env, now)
        key = (env.sender, env.nonce)
        if key in self._seen:
            raise Rejected("replayed envelope")
        self._forget_before(now - self.max_age_s)
        self._seen[key] = env.ts
        if len(self._seen) > self.max_remembered:
            self._seen.popitem(last=False)

    def _forget_before(self, cutoff: float) -> None:
        while self._seen:
            key, ts = next(iter(self._seen.items()))
            if ts >= cutoff:
                break
            del self._seen[key]
