"""The real MeshHost against a peer that breaks py-libp2p's own protocols: it must not stop.

py-libp2p's gossip handler lets the protobuf DecodeError of a malformed RPC escape, which
ended the whole daemon (found by bench/fuzz_live.py); MeshHost contains it. Its ping
service broke for good on a peer after one timed-out ping; MeshHost pings by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings
from meshnode.node.host import GOSSIPSUB_PROTOCOLS, PING_PROTOCOL, MeshHost
from meshnode.node.transport import DialError, Stream
from tests.inmemory import eventually


async def test_a_malformed_gossip_rpc_fails_that_stream_not_the_host() -> None:
    gossip = GossipSettings(heartbeat_s=0.2)
    async with AsyncExitStack() as stack:
        victim, attacker, friend = [await stack.enter_async_context(
            MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                     gossip=gossip)) for _ in range(3)]
        for peer in (attacker, friend):
            await peer.connect(victim.peer_id, victim.listen_addrs(), timeout=10)
        for garbage in (b"\x05\xff\xff\xff\xff\xff", b"\x03\x0a\xff\x01"):
            async with attacker.open_stream(victim.peer_id, GOSSIPSUB_PROTOCOLS[0],
                                            timeout=10) as stream:
                await stream.write(garbage)
                with trio.move_on_after(2):
                    await stream.read(1024)
        await eventually(lambda: victim.faults.counts().get("gossip stream", 0) >= 1,
                         "the fault to be contained", timeout=10)
        # The host lives on: it answers pings and still relays gossip.
        assert await friend.ping(victim.peer_id, timeout=10) >= 0
        received = await victim.subscribe("t")
        await friend.subscribe("t")
        await eventually(lambda: victim.topic_peers("t") >= 1, "the gossip mesh", timeout=20)
        with trio.fail_after(20):
            while True:
                await friend.publish("t", b"still here")
                with trio.move_on_after(0.5):
                    message = await received.__anext__()
                    break
        assert message.data == b"still here"


async def test_a_ping_that_timed_out_does_not_break_later_pings() -> None:
    """py-libp2p 0.8.1's PingService keeps the stream of a cancelled ping and, on the next
    ping, calls ``stream.is_closed()`` (a property): every later ping to that peer failed,
    so one slow moment made a healthy peer look dead to failure detection for good."""
    stalled = trio.Event()

    async def ping_server(stream: Stream) -> None:
        if not stalled.is_set():  # the first ping gets no answer: the pinger times out
            stalled.set()
            await trio.sleep(30)
            return
        while data := await stream.read(32):
            await stream.write(data)

    async with AsyncExitStack() as stack:
        a, b = [await stack.enter_async_context(
            MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                     gossip=GossipSettings(heartbeat_s=0.2))) for _ in range(2)]
        b.set_stream_handler(str(PING_PROTOCOL), ping_server)
        await a.connect(b.peer_id, b.listen_addrs(), timeout=10)
        with pytest.raises(DialError):
            await a.ping(b.peer_id, timeout=1)
        assert stalled.is_set()
        for _ in range(3):
            assert await a.ping(b.peer_id, timeout=10) >= 0



class _BrokenStream:
    """A stream the peer reset before this node wrote to it (a busy or broken peer)."""

    peer_id = "peer"

    async def write(self, data: bytes) -> None:
        raise trio.BrokenResourceError("stream failed: ")

    async def read(self, n: int) -> bytes:
        raise trio.BrokenResourceError("stream failed: ")

    async def close(self) -> None:
        pass


async def test_a_ping_whose_stream_breaks_is_a_failed_ping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ping whose stream breaks fails with DialError, what the failure detector handles;
    the stream's error escaped to it before and stopped the whole daemon (seen in
    bench_gossip at 25 nodes on a saturated machine)."""

    @asynccontextmanager
    async def broken(peer_id: str, protocol: str, *, timeout: float
                     ) -> AsyncIterator[_BrokenStream]:
        yield _BrokenStream()

    async with MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                        gossip=GossipSettings(heartbeat_s=0.2)) as host:
        monkeypatch.setattr(host, "open_stream", broken)
        with pytest.raises(DialError, match="ping to peer failed"):
            await host.ping("peer", timeout=10)
