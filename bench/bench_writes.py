"""Writes benchmark: how fast one Lite node takes records, and how fast a mesh converges.

Real daemons on loopback (Milvus Lite each, the built-in embedder), default settings:

1. **one node**: ``--records`` synthetic records (30-60 words each) through the local API,
   either as single ``POST /v1/memory/records`` calls from ``--clients`` concurrent clients
   (``--mode single``, what a node of the version before could only do), or as batches of
   ``--batch`` records per request (``--mode batch``); records per second;
2. **a mesh of ``--nodes``** (a chain: each bootstrapped from the one before, so records
   relay): the same number of records written on the first node, then the time until every
   node holds all of them ("converged"), counted from the first write. Each node is watched
   by its own thread, through ``GET /v1/memory/marks`` (``--poll marks``: the writer's
   mark reaching ``--records`` means every one of its records is held) or through
   ``GET /v1/memory/stats`` (``--poll stats``, what versions without the marks route
   offer: its counts scan every row, which under load takes seconds and CPU of its own);
   the CPU seconds each daemon used meanwhile are printed too;
3. with ``--seeded``, **anti-entropy between two seeded nodes**: two more nodes, each
   holding ``--records`` records of its own written while apart, then connected; the time
   until each holds both sets (memsync pulls, no announcements).

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
from collections.abc import Callable
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


def cpu_seconds(node: Daemon) -> float:
    """User + system CPU time the daemon's process has used (Linux)."""
    assert node.proc is not None
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def converged(
    nodes: list[Daemon], authors: dict[str, int], poll: str
) -> Callable[[], list[float]]:
    """Start one watcher thread per node; the returned call waits for them all and gives,
    per node, the seconds until it held every record of ``authors`` (author: count)."""
    started = time.monotonic()
    reached: list[float] = [0.0] * len(nodes)

    def holds(node: Daemon) -> bool:
        if poll == "stats":
            return held(node) >= sum(authors.values())
        marks = DaemonClient(node.home).get("/v1/memory/marks")["marks"]
        return all(marks.get(a, 0) >= n for a, n in authors.items())

    def watch(i: int) -> None:
        wait_for("every record to be held", lambda: holds(nodes[i]), timeout=600, every=0.1)
        reached[i] = time.monotonic() - started

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()

    def join() -> list[float]:
        for t in threads:
            t.join()
        return reached

    return join


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--mode", choices=["single", "batch"], default="batch")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (single)")
    parser.add_argument("--batch", type=int, default=250, help="records per request (batch)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--poll", choices=["marks", "stats"], default="marks")
    parser.add_argument("--no-solo", action="store_true", help="skip the one-node part")
    parser.add_argument("--seeded", action="store_true", help="also two seeded nodes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mesh(Path(tmp)) as nodes:
        root = Path(tmp)
        if not args.no_solo:
            solo = Daemon(root, "solo", "bench-solo", fast=False).start(log_level="warning")
            nodes.append(solo)
            load = os.getloadavg()[0]
            seconds = write(solo, texts(args.records, 1), args.mode, args.clients, args.batch)
            print(f"one node, {args.mode}: {args.records} records in {seconds:.1f} s = "
                  f"{args.records / seconds:.0f} records/s  [load {load:.1f}]", flush=True)
        chain: list[Daemon] = []
        for i in range(args.nodes):
            node = Daemon(root, f"m{i}", "bench-mesh", fast=False)
            node.start(*([chain[-1].addr] if i else []), log_level="warning")
            nodes.append(node)
            chain.append(node)
        wait_for("the chain to form", lambda: all(
            len(DaemonClient(n.home).get("/v1/peers")) == args.nodes - 1 for n in chain),
            timeout=300)
        load = os.getloadavg()[0]
        cpu = [cpu_seconds(n) for n in chain]
        join = converged(chain, {chain[0].peer_id: args.records}, args.poll)
        written = write(chain[0], texts(args.records, 2), args.mode, args.clients, args.batch)
        reached = join()
        used = [cpu_seconds(n) - c for n, c in zip(chain, cpu, strict=True)]
        print(f"{args.nodes} nodes, {args.mode}: written in {written:.1f} s, all nodes hold all "
              f"{args.records} after {max(reached):.1f} s (per node: {_each(reached)}; polled "
              f"by {args.poll}); {_cpu_and_load(used, load)}", flush=True)
        if args.seeded:
            seeded(root, nodes, args)


def seeded(root: Path, nodes: list[Daemon], args: argparse.Namespace) -> None:
    """Two nodes each write ``args.records`` apart; the second restarts bootstrapped from
    the first, and anti-entropy (memsync on the new connection) brings each the other's."""
    pair = []
    for i in range(2):
        node = Daemon(root, f"s{i}", "bench-seeded", fast=False).start(log_level="warning")
        nodes.append(node)
        write(node, texts(args.records, 10 + i), args.mode, args.clients, args.batch)
        pair.append(node)
    pair[1].stop()
    load = os.getloadavg()[0]
    pair[1].start(pair[0].addr, log_level="warning")  # serving: counted from here
    cpu = [cpu_seconds(n) for n in pair]
    reached = converged(pair, {n.peer_id: args.records for n in pair}, args.poll)()
    used = [cpu_seconds(n) - c for n, c in zip(pair, cpu, strict=True)]
    print(f"2 seeded nodes, {args.records} records each: both hold all {2 * args.records} "
          f"{max(reached):.1f} s after the second restarted bootstrapped from the first "
          f"(per node: {_each(reached)}); {_cpu_and_load(used, load)}", flush=True)


def _each(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def _cpu_and_load(used: list[float], load: float) -> str:
    """The tail of a convergence line: CPU seconds per daemon, and the machine's load."""
    return (f"CPU s per daemon meanwhile: {_each(used)}  "
            f"[load {load:.1f} -> {os.getloadavg()[0]:.1f}]")


if __name__ == "__main__":
    main()
