"""meshnode.node.libp2p_perf: py-libp2p reads without a window update each, and verifies a
peer's signed record once, not on every gossip RPC; on another py-libp2p version, nothing is
patched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.pubsub import pubsub, utils
from libp2p.stream_muxer.yamux import yamux

from meshnode.config import GossipSettings
from meshnode.node import libp2p_perf
from meshnode.node.host import MeshHost
from meshnode.node.transport import Stream
from tests.inmemory import eventually

ECHO = "/test/echo/1.0.0"


@asynccontextmanager
async def _hosts(count: int) -> AsyncIterator[list[MeshHost]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                     gossip=GossipSettings(heartbeat_s=0.2))) for _ in range(count)]


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


def test_nothing_is_patched_on_another_libp2p_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libp2p_perf, "_state", {})
    monkeypatch.setattr(libp2p_perf, "version", lambda name: "0.9.0")
    check = pubsub.maybe_consume_signed_record
    update = yamux.YamuxStream._auto_tune_and_send_window_update
    assert libp2p_perf.apply() is False
    assert pubsub.maybe_consume_signed_record is check
    assert yamux.YamuxStream._auto_tune_and_send_window_update is update
