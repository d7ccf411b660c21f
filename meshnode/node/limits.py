"""Per-peer budgets: what one peer may make this node do at once and per second.

An open mesh admits anyone who knows its network ID, so every stream a peer opens is work
it makes this node do. :class:`PeerLimits` holds the budgets and counts every refusal per
reason (``/v1/status``, the metrics) and per peer (``meshnode peers``); it tells its
listeners (the trust service) about a peer that went over a budget, at most once per peer
every :data:`REPORT_EVERY_S`, so that a flood costs the flooder a little evidence and this
node no more work than one refusal.

:class:`LimitedHost` applies the stream budgets to any :class:`Host`: each protocol's
handler runs only while the peer has fewer than ``streams_per_peer`` of its streams open,
and, for the protocols with a rate (A2A requests, handshakes), only while the peer's token
bucket has a token. A refused stream is closed before anything is read from it.

Every table here is bounded (:data:`KEPT_PEERS`, least recently used first): a swarm of
new identities can only push each other out (a pushed-out bucket starts full again, which
gives a returning identity no more than one burst).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from meshnode.config import LimitSettings
from meshnode.node.transport import GossipMessage, Host, Stream, StreamHandler, Validator
from protocols.bucket import TokenBucket
from protocols.errors import BadSignature, DecodeError, ProtocolError

log = logging.getLogger(__name__)
#: Peers whose buckets, open streams and refusals are remembered.
KEPT_PEERS = 4096
#: A peer over a budget is reported to the listeners at most this often.
REPORT_EVERY_S = 10.0
#: The bucket key of invalid gossip a neighbour delivered (see PeerLimits.gossip_invalid).
INVALID_GOSSIP = "gossip:invalid"
#: The short names of the protocols, for refusal reasons.
_SHORT = {
    "/meshnode/a2a/1.0.0": "a2a",
    "/meshnode/hello/1.0.0": "hello",
    "/meshnode/memsync/1.0.0": "memsync",
}


def short_name(protocol: str) -> str:
    return _SHORT.get(protocol, protocol[:64])


class _Lru(OrderedDict[str, "_PeerState"]):
    def state(self, peer: str) -> _PeerState:
        found = self.get(peer)
        if found is None:
            found = self[peer] = _PeerState()
            while len(self) > KEPT_PEERS:
                # Never forget a peer with streams open: its releases must find its count.
                victim = next((p for p, s in self.items() if not s.open), None)
                if victim is None:
                    break
                del self[victim]
        else:
            self.move_to_end(peer)
        return found


@dataclass(slots=True)
class _PeerState:
    #: Streams open now, per protocol.
    open: Counter[str] = field(default_factory=Counter)
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    #: When the listeners were last told about this peer.
    reported: float = -math.inf


class PeerLimits:
    """The per-peer budgets of one node, and the count of what they refused."""

    def __init__(self, settings: LimitSettings | None = None, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.settings = settings if settings is not None else LimitSettings()
        self._clock = clock
        self._peers = _Lru()
        #: Refusals by reason, of every peer and anonymous client ever.
        self.refused: Counter[str] = Counter()
        #: Called with (peer, reason) when a peer goes over a budget (at most once per
        #: REPORT_EVERY_S per peer).
        self.listeners: list[Callable[[str, str], None]] = []
        #: How good this node's record with a peer is: 1 for none, more for good, less for
        #: bad (the trust graph's experience). Set by the node; used where a shared budget
        #: must favour peers with good evidence.
        self.standing: Callable[[str], float] = lambda _peer: 1.0

    # ---- refusals -------------------------------------------------------------------

    def refuse(self, peer: str | None, reason: str) -> None:
        """Count a refusal of ``peer``'s work (None: an anonymous client) for ``reason``."""
        self.refused[reason] += 1
        if peer is None:
            return
        state = self._peers.state(peer)
        state.refused[reason] += 1
        now = self._clock()
        if now - state.reported < REPORT_EVERY_S:
            return
        state.reported = now
        log.info("peer over budget", extra={"peer": peer, "reason": reason})
        for listener in self.listeners:
            listener(peer, reason)

    def refused_by(self, peer: str) -> dict[str, int]:
        state = self._peers.get(peer)
        return dict(state.refused) if state is not None else {}

    # ---- budgets --------------------------------------------------------------------

    def take(self, peer: str, key: str, rate_per_s: float, burst: float) -> bool:
        """One token from ``peer``'s bucket for ``key``; False when it is empty."""
        state = self._peers.state(peer)
        now = self._clock()
        bucket = state.buckets.get(key)
        if bucket is None:
            bucket = state.buckets[key] = TokenBucket(burst, rate_per_s, now)
        return bucket.take(1.0, now)

    def gossip_allowed(self, peer: str) -> bool:
        """Whether ``peer`` still has budget for invalid gossip (see gossip_invalid)."""
        state = self._peers.get(peer)
        bucket = state.buckets.get(INVALID_GOSSIP) if state is not None else None
        return bucket is None or bucket.level(self._clock()) >= 1.0

    def bad_gossip(self, peer: str, exc: ProtocolError) -> None:
        """Charge ``peer`` for delivering a gossip message that is malformed or badly signed.
        GossipSub validates before it relays, so an honest neighbour never delivers one; a
        stale, replayed or over-budget message may be relayed in good faith and costs
        nothing here."""
        if isinstance(exc, (BadSignature, DecodeError)):
            self.gossip_invalid(peer)

    def gossip_invalid(self, peer: str) -> None:
        """Charge ``peer`` for one bad gossip message."""
        state = self._peers.state(peer)
        per_min = self.settings.invalid_gossip_per_min
        bucket = state.buckets.get(INVALID_GOSSIP)
        if bucket is None:
            bucket = state.buckets[INVALID_GOSSIP] = TokenBucket(per_min, per_min / 60.0,
                                                                 self._clock())
        bucket.spend(1.0, self._clock())

    def open_stream(self, peer: str, protocol: str) -> bool:
        """Count a stream of ``peer`` on ``protocol`` as open, if its budget allows (then
        :meth:`close_stream` must follow)."""
        state = self._peers.state(peer)
        if state.open[protocol] >= self.settings.streams_per_peer:
            return False
        state.open[protocol] += 1
        return True

    def close_stream(self, peer: str, protocol: str) -> None:
        state = self._peers.get(peer)
        if state is not None and state.open[protocol] > 0:
            state.open[protocol] -= 1

    def stream_rates(self) -> dict[str, tuple[float, float]]:
        """(tokens per second, burst) of the protocols with a rate budget."""
        s = self.settings
        return {
            "/meshnode/a2a/1.0.0": (s.a2a_requests_per_s, 4.0 * s.a2a_requests_per_s),
            "/meshnode/hello/1.0.0": (s.hellos_per_min / 60.0, 3.0),
        }


class LimitedHost:
    """A :class:`Host` whose stream handlers run within each peer's budgets."""

    def __init__(self, host: Host, limits: PeerLimits) -> None:
        self.inner = host
        self.limits = limits
        self._rates = limits.stream_rates()

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        limits = self.limits
        rate = self._rates.get(protocol)
        name = short_name(protocol)

        async def limited(stream: Stream) -> None:
            peer = stream.peer_id
            if rate is not None and not limits.take(peer, protocol, *rate):
                limits.refuse(peer, f"rate:{name}")
                await stream.close()
                return
            if not limits.open_stream(peer, protocol):
                limits.refuse(peer, f"streams:{name}")
                await stream.close()
                return
            try:
                await handler(stream)
            finally:
                limits.close_stream(peer, protocol)

        self.inner.set_stream_handler(protocol, limited)

    # ---- the rest of Host, unchanged ----------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.inner.peer_id

    @property
    def connection_events(self) -> AsyncIterator[tuple[str, str]]:
        return self.inner.connection_events

    def listen_addrs(self) -> list[str]:
        return self.inner.listen_addrs()

    def connected_peers(self) -> set[str]:
        return self.inner.connected_peers()

    async def connect(self, peer_id: str, addrs: list[str], *, timeout: float) -> None:
        await self.inner.connect(peer_id, addrs, timeout=timeout)

    async def disconnect(self, peer_id: str) -> None:
        await self.inner.disconnect(peer_id)

    async def ping(self, peer_id: str, *, timeout: float) -> float:
        return await self.inner.ping(peer_id, timeout=timeout)

    def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float
    ) -> AbstractAsyncContextManager[Stream]:
        return self.inner.open_stream(peer_id, protocol, timeout=timeout)

    async def subscribe(self, topic: str) -> AsyncIterator[GossipMessage]:
        return await self.inner.subscribe(topic)

    def set_topic_validator(self, topic: str, validator: Validator) -> None:
        limits = self.limits

        def limited(message: GossipMessage) -> bool:
            # A neighbour over its budget for bad gossip (see bad_gossip) is dropped unread,
            # without decoding or a signature check.
            if not limits.gossip_allowed(message.forwarder):
                limits.refuse(message.forwarder, "gossip")
                return False
            return validator(message)

        self.inner.set_topic_validator(topic, limited)

    async def publish(self, topic: str, data: bytes) -> None:
        await self.inner.publish(topic, data)

    def topic_peers(self, topic: str) -> int:
        return self.inner.topic_peers(topic)


if TYPE_CHECKING:

    def _implements_host(host: LimitedHost) -> Host:  # mypy checks the interface here
        return host
