"""Whole (non-JSON) bodies sent through the app's streaming response: pages, scripts, the
metrics text. The body goes out as one chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

from meshnode.api.app import StreamingResponse


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def body_response(
    content_type: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
) -> StreamingResponse:
    return StreamingResponse(content_type, _once(body), headers=headers)
