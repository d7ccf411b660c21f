"""Membership messages: presence announcements, suspicions and the connection handshake.

A **presence** announcement (envelope type ``presence``, on the network's presence topic)
says who a node is, where it listens, how busy it is, and which agents it hosts, by the
SHA-256 *digest* of its agent cards (:func:`pack_cards`) rather than the cards themselves:
a receiver fetches the cards once per digest over a stream (:mod:`protocols.members`) and
caches them. A node announces when something changed (addresses, agents, load level), when
it must refute a suspicion, and otherwise only every refresh interval, stretched in a large
mesh so that the mesh-wide rate stays bounded (:func:`refresh_interval`). ``seq`` (the
incarnation) increases with every announcement of one node, so a receiver keeps only the
newest, whatever order gossip delivered them in; ``ttl_s`` says how long it may be kept
without news. ``leaving`` says goodbye.

A **suspicion** (envelope type ``suspect``) is one node telling the mesh that it cannot
reach another, naming the incarnation it last knew. The suspect refutes it by announcing a
higher incarnation; otherwise receivers forget it after a timeout that shrinks as more
nodes independently suspect it (:func:`suspicion_timeout`; SWIM with Lifeguard's dynamic
suspicion, as in HashiCorp memberlist). A suspicion marked ``dead`` is a death notice: its
signer has forgotten the peer, which refutes it the same way if it is alive.
:class:`LocalHealth` is Lifeguard's other half: the score a node keeps of its own health,
which stretches its timeouts and stops its accusations while it is the one in trouble.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from protocols.codec import Fields, pack, unpack
from protocols.envelope import Envelope
from protocols.errors import DecodeError, FrameTooLarge
from protocols.peerid import validate_peer_id

PRESENCE = "presence"
SUSPECT = "suspect"
HELLO = "hello"
#: Presence bodies larger than this are refused. Cards travel separately.
MAX_PRESENCE_SIZE = 8 * 1024
#: The packed agent cards of one node (see pack_cards).
MAX_CARDS_SIZE = 64 * 1024
MAX_ADDRS = 8
MAX_ADDR_LEN = 256
MAX_AGENTS = 32
DIGEST_LEN = 64  # hex SHA-256
#: Longest TTL a receiver honours (a node in a mesh of 10,000 refreshes every few hours).
MAX_TTL_S = 86_400.0
#: The presence topic's version: 2 carries card digests (1 carried the cards).
PRESENCE_TOPIC_VERSION = 2


@dataclass(frozen=True, slots=True)
class Presence:
    peer_id: str
    addrs: tuple[str, ...]
    version: str
    seq: int
    ttl_s: float
    load: float = 0.0
    #: Digest of the node's packed agent cards ("" when it hosts none) and how many.
    cards: str = ""
    agents: int = 0
    leaving: bool = False

    def to_body(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "version": self.version,
            "seq": self.seq,
            "ttl_s": self.ttl_s,
            "load": self.load,
            "cards": self.cards,
            "agents": self.agents,
            "leaving": self.leaving,
        }


def _addrs(fields: Fields, peer_id: str | None = None) -> tuple[str, ...]:
    addrs = fields.str_list("addrs", max_items=MAX_ADDRS, max_len=MAX_ADDR_LEN)
    for addr in addrs:
        if not addr.startswith("/"):
            raise DecodeError(f"{fields.what}.addrs: {addr!r} is not a multiaddr")
        # An address must lead to its announcer: a dialer then checks the peer ID in the
        # secure handshake, and an announcement cannot point at another node's identity.
        if peer_id is not None and not addr.endswith(f"/p2p/{peer_id}"):
            raise DecodeError(f"{fields.what}.addrs: {addr!r} does not end in /p2p/<sender>")
    return tuple(addrs)


def _digest(fields: Fields, key: str) -> str:
    value = fields.str(key, max_len=DIGEST_LEN)
    if value and (len(value) != DIGEST_LEN or value.strip("0123456789abcdef")):
        raise DecodeError(f"{fields.what}.{key}: not a hex SHA-256 digest")
    return value


def presence_from_envelope(env: Envelope) -> Presence:
    """Decode the presence body of a verified envelope; the body must name its sender."""
    if env.type != PRESENCE:
        raise DecodeError(f"expected a {PRESENCE!r} envelope, got {env.type!r}")
    f = Fields(env.decoded_body(max_size=MAX_PRESENCE_SIZE), "presence")
    peer_id = validate_peer_id(f.str("peer_id", max_len=64))
    if peer_id != env.sender:
        raise DecodeError("presence: peer_id differs from the envelope's signer")
    cards = _digest(f, "cards")
    agents = f.int("agents", hi=MAX_AGENTS)
    if bool(cards) != bool(agents):
        raise DecodeError("presence: a card digest goes with at least one agent")
    return Presence(
        peer_id=peer_id,
        addrs=_addrs(f, peer_id),
        version=f.str("version", max_len=64),
        seq=f.int("seq"),
        ttl_s=f.float("ttl_s", lo=1.0, hi=MAX_TTL_S),
        load=f.float("load", lo=0.0, hi=1e6),
        cards=cards,
        agents=agents,
        leaving=f.bool("leaving"),
    )


# ---- agent cards by digest -------------------------------------------------------------


def pack_cards(cards: list[dict[str, Any]]) -> bytes:
    """The agent cards as one msgpack list: what a digest names and a fetch returns."""
    return pack(cards)


def cards_digest(packed: bytes) -> str:
    return hashlib.sha256(packed).hexdigest() if packed != pack([]) else ""


def unpack_cards(packed: bytes, digest: str) -> tuple[dict[str, Any], ...]:
    """Cards fetched for ``digest``: the bytes must hash to it (so any node holding them may
    serve them) and hold at most MAX_AGENTS maps."""
    if len(packed) > MAX_CARDS_SIZE:
        raise FrameTooLarge(f"agent cards: {len(packed)} bytes exceeds {MAX_CARDS_SIZE}")
    if hashlib.sha256(packed).hexdigest() != digest:
        raise DecodeError("agent cards: content does not match the announced digest")
    cards = unpack(packed, max_size=MAX_CARDS_SIZE)
    if not isinstance(cards, list) or not 0 < len(cards) <= MAX_AGENTS:
        raise DecodeError(f"agent cards: expected a list of 1..{MAX_AGENTS}")
    if not all(isinstance(c, dict) for c in cards):
        raise DecodeError("agent cards: every agent card must be a map")
    return tuple(cards)


# ---- suspicion --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suspect:
    """The signer cannot reach ``peer_id``, last known at incarnation ``seq``.

    ``dead``: the signer's suspicion timed out and it has forgotten the peer (memberlist
    gossips a *dead* message for this). Receivers do not forget the peer on another's word,
    nor count it as one more independent accuser; the peer, if it is alive after all,
    refutes it like a suspicion, so that nodes which lost its earlier refutation learn of
    it again now rather than at its next refresh.
    """

    peer_id: str
    seq: int
    dead: bool = False

    def to_body(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "seq": self.seq, "dead": self.dead}


def suspect_from_envelope(env: Envelope) -> Suspect:
    if env.type != SUSPECT:
        raise DecodeError(f"expected a {SUSPECT!r} envelope, got {env.type!r}")
    f = Fields(env.decoded_body(max_size=1024), "suspect")
    peer_id = validate_peer_id(f.str("peer_id", max_len=64))
    if peer_id == env.sender:
        raise DecodeError("suspect: a node does not suspect itself (it leaves)")
    # Optional: nodes before it sent only suspicions.
    dead = f.opt_bool("dead") or False
    return Suspect(peer_id=peer_id, seq=f.int("seq"), dead=dead)


def membership_from_envelope(env: Envelope) -> Presence | Suspect:
    """What the presence topic carries: a presence or a suspicion."""
    if env.type == SUSPECT:
        return suspect_from_envelope(env)
    return presence_from_envelope(env)


def suspicion_timeout(
    members: int, probe_interval_s: float, confirmations: int, *,
    mult: float = 4.0, max_mult: float = 6.0, expected: int = 3,
) -> float:
    """How long a suspect is kept before it is declared dead (Lifeguard).

    The floor grows with log10 of the mesh size, since dissemination takes O(log N) rounds;
    the timeout starts at ``max_mult`` times the floor and falls towards it as independent
    suspicions arrive, reaching it at ``expected`` confirmations (memberlist's defaults).
    """
    floor = mult * max(1.0, math.log10(max(1, members))) * probe_interval_s
    ceiling = max_mult * floor
    if confirmations <= 0:
        return ceiling
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(floor, ceiling - (ceiling - floor) * fraction)


#: Lifeguard's local health multiplier runs 0..this (memberlist's awareness maximum).
MAX_HEALTH = 8
#: From this score on a node accuses nobody (see LocalHealth.may_accuse).
WITHHOLD_AT = 4


class LocalHealth:
    """What this node thinks of its *own* health: Lifeguard's local health multiplier
    (memberlist's "awareness"), a score from 0 (healthy) to ``max_score``.

    A node that cannot keep up (its CPU starved, its event loop late, its messages queued)
    sees its own pings time out and takes that for failures of others; SWIM then makes it
    accuse healthy peers, which refute, and the gossip of both makes the starvation worse.
    So the score rises on evidence that the fault may be here: a probe of this node's that
    got no answer in time, a suspicion of this node that it had to refute (others could not
    reach it), and this node's own timer waking more than a probe period late (its loop is
    starved: its timeouts then say nothing about anybody else). It falls by one with each
    probe answered in time. Pure arithmetic; the detector feeds it and reads it.
    """

    def __init__(self, max_score: int = MAX_HEALTH, withhold_at: int = WITHHOLD_AT) -> None:
        self.max_score = max_score
        self.withhold_at = withhold_at
        self.score = 0

    def _apply(self, delta: int) -> None:
        self.score = min(self.max_score, max(0, self.score + delta))

    def probe_answered(self) -> None:
        self._apply(-1)

    def probe_missed(self) -> None:
        self._apply(1)

    def refuted(self) -> None:
        self._apply(1)

    def woke(self, late_s: float, period_s: float) -> bool:
        """A timer of this node fired ``late_s`` after its deadline; True (and the score
        rises) if that is more than ``period_s``, one probe period: a loop that late is
        itself the bottleneck."""
        if late_s > period_s:
            self._apply(1)
            return True
        return False

    def scale(self, seconds: float) -> float:
        """A timeout or period stretched for this node's health: times (score + 1)."""
        return seconds * (self.score + 1)

    @property
    def may_accuse(self) -> bool:
        """Whether this node may publish a new suspicion. A healthy node that faces one
        dead peer gets to SUSPECT_AFTER (2) missed pings on it with its other probes
        answered in between, so its score stays below half the maximum; a score at
        ``withhold_at`` (half) needs misses across several peers, refutations or a late
        loop, i.e. evidence that the fault is more likely here than there. Such a node's
        accusations would mostly be false, and each costs the whole mesh a suspicion and a
        refutation, so it leaves accusing to the healthy nodes (still connected peers of
        a truly dead one, which are not starved, accuse it)."""
        return self.score < self.withhold_at


def refresh_interval(base_s: float, members: int, rate_per_s: float) -> float:
    """How often a node re-announces an unchanged presence: ``base_s``, stretched so that
    the whole mesh sends at most ``rate_per_s`` refreshes a second (up to a third of the
    longest TTL, so that an announcement always outlives the wait for the next)."""
    return min(max(base_s, members / rate_per_s), max(base_s, MAX_TTL_S / 3))


# ---- the connection handshake ------------------------------------------------------------


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


def topic(network_id: str, kind: str, version: int = 1) -> str:
    """The GossipSub topic of ``kind`` (presence, knowledge, trust) in ``network_id``."""
    return f"/meshnode/{network_id}/{kind}/{version}"
