"""Membership: who is in this node's mesh, found by gossip with no coordinator.

One service owns the peer table and the tasks that keep it true: the hello handshake on
every new connection (drops nodes of other networks), the periodic signed presence
announcement, the presence listener, the dialer that keeps ``target_connections`` open,
the pinger that measures RTT, and the expiry of silent peers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from bootstrap import DialPolicy, parse_bootstrap
from meshnode.config import NodeConfig
from meshnode.node.faults import Faults
from meshnode.node.gate import HelloGate
from meshnode.node.peers import PeerTable
from meshnode.node.streams import read_frame, write_frame
from meshnode.node.topics import EnvelopeCodec, Signed, SignedTopic
from meshnode.node.transport import DialError, GossipMessage, Host, ProtocolNotSupported, Stream
from meshnode.stats import quantile
from protocols.codec import FrameDecoder
from protocols.envelope import (
    EnvelopeGuard,
    NetworkMismatch,
    decode_envelope,
    encode_envelope,
    seal,
)
from protocols.errors import ProtocolError
from protocols.peerid import Signer
from protocols.presence import (
    HELLO,
    MAX_PRESENCE_SIZE,
    PRESENCE,
    Hello,
    Presence,
    hello_from_envelope,
    presence_from_envelope,
    topic,
)

log = logging.getLogger(__name__)
HELLO_PROTOCOL = "/meshnode/hello/1.0.0"
HELLO_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 5.0


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
        # Peers found other than by gossip (on the LAN by mDNS): dialed like known peers.
        self._candidates = candidates
        self.table = PeerTable(signer.peer_id, ttl_s=config.gossip.peer_ttl_s)
        self.guard = EnvelopeGuard(config.network_id)
        self.dialer = DialPolicy(config.target_connections)
        self.gate = HelloGate()
        self._bootstrap = {p.peer_id: p.addr for p in map(parse_bootstrap, config.bootstrap)}
        self._presence = EnvelopeCodec(self.guard, PRESENCE, presence_from_envelope,
                                       max_size=MAX_PRESENCE_SIZE + 1024, clock=clock)
        self.presence_topic = SignedTopic(host, topic(config.network_id, "presence"),
                                          self._presence, self_id=signer.peer_id,
                                          on_bad=self.report_bad_message)
        self._announce_now = trio.Event()
        self._seq = time.time_ns() // 1000  # keeps increasing across restarts
        self.faults = faults if faults is not None else Faults()
        #: Handshakes by outcome (accepted, wrong_network, refused, failed) and dials by
        #: outcome (ok, failed): what /v1/status shows and tests wait on.
        self.handshakes: Counter[str] = Counter()
        self.dials: Counter[str] = Counter()
        # (received at, publish-to-receipt ms, sender): what operators and bench/ look at.
        # Called with a peer ID after every successful handshake (e.g. to start a memory sync).
        self.handshake_listeners: list[Callable[[str], None]] = []
        # Called with the peer that delivered a message that failed its checks (evidence for
        # the trust graph, which decides which failures count against the peer).
        self.bad_message_listeners: list[Callable[[str, ProtocolError], None]] = []
        self.latency_samples: deque[tuple[float, float, str]] = deque(maxlen=4096)

    # ---- lifecycle ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(HELLO_PROTOCOL, self._answer_hello)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.presence_topic.run, self._on_presence)
            nursery.start_soon(self._connection_events, nursery)
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._dial_loop, nursery)
            nursery.start_soon(self._ping_loop)
            nursery.start_soon(self._expiry_loop)
            task_status.started()

    # ---- handshake ---------------------------------------------------------------

    def _hello_envelope(self) -> bytes:
        hello = Hello(addrs=tuple(self.host.listen_addrs()), version=self.version)
        env = seal(self.signer, self.config.network_id, HELLO, hello.to_body(), now=self._clock())
        return encode_envelope(env)

    def _accept_hello(self, peer_id: str, frame: bytes | None) -> None:
        if frame is None:
            raise trio.BrokenResourceError("peer closed the handshake")
        env = decode_envelope(frame, max_size=16 * 1024)
        if env.sender != peer_id:
            raise ProtocolError("hello signed by another peer than the connection's")
        if env.network_id != self.config.network_id:
            raise NetworkMismatch(
                f"peer is on network {env.network_id!r}, this node on {self.config.network_id!r}"
            )
        self.guard.admit(env, self._clock())
        hello = hello_from_envelope(env)
        known = peer_id in self.table
        self.table.saw_hello(peer_id, hello.addrs, hello.version, self._clock())
        self.handshakes["accepted"] += 1
        self.gate.passed(peer_id)
        for listener in self.handshake_listeners:
            listener(peer_id)
        if not known:
            log.info("peer joined", extra={"peer": peer_id, "addrs": list(hello.addrs)})
            self._announce_now.set()

    async def _answer_hello(self, stream: Stream) -> None:
        peer_id = stream.peer_id
        try:
            frame = await read_frame(stream, FrameDecoder(16 * 1024), timeout=HELLO_TIMEOUT_S)
            await write_frame(stream, self._hello_envelope(), timeout=HELLO_TIMEOUT_S)
            self._accept_hello(peer_id, frame)
        except (ProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            await self._refuse(peer_id, exc)

    async def _greet(self, peer_id: str) -> None:
        # Runs in the membership nursery: whatever a peer's hello makes fail stays here.
        with self.faults.contained("hello", peer=peer_id):
            try:
                async with self.host.open_stream(
                    peer_id, HELLO_PROTOCOL, timeout=HELLO_TIMEOUT_S
                ) as stream:
                    await write_frame(stream, self._hello_envelope(), timeout=HELLO_TIMEOUT_S)
                    frame = await read_frame(stream, FrameDecoder(16 * 1024),
                                             timeout=HELLO_TIMEOUT_S)
                    self._accept_hello(peer_id, frame)
            except ProtocolNotSupported as exc:
                if self.gate.no_hello(peer_id):
                    log.info("gossip-only peer: it does not speak meshnode's hello",
                             extra={"peer": peer_id})
                else:
                    await self._refuse(peer_id, exc)
            except (ProtocolError, trio.BrokenResourceError, DialError, trio.TooSlowError) as exc:
                await self._refuse(peer_id, exc)

    async def _refuse(self, peer_id: str, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        self.handshakes["wrong_network" if isinstance(exc, NetworkMismatch) else
                        "refused" if isinstance(exc, ProtocolError) else "failed"] += 1
        if isinstance(exc, NetworkMismatch):
            level = logging.ERROR if peer_id in self._bootstrap else logging.WARNING
            log.log(level, "refusing peer of another network", extra={"peer": peer_id,
                                                                       "reason": reason})
        else:
            log.warning("handshake failed", extra={"peer": peer_id, "reason": reason})
        if isinstance(exc, ProtocolError):
            # Another network, or a peer that cannot sign or keep time: not worth a retry.
            self.dialer.ban(peer_id, self._clock())
            self.report_bad_message(peer_id, exc)
        else:
            self.dialer.failed(peer_id, self._clock())  # slow or gone: back off and retry
            if self.gate.greeted(peer_id):
                return  # another connection already proved the peer: keep that one
        await self.host.disconnect(peer_id)

    def report_bad_message(self, peer_id: str, exc: ProtocolError) -> None:
        for listener in self.bad_message_listeners:
            listener(peer_id, exc)

    async def _connection_events(self, nursery: trio.Nursery) -> None:
        async for kind, peer_id in self.host.connection_events:
            if kind == "connected":
                # One hello per peer: a second connection (a direct one replacing a relayed
                # one, an AutoNAT dial-back) changes nothing the first one proved.
                if not self.gate.greeted(peer_id):
                    nursery.start_soon(self._greet, peer_id)
                continue
            if peer_id in self.host.connected_peers():
                continue  # one of several connections closed (a relayed one, a dial-back)
            self.gate.gone(peer_id)
            if peer_id in self.table:
                log.info("peer disconnected", extra={"peer": peer_id})

    # ---- presence ----------------------------------------------------------------

    @property
    def presence_received(self) -> int:
        return self.presence_topic.accepted

    @property
    def presence_rejected(self) -> int:
        return self.presence_topic.rejected_total

    async def _on_presence(self, message: GossipMessage, signed: Signed[Presence]) -> None:
        env, presence = signed.envelope, signed.value
        now = self._clock()
        self.latency_samples.append((now, (now - env.ts) * 1000, env.sender))
        known = presence.peer_id in self.table
        if self.table.saw_presence(presence, now) and not known:
            log.info("peer discovered", extra={"peer": presence.peer_id})
            # Answer a newcomer at once, so it learns the mesh in one round trip instead
            # of one presence interval.
            self._announce_now.set()

    def presence(self) -> Presence:
        self._seq += 1
        return Presence(
            peer_id=self.signer.peer_id,
            addrs=tuple(self.host.listen_addrs()),
            version=self.version,
            seq=self._seq,
            ttl_s=self.config.gossip.peer_ttl_s,
            load=self._load(),
            agents=tuple(self._agent_cards()),
        )

    async def _announce_loop(self) -> None:
        interval = self.config.gossip.presence_interval_s
        while True:
            await self.presence_topic.publish(
                self._presence.seal(self.signer, self.presence().to_body()))
            self._announce_now = trio.Event()
            with trio.move_on_after(interval):
                await self._announce_now.wait()
                await trio.sleep(0.2)  # let the new peer's GossipSub subscriptions settle

    # ---- dialing, pinging, expiry ------------------------------------------------

    async def _dial(self, peer_id: str, addrs: list[str]) -> None:
        try:
            await self.host.connect(peer_id, addrs, timeout=self.config.dial_timeout_s)
        except DialError as exc:
            self.dials["failed"] += 1
            delay = self.dialer.failed(peer_id, self._clock())
            log.info("dial failed", extra={"peer": peer_id, "error": str(exc),
                                           "retry_in_s": round(delay, 1)})
        else:
            self.dials["ok"] += 1
            self.dialer.succeeded(peer_id)

    async def _dial_loop(self, nursery: trio.Nursery) -> None:
        while True:
            picks = self.dialer.choose(
                known={**self._candidates(), **self.table.known_addrs()},
                connected=self.verified_connected(),
                bootstrap=self._bootstrap,
                self_id=self.signer.peer_id,
                now=self._clock(),
            )
            for peer_id, addrs in picks:
                nursery.start_soon(self._dial, peer_id, addrs)
            await trio.sleep(1.0)

    async def _ping_one(self, peer_id: str) -> None:
        try:
            rtt = await self.host.ping(peer_id, timeout=PING_TIMEOUT_S)
        except DialError as exc:  # a failed ping is only a missing measurement
            log.debug("ping failed", extra={"peer": peer_id, "error": str(exc)})
        else:
            self.table.saw_ping(peer_id, rtt, self._clock())

    async def _ping_loop(self) -> None:
        await trio.sleep(1.0)
        while True:
            async with trio.open_nursery() as nursery:
                for peer_id in self.verified_connected():
                    nursery.start_soon(self._ping_one, peer_id)
            await trio.sleep(self.config.gossip.ping_interval_s)

    async def _expiry_loop(self) -> None:
        while True:
            await trio.sleep(1.0)
            now = self._clock()
            gone = self.table.expire(now, self.host.connected_peers())
            self.dialer.forget(gone, now)
            for peer_id in gone:
                log.info("peer expired", extra={"peer": peer_id})

    # ---- views -------------------------------------------------------------------

    def verified_connected(self) -> set[str]:
        return {p for p in self.host.connected_peers() if p in self.table}

    def peers_json(self) -> list[dict[str, Any]]:
        return self.table.snapshot(self.host.connected_peers())

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
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "samples": len(latencies)},
            "samples": [[t, round(ms, 3), sender] for t, ms, sender in samples],
        }
