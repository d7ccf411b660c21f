"""Benchmark of routing's skill relevance: SkillIndex.score over many known agents.

Each agent has three skills; their vectors are cached (the steady state: cards change
rarely), so a call embeds the question and compares it with every skill. Prints the
median time per call (ms) and whether the comparison ran in a worker thread.

    python bench/bench_relevance.py [--agents 10 100 1000 4000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory.embedders import HashingEmbedder
from meshnode.ask import relevance
from meshnode.ask.relevance import SkillIndex
from meshnode.stats import quantile

QUESTION = "Which Milvus index should I use for ten million vectors with filtering?"


def agents(n: int) -> list[tuple[str, list[str]]]:
    topics = ["packaging", "indexes", "systemd", "asyncio", "HNSW", "docker", "pytest", "gRPC"]
    return [
        (f"peer{i}/agent", [f"{topics[(i + k) % len(topics)]} skill {k} of agent {i}: "
                            f"questions about {topics[(i * 3 + k) % len(topics)]} and more"
                            for k in range(3)])
        for i in range(n)
    ]


async def measure(n: int, rounds: int) -> float:
    index = SkillIndex(HashingEmbedder(), trio.CapacityLimiter(2))
    known = agents(n)
    await index.score(QUESTION, known)  # fills the cache
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await index.score(QUESTION, known)
        samples.append((time.perf_counter() - start) * 1000)
    return quantile(samples, 0.5)


async def main(sizes: list[int], rounds: int) -> None:
    limit = getattr(relevance, "THREAD_ROWS", None)
    print("agents  skills  score p50 ms  comparison")
    for n in sizes:
        where = "-" if limit is None else ("thread" if 3 * n > limit else "event loop")
        print(f"{n:6}  {3 * n:6}  {await measure(n, rounds):12.2f}  {where}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 100, 1000, 4000])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    trio.run(main, args.agents, args.rounds)
