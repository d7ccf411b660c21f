"""The memory store suite; every test runs against Milvus Lite and a real Milvus server."""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

import memory.backend
import memory.flushing
from memory.embedders import HashingEmbedder
from memory.errors import EmbedderMismatch, InvalidRecord, MemoryStoreError, StoreUnavailable
from memory.milvus_server import free_ports
from memory.store import MemoryStore
from memory.uris import is_server_uri, redact
from protocols.peerid import Signer
from protocols.records import COLLECTIONS, MemoryRecord, new_record, new_tombstone
from tests.inmemory import eventually

from .helpers import TENANT

EK, CH, PS = COLLECTIONS
TEXTS = {
    "milvus": "HNSW is a graph index in Milvus; ef trades search speed for recall.",
    "python": "A mutable default argument in a Python function is shared between calls.",
    "devops": "A pod in CrashLoopBackOff keeps restarting; read kubectl logs --previous.",
}


def rec(
    signer: Signer,
    seq: int,
    text: str = "",
    *,
    collection: str = EK,
    kind: str = "note",
    tenant: str = TENANT,
    created: float | None = None,
) -> MemoryRecord:
    return new_record(
        signer, collection=collection, tenant=tenant, text=text or f"note number {seq}",
        kind=kind, agent="tester", created=created or 1_700_000_000.0 + seq, seq=seq,
        meta={"n": seq, "half": seq / 2, "even": seq % 2 == 0, "src": f"test-{seq}"},
    )


def ids(records: Sequence[MemoryRecord]) -> list[str]:
    return [r.id for r in records]


async def test_put_search_get(store: MemoryStore, signer: Signer) -> None:
    milvus = rec(signer, 1, TEXTS["milvus"], collection=EK, kind="doc")
    python = rec(signer, 2, TEXTS["python"], collection=PS, kind="solution")
    devops = rec(signer, 3, TEXTS["devops"], collection=CH, kind="exchange")
    assert await store.put([milvus, python, devops]) == 3

    hits = await store.search("how does ef change recall of the HNSW graph index?", k=3)
    assert hits[0].record == milvus
    assert hits[0].collection == EK
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    only = await store.search("kubectl pod restarting", collection=CH)
    assert [h.record.id for h in only] == [devops.id]
    by_kind = await store.search("function default argument", kind="solution")
    assert [h.record.id for h in by_kind] == [python.id]
    assert await store.search("anything", kind="nonexistent") == []

    assert await store.get([devops.id, "f" * 64, milvus.id]) == [devops, milvus]
    assert await store.count() == {EK: 1, CH: 1, PS: 1}


async def test_put_is_idempotent(store: MemoryStore, signer: Signer) -> None:
    batch = [rec(signer, seq) for seq in (1, 2, 3)]
    assert await store.put(batch) == 3
    assert await store.put(batch) == 0
    assert await store.put([batch[0], batch[0], rec(signer, 4)]) == 1
    assert await store.count() == {EK: 4, CH: 0, PS: 0}
    hits = await store.search("note number 2", k=10)
    assert sorted(h.record.seq for h in hits) == [1, 2, 3, 4]


async def test_tombstone_deletes_target_and_replicates(store: MemoryStore, signer: Signer) -> None:
    target, keep = rec(signer, 1, TEXTS["milvus"]), rec(signer, 2, TEXTS["python"])
    await store.put([target, keep])
    tomb = new_tombstone(signer, target, created=1_800_000_000.0, seq=3)
    assert await store.put([tomb]) == 1
    assert await store.put([tomb]) == 0

    assert await store.get([target.id, tomb.id]) == [tomb]
    assert all(h.record.id != target.id for h in await store.search(TEXTS["milvus"], k=10))
    assert all(not h.record.is_tombstone for h in await store.search("", k=10))
    assert await store.count() == {EK: 1, CH: 0, PS: 0}
    assert await store.high_water() == {signer.peer_id: 3}
    assert ids(await store.records_since(signer.peer_id, 0, 10)) == [keep.id, tomb.id]


async def test_tombstone_before_its_target(store: MemoryStore, signer: Signer) -> None:
    target = rec(signer, 1, TEXTS["devops"])
    tomb = new_tombstone(signer, target, created=1_800_000_000.0, seq=2)
    assert await store.put([tomb]) == 1
    assert await store.put([target]) == 0
    assert await store.get([target.id]) == []
    # Both in one batch, in either order.
    other = rec(signer, 3, TEXTS["python"])
    other_tomb = new_tombstone(signer, other, created=1_800_000_000.0, seq=4)
    assert await store.put([other_tomb, other]) == 1
    assert await store.get([other.id, other_tomb.id]) == [other_tomb]


async def test_only_the_author_deletes(
    store: MemoryStore, signer: Signer, other_signer: Signer
) -> None:
    target = rec(signer, 1, TEXTS["milvus"])
    await store.put([target])
    # A tombstone signed by someone else, naming the target's id.
    posing = dataclasses.replace(target, author=other_signer.peer_id)
    forged = new_tombstone(other_signer, posing, created=1_800_000_000.0, seq=2)
    assert forged.deletes == target.id
    assert await store.put([forged]) == 1
    assert await store.get([target.id]) == [target]
    with pytest.raises(Exception, match="only the author"):
        new_tombstone(other_signer, target, created=1_800_000_000.0, seq=2)


async def test_tenants_never_see_each_other(store_uri: str, signer: Signer) -> None:
    embedder = HashingEmbedder()
    async with (
        MemoryStore(store_uri, tenant="team-a", embedder=embedder) as a,
        MemoryStore(store_uri, tenant="team-b", embedder=embedder) as b,
    ):
        mine = rec(signer, 1, TEXTS["milvus"], tenant="team-a")
        theirs = rec(signer, 1, TEXTS["milvus"], tenant="team-b")
        assert await a.put([mine]) == 1
        assert await b.search(TEXTS["milvus"]) == []
        assert await b.get([mine.id]) == []
        assert await b.count() == {EK: 0, CH: 0, PS: 0}
        assert await b.records_since(signer.peer_id, 0, 10) == []
        with pytest.raises(InvalidRecord, match="tenant"):
            await b.put([mine])
        assert await b.put([theirs]) == 1
        assert [h.record for h in await a.search(TEXTS["milvus"])] == [mine]
        assert [h.record for h in await b.search(TEXTS["milvus"])] == [theirs]
    async with MemoryStore(store_uri, tenant="team-b", embedder=embedder) as b:
        assert await b.high_water() == {signer.peer_id: 1}
        assert [r async for r in b.export()] == [theirs]


async def test_high_water_and_records_since(
    store: MemoryStore, signer: Signer, other_signer: Signer
) -> None:
    mine = [rec(signer, seq, collection=COLLECTIONS[seq % 3]) for seq in range(1, 31)]
    theirs = [rec(other_signer, seq) for seq in (1, 2, 5)]
    shuffled = mine + theirs
    random.Random(7).shuffle(shuffled)
    await store.put(shuffled)
    # Their seqs 3 and 4 never arrived: the mark stops before the gap, #5 waits beyond it,
    # and their next own seq still comes after everything held.
    assert await store.high_water() == {signer.peer_id: 30, other_signer.peer_id: 2}
    assert await store.expected(other_signer.peer_id) == 3
    assert store.waiting() == {other_signer.peer_id: 1}
    assert await store.next_seq(signer.peer_id) == 31
    assert await store.next_seq(other_signer.peer_id) == 6
    assert await store.next_seq("12D3KooWnobodyhere") == 1

    assert ids(await store.records_since(signer.peer_id, 3, 4)) == ids(mine[3:7])
    assert ids(await store.records_since(signer.peer_id, 0, 100)) == ids(mine)
    assert ids(await store.records_since(signer.peer_id, 28, 5)) == ids(mine[28:])
    assert await store.records_since(signer.peer_id, 30, 5) == []
    # Gaps (seq 3 and 4 never arrived) do not end a window early.
    assert ids(await store.records_since(other_signer.peer_id, 0, 2)) == ids(theirs[:2])
    assert ids(await store.records_since(other_signer.peer_id, 2, 2)) == ids(theirs[2:])

    exported = [r async for r in store.export()]
    assert sorted(ids(exported)) == sorted(ids(shuffled))
    assert [(r.author, r.seq) for r in exported] == sorted((r.author, r.seq) for r in exported)


async def test_reopen_persists(store_uri: str, signer: Signer) -> None:
    records = [rec(signer, seq, text) for seq, text in enumerate(TEXTS.values(), start=1)]
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        await store.put(records)
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        assert await store.count() == {EK: 3, CH: 0, PS: 0}
        assert await store.high_water() == {signer.peer_id: 3}
        assert (await store.search("kubectl logs of a restarting pod"))[0].record == records[2]
        assert await store.get(ids(records)) == records


class _Fixed:
    """An embedder of the same dimension as the default, under another name."""

    name = "fixed-test"
    dim = HashingEmbedder().dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * (self.dim - 1) for _ in texts]


async def test_embedder_mismatch_names_both(store_uri: str) -> None:
    built_by = HashingEmbedder()
    async with MemoryStore(store_uri, tenant=TENANT, embedder=built_by):
        pass
    smaller = HashingEmbedder(256)
    for other in (smaller, _Fixed()):
        with pytest.raises(EmbedderMismatch) as caught:
            async with MemoryStore(store_uri, tenant=TENANT, embedder=other):
                pytest.fail("opened a collection built by another embedder")
        message = str(caught.value)
        assert built_by.name in message and other.name in message
        assert str(built_by.dim) in message and str(other.dim) in message
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()):
        pass


async def test_bad_records_refuse_the_batch(
    store: MemoryStore, signer: Signer, other_signer: Signer
) -> None:
    good = rec(signer, 1)
    forged = dataclasses.replace(rec(signer, 2), signature=other_signer.sign(b"x"))
    with pytest.raises(InvalidRecord, match="signature"):
        await store.put([good, forged])
    altered = dataclasses.replace(rec(signer, 3), text="not what was signed")
    with pytest.raises(InvalidRecord, match="does not match"):
        await store.put([altered])
    assert await store.count() == {EK: 0, CH: 0, PS: 0}
    assert await store.high_water() == {}


async def test_stats_and_flush(store: MemoryStore, signer: Signer, other_signer: Signer) -> None:
    await store.put([rec(signer, 1), rec(signer, 2, collection=PS), rec(other_signer, 1)])
    await store.flush()
    stats = await store.stats()
    assert stats["collections"] == {EK: 2, CH: 0, PS: 1}
    assert stats["authors"] == {signer.peer_id: 2, other_signer.peer_id: 1}
    assert stats["embedder"] == {"name": store.embedder.name, "dim": store.embedder.dim}
    assert stats["index_type"] == "HNSW"
    assert set(stats["unindexed_rows"]) == set(COLLECTIONS)
    assert stats["tenant"] == TENANT
    assert len(await store.search("note number 2", k=3)) == 3


async def test_scan_splits_full_windows(
    store_uri: str, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [rec(signer, seq) for seq in range(1, 41)]
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        await store.put(records)
    # With a window of 4 rows, loading the high water mark must split by id prefix.
    monkeypatch.setattr(memory.backend, "MAX_WINDOW", 4)
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        assert await store.high_water() == {signer.peer_id: 40}
        assert (await store.stats())["authors"] == {signer.peer_id: 40}


async def test_records_since_survives_small_windows_and_huge_gaps(
    store: MemoryStore, signer: Signer, other_signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dense = [rec(signer, seq, collection=COLLECTIONS[seq % 3]) for seq in range(1, 21)]
    gap = [rec(other_signer, 1), rec(other_signer, 2**62, created=1_800_000_000.0)]
    await store.put(dense + gap)
    # Milvus now answers at most 4 rows a query: windows must shrink, and nothing is lost.
    monkeypatch.setattr(memory.backend, "MAX_WINDOW", 4)
    assert ids(await store.records_since(signer.peer_id, 2, 15)) == ids(dense[2:17])
    with trio.fail_after(60):  # a seq of 2**62 must not mean 2**62 / window queries
        assert ids(await store.records_since(other_signer.peer_id, 1, 5)) == [gap[1].id]


async def test_cancelled_open_closes_cleanly(store_uri: str, signer: Signer) -> None:
    with trio.CancelScope() as scope:
        async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
            await store.put([rec(signer, 1)])
            scope.cancel()
            await trio.sleep(10)
            pytest.fail("cancellation was swallowed")
    assert scope.cancelled_caught
    with pytest.raises(MemoryStoreError, match="not open"):
        await store.search("anything")
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        assert await store.count() == {EK: 1, CH: 0, PS: 0}


async def test_unreachable_server_is_unavailable() -> None:
    (port,) = free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    with trio.fail_after(30):
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
            async with MemoryStore(uri, tenant=TENANT, embedder=HashingEmbedder(), timeout=5):
                pass


async def test_bad_arguments(store: MemoryStore) -> None:
    with pytest.raises(MemoryStoreError, match="k must be"):
        await store.search("x", k=0)
    with pytest.raises(MemoryStoreError, match="unknown collection"):
        await store.search("x", collection="nope")
    with pytest.raises(MemoryStoreError, match="kind"):
        await store.search("x", kind='a" or tenant != "b')
    with pytest.raises(MemoryStoreError, match="ids"):
        await store.get(['" or 1 == 1'])
    with pytest.raises(MemoryStoreError, match="author"):
        await store.records_since("nobody", 0, 10)
    with pytest.raises(MemoryStoreError, match="tenant"):
        MemoryStore("x.db", tenant="a/b", embedder=HashingEmbedder())
    with pytest.raises(StoreUnavailable, match=r"\.db"):
        async with MemoryStore("/tmp/no-suffix", tenant=TENANT, embedder=HashingEmbedder()):
            pass


def test_redact_hides_credentials() -> None:
    assert redact("http://root:secret@host:19530") == "http://***@host:19530"
    assert redact("/var/lib/meshnode/memory.db") == "/var/lib/meshnode/memory.db"


@pytest.mark.parametrize(
    ("uri", "server"),
    [("http://h:19530", True), ("https://h", True), ("tcp://h:19530", True),
     ("unix:/run/milvus.sock", True), ("memory.db", False), ("/var/lib/m.db", False),
     ("unix.db", False)],
)
def test_server_uris_are_what_pymilvus_dials(uri: str, server: bool) -> None:
    assert is_server_uri(uri) is server


async def test_lite_file_held_by_another_process(tmp_path: Path) -> None:
    uri = str(tmp_path / "held.db")
    code = (
        "import sys, trio\n"
        "from memory.store import MemoryStore\n"
        "from memory.embedders import HashingEmbedder\n"
        "async def main():\n"
        f"    async with MemoryStore({uri!r}, tenant={TENANT!r}, embedder=HashingEmbedder()):\n"
        "        print('ready', flush=True)\n"
        "        sys.stdin.read()\n"
        "trio.run(main)\n"
    )
    holder = await trio.lowlevel.open_process(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert holder.stdout is not None
        said = b""
        with trio.fail_after(60):
            while not said.endswith(b"\n"):
                said += await holder.stdout.receive_some(64)
        assert said == b"ready\n"
        with pytest.raises(StoreUnavailable, match="another process"):
            async with MemoryStore(uri, tenant=TENANT, embedder=HashingEmbedder()):
                pass
    finally:
        holder.kill()
        with trio.CancelScope(shield=True):
            await holder.wait()


async def test_a_planted_row_cannot_block_an_author(store_uri: str, signer: Signer) -> None:
    """On a shared server anyone with write access can add rows: one claiming the author's
    seq 2^63-1 must not become its mark (its next write would need seq 2^63)."""
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        await store.put([rec(signer, seq) for seq in (1, 2, 3)])
        planted = [dataclasses.replace(rec(signer, 4, "planted"), seq=2**63 - 1),
                   dataclasses.replace(rec(signer, 4, "planted next"), signature=bytes(64))]
        unit = [1.0] + [0.0] * (store.embedder.dim - 1)
        rows = [store._backend.to_row(r, unit) for r in planted]
        await trio.to_thread.run_sync(store._backend.insert, EK, rows)
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as store:
        assert await store.next_seq(signer.peer_id) == 4
        assert await store.high_water() == {signer.peer_id: 3}
        mine = rec(signer, 4)
        await store.put([mine])
        assert await store.high_water() == {signer.peer_id: 4}
        assert ids(await store.entries_since(signer.peer_id, 3, 10)) == [mine.id]


async def test_entries_account_for_every_position(store: MemoryStore, signer: Signer) -> None:
    records = [rec(signer, seq) for seq in range(1, 6)]
    await store.put(records)
    gone = [new_tombstone(signer, records[i], created=1_800_000_000.0, seq=6 + n)
            for n, i in enumerate((1, 2))]
    await store.put(gone)
    assert await store.high_water() == {signer.peer_id: 7}
    entries = await store.entries_since(signer.peer_id, 0, 10)
    # #2 and #3 are answered by the tombstones that free them; the tombstones come again
    # at their own seqs.
    assert ids(entries) == ids([records[0], gone[0], gone[1], *records[3:], *gone])
    assert ids(await store.entries_since(signer.peer_id, 2, 2)) == ids([gone[1], records[3]])
    assert await store.entries_since(signer.peer_id, 7, 10) == []


async def test_a_partial_backup_does_not_raise_the_mark(
    store: MemoryStore, signer: Signer
) -> None:
    records = [rec(signer, seq) for seq in range(1, 11)]
    assert await store.put(records[4:]) == 6  # #1-#4 missing: held, searchable, not counted
    assert await store.high_water() == {}
    assert store.waiting() == {signer.peer_id: 6}
    assert await store.entries_since(signer.peer_id, 0, 10) == []
    assert await store.next_seq(signer.peer_id) == 11  # but never reused
    await store.put(records[:4])
    assert await store.high_water() == {signer.peer_id: 10} and store.waiting() == {}


async def test_verified_records_skip_the_signature_check_not_the_tenant_check(
    store: MemoryStore, signer: Signer, other_signer: Signer
) -> None:
    # verified=True is for records decoded (and so verified) from the wire or made here.
    made = rec(signer, 1)
    assert await store.put([made], verified=True) == 1
    with pytest.raises(InvalidRecord, match="tenant"):
        await store.put([rec(signer, 2, tenant="team-other")], verified=True)
    forged = dataclasses.replace(rec(signer, 2), signature=other_signer.sign(b"x"))
    with pytest.raises(InvalidRecord, match="signature"):
        await store.put([forged])  # by default every record is checked
    assert await store.count() == {EK: 1, CH: 0, PS: 0}


async def test_the_flusher_seals_a_lite_burst_once_after_it_ends(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory.flushing, "LITE_FLUSH_ROWS", 2)
    monkeypatch.setattr(memory.flushing, "LITE_BURST_ROWS", 6)
    async with MemoryStore(str(tmp_path / "m.db"), tenant=TENANT,
                           embedder=HashingEmbedder()) as store:
        flushes: list[str] = []
        flush = store._backend.flush
        monkeypatch.setattr(store._backend, "flush",
                            lambda name: (flushes.append(name), flush(name))[1])
        await store.put([rec(signer, 1), rec(signer, 2)])
        assert flushes == [EK]  # no flusher: every put leaving LITE_FLUSH_ROWS flushes
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(store.run_flusher, idle_s=3.0))
            for seq in range(3, 8, 2):
                await store.put([rec(signer, seq), rec(signer, seq + 1)])
            assert flushes == [EK, EK]  # the burst reached LITE_BURST_ROWS (6) once
            await store.put([rec(signer, 9), rec(signer, 10)])
            assert flushes == [EK, EK]  # left to the flusher
            await eventually(lambda: len(flushes) == 3, "the flush after the burst", timeout=10)
            nursery.cancel_scope.cancel()
        assert flushes == [EK, EK, EK]
        assert await store.count() == {EK: 10, CH: 0, PS: 0}


def test_milvus_lite_runs_faiss_with_passive_openmp_threads(tmp_path: Path) -> None:
    # Spinning OpenMP workers cost ~40 % of a node's CPU during a burst (bench/RESULTS.md).
    # A fresh interpreter: libgomp reads the variable once, when faiss first loads.
    script = (
        "import os, sys, trio\n"
        "from memory.embedders import HashingEmbedder\n"
        "from memory.store import MemoryStore\n"
        "async def main():\n"
        f"    async with MemoryStore(sys.argv[1], tenant={TENANT!r},\n"
        "                           embedder=HashingEmbedder()):\n"
        "        print(os.environ.get('OMP_WAIT_POLICY'), 'faiss' in sys.modules)\n"
        "trio.run(main)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for preset, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"{preset}.db")],
            env=env if preset is None else {**env, "OMP_WAIT_POLICY": preset},
            capture_output=True, text=True, timeout=120, check=True,
        )
        assert result.stdout.split() == [expected, "True"]


def test_a_lite_store_opens_no_port_and_no_grpc(tmp_path: Path) -> None:
    # Through pymilvus, Milvus Lite served the node's memory on a loopback TCP port with no
    # authentication: any local user could read and write it, bypassing the API token.
    script = (
        "import sys, psutil, trio\n"
        "from memory.embedders import HashingEmbedder\n"
        "from memory.store import MemoryStore\n"
        "def listening():\n"
        "    return {c.laddr for c in psutil.Process().net_connections('inet')\n"
        "            if c.status == psutil.CONN_LISTEN}\n"
        "async def main():\n"
        "    before = listening()\n"
        f"    async with MemoryStore(sys.argv[1], tenant={TENANT!r},\n"
        "                           embedder=HashingEmbedder()) as store:\n"
        "        await store.count()\n"
        "        print(len(listening() - before), 'pymilvus' in sys.modules,\n"
        "              'grpc' in sys.modules)\n"
        "trio.run(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.db")],
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["0", "False", "False"]
