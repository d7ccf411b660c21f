"""Replicator tests: real Milvus Lite stores (temporary files) joined by in-memory streams."""

from __future__ import annotations

import logging

import outcome
import pytest
import trio

from memory.embedders import HashingEmbedder
from memory.errors import ReplicationError
from memory.replication import AnnouncementStatus, Replicator
from memory.store import MemoryStore
from protocols.codec import pack
from protocols.memsync import (
    Error,
    Pull,
    Summary,
    decode_message,
    encode_announcement,
    encode_message,
)
from protocols.records import new_tombstone, record_to_wire
from tests.sync.conftest import OpenStore
from tests.sync.helpers import (
    ALICE,
    BOB,
    CAROL,
    TENANT,
    TrioByteStream,
    chain,
    frames_of,
    record,
    stream_pair,
)


class Recording(TrioByteStream):
    def __init__(self, stream: TrioByteStream) -> None:
        super().__init__(stream.stream)
        self.sent = bytearray()

    async def write(self, data: bytes) -> None:
        self.sent += data
        await super().write(data)


class Tampering(TrioByteStream):
    """Alters bytes in transit, as a faulty or malicious relay would."""

    def __init__(self, stream: TrioByteStream, old: bytes, new: bytes) -> None:
        super().__init__(stream.stream)
        self.old, self.new = old, new

    async def write(self, data: bytes) -> None:
        await super().write(data.replace(self.old, self.new))


class Dropping(TrioByteStream):
    """The connection breaks at the ``writes``-th write."""

    def __init__(self, stream: TrioByteStream, writes: int) -> None:
        super().__init__(stream.stream)
        self.writes = writes

    async def write(self, data: bytes) -> None:
        self.writes -= 1
        if self.writes <= 0:
            await self.stream.aclose()
            raise trio.BrokenResourceError("connection reset")
        await super().write(data)


async def sync(client: Replicator, server: Replicator) -> tuple[int, int]:
    """Run one sync between two replicators; return (pulled, rejected)."""
    left, right = stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, "client", right)
        # Captured so that a failure surfaces as itself, not inside the nursery's group.
        captured = await outcome.acapture(client.sync_with, "server", left)
    result = captured.unwrap()
    assert result.peer == "server" and result.duration_s >= 0
    return result.pulled, result.rejected


async def all_of(store: MemoryStore, author: str) -> list[int]:
    return [r.seq for r in await store.records_since(author, 0, 5000)]


async def test_catch_up_of_1000_records_in_bounded_batches(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    await a.put(chain(ALICE, 1000) + chain(BOB, 250))
    left, right = stream_pair()
    recorder = Recording(left)
    client = Replicator(b, tenant=TENANT, batch_size=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Replicator(a, tenant=TENANT).serve, "b", right)
        result = await client.sync_with("a", recorder)

    pulls = [m for m in map(decode_message, frames_of(bytes(recorder.sent))) if isinstance(m, Pull)]
    assert sorted(p.limit for p in pulls) == [50] + [100] * 12
    assert result.pulled == 1250 and result.rejected == 0
    assert await b.high_water() == await a.high_water()
    assert await all_of(b, ALICE.peer_id) == list(range(1, 1001))
    lag = client.lag()["a"]
    assert lag["pulled"] == 1250 and lag["authors_behind"] == 0 and lag["last_error"] is None
    assert lag["last_sync"] is not None


async def test_syncing_twice_duplicates_nothing(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    await a.put(chain(ALICE, 30))
    client, server = Replicator(b, tenant=TENANT), Replicator(a, tenant=TENANT)
    assert await sync(client, server) == (30, 0)
    assert await sync(client, server) == (0, 0)
    assert (await b.count())["expert_knowledge"] == 30
    hits = await b.search("note 7", k=30)
    assert len({h.record.id for h in hits}) == len(hits)


async def test_a_record_altered_in_transit_is_rejected_and_counted(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await open_store("a"), await open_store("b")
    await a.put(chain(ALICE, 50))
    client, server = Replicator(b, tenant=TENANT), Replicator(a, tenant=TENANT)
    left, right = stream_pair()
    tampered = Tampering(right, b"note 20 by", b"note 20 BY")
    with caplog.at_level(logging.WARNING, logger="meshnode.memsync"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve, "b", tampered)
            result = await client.sync_with("a", left)

    assert (result.pulled, result.rejected) == (19, 1)
    assert await all_of(b, ALICE.peer_id) == list(range(1, 20))
    assert client.lag()["a"]["authors_behind"] == 1
    assert any("dropped record" in m for m in caplog.messages)
    # An honest connection resumes from the new high water mark.
    assert await sync(client, server) == (31, 0)
    assert await all_of(b, ALICE.peer_id) == list(range(1, 51))


async def test_tombstones_replicate(open_store: OpenStore) -> None:
    a, b, c = await open_store("a"), await open_store("b"), await open_store("c")
    records = chain(ALICE, 3)
    await a.put(records)
    to_b, to_c = Replicator(b, tenant=TENANT), Replicator(c, tenant=TENANT)
    server = Replicator(a, tenant=TENANT)
    assert await sync(to_b, server) == (3, 0)

    await a.put([new_tombstone(ALICE, records[1], created=1_700_000_100.0, seq=4)])
    assert await sync(to_b, server) == (1, 0)
    assert await b.get([records[1].id]) == []
    assert await all_of(b, ALICE.peer_id) == [1, 3, 4]
    # A node that never saw the deleted record gets the sequence with its gap.
    assert await sync(to_c, server) == (3, 0)
    assert await all_of(c, ALICE.peer_id) == [1, 3, 4]
    assert all(h.record.id != records[1].id for h in await c.search("note 2", k=10))


async def test_records_travel_through_a_third_node(open_store: OpenStore) -> None:
    a, b, c = await open_store("a"), await open_store("b"), await open_store("c")
    await a.put(chain(ALICE, 20))
    await c.put(chain(CAROL, 5))
    ra, rb, rc = (Replicator(s, tenant=TENANT) for s in (a, b, c))
    assert await sync(rb, ra) == (20, 0)
    assert await sync(rc, rb) == (20, 0)
    assert await sync(ra, rc) == (5, 0)
    assert await c.high_water() == await a.high_water() == {ALICE.peer_id: 20, CAROL.peer_id: 5}


async def test_a_dropped_connection_is_resumed_by_the_next_sync(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    await a.put(chain(ALICE, 100))
    client = Replicator(b, tenant=TENANT, batch_size=10)
    server = Replicator(a, tenant=TENANT)
    left, right = stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, "b", Dropping(right, writes=4))  # summary + 2 batches
        with pytest.raises(ReplicationError, match="mid-sync"):
            await client.sync_with("a", left)
    assert await all_of(b, ALICE.peer_id) == list(range(1, 21))
    assert "mid-sync" in client.lag()["a"]["last_error"]
    assert "connection reset" in server.lag()["b"]["last_error"]
    assert await sync(client, server) == (80, 0)
    assert client.lag()["server"]["last_error"] is None


async def test_wrong_tenant_is_refused(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b", tenant="other-team")
    await a.put(chain(ALICE, 5))
    client, server = Replicator(b, tenant="other-team"), Replicator(a, tenant=TENANT)
    with pytest.raises(ReplicationError, match="wrong_tenant"):
        await sync(client, server)
    assert await b.high_water() == {}
    assert "other-team" in server.lag()["client"]["last_error"]


async def test_announcements_apply_in_order_and_a_gap_calls_for_a_sync(
    open_store: OpenStore,
) -> None:
    a, b = await open_store("a"), await open_store("b")
    records = chain(ALICE, 4)
    await a.put(records[:3])
    node = Replicator(b, tenant=TENANT)

    async def announce(data: bytes) -> AnnouncementStatus:
        return (await node.on_announcement("a", data)).status

    assert await announce(encode_announcement(records[0])) is AnnouncementStatus.APPLIED
    assert await announce(encode_announcement(records[0])) is AnnouncementStatus.DUPLICATE
    gap = await node.on_announcement("a", encode_announcement(records[2]))
    assert gap.status is AnnouncementStatus.GAP and gap.record == records[2]
    assert await all_of(b, ALICE.peer_id) == [1]

    assert await sync(node, Replicator(a, tenant=TENANT)) == (2, 0)
    assert await announce(encode_announcement(records[2])) is AnnouncementStatus.DUPLICATE
    assert await announce(encode_announcement(records[3])) is AnnouncementStatus.APPLIED
    assert await all_of(b, ALICE.peer_id) == [1, 2, 3, 4]


async def test_a_batch_applies_what_continues_the_sequence_in_one_write(
    open_store: OpenStore,
) -> None:
    b = await open_store("b")
    records = chain(ALICE, 8)
    node = Replicator(b, tenant=TENANT)
    applied = await node.apply_announced_many("a", records[:3])
    assert applied.status is AnnouncementStatus.APPLIED and applied.record == records[2]
    # Overlapping what is held: the rest is applied.
    assert (await node.apply_announced_many("a", records[1:5])).status \
        is AnnouncementStatus.APPLIED
    assert await all_of(b, ALICE.peer_id) == [1, 2, 3, 4, 5]
    assert (await node.apply_announced_many("a", records[:5])).status \
        is AnnouncementStatus.DUPLICATE
    # A hole inside a batch: what comes before it is stored, the rest calls for a sync.
    gap = await node.apply_announced_many("a", [records[5], records[7]])
    assert gap.status is AnnouncementStatus.GAP and gap.record == records[7]
    assert await all_of(b, ALICE.peer_id) == [1, 2, 3, 4, 5, 6]
    ahead = await node.apply_announced_many("a", [records[7]])
    assert ahead.status is AnnouncementStatus.GAP


async def test_bad_announcements_are_rejected(open_store: OpenStore) -> None:
    node = Replicator(await open_store("b"), tenant=TENANT)
    forged = record_to_wire(record(ALICE, 1))
    forged["sig"] = record_to_wire(record(BOB, 1))["sig"]
    for data in (
        b"garbage",
        encode_announcement(record(ALICE, 1, tenant="other-team")),
        pack({"v": 1, "t": "announce", "record": forged}),
    ):
        result = await node.on_announcement("a", data)
        assert result.status is AnnouncementStatus.REJECTED and result.reason
    applied = await node.on_announcement("a", encode_announcement(record(ALICE, 1)))
    assert applied.status is AnnouncementStatus.APPLIED


async def test_a_client_sending_garbage_gets_an_error_and_a_closed_stream(
    open_store: OpenStore,
) -> None:
    server = Replicator(await open_store("a"), tenant=TENANT)
    mine, theirs = stream_pair()
    await mine.write(b"\x00\x00\x00\x05hello")
    await server.serve("b", theirs)  # returns: a peer's garbage is never the node's crash
    received = bytearray()
    while chunk := await mine.read(4096):
        received += chunk
    [error] = map(decode_message, frames_of(bytes(received)))
    assert isinstance(error, Error) and error.code == "protocol"
    assert theirs.closed


async def test_a_server_sending_garbage_gets_an_error(open_store: OpenStore) -> None:
    client = Replicator(await open_store("b"), tenant=TENANT)
    mine, theirs = stream_pair()

    async def liar() -> None:
        await mine.read(4096)  # the client's summary
        await mine.write(encode_message(Summary(TENANT, {ALICE.peer_id: 1})))
        await mine.read(4096)  # its pull
        await mine.write(encode_message(Summary(TENANT, {})))
        assert isinstance(decode_message(frames_of(await mine.read(4096))[0]), Error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(liar)
        with pytest.raises(ReplicationError, match="protocol error"):
            await client.sync_with("a", theirs)


async def test_a_failing_store_answers_internal_error(open_store: OpenStore) -> None:
    closed = MemoryStore("never-opened.db", tenant=TENANT, embedder=HashingEmbedder())
    client = Replicator(await open_store("b"), tenant=TENANT)
    with pytest.raises(ReplicationError, match="internal"):
        await sync(client, Replicator(closed, tenant=TENANT))


async def test_a_silent_peer_times_out(open_store: OpenStore) -> None:
    client = Replicator(await open_store("b"), tenant=TENANT, io_timeout=0.2)
    left, _right = stream_pair()
    with pytest.raises(ReplicationError, match=r"no progress within 0\.2 s"):
        await client.sync_with("a", left)
    assert left.closed


async def test_cancellation_is_never_swallowed(open_store: OpenStore) -> None:
    client = Replicator(await open_store("b"), tenant=TENANT, io_timeout=60)
    left, _right = stream_pair()
    with trio.move_on_after(0.2) as scope:
        await client.sync_with("a", left)
    assert scope.cancelled_caught and left.closed


async def test_replicator_and_store_must_agree_on_the_tenant(open_store: OpenStore) -> None:
    with pytest.raises(ValueError, match="tenant"):
        Replicator(await open_store("a"), tenant="other-team")
