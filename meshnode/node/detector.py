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
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import TYPE_CHECKING

import trio

from meshnode.node.transport import DialError
from protocols.presence import SUSPECT, Suspect, suspicion_timeout

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


class FailureDetector:
    def __init__(self, membership: Membership) -> None:
        self.m = membership
        self._order: list[str] = []
        self._missed: Counter[str] = Counter()
        self._last_accusation = -float("inf")
        #: Pings by outcome (ok, missed); suspicions heard (suspicion, refuting: of this
        #: node, which then announces a newer incarnation).
        self.probes: Counter[str] = Counter()
        self.heard: Counter[str] = Counter()

    @property
    def interval_s(self) -> float:
        return self.m.config.gossip.ping_interval_s

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
        await trio.sleep(min(1.0, self.interval_s))
        while True:
            peer = self._next()
            if peer is not None:
                # In the nursery, not inline: a slow ping must not delay the next probe.
                nursery.start_soon(self._probe, peer)
            await trio.sleep(self.interval_s)

    async def _probe(self, peer_id: str) -> None:
        try:
            rtt = await self.m.host.ping(peer_id, timeout=min(PING_TIMEOUT_S,
                                                              2 * self.interval_s))
        except DialError as exc:
            self.probes["missed"] += 1
            self._missed[peer_id] += 1
            log.debug("ping failed", extra={"peer": peer_id, "error": str(exc)})
            if self._missed[peer_id] >= SUSPECT_AFTER:
                await self.accuse(peer_id)
        else:
            self.probes["ok"] += 1
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

    async def accuse(self, peer_id: str) -> None:
        record = self.m.table.get(peer_id)
        if record is None:
            return
        seq = record.presence.seq if record.presence else 0
        if not self.m.table.suspect(peer_id, seq, self.m.signer.peer_id, self.m._clock()):
            return  # suspected by this node already
        wait = self._last_accusation + ACCUSE_GAP_S - trio.current_time()
        if wait > 0:
            await trio.sleep(wait)
        self._last_accusation = trio.current_time()
        log.info("peer suspected", extra={"peer": peer_id})
        await self.m.presence_topic.publish(
            self.m._codec.seal(self.m.signer, Suspect(peer_id, seq).to_body(), SUSPECT))

    def suspicion(self, suspect: Suspect, accuser: str) -> None:
        """A suspicion gossiped by ``accuser``."""
        self.heard["suspicion"] += 1
        if suspect.peer_id == self.m.signer.peer_id:
            self.heard["refuting"] += 1
            log.info("refuting a suspicion of this node", extra={"peer": accuser})
            self.m.announce_soon()
        elif self.m.table.suspect(suspect.peer_id, suspect.seq, accuser, self.m._clock()):
            log.debug("peer suspected", extra={"peer": suspect.peer_id, "by": accuser})

    def timeout_s(self, accusers: int) -> float:
        return suspicion_timeout(len(self.m.table) + 1, self.interval_s, accusers - 1)

    async def expiry_loop(self) -> None:
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
            gone = self.m.table.expire(now, connected)
            self.m.dialer.forget(gone, now)
            for peer_id in gone:
                log.info("peer expired", extra={"peer": peer_id})
