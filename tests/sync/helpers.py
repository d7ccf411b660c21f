"""Helpers shared by the sync tests: deterministic authors and records, hypothesis
strategies for memsync messages, and trio in-memory streams seen as ByteStreams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio.testing
from hypothesis import strategies as st

from protocols.codec import FrameDecoder
from protocols.memsync import (
    MAX_BATCH,
    Batch,
    Bye,
    Error,
    Message,
    Pull,
    Summary,
    SyncServer,
    encode_message,
)
from protocols.peerid import Signer
from protocols.records import MAX_SEQ, MemoryRecord, new_record, record_to_wire

TENANT = "dev-support"
ALICE = Signer.from_seed(bytes(range(32)))
BOB = Signer.from_seed(bytes(range(1, 33)))
CAROL = Signer.from_seed(bytes(range(2, 34)))
AUTHORS = [ALICE.peer_id, BOB.peer_id, CAROL.peer_id]


def record(
    signer: Signer, seq: int, *, tenant: str = TENANT, text: str | None = None
) -> MemoryRecord:
    return new_record(
        signer,
        collection="expert_knowledge",
        tenant=tenant,
        text=text if text is not None else f"note {seq} by {signer.peer_id[-6:]}",
        kind="note",
        agent="tester",
        created=1_700_000_000.0 + seq,
        seq=seq,
    )


def chain(signer: Signer, n: int, *, first: int = 1) -> list[MemoryRecord]:
    return [record(signer, seq) for seq in range(first, first + n)]


RECORDS = chain(ALICE, 5)

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Summary,
        st.just(TENANT),
        st.dictionaries(st.sampled_from(AUTHORS), st.integers(min_value=1, max_value=MAX_SEQ)),
    ),
    st.builds(
        Pull,
        st.sampled_from(AUTHORS),
        st.integers(min_value=0, max_value=MAX_SEQ),
        st.integers(min_value=1, max_value=MAX_BATCH),
    ),
    st.builds(
        Batch,
        st.sampled_from(AUTHORS),
        st.lists(st.sampled_from(RECORDS).map(record_to_wire), max_size=5).map(tuple),
        st.booleans(),
    ),
    st.builds(Error, st.text(min_size=1, max_size=32), st.text(max_size=100)),
    st.just(Bye()),
)


def frames_of(data: bytes) -> list[bytes]:
    decoder = FrameDecoder()
    decoder.feed(data)
    frames = list(decoder.frames())
    assert decoder.pending == 0
    return frames


def payload(msg: Message) -> bytes:
    [frame] = frames_of(encode_message(msg))
    return frame


class TrioByteStream:
    """A trio Stream seen as the ByteStream the Replicator expects."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.closed = False

    async def read(self, n: int) -> bytes:
        return await self.stream.receive_some(n)

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        self.closed = True
        await self.stream.aclose()


def stream_pair() -> tuple[TrioByteStream, TrioByteStream]:
    left, right = trio.testing.memory_stream_pair()
    return TrioByteStream(left), TrioByteStream(right)


def withholding_server(
    records: Sequence[MemoryRecord], hidden: set[int], *, tenant: str = TENANT
) -> Callable[[Any], Awaitable[None]]:
    """A memsync stream handler built from the project's own state machine that claims all
    of ``records`` (one author's) but never sends the seqs in ``hidden``: a malicious sync
    peer hiding a record it cannot forge. ``stream`` is anything with read/write/close."""
    author, top = records[0].author, max(r.seq for r in records)

    async def serve(stream: Any) -> None:
        server = SyncServer(tenant)
        try:
            while not server.closed and (data := await stream.read(65536)):
                for event in server.receive_data(data):
                    if isinstance(event, Summary):
                        server.send_summary({author: top})
                    elif isinstance(event, Pull):
                        server.send_batch([r for r in records if r.seq > event.after_seq
                                           and r.seq not in hidden][: event.limit], more=False)
                await stream.write(server.data_to_send())
        finally:
            await stream.close()

    return serve
