"""MeshHost: the libp2p host, GossipSub and ping of one node, as one trio service.

It implements :class:`meshnode.node.transport.Host`: py-libp2p's streams, messages and
validators are adapted to meshnode's own types here, so no service sees a py-libp2p object.
Security is Noise only (py-libp2p also offers plaintext, TLS and SECIO unless told
otherwise), the muxer is yamux, and an optional pre-shared key makes the network private.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from types import TracebackType
from typing import Any

import ifaddr
import multiaddr
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import PingService
from libp2p.network.config import RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from meshnode.config import GossipSettings
from meshnode.errors import MeshnodeError
from meshnode.node.faults import Faults, contained_handler
from meshnode.node.libp2p_patches import apply_patches
from meshnode.node.streams import Libp2pStream
from meshnode.node.transport import (
    DialError,
    GossipMessage,
    ProtocolNotSupported,
    PublishError,
    StreamHandler,
    Validator,
)

log = logging.getLogger(__name__)
GOSSIPSUB_PROTOCOLS = ["/meshsub/1.1.0", "/meshsub/1.0.0"]
#: Bytes of one libp2p ping (the ping protocol echoes them).
PING_LENGTH = 32
#: Forwarders remembered between validation and delivery (see MeshHost._validate).
_FORWARDERS_KEPT = 4096

__all__ = ["DialError", "MeshHost", "ProtocolNotSupported"]
#: Dials a peer through relays: (peer ID, /p2p-circuit addresses, deadline in seconds).
CircuitDialer = Callable[[str, list[str], float], Awaitable[None]]


def _refused_protocol(exc: BaseException) -> bool:
    # py-libp2p reports a peer's "na" as a StreamFailure caused by a MultiselectClientError
    # whose text says so; there is no dedicated type to catch.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MultiselectClientError) and "not supported" in str(cause):
            return True
        cause = cause.__cause__
    return False


class _ConnectionEvents(INotifee):  # type: ignore[misc]
    """Forwards connect/disconnect notifications; never blocks the swarm."""

    def __init__(self, send: trio.MemorySendChannel[tuple[str, str]]) -> None:
        self._send = send

    def _push(self, kind: str, conn: Any) -> None:
        # When the queue is full the event is dropped: the dialer reconciles with the swarm's
        # connection table every second anyway.
        with suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._send.send_nowait((kind, str(conn.muxed_conn.peer_id)))

    async def connected(self, network: Any, conn: Any) -> None:
        self._push("connected", conn)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._push("disconnected", conn)

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


class _Subscription:
    """A py-libp2p subscription seen as an async iterator of GossipMessage."""

    def __init__(self, host: MeshHost, topic: str, subscription: Any) -> None:
        self._host = host
        self._topic = topic
        self._subscription = subscription

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> GossipMessage:
        return self._host._delivered(self._topic, await self._subscription.get())


async def _no_auto_dial() -> None:
    pass


def _expand_unspecified(addr: str) -> list[str]:
    """Replace 0.0.0.0 in a listen address by this machine's IPv4 addresses."""
    if "/ip4/0.0.0.0/" not in addr:
        return [addr]
    ips = sorted(
        {
            ip.ip
            for adapter in ifaddr.get_adapters()
            for ip in adapter.ips
            if isinstance(ip.ip, str) and ipaddress.ip_address(ip.ip).version == 4
        }
        | {"127.0.0.1"}
    )
    return [addr.replace("/ip4/0.0.0.0/", f"/ip4/{ip}/") for ip in ips]


class MeshHost:
    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        listen: list[str],
        gossip: GossipSettings,
        psk: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        #: Where what a stream handler raises is logged and counted (see set_stream_handler).
        self.faults = faults if faults is not None else Faults()
        seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        key_pair = create_new_key_pair(seed)
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        try:
            listen_addrs = [multiaddr.Multiaddr(a) for a in listen]
        except Exception as exc:  # multiaddr raises several unrelated types
            raise MeshnodeError(f"bad listen address in {listen}: {exc}") from None
        self._listen = listen_addrs
        self._host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            psk=psk,
            listen_addrs=listen_addrs,
        )
        self._router = GossipSub(
            protocols=GOSSIPSUB_PROTOCOLS,
            degree=gossip.mesh_degree,
            degree_low=gossip.mesh_degree_low,
            degree_high=gossip.mesh_degree_high,
            heartbeat_interval=gossip.heartbeat_s,
            heartbeat_initial_delay=0.1,
            # Adaptive gossip stretches the heartbeat to 30-60 s when the mesh looks
            # unhealthy, which is exactly when it must heal fast.
            adaptive_gossip_enabled=False,
            max_messages_per_topic_per_second=gossip.max_messages_per_s,
            do_px=True,
        )
        # meshnode chooses whom to dial (bootstrap.DialPolicy). py-libp2p's AutoConnector
        # would dial every peer of its peerstore (any address this node ever tried, an
        # announced one included) until it held 100 connections: a full mesh at our sizes,
        # so a node's cost would grow with the mesh, and a swarm's addresses would be
        # dialed again every 30 s.
        network = self._host.get_network()
        if hasattr(network, "auto_connector"):
            network.auto_connector.maybe_connect = _no_auto_dial
        # One attempt per dial: DialPolicy backs off and retries, and py-libp2p's own three
        # retries would make every dial of a dead (or someone else's) address four.
        network.retry_config = RetryConfig(max_retries=0)
        self._pubsub = Pubsub(self._host, self._router, strict_signing=True)
        # py-libp2p's gossip stream handler lets the protobuf DecodeError of a peer's
        # malformed RPC escape, and that stops the whole host (found by bench/fuzz_live.py).
        for protocol in GOSSIPSUB_PROTOCOLS:
            self._host.set_stream_handler(protocol, self._gossip_stream)
        apply_patches(self._pubsub)
        self._ping = PingService(self._host)
        self._host.set_stream_handler(PING_PROTOCOL, self._ping.handle_ping)
        send, self.connection_events = trio.open_memory_channel[tuple[str, str]](1024)
        self._host.get_network().register_notifee(_ConnectionEvents(send))
        self._validators: dict[str, Validator] = {}
        self._forwarders: OrderedDict[tuple[bytes, bytes], str] = OrderedDict()
        self._stack = AsyncExitStack()
        #: Gossip messages this node published, per topic (for the metrics).
        self.published: Counter[str] = Counter()
        # NAT traversal (meshnode.node.nat) fills these in: relayed addresses to advertise,
        # and how to dial the /p2p-circuit addresses py-libp2p's swarm itself skips.
        self._relay_addrs: list[str] = []
        self._circuit_dialer: CircuitDialer | None = None

    @property
    def peer_id(self) -> str:
        return str(self._host.get_id())

    async def _gossip_stream(self, stream: Any) -> None:
        """py-libp2p's gossip handler, with what it lets escape failing that stream only:
        reset, and the peer dropped from gossip as py-libp2p does for errors it expects."""
        try:
            await self._pubsub.stream_handler(stream)
        except Exception as exc:
            peer = stream.muxed_conn.peer_id
            self.faults.record("gossip stream", exc, expected=True, peer=str(peer))
            with suppress(Exception):  # the stream may already be gone
                await stream.reset()
            with suppress(Exception):
                self._pubsub._handle_dead_peer(peer)

    @property
    def libp2p(self) -> Any:
        """The py-libp2p host, for py-libp2p services (relay, hole punching, AutoNAT)."""
        return self._host

    def set_relay_addrs(self, addrs: list[str]) -> None:
        """Relayed addresses (…/p2p/<relay>/p2p-circuit/p2p/<self>) to advertise too."""
        self._relay_addrs = list(addrs)

    def set_circuit_dialer(self, dialer: CircuitDialer | None) -> None:
        self._circuit_dialer = dialer

    async def __aenter__(self) -> MeshHost:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self._host.run(self._listen))
            await self._stack.enter_async_context(background_trio_service(self._pubsub))
            await self._stack.enter_async_context(background_trio_service(self._router))
            await self._pubsub.wait_until_ready()
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def listen_addrs(self) -> list[str]:
        """Addresses other nodes can dial, each ending in /p2p/<peer-id>."""
        out: list[str] = []
        for addr in self._host.get_addrs():
            out += _expand_unspecified(str(addr))
        return out + [a for a in self._relay_addrs if a not in out]

    def connected_peers(self) -> set[str]:
        return {str(p) for p in self._host.get_network().connections}

    def connection_counts(self) -> dict[str, int]:
        """Open connections by direction: ``inbound``, ``outbound`` (and ``total``)."""
        counts = self._host.get_network().get_metrics()
        return {k: int(counts.get(k, 0)) for k in ("inbound", "outbound", "total")}

    async def connect(self, peer_id: str, addrs: list[str], *, timeout: float) -> None:
        """Dial ``peer_id`` directly, or through a relay (``/p2p-circuit`` addresses) if no
        direct address works and NAT traversal is on."""
        circuits = [a for a in addrs if "/p2p-circuit" in a]
        direct = [a for a in addrs if a not in circuits]
        if not direct and circuits and self._circuit_dialer is not None:
            await self._circuit_dialer(peer_id, circuits, timeout)
            return
        try:
            info = PeerInfo(ID.from_base58(peer_id), [multiaddr.Multiaddr(a) for a in direct])
        except Exception as exc:
            raise DialError(f"unusable address for {peer_id}: {exc}") from None
        try:
            with trio.fail_after(timeout):
                await self._host.connect(info)
        except trio.TooSlowError:
            error = DialError(f"dialing {peer_id} timed out after {timeout:.0f} s")
        except Exception as exc:  # py-libp2p raises many unrelated types on a failed dial
            error = DialError(f"dialing {peer_id} failed: {exc or type(exc).__name__}")
        else:
            return
        if circuits and self._circuit_dialer is not None:
            await self._circuit_dialer(peer_id, circuits, timeout)
            return
        raise error

    async def disconnect(self, peer_id: str) -> None:
        with trio.move_on_after(5):
            try:
                await self._host.disconnect(ID.from_base58(peer_id))
            except Exception as exc:
                log.debug("disconnect failed", extra={"peer": peer_id, "error": str(exc)})

    async def ping(self, peer_id: str, *, timeout: float) -> float:
        """Round-trip time in milliseconds of one libp2p ping (32 random bytes echoed) on a
        new stream. Not py-libp2p's PingService.ping: it keeps the stream of a cancelled
        ping and then fails every later ping to that peer (0.8.1 calls the property
        ``is_closed`` as a method)."""
        payload = secrets.token_bytes(PING_LENGTH)
        with trio.move_on_after(timeout):
            start = trio.current_time()
            try:
                async with self.open_stream(peer_id, str(PING_PROTOCOL),
                                            timeout=timeout) as stream:
                    await stream.write(payload)
                    echoed = b""
                    while len(echoed) < PING_LENGTH:
                        chunk = await stream.read(PING_LENGTH - len(echoed))
                        if not chunk:
                            raise DialError(f"{peer_id} closed the ping stream")
                        echoed += chunk
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # A stream reset under a busy peer is a failed ping, not a fault of this node
                # (it escaped to the failure detector's nursery and stopped the daemon).
                raise DialError(f"ping to {peer_id} failed: {exc}") from None
            if echoed != payload:
                raise DialError(f"{peer_id} answered a ping with other bytes")
            return (trio.current_time() - start) * 1000
        raise DialError(f"no ping answer from {peer_id} within {timeout:.0f} s")

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol`` with ``handler``: whatever it raises fails only that stream."""
        contained = contained_handler(self.faults, f"stream {protocol}", handler)

        async def adapter(stream: Any) -> None:
            wrapped = Libp2pStream(stream)
            try:
                await contained(wrapped)
            finally:
                await wrapped.close()

        self._host.set_stream_handler(protocol, adapter)

    @asynccontextmanager
    async def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float
    ) -> AsyncIterator[Libp2pStream]:
        try:
            with trio.fail_after(timeout):
                raw = await self._host.new_stream(ID.from_base58(peer_id), [protocol])
        except trio.TooSlowError:
            raise DialError(f"opening {protocol} to {peer_id} timed out") from None
        except Exception as exc:
            if _refused_protocol(exc):
                raise ProtocolNotSupported(f"{peer_id} does not speak {protocol}") from None
            raise DialError(f"opening {protocol} to {peer_id} failed: {exc}") from None
        stream = Libp2pStream(raw)
        try:
            yield stream
        finally:
            await stream.close()

    # ---- gossip ------------------------------------------------------------------

    def _message(self, topic: str, msg: Any, forwarder: str) -> GossipMessage:
        return GossipMessage(topic=topic, data=bytes(msg.data),
                             origin=ID(msg.from_id).to_base58(), forwarder=forwarder)

    def _install_validator(self, topic: str) -> None:
        def validate(forwarder: Any, msg: Any) -> bool:
            return self._validate(topic, forwarder, msg)

        # Sync, not async: py-libp2p then validates, marks the message seen and delivers it
        # without a checkpoint in between, so the forwarder noted here is the deliverer's.
        self._pubsub.set_topic_validator(topic, validate, False)

    def _validate(self, topic: str, forwarder: Any, msg: Any) -> bool:
        message = self._message(topic, msg, str(forwarder))
        self._forwarders[(bytes(msg.from_id), bytes(msg.seqno))] = message.forwarder
        while len(self._forwarders) > _FORWARDERS_KEPT:
            self._forwarders.popitem(last=False)
        validator = self._validators.get(topic)
        if validator is None:
            return True
        try:
            return validator(message)
        except Exception:  # an exception here would end py-libp2p's reader for this peer
            log.exception("gossip validator failed", extra={"topic": topic})
            return False

    async def subscribe(self, topic: str) -> AsyncIterator[GossipMessage]:
        self._install_validator(topic)
        return _Subscription(self, topic, await self._pubsub.subscribe(topic))

    def _delivered(self, topic: str, msg: Any) -> GossipMessage:
        key = (bytes(msg.from_id), bytes(msg.seqno))
        # Unknown only if py-libp2p delivered without validating (its validation cache):
        # then the origin is the best guess; blame is only ever laid in validators anyway.
        forwarder = self._forwarders.pop(key, None) or ID(msg.from_id).to_base58()
        return self._message(topic, msg, forwarder)

    def set_topic_validator(self, topic: str, validator: Validator) -> None:
        self._validators[topic] = validator
        self._install_validator(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        try:
            await self._pubsub.publish(topic, data)
        except Exception as exc:  # py-libp2p's publish raises assorted errors
            raise PublishError(f"publishing on {topic} failed: {exc or type(exc).__name__}") \
                from None
        self.published[topic] += 1

    def topic_peers(self, topic: str) -> int:
        return len(self._pubsub.peer_topics.get(topic, ()))
