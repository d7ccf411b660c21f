"""HelloGate: tasks and memory only for peers whose hello was verified on this connection."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import NodeConfig
from meshnode.node.gate import HelloGate
from meshnode.node.host import MeshHost
from meshnode.node.membership import Membership
from protocols.peerid import Signer

LISTEN = ["/ip4/127.0.0.1/tcp/0"]


async def test_a_greeted_peer_is_admitted_at_once() -> None:
    gate = HelloGate()
    gate.passed("A")
    assert gate.greeted("A")
    with trio.fail_after(1):
        assert await gate.wait("A", timeout=10)


async def test_a_stream_waits_for_the_hello_of_its_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = HelloGate()
    results: list[bool] = []

    async def handler() -> None:
        results.append(await gate.wait("A", timeout=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler)
        await trio.sleep(3)
        assert results == []
        gate.passed("A")
    assert results == [True]


async def test_no_hello_in_time_is_a_refusal_and_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = HelloGate()
    assert not await gate.wait("A", timeout=10)
    assert gate._greeted == {}


async def test_a_gossip_only_peer_is_refused_and_wakes_its_waiters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = HelloGate()
    results: list[bool] = []

    async def handler() -> None:
        results.append(await gate.wait("J", timeout=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler)
        await trio.sleep(1)
        assert gate.no_hello("J")
    assert results == [False]
    assert trio.current_time() < 2, "refused at once, not at the deadline"
    assert not await gate.wait("J", timeout=10)


async def test_disconnect_forgets_the_hello() -> None:
    gate = HelloGate()
    gate.passed("A")
    gate.gone("A")
    assert not gate.greeted("A")


def test_gossip_only_peers_are_bounded() -> None:
    gate = HelloGate(max_gossip_only=2)
    assert gate.no_hello("J1") and gate.no_hello("J2")
    assert not gate.no_hello("J3"), "the third must be disconnected"
    assert gate.no_hello("J1"), "one already kept stays kept"
    gate.gone("J1")
    assert gate.no_hello("J3")
    assert gate.gossip_only == {"J2", "J3"}


async def test_a_failed_second_hello_keeps_the_connection_the_first_proved(
    tmp_path: Path,
) -> None:
    """A new connection (a hole-punched one, an AutoNAT dial-back) whose hello breaks off
    must not cost the peer the connection its first hello proved."""
    keys = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    config = NodeConfig(home=tmp_path, network_id="gate-test", mdns=False)
    async with (
        MeshHost(keys[0], listen=LISTEN, gossip=config.gossip) as host_a,
        MeshHost(keys[1], listen=LISTEN, gossip=config.gossip) as host_b,
        trio.open_nursery() as nursery,
    ):
        a = Membership(config, host_a, Signer(keys[0]), version="test")
        b = Membership(config, host_b, Signer(keys[1]), version="test")
        await nursery.start(a.run)
        await nursery.start(b.run)
        await host_a.connect(host_b.peer_id, host_b.listen_addrs()[:1], timeout=10)
        assert await a.gate.wait(host_b.peer_id, timeout=20)
        await a.handshake.refuse(host_b.peer_id,
                                 trio.BrokenResourceError("second connection closed"))
        assert host_b.peer_id in host_a.connected_peers()
        # A peer that never proved itself is still dropped.
        a.gate.gone(host_b.peer_id)
        await a.handshake.refuse(host_b.peer_id, trio.BrokenResourceError("no hello"))
        assert host_b.peer_id not in host_a.connected_peers()
        nursery.cancel_scope.cancel()
