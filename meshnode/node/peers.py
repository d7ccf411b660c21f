"""PeerTable: what this node knows of the other nodes of its mesh.

Only peers proven to be on this node's network are listed: a peer enters the table through a
verified hello (the connection handshake) or a verified presence announcement. Pure data, no
I/O: the node feeds it events with the time they happened.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from protocols.presence import Presence

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PeerRecord:
    peer_id: str
    first_seen: float
    last_seen: float
    addrs: tuple[str, ...] = ()
    rtt_ms: float | None = None
    presence: Presence | None = None
    version: str = ""
    last_presence: float | None = None

    def to_json(self, connected: bool) -> dict[str, Any]:
        p = self.presence
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "connected": connected,
            "last_seen": self.last_seen,
            "first_seen": self.first_seen,
            "last_presence": self.last_presence,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "version": self.version,
            "load": p.load if p else None,
            "agents": [dict(a) for a in p.agents] if p else [],
        }


@dataclass
class PeerTable:
    self_id: str
    ttl_s: float
    max_peers: int = 10_000
    _peers: dict[str, PeerRecord] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterator[PeerRecord]:
        return iter(list(self._peers.values()))

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> PeerRecord | None:
        return self._peers.get(peer_id)

    def _touch(self, peer_id: str, now: float) -> PeerRecord | None:
        if peer_id == self.self_id:
            return None
        record = self._peers.get(peer_id)
        if record is None:
            if len(self._peers) >= self.max_peers:
                log.warning("peer table full; ignoring new peer", extra={"peer": peer_id})
                return None
            record = self._peers[peer_id] = PeerRecord(peer_id, first_seen=now, last_seen=now)
        record.last_seen = max(record.last_seen, now)
        return record

    def saw_hello(self, peer_id: str, addrs: Iterable[str], version: str, now: float) -> None:
        record = self._touch(peer_id, now)
        if record is not None:
            record.addrs = tuple(addrs) or record.addrs
            record.version = version

    def saw_presence(self, presence: Presence, now: float) -> bool:
        """Apply an announcement; False if it is older than one already applied."""
        # Check seq first: an out-of-date announcement must not even refresh last_seen, or
        # late gossip would keep a departed peer alive past its TTL.
        current = self._peers.get(presence.peer_id)
        if current and current.presence and presence.seq <= current.presence.seq:
            return False
        record = self._touch(presence.peer_id, now)
        if record is None:
            return False
        record.presence = presence
        record.addrs = presence.addrs or record.addrs
        record.version = presence.version
        record.last_presence = now
        return True

    def saw_ping(self, peer_id: str, rtt_ms: float, now: float) -> None:
        record = self._peers.get(peer_id)
        if record is not None:
            record.rtt_ms = rtt_ms
            record.last_seen = max(record.last_seen, now)

    def expire(self, now: float, connected: set[str]) -> list[str]:
        """Forget peers that are not connected and have been silent for ``ttl_s``."""
        gone = [
            p
            for p, r in self._peers.items()
            if p not in connected and now - r.last_seen > self.ttl_s
        ]
        for peer_id in gone:
            del self._peers[peer_id]
        return gone

    def known_addrs(self) -> dict[str, tuple[str, ...]]:
        return {p: r.addrs for p, r in self._peers.items()}

    def snapshot(self, connected: set[str]) -> list[dict[str, Any]]:
        return [
            r.to_json(r.peer_id in connected)
            for r in sorted(self._peers.values(), key=lambda r: r.peer_id)
        ]
