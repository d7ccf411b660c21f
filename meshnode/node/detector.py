"""Failure detection, SWIM-style, for :class:`~meshnode.node.membership.Membership`.

Each probe period one connected peer is pinged, taking the connected peers in a shuffled
round robin (so each is probed within a bounded time whatever the mesh size). Two missed
pings in a row, or a lost connection that cannot be redialed, make the peer *suspect*: this
node gossips a signed suspicion naming the peer's incarnation. Every node that lists the
peer marks it suspect; the peer, if alive, refutes by announcing a newer incarnation;
otherwise each node forgets it when its suspicion timeout runs out (Lifeguard: the timeout
shrinks with the number of independent accusers, see
:func:`protocols.presence.suspicion_timeout`). A node never acts on a suspicion of a peer it
is still connected to.

Lifeguard, as in HashiCorp memberlist: the node keeps a score of its *own* health
(:class:`protocols.presence.LocalHealth`), raised by its missed pings, by suspicions of it
that it refutes and by its probe timer waking late (a starved loop), lowered by answered
pings. Its ping timeout, probe period and suspicion timeout stretch by (score + 1), and a
node at half the maximum score accuses nobody: a starved node's timeouts are evidence
against itself, not against its peers.

A node that declares a peer dead gossips a death notice (a suspicion marked ``dead``)
unless it heard another node's: the peer, if alive after all, refutes it with a newer
announcement, which brings it back at every node that forgot it, within seconds, instead
of at its next refresh (``nodes / presence_rate_per_s``: 500 s at 50 nodes). Receivers
neither forget the peer on another node's word nor count the notice as an accusation.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from meshnode.node.transport import DialError
from protocols.presence import SUSPECT, LocalHealth, Suspect, suspicion_timeout

if TYPE_CHECKING:
    from meshnode.node.membership import Membership

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 5.0
#: Missed pings in a row that make a connected peer suspect.
SUSPECT_AFTER = 2
#: The least time between two suspicions this node publishes.
ACCUSE_GAP_S = 1.0
#: Before redialing a peer whose connection dropped: it may be redialing us.
REDIAL_AFTER_S = 1.0
#: A death notice waits a random 0..this many probe periods: the nodes whose suspicion
#: timers ran out together then mostly hear the first notice and send none of their own.
NOTICE_SPREAD = 2.0


class FailureDetector:
    def __init__(self, membership: Membership, *,
                 monotonic: Callable[[], float] = trio.current_time) -> None:
        self.m = membership
        #: The clock the probe timer's lateness is read from (trio's; settable for tests).
        self.monotonic = monotonic
        self.health = LocalHealth()
        self._order: list[str] = []
        self._missed: Counter[str] = Counter()
        self._last_accusation = -float("inf")
        #: Pings by outcome (ok, missed) and probe timers that woke late (late);
        #: suspicions heard (suspicion; refuting: of this node, which then announces a newer
        #: incarnation; dead: death notices); what this node published or, unhealthy, kept
        #: to itself (accused, withheld, dead_notices).
        self.probes: Counter[str] = Counter()
        self.heard: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        # Death notices waiting for their slot: peer -> incarnation.
        self._notices: dict[str, int] = {}

    @property
    def base_interval_s(self) -> float:
        return self.m.config.gossip.ping_interval_s

    @property
    def interval_s(self) -> float:
        """The probe period, stretched by this node's health score."""
        return self.health.scale(self.base_interval_s)

    def ping_timeout_s(self) -> float:
        return self.health.scale(min(PING_TIMEOUT_S, 2 * self.base_interval_s))

    def connected(self, peer_id: str) -> None:
        self._missed.pop(peer_id, None)

    def _next(self) -> str | None:
        connected = self.m.verified_connected()
        while self._order:
            peer = self._order.pop()
            if peer in connected:
                return peer
        self._order = sorted(connected)
        random.shuffle(self._order)
        return self._order.pop() if self._order else None

    async def probe_loop(self, nursery: trio.Nursery) -> None:
        await trio.sleep(min(1.0, self.base_interval_s))
        while True:
            peer = self._next()
            if peer is not None:
                # In the nursery, not inline: a slow ping must not delay the next probe.
                nursery.start_soon(self._probe, peer)
            period = self.interval_s
            start = self.monotonic()
            await trio.sleep(period)
            if self.health.woke(self.monotonic() - start - period, self.base_interval_s):
                self.probes["late"] += 1

    async def _probe(self, peer_id: str) -> None:
        try:
            rtt = await self.m.host.ping(peer_id, timeout=self.ping_timeout_s())
        except DialError as exc:
            self.probes["missed"] += 1
            self.health.probe_missed()
            self._missed[peer_id] += 1
            log.debug("ping failed", extra={"peer": peer_id, "error": str(exc)})
            if self._missed[peer_id] >= SUSPECT_AFTER:
                await self.accuse(peer_id)
        else:
            self.probes["ok"] += 1
            self.health.probe_answered()
            self._missed.pop(peer_id, None)
            self.m.table.saw_ping(peer_id, rtt, self.m._clock())

    async def disconnected(self, peer_id: str) -> None:
        """A connection to a listed peer dropped: if it cannot be redialed, suspect it."""
        await trio.sleep(REDIAL_AFTER_S)
        record = self.m.table.get(peer_id)
        if record is None or not record.verified or not record.addrs:
            return
        if peer_id in self.m.host.connected_peers():
            return
        try:
            await self.m.host.connect(peer_id, list(record.addrs),
                                      timeout=self.m.config.dial_timeout_s)
        except DialError:
            await self.accuse(peer_id)

    async def _publish(self, suspect: Suspect) -> None:
        # Suspicions of one node at least ACCUSE_GAP_S apart (receivers budget them): each
        # caller takes the next free slot before it waits.
        now = trio.current_time()
        self._last_accusation = max(now, self._last_accusation + ACCUSE_GAP_S)
        if self._last_accusation > now:
            await trio.sleep(self._last_accusation - now)
        await self.m.presence_topic.publish(
            self.m._codec.seal(self.m.signer, suspect.to_body(), SUSPECT))

    async def accuse(self, peer_id: str) -> None:
        record = self.m.table.get(peer_id)
        if record is None:
            return
        if not self.health.may_accuse:
            self.sent["withheld"] += 1
            log.debug("suspicion withheld: this node is unhealthy",
                      extra={"peer": peer_id, "health": self.health.score})
            return
        seq = record.presence.seq if record.presence else 0
        if not self.m.table.suspect(peer_id, seq, self.m.signer.peer_id, self.m._clock()):
            return  # suspected by this node already
        self.sent["accused"] += 1
        log.info("peer suspected", extra={"peer": peer_id})
        await self._publish(Suspect(peer_id, seq))

    def suspicion(self, suspect: Suspect, accuser: str) -> None:
        """A suspicion (or death notice) gossiped by ``accuser``."""
        self.heard["dead" if suspect.dead else "suspicion"] += 1
        if suspect.peer_id == self.m.signer.peer_id:
            self.heard["refuting"] += 1
            self.health.refuted()
            log.info("refuting a suspicion of this node", extra={"peer": accuser})
            self.m.announce_soon()
        elif suspect.dead:
            # Not an independent accusation (its accuser's timer ran on the same gossip):
            # it only spares this node from sending a notice of its own.
            self.m.table.dead_noticed(suspect.peer_id, suspect.seq)
            if self._notices.get(suspect.peer_id, suspect.seq + 1) <= suspect.seq:
                del self._notices[suspect.peer_id]
        elif self.m.table.suspect(suspect.peer_id, suspect.seq, accuser, self.m._clock()):
            log.debug("peer suspected", extra={"peer": suspect.peer_id, "by": accuser})

    def timeout_s(self, accusers: int) -> float:
        return self.health.scale(
            suspicion_timeout(len(self.m.table) + 1, self.base_interval_s, accusers - 1))

    async def _notify_dead(self, peer_id: str, seq: int) -> None:
        self._notices[peer_id] = seq
        await trio.sleep(random.uniform(0, NOTICE_SPREAD * self.base_interval_s))
        if self._notices.get(peer_id) != seq:
            return  # another node's notice went out first
        del self._notices[peer_id]
        if peer_id in self.m.table:
            return  # it is back already
        self.sent["dead_notices"] += 1
        await self._publish(Suspect(peer_id, seq, dead=True))

    async def expiry_loop(self, nursery: trio.Nursery) -> None:
        while True:
            await trio.sleep(1.0)
            now = self.m._clock()
            connected = self.m.host.connected_peers()
            for record in self.m.table.suspects():
                suspicion = record.suspicion
                if suspicion is None or record.peer_id in connected:
                    continue
                if now - suspicion.since >= self.timeout_s(len(suspicion.accusers)):
                    self.m.table.forget(record.peer_id, suspicion.seq)
                    self.m.dialer.forget([record.peer_id], now)
                    log.info("peer declared dead", extra={"peer": record.peer_id,
                                                          "accusers": len(suspicion.accusers)})
                    if not suspicion.noticed:
                        nursery.start_soon(self._notify_dead, record.peer_id, suspicion.seq)
            gone = self.m.table.expire(now, connected)
            self.m.dialer.forget(gone, now)
            for peer_id in gone:
                log.info("peer expired", extra={"peer": peer_id})

    def stats(self) -> dict[str, object]:
        return {"health": self.health.score, "health_max": self.health.max_score,
                "interval_s": self.interval_s, "probes": dict(self.probes),
                "heard": dict(self.heard), "sent": dict(self.sent)}
