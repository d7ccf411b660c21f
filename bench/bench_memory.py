"""Benchmark of the memory store: insert throughput, search latency, flushing, recall@5.

Not a test: it prints figures (markdown tables) for bench/RESULTS.md. Examples:

    python bench/bench_memory.py recall
    python bench/bench_memory.py flush-sweep
    python bench/bench_memory.py scale --sizes 10000 --backends lite,server
    python bench/bench_memory.py scale --sizes 100000 --indexes HNSW,FLAT

``scale`` starts its own Milvus server (``milvus-server`` from PyPI package ``milvus``) on
loopback unless ``--server-uri`` names one; each configuration gets a fresh Lite file or
server database. Search latency is measured end to end through ``MemoryStore.search``
(embedding the query included), one query at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import trio
from pymilvus import MilvusClient

import memory.backend
import memory.flushing
import memory.store
from memory.embedders import Embedder, HashingEmbedder, embedder_from_config
from memory.milvus_server import start_milvus_server
from memory.store import MemoryStore
from meshnode.stats import quantile
from protocols.peerid import Signer
from protocols.records import COLLECTIONS, MemoryRecord, new_record

QA_SET = Path(__file__).resolve().parent.parent / "tests" / "data" / "memory_qa.json"
TENANT = "bench"
BATCH = 1000


class CachedEmbedder:
    """Wraps an embedder, remembering vectors so that repeated configurations only pay
    Milvus' part; ``seconds`` is the time spent in the real embedder."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seconds = 0.0
        self._cache: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            started = time.perf_counter()
            vectors = self.inner.embed(missing)
            self.seconds += time.perf_counter() - started
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        return [self._cache[t].tolist() for t in texts]

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        self.embed(texts)
        return np.stack([self._cache[t] for t in texts])


def exact_top5(
    embedder: CachedEmbedder, records: Sequence[MemoryRecord], queries: Sequence[str]
) -> list[set[str]]:
    """The true 5 nearest records of each query (cosine; the vectors are unit length)."""
    scores = embedder.matrix(queries) @ embedder.matrix([r.text for r in records]).T
    nearest = np.argsort(-scores, axis=1)[:, :5]
    return [{records[i].id for i in row} for row in nearest]


async def ann_recall(store: MemoryStore, queries: Sequence[str], exact: list[set[str]]) -> float:
    """Share of the true top 5 that the index returns."""
    found = 0
    for query, truth in zip(queries, exact, strict=True):
        hits = await store.search(query, k=5, collection=COLLECTIONS[0])
        found += len(truth & {h.record.id for h in hits})
    return found / (5 * len(queries))


def qa_set() -> dict[str, Any]:
    return json.loads(QA_SET.read_text())  # type: ignore[no-any-return]


def synthetic_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct texts of 30-60 words drawn from the developer-support vocabulary."""
    words = " ".join(p["text"] for p in qa_set()["passages"]).split()
    rng = random.Random(seed)
    return [f"{i}: " + " ".join(rng.choices(words, k=rng.randint(30, 60))) for i in range(n)]


def make_records(texts: Sequence[str], collection: str = COLLECTIONS[0]) -> list[MemoryRecord]:
    signer = Signer.from_seed(bytes(32))
    return [
        new_record(signer, collection=collection, tenant=TENANT, text=text, kind="doc",
                   agent="bench", created=1_800_000_000.0 + seq, seq=seq)
        for seq, text in enumerate(texts, start=1)
    ]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples`` seconds, in milliseconds."""
    return quantile(samples, q / 100) * 1000.0


async def latencies(
    store: MemoryStore, queries: Sequence[str], collection: str | None = COLLECTIONS[0]
) -> list[float]:
    """Seconds per top-5 search of each query, in one collection (None: all three)."""
    out = []
    for query in queries:
        started = time.perf_counter()
        await store.search(query, k=5, collection=collection)
        out.append(time.perf_counter() - started)
    return out


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


@contextmanager
def fresh_uris(backend: str, workdir: Path, server_uri: str | None) -> Iterator[Callable[[], str]]:
    """A factory of empty store uris: Lite files, or new databases on a Milvus server."""
    if backend == "lite":
        yield lambda: str(workdir / f"{uuid.uuid4().hex[:8]}.db")
        return
    server = None if server_uri else start_milvus_server(workdir / "milvus-server")
    base = server_uri or (server.uri if server else "")
    admin = MilvusClient(uri=base, timeout=60, dedicated=True)

    def new_database() -> str:
        name = "b" + uuid.uuid4().hex[:10]
        admin.create_database(name)
        return f"{base}/{name}"

    try:
        yield new_database
    finally:
        admin.close()
        if server is not None:
            server.stop()


async def scale(args: argparse.Namespace, workdir: Path) -> None:
    if args.hnsw_ef:
        memory.backend.INDEXES["HNSW"][1]["ef"] = args.hnsw_ef
    embedder = CachedEmbedder(HashingEmbedder())
    queries = synthetic_texts(args.queries, seed=99)
    print("| backend | records | index | put rec/s (excl. embedding) | search p50 / p99 ms, "
          "after the puts | flush + settle s | search p50 / p99 ms, flushed | p50 ms, "
          "3 collections | p50 ms, reopened | recall@5 vs exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        records = make_records(synthetic_texts(size, seed=size))
        for backend in args.backends:
            with fresh_uris(backend, workdir, args.server_uri) as new_uri:
                for index in args.indexes:
                    row = await one_config(new_uri(), embedder, records, queries, index,
                                           args.settle)
                    print(f"| {backend} | {size} | {index} | " + " | ".join(row) + " |", flush=True)
    texts_per_s = len(embedder._cache) / embedder.seconds if embedder.seconds else 0.0
    print(f"\nHashingEmbedder: {texts_per_s:.0f} texts/s (30-60 words, one thread)")


async def settle(store: MemoryStore, queries: Sequence[str], cap_s: float) -> float:
    """Wait for the background index builds that follow a flush; returns the seconds waited.

    A server says how many rows wait for their index (until then it searches them with a
    coarse interim index); Milvus Lite does not, so there we wait while search keeps
    getting faster."""
    waited, best = 0.0, float("inf")
    while waited < cap_s:
        pending = sum((await store.stats())["unindexed_rows"].values())
        p50 = quantile(await latencies(store, queries[:20]), 0.5)
        if not pending and p50 > best * 0.9:
            break
        best = min(best, p50)
        await trio.sleep(5.0)
        waited += 5.0
    return waited


async def one_config(
    uri: str, embedder: CachedEmbedder, records: list[MemoryRecord], queries: list[str],
    index: str, settle_cap_s: float,
) -> list[str]:
    async with MemoryStore(uri, tenant=TENANT, embedder=embedder, index_type=index) as store:
        spent = embedder.seconds
        put_s = 0.0
        for start in range(0, len(records), BATCH):
            put_s += await timed(lambda s=start: store.put(records[s : s + BATCH]))  # type: ignore[misc]
        put_s -= embedder.seconds - spent
        inserted = await latencies(store, queries)
        flush_s = await timed(store.flush)
        settle_s = await settle(store, queries, settle_cap_s)
        flushed = await latencies(store, queries)
        merged = await latencies(store, queries[:50], collection=None)
        recall = await ann_recall(store, queries, exact_top5(embedder, records, queries))
        reopened = "-"
    if not uri.startswith("http"):
        async with MemoryStore(uri, tenant=TENANT, embedder=embedder, index_type=index) as store:
            await latencies(store, queries[:5])  # the first searches load the index files
            reopened = f"{percentile(await latencies(store, queries), 50):.1f}"
    return [
        f"{len(records) / put_s:.0f}",
        f"{percentile(inserted, 50):.1f} / {percentile(inserted, 99):.1f}",
        f"{flush_s:.1f} + {settle_s:.0f}",
        f"{percentile(flushed, 50):.1f} / {percentile(flushed, 99):.1f}",
        f"{percentile(merged, 50):.1f}",
        reopened,
        f"{recall:.3f}",
    ]


async def flush_sweep(args: argparse.Namespace, workdir: Path) -> None:
    """Milvus Lite: search latency with n rows not yet flushed, and what flushing costs."""
    memory.flushing.LITE_FLUSH_ROWS = 10**9
    embedder = CachedEmbedder(HashingEmbedder())
    queries = synthetic_texts(100, seed=7)
    print("| rows not flushed | search p50 ms before | flush s | search p50 ms after |")
    print("|---|---|---|---|")
    for n in args.rows:
        records = make_records(synthetic_texts(n, seed=n))
        uri = str(workdir / f"sweep-{n}.db")
        async with MemoryStore(uri, tenant=TENANT, embedder=embedder) as store:
            for start in range(0, n, BATCH):
                await store.put(records[start : start + BATCH])
            before = await latencies(store, queries)
            flush_s = await timed(store.flush)
            after = await latencies(store, queries)
        print(f"| {n} | {percentile(before, 50):.1f} | {flush_s:.2f} | "
              f"{percentile(after, 50):.1f} |", flush=True)


async def recall(args: argparse.Namespace, workdir: Path) -> None:
    """recall@1 and recall@5 of each embedder on the labelled question -> passage set."""
    data = qa_set()
    signer = Signer.from_seed(bytes(32))
    print("| embedder | dim | recall@1 | recall@5 | MRR@5 | embed passages s |")
    print("|---|---|---|---|---|---|")
    for name in args.embedders:
        embedder = CachedEmbedder(embedder_from_config(name))
        records = [
            new_record(signer, collection=COLLECTIONS[0], tenant=TENANT, text=p["text"],
                       kind="doc", agent="bench", created=1_800_000_000.0, seq=seq,
                       meta={"passage": p["id"]})
            for seq, p in enumerate(data["passages"], start=1)
        ]
        async with MemoryStore(str(workdir / f"recall-{name}.db"), tenant=TENANT,
                               embedder=embedder) as store:
            await store.put(records)
            embed_s = embedder.seconds
            ranks = []
            for question in data["questions"]:
                hits = await store.search(question["q"], k=5)
                found = [h.record.meta["passage"] for h in hits]
                ranks.append(found.index(question["passage"]) + 1
                             if question["passage"] in found else 0)
        n = len(ranks)
        top1 = sum(r == 1 for r in ranks) / n
        top5 = sum(r > 0 for r in ranks) / n
        mrr = statistics.fmean(1 / r if r else 0.0 for r in ranks)
        print(f"| {embedder.name} | {embedder.dim} | {top1:.3f} | {top5:.3f} | {mrr:.3f} | "
              f"{embed_s:.2f} |", flush=True)
    print(f"\n{len(data['passages'])} passages, {len(data['questions'])} questions ({QA_SET.name})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where to keep data (default: a temp dir)")
    sub = parser.add_subparsers(dest="command", required=True)

    def csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
        return lambda text: [kind(item) for item in text.split(",") if item]

    p = sub.add_parser("scale", help="insert throughput and search latency")
    p.add_argument("--sizes", type=csv(int), default=[10_000, 100_000])
    p.add_argument("--backends", type=csv(str), default=["lite", "server"])
    p.add_argument("--indexes", type=csv(str), default=["HNSW", "FLAT", "AUTOINDEX"])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--server-uri", help="use this Milvus server instead of starting one")
    p.add_argument("--settle", type=float, default=300.0,
                   help="longest wait for background index builds after a flush (s)")
    p.add_argument("--hnsw-ef", type=int, help="HNSW search width (default: the store's)")
    p = sub.add_parser("flush-sweep", help="Milvus Lite: cost of unflushed rows")
    p.add_argument("--rows", type=csv(int), default=[500, 1000, 2000, 5000, 10_000, 20_000])
    p = sub.add_parser("recall", help="recall@5 on tests/data/memory_qa.json")
    p.add_argument("--embedders", type=csv(str), default=["hashing", "minilm"])
    args = parser.parse_args()

    command = {"scale": scale, "flush-sweep": flush_sweep, "recall": recall}[args.command]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        trio.run(command, args, workdir)


if __name__ == "__main__":
    main()
