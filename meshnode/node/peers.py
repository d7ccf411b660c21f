"""PeerTable: what this node knows of the other nodes of its mesh.

Only peers proven to be on this node's network are listed: a peer enters the table through a
verified hello (the connection handshake) or a verified presence announcement. Pure data, no
I/O: the node feeds it events with the time they happened.

The table is bounded, in entries and in bytes, and a full table still takes the peers that
matter: a newcomer displaces the lowest-ranked entry if it ranks higher, where a peer
verified by a hello on a connection beats one only announced, then standing (this node's
trust in it), then recency. So a swarm of announced identities can churn only other
announced-only entries, never the peers this node talks to or trusts.

Failure detection (SWIM, with Lifeguard's dynamic suspicion): a suspected peer stays listed
until its suspicion deadline, which shortens as more nodes confirm it; a newer announcement
from the peer refutes it. A peer declared dead, or that said goodbye, is remembered with its
incarnation so that an older announcement still travelling cannot bring it back.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from protocols.presence import MAX_TTL_S, Presence

log = logging.getLogger(__name__)
#: Dead peers remembered (with their last incarnation), oldest forgotten first.
DEAD_KEPT = 4096
#: What an entry costs beyond its announcement and addresses (the record, the dict slot).
ENTRY_OVERHEAD = 256


@dataclass(slots=True)
class Suspicion:
    #: The incarnation suspected: a presence with a higher seq refutes it.
    seq: int
    since: float
    accusers: set[str] = field(default_factory=set)
    #: Another node's death notice of this incarnation was heard: no need to send one.
    noticed: bool = False


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
    #: A hello from this peer was verified on a connection to it.
    verified: bool = False
    #: Its newest presence announcement as received (signed), for members push-pull.
    envelope: bytes = b""
    suspicion: Suspicion | None = None

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + len(self.envelope) + sum(len(a) for a in self.addrs)

    def to_json(self, connected: bool, agents: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.presence
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "connected": connected,
            "verified": self.verified,
            "suspect": self.suspicion is not None,
            "last_seen": self.last_seen,
            "first_seen": self.first_seen,
            "last_presence": self.last_presence,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "version": self.version,
            "load": p.load if p else None,
            "agents": agents,
        }


def _no_standing(peer_id: str) -> float:
    return 0.0


class PeerTable:
    def __init__(
        self,
        self_id: str,
        ttl_s: float,
        *,
        max_peers: int = 10_000,
        max_bytes: int = 32 << 20,
        standing: Callable[[str], float] = _no_standing,
    ) -> None:
        self.self_id = self_id
        #: The least time a silent, unconnected peer is kept (its own announced TTL may be
        #: longer: in a large mesh nodes announce rarely).
        self.ttl_s = ttl_s
        self.max_peers = max_peers
        self.max_bytes = max_bytes
        #: How much this node values a peer (its trust); ranks entries for eviction.
        self.standing = standing
        self._peers: dict[str, PeerRecord] = {}
        self._bytes = 0
        self._dead: OrderedDict[str, int] = OrderedDict()
        #: Peers refused or evicted because the table was full.
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterator[PeerRecord]:
        return iter(list(self._peers.values()))

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> PeerRecord | None:
        return self._peers.get(peer_id)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    # ---- admission ---------------------------------------------------------------------

    def _rank(self, verified: bool, peer_id: str, last_seen: float) -> tuple[bool, float, float]:
        return (verified, self.standing(peer_id), last_seen)

    def _make_room(self, peer_id: str, verified: bool, now: float, size: int) -> bool:
        """Evict lower-ranked entries until one of ``size`` bytes fits; False if the
        newcomer ranks below everything held."""
        mine = self._rank(verified, peer_id, now)
        while len(self._peers) >= self.max_peers or self._bytes + size > self.max_bytes:
            if not self._peers:
                return False
            worst = min(self._peers.values(),
                        key=lambda r: self._rank(r.verified, r.peer_id, r.last_seen))
            if self._rank(worst.verified, worst.peer_id, worst.last_seen) >= mine:
                return False
            self._remove(worst.peer_id)
            self.evicted += 1
        return True

    def _remove(self, peer_id: str) -> None:
        record = self._peers.pop(peer_id, None)
        if record is not None:
            self._bytes -= record.size

    def _resize(self, record: PeerRecord, before: int) -> None:
        self._bytes += record.size - before

    def _touch(self, peer_id: str, now: float, *, verified: bool,
               size: int = ENTRY_OVERHEAD) -> PeerRecord | None:
        if peer_id == self.self_id:
            return None
        record = self._peers.get(peer_id)
        if record is None:
            if not self._make_room(peer_id, verified, now, size):
                self.refused += 1
                log.debug("peer table full; not listing peer", extra={"peer": peer_id})
                return None
            record = self._peers[peer_id] = PeerRecord(peer_id, first_seen=now, last_seen=now)
            self._bytes += record.size
        record.last_seen = max(record.last_seen, now)
        return record

    def saw_hello(self, peer_id: str, addrs: Iterable[str], version: str, now: float) -> None:
        record = self._touch(peer_id, now, verified=True)
        if record is not None:
            before = record.size
            record.addrs = tuple(addrs) or record.addrs
            record.version = version
            record.verified = True
            record.suspicion = None  # a hello on a live connection proves it is up
            self._dead.pop(peer_id, None)
            self._resize(record, before)

    def saw_presence(self, presence: Presence, now: float, *, envelope: bytes = b"",
                     heard_at: float | None = None) -> bool:
        """Apply an announcement; False if it is not newer than what is known of the peer,
        if the table has no room for it, or if it is a goodbye (the peer is then gone).

        ``heard_at`` is when the peer spoke (its envelope's time, for an announcement
        relayed by a members push-pull); by default ``now``.
        """
        # Check seq first: an out-of-date announcement must not even refresh last_seen, or
        # late gossip would keep a departed peer alive past its TTL.
        current = self._peers.get(presence.peer_id)
        if current and current.presence and presence.seq <= current.presence.seq:
            return False
        dead = self._dead.get(presence.peer_id)
        if dead is not None and presence.seq <= dead:
            return False
        if presence.leaving:
            self.forget(presence.peer_id, presence.seq)
            return False
        heard = now if heard_at is None else min(now, heard_at)
        size = ENTRY_OVERHEAD + len(envelope) + sum(len(a) for a in presence.addrs)
        record = self._touch(presence.peer_id, heard,
                             verified=bool(current and current.verified), size=size)
        if record is None:
            return False
        before = record.size
        record.presence = presence
        record.envelope = envelope
        record.addrs = presence.addrs or record.addrs
        record.version = presence.version
        record.last_presence = heard
        if record.suspicion is not None and presence.seq > record.suspicion.seq:
            record.suspicion = None  # refuted
        self._resize(record, before)
        return True

    def saw_ping(self, peer_id: str, rtt_ms: float, now: float) -> None:
        record = self._peers.get(peer_id)
        if record is not None:
            record.rtt_ms = rtt_ms
            record.last_seen = max(record.last_seen, now)

    # ---- failure detection --------------------------------------------------------------

    def suspect(self, peer_id: str, seq: int, accuser: str, now: float) -> bool:
        """Note that ``accuser`` cannot reach ``peer_id`` at incarnation ``seq``; True if
        this is news (a new suspicion or a new accuser)."""
        record = self._peers.get(peer_id)
        if record is None:
            return False
        known = record.presence.seq if record.presence else 0
        if seq < known:
            return False  # about an incarnation already superseded: refuted
        if record.suspicion is None:
            record.suspicion = Suspicion(seq=max(seq, known), since=now)
        if accuser in record.suspicion.accusers:
            return False
        record.suspicion.accusers.add(accuser)
        return True

    def dead_noticed(self, peer_id: str, seq: int) -> None:
        """Another node declared ``peer_id`` dead at incarnation ``seq`` (it does not make
        this node forget it: only this node's own suspicion timeout does)."""
        record = self._peers.get(peer_id)
        if record is not None and record.suspicion is not None and seq >= record.suspicion.seq:
            record.suspicion.noticed = True

    def forgotten(self, peer_id: str) -> int | None:
        """The incarnation at which ``peer_id`` was last forgotten (declared dead or gone),
        if it was; it may be listed again since, at a newer one."""
        return self._dead.get(peer_id)

    def remembers(self, peer_id: str) -> bool:
        """Listed, or forgotten as dead or gone (with its incarnation)."""
        return peer_id in self._peers or peer_id in self._dead

    def suspects(self) -> list[PeerRecord]:
        return [r for r in self._peers.values() if r.suspicion is not None]

    def forget(self, peer_id: str, seq: int | None = None) -> None:
        """Drop ``peer_id``, remembering its incarnation: older news cannot revive it."""
        record = self._peers.get(peer_id)
        if seq is None:
            seq = record.presence.seq if record and record.presence else 0
        self._remove(peer_id)
        self._dead[peer_id] = max(seq, self._dead.get(peer_id, seq))
        self._dead.move_to_end(peer_id)
        while len(self._dead) > DEAD_KEPT:
            self._dead.popitem(last=False)

    def expire(self, now: float, connected: set[str]) -> list[str]:
        """Forget peers that are not connected and have been silent for their TTL (this
        table's, or the longer one they announced)."""
        gone = []
        for peer_id, r in self._peers.items():
            ttl = max(self.ttl_s, min(r.presence.ttl_s, MAX_TTL_S) if r.presence else 0.0)
            if peer_id not in connected and now - r.last_seen > ttl:
                gone.append(peer_id)
        for peer_id in gone:
            self._remove(peer_id)
        return gone

    # ---- views ------------------------------------------------------------------------

    def known_addrs(self) -> dict[str, tuple[str, ...]]:
        return {p: r.addrs for p, r in self._peers.items()}

    def verified(self) -> set[str]:
        return {p for p, r in self._peers.items() if r.verified}

    def envelopes(self, limit: int) -> list[bytes]:
        """The newest ``limit`` presence announcements held, for a members push-pull."""
        held = sorted((r for r in self._peers.values() if r.envelope),
                      key=lambda r: r.last_seen, reverse=True)
        return [r.envelope for r in held[:limit]]

    def snapshot(self, connected: set[str],
                 agents: Callable[[PeerRecord], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [
            r.to_json(r.peer_id in connected, agents(r))
            for r in sorted(self._peers.values(), key=lambda r: r.peer_id)
        ]
