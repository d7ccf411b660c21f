"""meshnode's fixes to py-libp2p: the version check, and what each fix is for (each test of
a fix fails without it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.pubsub import utils
from libp2p.stream_muxer.yamux import yamux

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
from meshnode.node.transport import Stream
from tests.inmemory import eventually

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
    check = libp2p_pubsub.maybe_consume_signed_record
    update = yamux.YamuxStream._auto_tune_and_send_window_update
    with caplog.at_level(logging.WARNING):
        assert not apply_patches(pubsub)
    assert pubsub.counter == 1_700_000_000
    assert libp2p_pubsub.maybe_consume_signed_record is check
    assert yamux.YamuxStream._auto_tune_and_send_window_update is update
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


ECHO = "/test/echo/1.0.0"


@asynccontextmanager
async def _hosts(count: int) -> AsyncIterator[list[MeshHost]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            MeshHost(Ed25519PrivateKey.generate(), listen=LISTEN,
                     gossip=GOSSIP)) for _ in range(count)]


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    calls = [0]
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


async def test_reads_do_not_each_write_a_window_update(monkeypatch: pytest.MonkeyPatch) -> None:
    updates = _counting(monkeypatch, yamux.YamuxStream, "send_window_update")

    async def echo(stream: Stream) -> None:
        while data := await stream.read(1024):
            await stream.write(data)

    async with _hosts(2) as (a, b):
        b.set_stream_handler(ECHO, echo)
        await a.connect(b.peer_id, b.listen_addrs(), timeout=10)
        async with a.open_stream(b.peer_id, ECHO, timeout=10) as stream:
            before = updates[0]
            for i in range(200):  # 200 small round trips: 400 reads on the two sides
                await stream.write(b"ping %d" % i)
                assert await stream.read(1024) == b"ping %d" % i
            # Unpatched, every one of those reads sends an update; patched, the window is
            # credited once half of it has been consumed (256 KiB): not within 3 KB.
            assert updates[0] - before < 10


async def test_a_peer_record_is_verified_once_not_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verified = _counting(monkeypatch, utils, "consume_envelope")
    async with _hosts(2) as (a, b):
        received: list[bytes] = []
        for host in (a, b):
            host.set_topic_validator("t", lambda m: True)
        messages = await b.subscribe("t")
        await a.subscribe("t")
        await a.connect(b.peer_id, b.listen_addrs(), timeout=10)
        await eventually(lambda: a.topic_peers("t") and b.topic_peers("t"), "subscriptions")

        async def listen() -> None:
            async for message in messages:
                received.append(message.data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            before = verified[0]
            for i in range(60):
                await a.publish("t", b"m%d" % i)
                await trio.sleep(0.01)
            await eventually(lambda: len(received) >= 60, "the 60 messages")
            # Each RPC carries a's record; unpatched, b verifies it 60 times (and a b's).
            assert verified[0] - before <= 4
            nursery.cancel_scope.cancel()
