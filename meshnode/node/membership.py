"""Membership: who is in this node's mesh, found by gossip with no coordinator, at a cost per
node that does not grow with the mesh.

One service owns the peer table and the tasks that keep it true:

- the **hello** handshake on every new connection (drops nodes of other networks), followed
  by a **members push-pull**: each side pulls the signed presence announcements the other
  holds, so a newcomer learns the mesh from its neighbours (no node re-announces itself
  for it); repeated once a refresh interval with a random neighbour, as anti-entropy
  (:mod:`meshnode.node.handshake`);
- **presence** announcements on change (addresses, agent cards, load level) and otherwise
  every refresh interval, stretched in a large mesh so the mesh-wide rate stays under
  ``gossip.presence_rate_per_s``; they carry a digest of the agent cards, which are fetched
  once per digest (:mod:`meshnode.node.cards`);
- **failure detection**, SWIM-style: one connected peer is pinged per probe period (round
  robin); two missed pings, or a lost connection that cannot be redialed, make it suspect,
  and the suspicion is gossiped; the suspect refutes it with a newer announcement, or every
  node forgets it after a timeout that shrinks with independent confirmations, and says so
  once (a death notice a live peer refutes); Lifeguard's local health score stretches an
  overloaded node's timeouts and stops its accusations (:mod:`meshnode.node.detector`). A
  stopping node says goodbye;
- the **dialer** that keeps ``target_connections`` open, and **admission budgets**
  (:mod:`meshnode.node.admission`) so that no peer can fill the table or make the mesh relay
  identities it invents.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from bootstrap import DialPolicy, parse_bootstrap
from meshnode.config import NodeConfig
from meshnode.node.admission import PresenceAdmission
from meshnode.node.cards import CardCache, CardFetcher
from meshnode.node.detector import FailureDetector
from meshnode.node.faults import Faults
from meshnode.node.gate import HelloGate
from meshnode.node.handshake import HELLO_PROTOCOL, HELLO_TIMEOUT_S, Handshake
from meshnode.node.members import PROTOCOL_ID as MEMBERS_PROTOCOL
from meshnode.node.members import MembersServer, fetch_cards
from meshnode.node.peers import PeerTable
from meshnode.node.topics import EnvelopeCodec, Signed, SignedTopic
from meshnode.node.transport import DialError, GossipMessage, Host
from meshnode.stats import quantile
from protocols.envelope import EnvelopeGuard, NetworkMismatch
from protocols.errors import ProtocolError
from protocols.members import MAX_ENVELOPE
from protocols.peerid import Signer
from protocols.presence import (
    MAX_TTL_S,
    PRESENCE,
    PRESENCE_TOPIC_VERSION,
    SUSPECT,
    Presence,
    Suspect,
    cards_digest,
    membership_from_envelope,
    pack_cards,
    refresh_interval,
    topic,
)

log = logging.getLogger(__name__)
#: The least time between two announcements of this node (receivers allow bursts of a few).
MIN_ANNOUNCE_GAP_S = 1.0
#: How soon a node that has not completed a members pull yet tries another (seconds).
FIRST_PULL_RETRY_S = 5.0
#: How long a goodbye may hold up a stopping node.
GOODBYE_S = 2.0
#: Dials per second of peers this node has never verified (after a burst of 3).
UNVERIFIED_DIALS_PER_S = 0.1

__all__ = ["HELLO_PROTOCOL", "HELLO_TIMEOUT_S", "Membership", "NetworkMismatch"]


def load_level(load: float) -> int:
    """Load in powers of two (0, 1, 2-3, 4-7, ...): announcing only when the level changes
    keeps a busy node from announcing every task."""
    return 0 if load < 1 else 1 + int(math.log2(load))


class Membership:
    def __init__(
        self,
        config: NodeConfig,
        host: Host,
        signer: Signer,
        *,
        version: str,
        agent_cards: Callable[[], list[dict[str, Any]]] = list,
        load: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        candidates: Callable[[], Mapping[str, Sequence[str]]] = dict,
    ) -> None:
        self.config = config
        self.host = host
        self.signer = signer
        self.version = version
        self._agent_cards = agent_cards
        self._load = load
        self._clock = clock
        gossip = config.gossip
        # Peers found other than by gossip (on the LAN by mDNS): dialed like known peers.
        self._candidates = candidates
        self.table = PeerTable(signer.peer_id, ttl_s=gossip.peer_ttl_s,
                               max_peers=gossip.max_peers)
        self.guard = EnvelopeGuard(config.network_id)
        # Announced-only peers: a few dials a minute at most (see DialPolicy).
        self.dialer = DialPolicy(config.target_connections,
                                 unverified_per_s=UNVERIFIED_DIALS_PER_S, unverified_burst=3)
        self.gate = HelloGate()
        self.admission = PresenceAdmission(signer.peer_id)
        self.cards = CardCache()
        self.fetcher = CardFetcher(self.cards, lambda p, d: fetch_cards(host, p, d),
                                   host.connected_peers)
        self._bootstrap = {p.peer_id: p.addr for p in map(parse_bootstrap, config.bootstrap)}
        self._codec = EnvelopeCodec(self.guard, (PRESENCE, SUSPECT), membership_from_envelope,
                                    max_size=MAX_ENVELOPE, clock=clock)
        self.presence_topic = SignedTopic(
            host, topic(config.network_id, "presence", PRESENCE_TOPIC_VERSION), self._codec,
            self_id=signer.peer_id, on_bad=self.report_bad_message, screen=self._screen)
        self.detector = FailureDetector(self)
        self.handshake = Handshake(self)
        self._announce_now = trio.Event()
        self._seq = time.time_ns() // 1000  # keeps increasing across restarts
        self._announced: tuple[Any, ...] = ()
        self._own: bytes = b""  # this node's newest presence announcement, as published
        self._packed_cards = (b"", "")
        self.faults = faults if faults is not None else Faults()
        #: Handshakes by outcome (accepted, wrong_network, refused, failed) and dials by
        #: outcome (ok, failed): what /v1/status shows and tests wait on.
        self.handshakes: Counter[str] = Counter()
        self.dials: Counter[str] = Counter()
        #: Members learned by push-pull, and announcements a push-pull brought that failed.
        self.pulled: Counter[str] = Counter()
        # Called with a peer ID after every successful handshake (e.g. to start a memory sync).
        self.handshake_listeners: list[Callable[[str], None]] = []
        # Called with the peer that delivered a message that failed its checks (evidence for
        # the trust graph, which decides which failures count against the peer).
        self.bad_message_listeners: list[Callable[[str, ProtocolError], None]] = []
        # (received at, publish-to-receipt ms, sender): what operators and bench/ look at.
        self.latency_samples: deque[tuple[float, float, str]] = deque(maxlen=4096)

    # ---- lifecycle ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(HELLO_PROTOCOL, self.handshake.answer)
        self.host.set_stream_handler(MEMBERS_PROTOCOL,
                                     MembersServer(self._cards_for, self.handshake.members_for))
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.presence_topic.run, self._on_message)
                await nursery.start(self.fetcher.run)
                nursery.start_soon(self._connection_events, nursery)
                nursery.start_soon(self._announce_loop)
                nursery.start_soon(self._change_loop)
                nursery.start_soon(self._anti_entropy_loop)
                nursery.start_soon(self._dial_loop, nursery)
                nursery.start_soon(self.detector.probe_loop, nursery)
                nursery.start_soon(self.detector.expiry_loop, nursery)
                task_status.started()
        finally:
            with trio.move_on_after(GOODBYE_S, shield=True):
                await self.presence_topic.publish(self._sealed_presence(leaving=True))

    # ---- connections -------------------------------------------------------------

    def report_bad_message(self, peer_id: str, exc: ProtocolError) -> None:
        for listener in self.bad_message_listeners:
            listener(peer_id, exc)

    async def _connection_events(self, nursery: trio.Nursery) -> None:
        async for kind, peer_id in self.host.connection_events:
            if kind == "connected":
                # One hello per peer: a second connection (a direct one replacing a relayed
                # one, an AutoNAT dial-back) changes nothing the first one proved.
                if not self.gate.greeted(peer_id):
                    nursery.start_soon(self.handshake.greet, peer_id)
                continue
            if peer_id in self.host.connected_peers():
                continue  # one of several connections closed (a relayed one, a dial-back)
            self.gate.gone(peer_id)
            if peer_id in self.table:
                log.info("peer disconnected", extra={"peer": peer_id})
                nursery.start_soon(self.detector.disconnected, peer_id)

    # ---- presence ----------------------------------------------------------------

    @property
    def presence_received(self) -> int:
        return self.presence_topic.accepted

    @property
    def presence_rejected(self) -> int:
        return self.presence_topic.rejected_total

    def _screen(self, message: GossipMessage, author: str,
                signed: Signed[Presence | Suspect]) -> None:
        """Budgets, before a message is delivered or relayed (see admission)."""
        now = self._clock()
        if isinstance(signed.value, Suspect):
            self.admission.suspicion(message.origin, author,
                                     accuser_known=author in self.table, now=now)
        else:
            # A peer this node forgot (declared dead, or gone) is no new identity: its
            # return costs its relay nothing, or the relays that introduced the mesh to
            # this node could not bring back the peers a storm of suspicions took away.
            self.admission.presence(message.origin, message.forwarder, author,
                                    known=self.table.remembers(author), now=now)

    async def _on_message(self, message: GossipMessage,
                          signed: Signed[Presence | Suspect]) -> None:
        env, value = signed.envelope, signed.value
        now = self._clock()
        if isinstance(value, Suspect):
            self.detector.suspicion(value, env.sender)
            return
        self.latency_samples.append((now, (now - env.ts) * 1000, env.sender))
        known = value.peer_id in self.table
        if self.table.saw_presence(value, now, envelope=message.data):
            if not known:
                log.info("peer discovered", extra={"peer": value.peer_id})
            self.fetcher.want(value.cards, [value.peer_id, message.forwarder])
        elif value.leaving:
            log.info("peer left", extra={"peer": value.peer_id})
            self.dialer.forget([value.peer_id], now)

    def _cards(self) -> tuple[bytes, str]:
        cards = self._agent_cards()
        packed = pack_cards(cards)
        if packed != self._packed_cards[0]:
            self._packed_cards = (packed, cards_digest(packed))
        return self._packed_cards

    def _cards_for(self, digest: str) -> bytes | None:
        packed, mine = self._cards()
        return packed if digest == mine else self.cards.packed(digest)

    def refresh_s(self) -> float:
        gossip = self.config.gossip
        return refresh_interval(gossip.presence_interval_s, len(self.table) + 1,
                                gossip.presence_rate_per_s)

    def _state(self) -> tuple[Any, ...]:
        return (tuple(self.host.listen_addrs()), self._cards()[1], load_level(self._load()))

    def presence(self, *, leaving: bool = False) -> Presence:
        self._seq += 1
        digest = self._cards()[1]
        return Presence(
            peer_id=self.signer.peer_id,
            addrs=tuple(self.host.listen_addrs()),
            version=self.version,
            seq=self._seq,
            # Kept three refreshes: one lost announcement does not make it vanish.
            ttl_s=min(MAX_TTL_S, max(self.config.gossip.peer_ttl_s, 3 * self.refresh_s())),
            load=self._load(),
            cards=digest,
            agents=len(self._agent_cards()) if digest else 0,
            leaving=leaving,
        )

    def _sealed_presence(self, *, leaving: bool = False) -> bytes:
        return self._codec.seal(self.signer, self.presence(leaving=leaving).to_body())

    def announce_soon(self) -> None:
        """Announce now (or as soon as the minimum gap allows): something changed, or a
        suspicion of this node must be refuted."""
        self._announce_now.set()

    async def _announce_loop(self) -> None:
        while True:
            self._announced = self._state()
            self._own = self._sealed_presence()
            await self.presence_topic.publish(self._own)
            self._announce_now = trio.Event()
            await trio.sleep(MIN_ANNOUNCE_GAP_S)
            with trio.move_on_after(self.refresh_s() - MIN_ANNOUNCE_GAP_S):
                await self._announce_now.wait()

    async def _change_loop(self) -> None:
        heard_by_none = True
        while True:
            await trio.sleep(1.0)
            # A node that had no one to tell (it started alone, or was cut off) announces as
            # soon as it has: the mesh would otherwise learn of it only at the next refresh.
            alone = self.host.topic_peers(self.presence_topic.topic) == 0
            if self._state() != self._announced or (heard_by_none and not alone):
                self.announce_soon()
            heard_by_none = alone

    async def _anti_entropy_loop(self) -> None:
        """Once a refresh interval, a members push-pull with one connected peer: what a
        lost announcement or a healed partition hid is learned within one interval."""
        while True:
            # Until one pull has succeeded (the one after the first hello may fail on a busy
            # peer), soon again: the members a node joining missed would otherwise wait for
            # their next refresh, nodes / presence_rate_per_s seconds in a large mesh.
            await trio.sleep(self.refresh_s() if self.pulled["completed"] else FIRST_PULL_RETRY_S)
            peers = sorted(self.verified_connected())
            if peers:
                await self.handshake.pull(random.choice(peers))

    # ---- dialing -----------------------------------------------------------------

    async def _dial(self, peer_id: str, addrs: list[str]) -> None:
        try:
            await self.host.connect(peer_id, addrs, timeout=self.config.dial_timeout_s)
        except DialError as exc:
            self.dials["failed"] += 1
            delay = self.dialer.failed(peer_id, self._clock(), addrs)
            log.info("dial failed", extra={"peer": peer_id, "error": str(exc),
                                           "retry_in_s": round(delay, 1)})
        else:
            self.dials["ok"] += 1
            self.dialer.succeeded(peer_id, addrs)

    async def _dial_loop(self, nursery: trio.Nursery) -> None:
        while True:
            picks = self.dialer.choose(
                known={**self._candidates(), **self.table.known_addrs()},
                connected=self.verified_connected(),
                bootstrap=self._bootstrap,
                self_id=self.signer.peer_id,
                now=self._clock(),
                verified=self.table.verified(),
            )
            for peer_id, addrs in picks:
                nursery.start_soon(self._dial, peer_id, addrs)
            await trio.sleep(1.0)

    # ---- views -------------------------------------------------------------------

    def verified_connected(self) -> set[str]:
        return {p for p in self.host.connected_peers() if p in self.table}

    def agent_cards_of(self, peer_id: str) -> tuple[dict[str, Any], ...]:
        """The agent cards of a listed peer, as far as they have been fetched."""
        record = self.table.get(peer_id)
        if record is None or record.presence is None or not record.presence.cards:
            return ()
        return self.cards.get(record.presence.cards) or ()

    def agent_sets(self) -> list[tuple[str, str, tuple[dict[str, Any], ...]]]:
        """(peer, card digest, cards) of the listed peers not under suspicion whose cards
        have been fetched."""
        out = []
        for r in self.table:
            if r.suspicion is None and r.presence is not None and r.presence.cards:
                cards = self.cards.get(r.presence.cards)
                if cards:
                    out.append((r.peer_id, r.presence.cards, cards))
        return out

    def peers_json(self) -> list[dict[str, Any]]:
        return self.table.snapshot(self.host.connected_peers(),
                                   lambda r: [dict(c) for c in self.agent_cards_of(r.peer_id)])

    def gossip_json(self, since: float = 0.0) -> dict[str, Any]:
        samples = [s for s in self.latency_samples if s[0] >= since]
        latencies = sorted(ms for _, ms, _ in samples)

        def pct(q: float) -> float | None:
            return round(quantile(latencies, q), 3) if latencies else None

        return {
            "topic": self.presence_topic.topic,
            "topic_peers": self.host.topic_peers(self.presence_topic.topic),
            "presence_received": self.presence_received,
            "presence_rejected": self.presence_rejected,
            "presence": self.presence_topic.stats(),
            "refresh_s": round(self.refresh_s(), 1),
            "admission_refused": dict(self.admission.refused),
            "table": {"peers": len(self.table), "bytes": self.table.bytes_held,
                      "evicted": self.table.evicted, "refused": self.table.refused,
                      "suspects": len(self.table.suspects())},
            # Lifeguard's local health score of this node, probes, suspicions, notices.
            "failure_detection": self.detector.stats(),
            "cards": {"digests": len(self.cards), "bytes": self.cards.bytes_held,
                      "fetched": self.fetcher.fetched, "failed": self.fetcher.failed},
            "pulled": dict(self.pulled),
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "samples": len(latencies)},
            "samples": [[t, round(ms, 3), sender] for t, ms, sender in samples],
        }

