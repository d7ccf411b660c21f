"""libp2p streams as plain byte streams, and deadline-bound framed reads on top of them."""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamEOF, StreamError

from memory.replication import ByteStream
from protocols.codec import FrameDecoder, encode_frame

__all__ = ["ByteStream", "Libp2pStream", "read_frame", "write_frame"]


class Libp2pStream:
    """Adapts a libp2p INetStream to :class:`ByteStream`: EOF reads as b"", and a reset or
    failed stream raises trio.BrokenResourceError, as a broken trio stream does."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    @property
    def peer_id(self) -> str:
        return str(self._stream.muxed_conn.peer_id)

    async def read(self, n: int) -> bytes:
        try:
            data: bytes = await self._stream.read(n)
        except StreamEOF:
            return b""
        except (StreamError, OSError) as exc:
            raise trio.BrokenResourceError(f"stream failed: {exc or type(exc).__name__}") from None
        return data

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write(data)
        except (StreamError, OSError) as exc:
            raise trio.BrokenResourceError(f"stream failed: {exc or type(exc).__name__}") from None

    async def close(self) -> None:
        # Closing a stream the peer already reset is not an error worth reporting.
        with trio.move_on_after(2):
            with contextlib.suppress(StreamError, OSError):
                await self._stream.close()


async def read_frame(stream: ByteStream, decoder: FrameDecoder, *, timeout: float) -> bytes | None:
    """The next frame, or None at a clean EOF; TooSlowError past ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while (frame := decoder.next_frame()) is None:
            data = await stream.read(64 * 1024)
            if not data:
                if decoder.pending:
                    raise trio.BrokenResourceError("stream ended in the middle of a frame")
                return None
            decoder.feed(data)
    return frame


async def write_frame(stream: ByteStream, payload: bytes, *, timeout: float) -> None:
    with trio.fail_after(timeout):
        await stream.write(encode_frame(payload))
