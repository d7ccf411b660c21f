"""Fault containment: Faults, and a stream handler that raises on real libp2p hosts."""

from __future__ import annotations

import logging

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings
from meshnode.node.faults import Faults, contained_handler
from meshnode.node.host import MeshHost
from meshnode.node.streams import ByteStream


def test_faults_are_counted_by_where_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults()
    with caplog.at_level(logging.DEBUG, logger="meshnode.node.faults"):
        with faults.contained("memory sync", peer="p1"):
            raise ValueError("a bug")
        faults.record("embedder", ConnectionError("endpoint down"), expected=True)
        faults.record("embedder", ConnectionError("endpoint down"), expected=True)
    assert faults.counts() == {"embedder": 2, "memory sync": 1} and faults.total() == 3
    levels = {(r.levelno, bool(r.exc_info)) for r in caplog.records}
    # The unexpected one with its traceback as an error; the expected ones as warnings,
    # their tracebacks only at debug.
    assert (logging.ERROR, True) in levels and (logging.WARNING, False) in levels
    assert (logging.DEBUG, True) in levels


async def test_cancellation_is_never_contained() -> None:
    faults = Faults()
    with trio.move_on_after(0.01) as scope:
        with faults.contained("anything"):
            await trio.sleep_forever()
    assert scope.cancelled_caught and faults.counts() == {}

    async def interrupted(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await contained_handler(faults, "stream /x", interrupted)(object())
    assert faults.counts() == {}


def _host() -> MeshHost:
    return MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                    gossip=GossipSettings())


async def test_a_stream_handler_that_raises_fails_only_its_stream() -> None:
    faults = Faults()

    async def broken(stream: ByteStream) -> None:
        await stream.read(100)
        raise RuntimeError("a bug met by a strange request")

    async def echo(stream: ByteStream) -> None:
        await stream.write(await stream.read(100))

    with trio.fail_after(60):
        async with _host() as client:
            server = MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                              gossip=GossipSettings(), faults=faults)
            async with server:
                server.set_stream_handler("/test/broken/1", broken)
                server.set_stream_handler("/test/echo/1", echo)
                await client.connect(server.peer_id, server.listen_addrs(), timeout=10)
                for _ in range(2):
                    async with client.open_stream(server.peer_id, "/test/broken/1",
                                                  timeout=10) as stream:
                        await stream.write(b"hello")
                        assert await stream.read(100) == b""  # closed, nothing else
                # The host, and the connection, still serve other streams.
                async with client.open_stream(server.peer_id, "/test/echo/1",
                                              timeout=10) as stream:
                    await stream.write(b"still there?")
                    assert await stream.read(100) == b"still there?"
                assert server.peer_id and client.peer_id in server.connected_peers()
    assert faults.counts() == {"stream /test/broken/1": 2}
