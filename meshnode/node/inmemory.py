"""InMemoryMesh: the hosts of many nodes in one trio program, joined by memory, not sockets.

Each :class:`InMemoryHost` implements :class:`~meshnode.node.transport.Host` the way
MeshHost does, so the real services run on it in fast, in-process tests:

- **Connections** are links between two hosts, made by ``connect`` (to one of the peer's
  ``listen_addrs``) and ended by ``disconnect``; both ends get a connection event.
- **Streams** are a pair of in-memory byte pipes; the peer's handler for the protocol runs
  in the peer host's nursery. A link that goes away resets its streams
  (trio.BrokenResourceError), as a lost connection does. Opening a stream to a peer that
  is not connected redials it if this host was connected to it before (py-libp2p dials
  the addresses in its peerstore), and fails otherwise.
- **Gossip** floods, like GossipSub in a mesh this small: a message goes to every connected
  peer subscribed to its topic, each host delivers and forwards it once (dedup by origin and
  sequence number), and the topic validator of every receiving host runs first, with the
  neighbour that relayed it as the forwarder; a message it rejects goes no further. A
  publisher validates its own message too, and receives it if it is subscribed.
- **Ping** takes the link's round-trip time (``rtt_s``, settable per link).
- **Knobs** for tests: ``cut``/``heal`` a link, ``partition`` into groups, ``drop`` a peer
  off the network (and ``restore`` it).

Nothing here reads the wall clock: under trio's MockClock the mesh runs in virtual time.
:meth:`InMemoryMesh.clock` is a wall clock derived from trio's clock, for the services'
signatures and ages. Faults are contained as a real host must contain them: a stream
handler or validator that raises is logged and counted (``handler_errors``,
``validator_errors``), so a test can assert there were none.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from meshnode.node.pipes import InMemoryStream, Pipe
from meshnode.node.transport import (
    DialError,
    GossipMessage,
    ProtocolNotSupported,
    StreamHandler,
    Validator,
)

if TYPE_CHECKING:
    from meshnode.node.transport import Host

log = logging.getLogger(__name__)
#: Messages a subscription holds before new ones are dropped (py-libp2p holds 32).
SUBSCRIPTION_BUFFER = 256
INBOX_SIZE = 4096
EVENTS_SIZE = 1024
SEEN_KEPT = 65536
#: A plausible Unix time for trio's time zero, so that signed timestamps look real.
EPOCH = 1_800_000_000.0


@dataclass(eq=False)
class _Link:
    streams: set[InMemoryStream] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Delivery:
    topic: str
    data: bytes
    origin: str
    seqno: int
    forwarder: str


class InMemoryMesh:
    def __init__(self, *, rtt_s: float = 0.002, epoch: float = EPOCH) -> None:
        self.rtt_s = rtt_s
        self.epoch = epoch
        self.hosts: dict[str, InMemoryHost] = {}
        self._links: dict[frozenset[str], _Link] = {}
        self._cut: set[frozenset[str]] = set()
        self._rtt: dict[frozenset[str], float] = {}

    def clock(self) -> float:
        """Wall-clock time for the services, derived from trio's (possibly mock) clock."""
        return self.epoch + trio.current_time()

    def host(self, peer_id: str) -> InMemoryHost:
        """A new host for ``peer_id`` (the node's signer's); ``async with`` runs it."""
        if peer_id in self.hosts:
            raise ValueError(f"{peer_id} already has a host in this mesh")
        n = len(self.hosts) + 1
        addr = f"/ip4/10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}/tcp/4001/p2p/{peer_id}"
        host = self.hosts[peer_id] = InMemoryHost(self, peer_id, addr)
        return host

    # ---- knobs for tests -------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Disconnect ``a`` and ``b`` and keep them from connecting until healed."""
        self._cut.add(frozenset((a, b)))
        self._unlink(a, b)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between peers of different groups."""
        sets = [set(g) for g in groups]
        for i, group in enumerate(sets):
            for other in sets[i + 1:]:
                for a in group:
                    for b in other:
                        self.cut(a, b)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Allow ``a`` and ``b`` to connect again (every cut link, without arguments).
        Nodes reconnect by themselves, as after a real network fault."""
        if a is None or b is None:
            self._cut.clear()
        else:
            self._cut.discard(frozenset((a, b)))

    def drop(self, peer_id: str) -> None:
        """Take ``peer_id`` off the network: every link goes, and no dial reaches it or
        leaves it until :meth:`restore`. Its services keep running, unheard."""
        self.hosts[peer_id].reachable = False
        for pair in [p for p in self._links if peer_id in p]:
            self._unlink(*pair)

    def restore(self, peer_id: str) -> None:
        self.hosts[peer_id].reachable = True

    def set_rtt(self, a: str, b: str, seconds: float) -> None:
        self._rtt[frozenset((a, b))] = seconds

    def rtt(self, a: str, b: str) -> float:
        return self._rtt.get(frozenset((a, b)), self.rtt_s)

    def linked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._links

    # ---- what hosts do -----------------------------------------------------------------

    def _neighbours(self, peer_id: str) -> list[str]:
        return sorted(p for pair in self._links if peer_id in pair for p in pair
                      if p != peer_id)

    def _dial(self, source: InMemoryHost, peer_id: str, addrs: list[str]) -> None:
        pair = frozenset((source.peer_id, peer_id))
        if pair in self._links:
            return  # as py-libp2p: already connected, whatever addresses were given
        target = self.hosts.get(peer_id)
        if peer_id == source.peer_id:
            raise DialError("a host cannot dial itself")
        if target is None or not target.running or not target.reachable or not source.reachable:
            raise DialError(f"dialing {peer_id} failed: no route to host")
        if not any(a in target.listen_addrs() or f"{a}/p2p/{peer_id}" in target.listen_addrs()
                   for a in addrs):
            raise DialError(f"dialing {peer_id} failed: none of {addrs} is its address")
        if pair in self._cut:
            raise DialError(f"dialing {peer_id} timed out (the link is cut)")
        self._links[pair] = _Link()
        source._known.add(peer_id)
        target._known.add(source.peer_id)
        source._event("connected", peer_id)
        target._event("connected", source.peer_id)

    def _unlink(self, a: str, b: str) -> None:
        link = self._links.pop(frozenset((a, b)), None)
        if link is None:
            return
        for stream in list(link.streams):
            stream.reset()
        self.hosts[a]._event("disconnected", b)
        self.hosts[b]._event("disconnected", a)

    def _open(self, source: InMemoryHost, peer_id: str, protocol: str) -> InMemoryStream:
        pair = frozenset((source.peer_id, peer_id))
        if pair not in self._links and peer_id in source._known:
            # py-libp2p redials a peer whose addresses it has seen; so does this mesh.
            self._dial(source, peer_id, self.hosts[peer_id].listen_addrs())
        link = self._links.get(pair)
        if link is None:
            raise DialError(f"opening {protocol} to {peer_id} failed: not connected")
        target = self.hosts[peer_id]
        handler = target._handlers.get(protocol)
        if handler is None or target._nursery is None:
            raise ProtocolNotSupported(
                f"opening {protocol} to {peer_id} failed: protocol not supported")
        there, back = Pipe(), Pipe()
        ours = InMemoryStream(peer_id, back, there, link.streams.discard)
        theirs = InMemoryStream(source.peer_id, there, back, link.streams.discard)
        link.streams |= {ours, theirs}
        target._nursery.start_soon(target._handle, handler, theirs)
        return ours


class InMemoryHost:
    def __init__(self, mesh: InMemoryMesh, peer_id: str, addr: str) -> None:
        self._mesh = mesh
        self._peer_id = peer_id
        self._addrs = [addr]
        self._handlers: dict[str, StreamHandler] = {}
        self._validators: dict[str, Validator] = {}
        self._subscriptions: dict[str, trio.MemorySendChannel[GossipMessage]] = {}
        self._receivers: dict[str, trio.MemoryReceiveChannel[GossipMessage]] = {}
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._seqno = 0
        #: Peers this host was ever connected to: it can dial them again by itself.
        self._known: set[str] = set()
        self._events, self.connection_events = trio.open_memory_channel[tuple[str, str]](
            EVENTS_SIZE)
        self._inbox_send, self._inbox = trio.open_memory_channel[_Delivery](INBOX_SIZE)
        self._nursery: trio.Nursery | None = None
        self._stack = AsyncExitStack()
        self.reachable = True
        #: Gossip messages lost to a full subscription or inbox.
        self.dropped = 0
        self.handler_errors = 0
        self.validator_errors = 0

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def running(self) -> bool:
        return self._nursery is not None

    async def __aenter__(self) -> InMemoryHost:
        await self._stack.enter_async_context(self._running())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump)
            self._nursery = nursery
            try:
                yield
            finally:
                self._nursery = None
                for peer in self._mesh._neighbours(self.peer_id):
                    self._mesh._unlink(self.peer_id, peer)
                nursery.cancel_scope.cancel()

    # ---- peers ---------------------------------------------------------------------------

    def _event(self, kind: str, peer_id: str) -> None:
        # Past a full queue the event is lost, as with MeshHost: consumers reconcile with
        # connected_peers().
        with suppress(trio.WouldBlock):
            self._events.send_nowait((kind, peer_id))

    def listen_addrs(self) -> list[str]:
        return list(self._addrs)

    def connected_peers(self) -> set[str]:
        return set(self._mesh._neighbours(self.peer_id))

    async def connect(self, peer_id: str, addrs: list[str], *, timeout: float) -> None:
        await trio.lowlevel.checkpoint()
        if not self.running:
            raise DialError("this host is not running")
        self._mesh._dial(self, peer_id, addrs)

    async def disconnect(self, peer_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._mesh._unlink(self.peer_id, peer_id)

    async def ping(self, peer_id: str, *, timeout: float) -> float:
        if peer_id not in self.connected_peers():
            await trio.lowlevel.checkpoint()
            raise DialError(f"ping to {peer_id} failed: not connected")
        start = trio.current_time()
        with trio.move_on_after(timeout) as scope:
            await trio.sleep(self._mesh.rtt(self.peer_id, peer_id))
        if scope.cancelled_caught:
            raise DialError(f"no ping answer from {peer_id} within {timeout:.0f} s")
        if peer_id not in self.connected_peers():
            raise DialError(f"ping to {peer_id} failed: disconnected")
        return (trio.current_time() - start) * 1000

    # ---- streams -------------------------------------------------------------------------

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        self._handlers[protocol] = handler

    @asynccontextmanager
    async def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float
    ) -> AsyncIterator[InMemoryStream]:
        await trio.lowlevel.checkpoint()
        stream = self._mesh._open(self, peer_id, protocol)
        try:
            yield stream
        finally:
            await stream.close()

    async def _handle(self, handler: StreamHandler, stream: InMemoryStream) -> None:
        try:
            await handler(stream)
        except Exception:  # a real host must survive its handlers; tests read the count
            self.handler_errors += 1
            log.exception("stream handler failed", extra={"peer": stream.peer_id})
        finally:
            await stream.close()

    # ---- gossip --------------------------------------------------------------------------

    async def subscribe(self, topic: str) -> AsyncIterator[GossipMessage]:
        await trio.lowlevel.checkpoint()
        if topic not in self._subscriptions:
            send, receive = trio.open_memory_channel[GossipMessage](SUBSCRIPTION_BUFFER)
            self._subscriptions[topic], self._receivers[topic] = send, receive
        return self._receivers[topic]

    def set_topic_validator(self, topic: str, validator: Validator) -> None:
        self._validators[topic] = validator

    async def publish(self, topic: str, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._seqno += 1
        self._receive(_Delivery(topic, bytes(data), self.peer_id, self._seqno, self.peer_id))

    def topic_peers(self, topic: str) -> int:
        return sum(1 for p in self._mesh._neighbours(self.peer_id)
                   if topic in self._mesh.hosts[p]._subscriptions)

    def _deliver(self, delivery: _Delivery) -> None:
        if not self.running:
            return
        try:
            self._inbox_send.send_nowait(delivery)
        except trio.WouldBlock:
            self.dropped += 1

    async def _pump(self) -> None:
        async for delivery in self._inbox:
            self._receive(delivery)

    def _receive(self, d: _Delivery) -> None:
        key = (d.origin, d.seqno)
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_KEPT:
            self._seen.popitem(last=False)
        message = GossipMessage(d.topic, d.data, d.origin, d.forwarder)
        validator = self._validators.get(d.topic)
        if validator is not None and not self._valid(validator, message):
            return
        if d.origin == self.peer_id and d.forwarder != self.peer_id:
            return  # claims to be ours but came from outside: py-libp2p drops it too
        if (send := self._subscriptions.get(d.topic)) is not None:
            try:
                send.send_nowait(message)
            except trio.WouldBlock:
                self.dropped += 1
        relayed = _Delivery(d.topic, d.data, d.origin, d.seqno, self.peer_id)
        for peer in self._mesh._neighbours(self.peer_id):
            other = self._mesh.hosts[peer]
            if peer not in (d.forwarder, d.origin) and d.topic in other._subscriptions:
                other._deliver(relayed)

    def _valid(self, validator: Validator, message: GossipMessage) -> bool:
        try:
            return validator(message)
        except Exception:
            self.validator_errors += 1
            log.exception("gossip validator failed", extra={"topic": message.topic})
            return False


if TYPE_CHECKING:

    def _implements_host(host: InMemoryHost) -> Host:  # mypy checks the interface here
        return host
