"""What consulting with shared retrieval costs and saves (issue 11).

Two figures, on one Milvus Lite store holding the demo's Python and Milvus knowledge bases
(built-in hashing embedder):

- receiving: decoding and verifying a delegation of N shared records (content hash and
  Ed25519 signature of each), as a consulted agent does before using any of them;
- answering: the built-in (extractive) answer of the Milvus expert to a question, when it
  searches memory itself versus when it is handed the records another agent retrieved.

    python bench/bench_delegation.py --rounds 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from memory.embedders import HashingEmbedder
from memory.ingest import IngestManifest, ingest
from memory.store import MemoryStore
from meshnode.agents.answering import Answerer
from meshnode.agents.specs import data_path, demo_agents
from meshnode.stats import quantile
from protocols.delegation import Hop, Shared, decode_delegation, encode_delegation, next_hop
from protocols.peerid import Signer

QUESTION = "Which Milvus index type gives low-latency vector search?"


def _ms(samples: list[float]) -> str:
    p50, p95 = (1000 * quantile(samples, q) for q in (0.5, 0.95))
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms"


async def main(rounds: int) -> None:
    signer = Signer.from_seed(b"b" * 32)
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(str(Path(tmp) / "memory.db"), tenant="bench",
                            embedder=HashingEmbedder())
        async with store:
            manifest = IngestManifest.load(Path(tmp) / "ingested.json")
            await ingest(store, manifest, signer, [str(data_path("kb", "milvus")),
                                                   str(data_path("kb", "python"))],
                         agent="", collection="expert_knowledge")
            await store.flush()
            milvus = next(s for s in demo_agents() if s.name == "milvus-expert")
            answerer = Answerer(store, None)
            retrieved = await answerer.retrieve(milvus, QUESTION)
            shared = [Shared(h.record, h.score, "python-expert") for h in retrieved]
            wire = encode_delegation(next_hop(None, Hop(signer.peer_id, "python-expert"),
                                              shared))
            verify = []
            for _ in range(rounds):
                started = time.perf_counter()
                decode_delegation(wire)
                verify.append(time.perf_counter() - started)
            searched, reused = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                await answerer.answer(milvus, QUESTION, deadline_s=30)
                searched.append(time.perf_counter() - started)
                started = time.perf_counter()
                answer = await answerer.answer(milvus, QUESTION, deadline_s=30,
                                               shared=retrieved)
                reused.append(time.perf_counter() - started)
            assert not answer.searched and answer.reused
    print(f"verify a delegation of {len(shared)} records: {_ms(verify)}")
    print(f"answer, searching memory:        {_ms(searched)}")
    print(f"answer, reusing shared records:  {_ms(reused)} "
          f"(reused {answer.reused} of {len(shared)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    trio.run(main, parser.parse_args().rounds)
