"""meshnode's fixes to py-libp2p: the version check, and what each fix is for."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings
from meshnode.node import libp2p_patches
from meshnode.node.host import MeshHost
from meshnode.node.libp2p_patches import (
    SUPPORTED_VERSION,
    apply_patches,
    libp2p_version,
    patches_apply,
    seed_seqno,
)

TOPIC = "/meshnode/patch-test/1"
GOSSIP = GossipSettings(heartbeat_s=0.2)
LISTEN = ["/ip4/127.0.0.1/tcp/0"]


def test_written_for_the_pinned_release() -> None:
    # pyproject pins libp2p==SUPPORTED_VERSION: a bump must revisit every fix here.
    assert libp2p_version() == SUPPORTED_VERSION
    assert patches_apply()
    assert not patches_apply("0.8.2") and not patches_apply("unknown")


def test_another_release_is_left_alone_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(libp2p_patches, "libp2p_version", lambda: "0.9.0")
    pubsub = SimpleNamespace(counter=1_700_000_000)
    with caplog.at_level(logging.WARNING):
        assert not apply_patches(pubsub)
    assert pubsub.counter == 1_700_000_000
    assert "written for 0.8.1, found 0.9.0" in caplog.text


def test_seqno_starts_at_the_time_in_nanoseconds_and_never_goes_back() -> None:
    pubsub = SimpleNamespace(counter=1_700_000_000)
    seed_seqno(pubsub, now_ns=1_700_000_000_123_456_789)
    assert pubsub.counter == 1_700_000_000_123_456_789
    seed_seqno(pubsub, now_ns=5)
    assert pubsub.counter == 1_700_000_000_123_456_789


async def _wait_topic_peer(host: MeshHost) -> None:
    for _ in range(400):  # py-libp2p has no event for "a peer joined this topic"
        if host.topic_peers(TOPIC):
            return
        await trio.sleep(0.05)
    raise AssertionError("the peer's subscription never arrived")


async def test_a_restarted_node_is_heard_after_a_burst() -> None:
    """A node publishes a burst, restarts with the same key and publishes again: its peer,
    which remembers the burst, must take the new message as new (fails without fix 1:
    py-libp2p restarts its counter at the time in seconds, below the burst's numbers)."""
    key = Ed25519PrivateKey.generate()
    received: list[bytes] = []
    send, arrivals = trio.open_memory_channel[bytes](1000)

    async def receive(subscription: Any) -> None:
        while True:
            await send.send((await anext(subscription)).data)

    async with (
        MeshHost(Ed25519PrivateKey.generate(), listen=LISTEN, gossip=GOSSIP) as receiver,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(receive, await receiver.subscribe(TOPIC))
        for run, count in enumerate((100, 1)):
            async with MeshHost(key, listen=LISTEN, gossip=GOSSIP) as sender:
                await sender.connect(receiver.peer_id, receiver.listen_addrs()[:1], timeout=10)
                await _wait_topic_peer(sender)
                for i in range(count):
                    await sender.publish(TOPIC, f"run {run} message {i}".encode())
                    await trio.sleep(0.005)  # py-libp2p's subscription queue is short
                with trio.move_on_after(10):
                    for _ in range(count):
                        received.append(await arrivals.receive())
                await sender.disconnect(receiver.peer_id)
        nursery.cancel_scope.cancel()
    assert len(received) == 101, received[-3:]
    assert received[-1] == b"run 1 message 0"
