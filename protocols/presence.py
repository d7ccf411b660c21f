"""Presence announcements and the connection handshake ("hello").

A presence announcement is the body of an envelope of type ``presence`` published on the
network's presence topic. It says who a node is, where it listens, which agents it hosts,
and how busy it is. ``seq`` increases with every announcement from one node so that a
receiver keeps only the newest, whatever order gossip delivered them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.codec import Fields
from protocols.envelope import Envelope
from protocols.errors import DecodeError
from protocols.peerid import validate_peer_id

PRESENCE = "presence"
HELLO = "hello"
#: Presence bodies larger than this are refused (agent cards included).
MAX_PRESENCE_SIZE = 64 * 1024
MAX_ADDRS = 16
MAX_ADDR_LEN = 256
MAX_AGENTS = 32


@dataclass(frozen=True, slots=True)
class Presence:
    peer_id: str
    addrs: tuple[str, ...]
    version: str
    seq: int
    ttl_s: float
    load: float = 0.0
    agents: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_body(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "version": self.version,
            "seq": self.seq,
            "ttl_s": self.ttl_s,
            "load": self.load,
            "agents": [dict(a) for a in self.agents],
        }


def _addrs(fields: Fields) -> tuple[str, ...]:
    addrs = fields.str_list("addrs", max_items=MAX_ADDRS, max_len=MAX_ADDR_LEN)
    for addr in addrs:
        if not addr.startswith("/"):
            raise DecodeError(f"{fields.what}.addrs: {addr!r} is not a multiaddr")
    return tuple(addrs)


def presence_from_envelope(env: Envelope) -> Presence:
    """Decode the presence body of a verified envelope; the body must name its sender."""
    if env.type != PRESENCE:
        raise DecodeError(f"expected a {PRESENCE!r} envelope, got {env.type!r}")
    f = Fields(env.decoded_body(max_size=MAX_PRESENCE_SIZE), "presence")
    peer_id = validate_peer_id(f.str("peer_id", max_len=64))
    if peer_id != env.sender:
        raise DecodeError("presence: peer_id differs from the envelope's signer")
    agents = f.list("agents", max_items=MAX_AGENTS)
    if not all(isinstance(a, dict) for a in agents):
        raise DecodeError("presence.agents: every agent card must be a map")
    return Presence(
        peer_id=peer_id,
        addrs=_addrs(f),
        version=f.str("version", max_len=64),
        seq=f.int("seq"),
        ttl_s=f.float("ttl_s", lo=1.0, hi=86_400.0),
        load=f.float("load", lo=0.0, hi=1e6),
        agents=tuple(agents),
    )


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a new connection: proves the network and lists listen addresses."""

    addrs: tuple[str, ...]
    version: str

    def to_body(self) -> dict[str, Any]:
        return {"addrs": list(self.addrs), "version": self.version}


def hello_from_envelope(env: Envelope) -> Hello:
    if env.type != HELLO:
        raise DecodeError(f"expected a {HELLO!r} envelope, got {env.type!r}")
    f = Fields(env.decoded_body(max_size=8 * 1024), "hello")
    return Hello(addrs=_addrs(f), version=f.str("version", max_len=64))


def topic(network_id: str, kind: str) -> str:
    """The GossipSub topic of ``kind`` (presence, knowledge, trust) in ``network_id``."""
    return f"/meshnode/{network_id}/{kind}/1"
