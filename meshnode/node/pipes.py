"""In-memory byte streams for the in-memory mesh: two pipes make a stream pair.

A stream closed by one side reads as ended on the other (b""), and what the other side
still writes is refused; a reset (the link went away) breaks both sides with
trio.BrokenResourceError, as a lost libp2p connection does for Libp2pStream.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class Pipe:
    """One direction of a stream: what one side writes, the other reads."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False  # the writer closed its side
        self._broken = False  # reset, or the reader went away
        self._lot = trio.lowlevel.ParkingLot()

    async def read(self, n: int) -> bytes:
        await trio.lowlevel.checkpoint()
        while not self._buffer and not self._eof and not self._broken:
            await self._lot.park()
        if self._broken:
            raise trio.BrokenResourceError("stream reset")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self._broken:
            raise trio.BrokenResourceError("stream reset")
        if self._eof:
            raise trio.ClosedResourceError("stream closed for writing")
        self._buffer += data
        self._lot.unpark_all()

    def end(self) -> None:
        self._eof = True
        self._lot.unpark_all()

    def reset(self) -> None:
        self._broken = True
        self._buffer.clear()
        self._lot.unpark_all()


class InMemoryStream:
    def __init__(self, peer_id: str, inbound: Pipe, outbound: Pipe,
                 on_close: Callable[[InMemoryStream], None]) -> None:
        self._peer_id = peer_id
        self._inbound = inbound
        self._outbound = outbound
        self._on_close = on_close
        self._closed = False

    @property
    def peer_id(self) -> str:
        return self._peer_id

    async def read(self, n: int) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        return await self._inbound.read(n)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        await self._outbound.write(data)

    async def close(self) -> None:
        """The peer reads the end of the stream; what it still writes is refused."""
        if not self._closed:
            self._closed = True
            self._outbound.end()
            self._inbound.reset()
            self._on_close(self)
        await trio.lowlevel.checkpoint()

    def reset(self) -> None:
        self._inbound.reset()
        self._outbound.reset()
