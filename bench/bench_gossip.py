"""Gossip benchmark: presence propagation latency and how fast a newcomer learns the mesh.

Starts N real `meshnode start` processes on loopback (default settings: presence every 5 s),
each bootstrapped from a random earlier node, waits until every node knows every other,
then records the publish-to-receipt latency at every node of every presence announcement
published during ``--settle`` seconds (sender and receiver share this machine's clock). Then a new
node joins through one peer and we time how long it takes to list all N.

    python bench/bench_gossip.py --sizes 5 10 25
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.cli.client import DaemonClient
from meshnode.stats import quantile
from tests.integration.harness import Daemon, mesh, wait_for


def run(size: int, settle: float, rng: random.Random) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, mesh(Path(tmp)) as nodes:
        root = Path(tmp)
        started = time.monotonic()
        for i in range(size):
            node = Daemon(root, f"n{i}", "bench", fast=False)
            node.start(*([rng.choice(nodes).addr] if nodes else []), log_level="info")
            nodes.append(node)
        clients = [DaemonClient(n.home) for n in nodes]
        wait_for(
            "every node to know every other",
            lambda: all(len(c.get("/v1/peers")) == size - 1 for c in clients),
            timeout=120,
        )
        full_mesh_s = time.monotonic() - started
        mark = time.time()
        time.sleep(settle + 5)  # + a grace period for announcements still in flight
        latencies: list[float] = []
        for client in clients:
            samples = client.get("/v1/gossip", since=mark)["samples"]
            # Count what was published inside the window, however late it arrived.
            latencies += [ms for at, ms, _ in samples if mark <= at - ms / 1000 <= mark + settle]

        newcomer = Daemon(root, "newcomer", "bench", fast=False)
        launched = time.monotonic()
        newcomer.start(nodes[0].addr, log_level="info")
        api_up = time.monotonic()
        probe = DaemonClient(newcomer.home)
        wait_for("the newcomer to list the whole mesh",
                 lambda: len(probe.get("/v1/peers")) == size, timeout=120, every=0.02)
        learned = time.monotonic()
        nodes.append(newcomer)
        return {
            "nodes": size,
            "samples": len(latencies),
            "p50_ms": quantile(latencies, 0.50),
            "p99_ms": quantile(latencies, 0.99),
            "mean_ms": statistics.fmean(latencies),
            "max_ms": max(latencies),
            "learn_from_api_up_s": learned - api_up,
            "learn_from_launch_s": learned - launched,
            "all_nodes_started_and_full_view_s": full_mesh_s,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 25])
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds of presence traffic to sample (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print("nodes  samples  p50 ms  p99 ms  mean ms  max ms  newcomer learns mesh (s)")
    for size in args.sizes:
        r = run(size, args.settle, rng)
        print(
            f"{r['nodes']:5}  {r['samples']:7}  {r['p50_ms']:6.1f}  {r['p99_ms']:6.1f}  "
            f"{r['mean_ms']:7.1f}  {r['max_ms']:6.1f}  {r['learn_from_api_up_s']:.2f} "
            f"(from launch {r['learn_from_launch_s']:.2f}; {r['nodes']} nodes up and "
            f"fully meshed in {r['all_nodes_started_and_full_view_s']:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
