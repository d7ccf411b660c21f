"""One contract, two hosts: the real MeshHost (py-libp2p on loopback, in this process) and
the InMemoryHost behave alike where the services depend on them: streams reach the
protocol's handler and name the opener, gossip is relayed with the relaying neighbour as
forwarder, a validator's rejection stops a message there, and failures are DialErrors
(ProtocolNotSupported when the peer is there but does not speak the protocol)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings
from meshnode.node.host import MeshHost
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.transport import DialError, GossipMessage, Host, ProtocolNotSupported, Stream
from protocols.peerid import Signer
from tests.inmemory import eventually

ECHO = "/test/echo/1.0.0"
TOPIC = "test/contract"


@asynccontextmanager
async def _real(count: int) -> AsyncIterator[list[Host]]:
    gossip = GossipSettings(heartbeat_s=0.2)
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                     gossip=gossip)) for _ in range(count)]


@asynccontextmanager
async def _in_memory(count: int) -> AsyncIterator[list[Host]]:
    mesh = InMemoryMesh()
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            mesh.host(Signer(Ed25519PrivateKey.generate()).peer_id)) for _ in range(count)]


KINDS = {"in-memory": _in_memory, "libp2p": _real}
pytestmark = pytest.mark.parametrize("kind", list(KINDS))


async def _link(a: Host, b: Host) -> None:
    await a.connect(b.peer_id, b.listen_addrs(), timeout=10)


async def _echo(stream: Stream) -> None:
    while data := await stream.read(1024):
        await stream.write(stream.peer_id.encode() + b":" + data)


async def test_streams_and_ping(kind: str) -> None:
    async with KINDS[kind](3) as (a, b, c):
        await _streams_and_ping(a, b, c)


async def _streams_and_ping(a: Host, b: Host, c: Host) -> None:
    b.set_stream_handler(ECHO, _echo)
    with pytest.raises(DialError):
        await a.connect(c.peer_id, ["/ip4/127.0.0.1/tcp/1"], timeout=5)
    await _link(a, b)
    await eventually(lambda: b.peer_id in a.connected_peers()
                     and a.peer_id in b.connected_peers(), "the connection")
    async with a.open_stream(b.peer_id, ECHO, timeout=10) as stream:
        assert stream.peer_id == b.peer_id
        await stream.write(b"hi")
        assert await stream.read(1024) == a.peer_id.encode() + b":hi"
    assert await a.ping(b.peer_id, timeout=10) >= 0.0
    # A protocol the peer does not speak is told apart (a client then falls back).
    with pytest.raises(ProtocolNotSupported):
        async with a.open_stream(b.peer_id, "/nobody/speaks/this/1.0.0", timeout=10):
            pass
    await a.disconnect(b.peer_id)
    await eventually(lambda: not a.connected_peers(), "the disconnection")
    # A peer seen before is dialed again for a stream; one never reached is not.
    async with a.open_stream(b.peer_id, ECHO, timeout=10) as stream:
        await stream.write(b"again")
        assert await stream.read(1024) == a.peer_id.encode() + b":again"
    assert b.peer_id in a.connected_peers()
    with pytest.raises(DialError) as info:
        async with a.open_stream(c.peer_id, ECHO, timeout=5):
            pass
    assert not isinstance(info.value, ProtocolNotSupported)


async def test_gossip_is_relayed_and_validated_on_the_way(kind: str) -> None:
    async with KINDS[kind](3) as (a, b, c):
        await _relayed(a, b, c)


async def _relayed(a: Host, b: Host, c: Host) -> None:
    seen_by_b: list[GossipMessage] = []

    def b_validates(message: GossipMessage) -> bool:
        seen_by_b.append(message)
        return not message.data.startswith(b"bad")

    b.set_topic_validator(TOPIC, b_validates)
    inbox = {h.peer_id: await h.subscribe(TOPIC) for h in (a, b, c)}
    await _link(a, b)
    await _link(b, c)  # a and c are not connected: b relays
    await eventually(lambda: a.topic_peers(TOPIC) == 1 and b.topic_peers(TOPIC) == 2
                     and c.topic_peers(TOPIC) == 1, "the topic's peers")
    got: list[GossipMessage] = []
    arrived = trio.Event()

    async def receive_at_c() -> None:
        async for message in inbox[c.peer_id]:
            got.append(message)
            arrived.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_at_c)
        # GossipSub grafts its mesh on heartbeats: publish until the relay carries it.
        n = 0
        with trio.fail_after(30):
            while not got:
                n += 1
                await a.publish(TOPIC, b"bad %d" % n)
                await a.publish(TOPIC, b"good %d" % n)
                with trio.move_on_after(0.5):
                    await arrived.wait()
        nursery.cancel_scope.cancel()
    assert got[0].data.startswith(b"good") and got[0].origin == a.peer_id
    assert got[0].forwarder == b.peer_id
    assert all(not m.data.startswith(b"bad") for m in got)
    assert seen_by_b and {m.forwarder for m in seen_by_b} == {a.peer_id}
    assert {m.origin for m in seen_by_b} == {a.peer_id}
    own = inbox[a.peer_id]
    with trio.fail_after(5):
        mine = await own.__anext__()  # a publisher receives its own message
    assert mine.origin == mine.forwarder == a.peer_id
