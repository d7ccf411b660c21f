"""Knowledge replication on the in-memory mesh, between Milvus Lite stores: by announcement
through a relaying node, and by memsync anti-entropy after a partition heals."""

from __future__ import annotations

from pathlib import Path

import trio

from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.knowledge import NewRecord
from protocols.records import MemoryRecord
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes


async def _has(node: Node, records: list[MemoryRecord]) -> bool:
    found = await node.store.get([r.id for r in records])
    return {r.id for r in found} == {r.id for r in records}


async def _until_stored(node: Node, records: list[MemoryRecord], what: str) -> None:
    await eventually(lambda: _has(node, records), what, poll=0.02)


async def test_a_new_record_is_announced_through_the_mesh(nursery: trio.Nursery,
                                                          tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    a, b, c = await start_nodes(nursery, mesh, tmp_path, [(), (), ()])
    mesh.cut(a.id, c.id)  # c hears a only through b
    await connect(a, b)
    await connect(b, c)
    record = await a.services.knowledge.add("Flush Milvus Lite after bulk inserts.", kind="tip")
    await _until_stored(c, [record], "the record at c")
    assert await _has(b, [record])
    # It came as an announcement (relayed by b), not by a sync: c never synced with a.
    assert c.services.knowledge.topic.accepted == 1
    assert a.id not in c.services.knowledge.replicator.lag()
    hits = await c.store.search("bulk inserts flush", k=1)
    assert hits and hits[0].record.id == record.id and hits[0].record.author == a.id
    no_faults(mesh)


async def test_records_missed_in_a_partition_arrive_by_anti_entropy_when_it_heals(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    a, b = await start_nodes(nursery, mesh, tmp_path, [(), ()])
    await connect(a, b)
    before = await a.services.knowledge.add("Before the partition.", kind="note")
    await _until_stored(b, [before], "the first record at b")
    mesh.partition([a.id], [b.id])
    missed = [await a.services.knowledge.add(f"Written during the partition, #{i}.",
                                             kind="note") for i in range(3)]
    assert not await _has(b, missed[:1])
    mesh.heal()
    # Nobody reconnects them by hand: the dialers do, the handshake starts a memsync.
    await _until_stored(b, missed, "the missed records at b")
    assert b.services.knowledge.topic.accepted == 1  # only `before` came by announcement
    assert b.id in a.services.membership.verified_connected()
    no_faults(mesh)


async def test_a_batch_is_stored_and_announced_as_one(nursery: trio.Nursery,
                                                      tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    a, b = await start_nodes(nursery, mesh, tmp_path, [(), ()])
    await connect(a, b)
    items = [NewRecord(f"Tip {i}: flush Milvus Lite after bulk insert number {i}.", kind="tip")
             for i in range(300)]
    records = await a.services.knowledge.add_many(items)
    assert [r.seq for r in records] == list(range(1, 301))
    await _until_stored(b, records, "the 300 records at b")
    # Two gossip messages (256 + 44 records), not 300; b stored them without a sync.
    assert b.services.knowledge.topic.accepted == 2
    assert b.services.knowledge.replicator.lag().get(a.id, {}).get("pulled", 0) == 0
    assert await a.store.next_seq(a.id) == 301
    no_faults(mesh)
