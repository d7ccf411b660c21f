"""Hostile sync peers and authors against the protocol and a real Replicator and store.

A sync peer can stop early but never hide a record; an author over its budget is slowed
down, visibly; a record the store cannot take stops only its author, and only until the
next sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import outcome
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.budget import Limits
from memory.embedders import HashingEmbedder
from memory.errors import EmbedderError, ReplicationError
from memory.replication import AnnouncementStatus, Replicator
from memory.store import MemoryStore
from protocols.memsync import (
    Pull,
    RecordsReceived,
    Summary,
    SyncClient,
    SyncServer,
    encode_announcement,
)
from protocols.records import MemoryRecord, new_tombstone
from tests.sync.conftest import OpenStore
from tests.sync.helpers import (
    ALICE,
    BOB,
    TENANT,
    chain,
    record,
    stream_pair,
    withholding_server,
)

FUZZ = settings(deadline=timedelta(seconds=5), max_examples=200,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def withheld_histories(
    draw: st.DrawFn,
) -> tuple[list[MemoryRecord], list[MemoryRecord], set[int], int]:
    """Alice's sequence with some deletions; the honest server's entries (one per position);
    the positions a hostile server drops from its batches; the client's batch size."""
    records = chain(ALICE, draw(st.integers(1, 25)))
    live = {r.seq: r for r in records}
    seq = len(records)
    for index in draw(st.lists(st.integers(0, len(records) - 1), unique=True, max_size=6)):
        target = records[index]
        seq += 1
        tomb = new_tombstone(ALICE, target, created=1_800_000_000.0 + seq, seq=seq)
        del live[target.seq]
        live[seq] = tomb
    by_free = {r.frees: r for r in live.values() if r.frees is not None}
    entries = [live.get(p) or by_free[p] for p in range(1, seq + 1)]
    dropped = draw(st.sets(st.integers(1, seq)))
    return list(live.values()), entries, dropped, draw(st.integers(1, 8))


@FUZZ
@given(withheld_histories())
def test_a_server_that_withholds_cannot_make_the_client_skip_a_record(
    history: tuple[list[MemoryRecord], list[MemoryRecord], set[int], int],
) -> None:
    live, entries, dropped, batch_size = history
    client = SyncClient(TENANT, {}, batch_size=batch_size)
    server = SyncServer(TENANT)
    kept: list[MemoryRecord] = []
    while out := client.data_to_send():
        for event in server.receive_data(out):
            if isinstance(event, Summary):
                server.send_summary({ALICE.peer_id: len(entries)})
            elif isinstance(event, Pull):
                wanted = range(event.after_seq + 1, event.after_seq + event.limit + 1)
                # The hostile part: drop some positions, send the rest in order.
                sent = [entries[p - 1] for p in wanted if p <= len(entries) and p not in dropped]
                server.send_batch(sent, more=True)
        for event in client.receive_data(server.data_to_send()):
            if isinstance(event, RecordsReceived):
                kept += event.records
                client.applied()
    have = len(entries) - client.behind().get(ALICE.peer_id, 0)
    # The client holds exactly the positions up to its mark: each accounted, in order...
    assert [r.id for r in kept] == [e.id for e in entries[:have]]
    # ...it stopped before the first record never sent (a tombstone is sent for two
    # positions, so dropping one of them hides nothing)...
    hidden = [p for p in dropped if not entries[p - 1].is_tombstone]
    assert have < min(hidden, default=len(entries) + 1)
    # ...and no live record up to the mark is missing.
    held = {r.id for r in kept}
    assert all(r.id in held for r in live if max(r.positions) <= have)


async def run_sync(client: Replicator, serve: object, peer: str = "server") -> int:
    """One sync of ``client`` against ``serve(stream)``; the records it pulled."""
    left, right = stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, right)  # type: ignore[arg-type]
        captured = await outcome.acapture(client.sync_with, peer, left)
    return captured.unwrap().pulled


async def test_a_withheld_record_stays_wanted_and_its_announcement_is_applied(
    open_store: OpenStore,
) -> None:
    victim = await open_store("victim")
    node = Replicator(victim, tenant=TENANT)
    records = chain(ALICE, 3)
    assert await run_sync(node, withholding_server(records, {2})) == 1
    assert await victim.high_water() == {ALICE.peer_id: 1}
    # The author (or anyone) announces #2 later: it is what the node needs next.
    applied = await node.on_announcement("alice", encode_announcement(records[1]))
    assert applied.status is AnnouncementStatus.APPLIED
    # ...and the same lying server can no longer keep #3 away.
    assert await run_sync(node, withholding_server(records, {2})) == 1
    assert await victim.high_water() == {ALICE.peer_id: 3}
    assert len(await victim.get([r.id for r in records])) == 3


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_author_over_its_hourly_budget_is_slowed_not_cut_off(
    open_store: OpenStore,
) -> None:
    source, victim = await open_store("source"), await open_store("victim")
    await source.put(chain(ALICE, 12) + chain(BOB, 3))
    clock = Clock()
    node = Replicator(victim, tenant=TENANT, clock=clock,
                      limits=Limits(author_records_per_hour=5))
    honest = Replicator(source, tenant=TENANT)
    assert await run_sync(node, lambda s: honest.serve("victim", s)) == 5 + 3
    assert await victim.high_water() == {ALICE.peer_id: 5, BOB.peer_id: 3}
    assert node.budget.refused["rate"] == 7 and node.budget.refused_authors[ALICE.peer_id] == 7
    # Over budget, its announcements neither apply nor call for a sync.
    refused = await node.on_announcement("source", encode_announcement(record(ALICE, 13)))
    assert refused.status is AnnouncementStatus.REFUSED
    # The rest comes by the ordinary sync, at 5 an hour.
    clock.now += 3600
    assert await run_sync(node, lambda s: honest.serve("victim", s)) == 5
    clock.now += 3600
    assert await run_sync(node, lambda s: honest.serve("victim", s)) == 2
    assert await victim.high_water() == {ALICE.peer_id: 12, BOB.peer_id: 3}


async def test_an_author_over_its_bytes_budget_is_refused(open_store: OpenStore) -> None:
    source, victim = await open_store("source"), await open_store("victim")
    await source.put([record(ALICE, seq, text="x" * 1000) for seq in range(1, 6)])
    node = Replicator(victim, tenant=TENANT, limits=Limits(author_max_bytes=2500))
    honest = Replicator(source, tenant=TENANT)
    assert await run_sync(node, lambda s: honest.serve("victim", s)) == 2
    assert node.budget.refused["bytes"] == 3
    # After a restart the budget is read back from the store: still full.
    again = Replicator(victim, tenant=TENANT, limits=Limits(author_max_bytes=2500))
    assert await run_sync(again, lambda s: honest.serve("victim", s)) == 0


async def test_this_nodes_own_records_are_never_budgeted(open_store: OpenStore) -> None:
    source, victim = await open_store("source"), await open_store("victim")
    await source.put(chain(ALICE, 10))
    node = Replicator(victim, tenant=TENANT, self_id=ALICE.peer_id,
                      limits=Limits(author_records_per_hour=1))
    honest = Replicator(source, tenant=TENANT)
    assert await run_sync(node, lambda s: honest.serve("victim", s)) == 10


async def test_a_peer_over_its_sync_budget_is_told_to_come_back(open_store: OpenStore) -> None:
    source, victim = await open_store("source"), await open_store("victim")
    await source.put(chain(ALICE, 30))
    clock = Clock()
    server = Replicator(source, tenant=TENANT, clock=clock,
                        limits=Limits(peer_sync_pulls_per_minute=3))
    client = Replicator(victim, tenant=TENANT, batch_size=10)
    # A summary and two pulls fit; the third pull is refused with a clear Error frame.
    with pytest.raises(ReplicationError, match=r"\[busy\].*pulls a minute"):
        await run_sync(client, lambda s: server.serve("victim", s))
    assert await victim.high_water() == {ALICE.peer_id: 20}
    assert server.serve_budget.refused["pulls"] == 1
    clock.now += 60
    assert await run_sync(client, lambda s: server.serve("victim", s)) == 10


class Picky(HashingEmbedder):
    """An embedder that refuses texts over ``limit`` characters (an endpoint's context
    length), until told otherwise."""

    limit: int | None = 100

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.limit is not None and any(len(t) > self.limit for t in texts):
            raise EmbedderError(f"input longer than {self.limit} characters")
        return super().embed(texts)


async def test_a_record_the_store_refuses_stops_its_author_only_until_the_next_sync(
    open_store: OpenStore, tmp_path: Path
) -> None:
    source = await open_store("source")
    long = record(ALICE, 3, text="long " * 100)
    alice = [record(ALICE, 1), record(ALICE, 2), long, record(ALICE, 4)]
    await source.put(alice + chain(BOB, 4))
    embedder = Picky()
    async with MemoryStore(str(tmp_path / "victim.db"), tenant=TENANT,
                           embedder=embedder) as victim:
        node = Replicator(victim, tenant=TENANT)
        honest = Replicator(source, tenant=TENANT)
        assert await run_sync(node, lambda s: honest.serve("victim", s)) == 2 + 4
        assert await victim.high_water() == {ALICE.peer_id: 2, BOB.peer_id: 4}
        assert node.refused["store"] == 1
        # Announced, it fails the same way (the caller contains it) and stays wanted.
        with pytest.raises(EmbedderError):
            await node.on_announcement("source", encode_announcement(long))
        assert await victim.expected(ALICE.peer_id) == 3
        embedder.limit = None  # the endpoint takes it now: the next sync brings the rest
        await run_sync(node, lambda s: honest.serve("victim", s))
        assert await victim.high_water() == {ALICE.peer_id: 4, BOB.peer_id: 4}
