"""Writes benchmark: how fast one Lite node takes records, and how fast a mesh converges.

Real daemons on loopback (Milvus Lite each, the built-in embedder), default settings:

1. **one node**: ``--records`` synthetic records (30-60 words each) through the local API,
   either as single ``POST /v1/memory/records`` calls from ``--clients`` concurrent clients
   (``--mode single``, what a node of the version before could only do), or as batches of
   ``--batch`` records per request (``--mode batch``); records per second;
2. **a mesh of ``--nodes``** (a chain: each bootstrapped from the one before, so records
   relay): the same number of records written on the first node, then the time until every
   node holds all of them ("converged"), counted from the first write.

    python bench/bench_writes.py --records 1000 --mode batch --batch 250 --nodes 5
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.cli.client import DaemonClient
from tests.integration.harness import Daemon, mesh, wait_for

WORDS = [
    "milvus", "index", "hnsw", "flush", "segment", "bulk", "insert", "query", "latency",
    "vector", "recall", "node", "mesh", "agent", "gossip", "presence", "replica", "tenant",
    "partition", "search", "embedding", "batch", "write", "python", "trio", "stream",
    "session", "deploy", "rollback", "kubernetes", "container", "log", "metric",
]


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60))) + f" (#{i})"
            for i in range(n)]


def write(node: Daemon, items: list[str], mode: str, clients: int, batch: int) -> float:
    """Write ``items`` to ``node``; the seconds it took."""
    started = time.monotonic()
    if mode == "batch":
        client = DaemonClient(node.home, timeout=600)
        for i in range(0, len(items), batch):
            client.post("/v1/memory/records", {"records": [
                {"text": t, "kind": "bench"} for t in items[i:i + batch]]})
        return time.monotonic() - started
    shares = [items[i::clients] for i in range(clients)]

    def one(share: list[str]) -> None:
        client = DaemonClient(node.home, timeout=600)
        for text in share:
            client.post("/v1/memory/records", {"text": text, "kind": "bench"})

    threads = [threading.Thread(target=one, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def held(node: Daemon) -> int:
    stats: dict[str, Any] = DaemonClient(node.home).get("/v1/memory/stats")
    return int(stats["collections"]["expert_knowledge"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--mode", choices=["single", "batch"], default="batch")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (single)")
    parser.add_argument("--batch", type=int, default=250, help="records per request (batch)")
    parser.add_argument("--nodes", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, mesh(Path(tmp)) as nodes:
        root = Path(tmp)
        solo = Daemon(root, "solo", "bench-solo", fast=False).start(log_level="warning")
        nodes.append(solo)
        seconds = write(solo, texts(args.records, 1), args.mode, args.clients, args.batch)
        print(f"one node, {args.mode}: {args.records} records in {seconds:.1f} s = "
              f"{args.records / seconds:.0f} records/s", flush=True)
        for i in range(args.nodes):
            node = Daemon(root, f"m{i}", "bench-mesh", fast=False)
            node.start(*([nodes[-1].addr] if i else []), log_level="warning")
            nodes.append(node)
        chain = nodes[1:]
        wait_for("the chain to form", lambda: all(
            len(DaemonClient(n.home).get("/v1/peers")) == args.nodes - 1 for n in chain),
            timeout=300)
        started = time.monotonic()
        written = write(chain[0], texts(args.records, 2), args.mode, args.clients, args.batch)
        wait_for("every node to hold every record", lambda: all(
            held(n) >= args.records for n in chain), timeout=600, every=0.5)
        converged = time.monotonic() - started
        print(f"{args.nodes} nodes, {args.mode}: written in {written:.1f} s, all nodes hold all "
              f"{args.records} after {converged:.1f} s  [load {load:.1f} -> "
              f"{os.getloadavg()[0]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
