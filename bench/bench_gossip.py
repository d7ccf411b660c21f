"""Gossip benchmark: what an idle mesh costs each node, presence latency, and joining.

Makes N node homes (``meshnode init``, untimed), then starts N real `meshnode start`
processes on loopback (default settings), each bootstrapped from a random node already up,
and waits until every node knows every other ("up and meshed", timed from the first
launch). Then, over ``--settle`` seconds of an idle mesh:

- **idle cost per node**: CPU (% of one core) of each daemon process, and its libp2p bytes
  on the wire (sent + received, from the kernel's per-socket TCP counters), per second;
  resident memory (RSS) of each daemon at the end;
- **presence latency**: publish-to-receipt at every node of every presence announcement
  published in the window (sender and receiver share this machine's clock).

Then a new node joins through one peer and we time how long it takes to list all N.

``--parallel K`` launches K daemons at a time, as a real mesh's machines start side by side
(the first alone; each later one bootstrapped from a node already up, at most
JOINERS_PER_NODE of a batch through the same node: 1, 4, 20 for 25); the default of 1
launches them one after another, each waiting for the previous one to serve. Start-up CPU
is each daemon's CPU seconds from launch to "meshed" (less sensitive to machine load than
the wall time). ``--profile`` records a py-spy profile of one daemon during the window.

    python bench/bench_gossip.py --sizes 5 15 25 50 --settle 60
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from procstats import cpu_seconds, rss_mb, sample

from meshnode.cli.client import DaemonClient
from meshnode.stats import quantile
from tests.integration.harness import Daemon, mesh, wait_for

#: With --parallel: newcomers of one batch bootstrapped from the same node, at most.
JOINERS_PER_NODE = 4
#: How often a line of progress is printed while the mesh forms (seconds).
PROGRESS_S = 60.0


def _port(addr: str) -> int:
    return int(addr.split("/tcp/")[1].split("/")[0])


def _init(root: Path, size: int) -> list[Daemon]:
    """``size`` node homes (``meshnode init``: a key and a config), made before the clock
    starts: a machine is initialised once, not at every start."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda i: Daemon(root, f"n{i}", "bench", fast=False),
                             range(size)))


def _start(homes: list[Daemon], nodes: list[Daemon], parallel: int,
           rng: random.Random) -> None:
    """Launch the daemons, ``parallel`` at a time, each bootstrapped from a node already
    up; each goes into ``nodes`` as soon as it is launched (so that it is stopped however
    this ends)."""
    up: list[Daemon] = []
    while len(up) < len(homes):
        # The first node alone: every later one needs a node that is up to bootstrap from,
        # and no node is the entry point of more than JOINERS_PER_NODE of a batch (a mesh
        # started side by side has several bootstrap nodes, not one for everybody).
        size = min(parallel, JOINERS_PER_NODE * len(up)) if up else 1
        batch = homes[len(up):len(up) + size]
        entries = rng.sample(up, len(up))
        for i, node in enumerate(batch):
            node.launch(*([entries[i % len(entries)].addr] if up else []), log_level="info")
            nodes.append(node)
        for node in batch:
            node.wait_started(timeout=300)
        up += batch


class _Progress:
    """While the mesh forms, every PROGRESS_S a line of what the nodes report: known peers,
    Lifeguard health scores, suspicions (what to look at when a mesh does not form)."""

    def __init__(self, clients: list[DaemonClient], started: float) -> None:
        self.clients = clients
        self.started = started
        self.last = started

    def state(self) -> str:
        known, health, suspects, sent, heard = [], [], 0, Counter[str](), Counter[str]()
        for client in self.clients:
            try:
                gossip = client.get("/v1/gossip", since=time.time() + 3600)
            except Exception:  # a daemon too busy to answer: counted as missing
                continue
            detection = gossip["failure_detection"]
            known.append(gossip["table"]["peers"])
            suspects += gossip["table"]["suspects"]
            health.append(detection["health"])
            sent.update(detection["sent"])
            heard.update(detection["heard"])
        if not known:
            return "no node answered"
        return (f"{time.monotonic() - self.started:.0f} s, load {os.getloadavg()[0]:.1f}: "
                f"{len(known)} answered, known peers min {min(known)} median "
                f"{statistics.median(known):g}, health max {max(health)} mean "
                f"{statistics.fmean(health):.1f}, suspects held {suspects}, sent {dict(sent)}, "
                f"heard {dict(heard)}")

    def tick(self) -> bool:
        if time.monotonic() - self.last >= PROGRESS_S:
            self.last = time.monotonic()
            print("  meshing:", self.state(), flush=True)
        return True


def run(size: int, settle: float, parallel: int, rng: random.Random,
        profile: Path | None, newcomer: bool, warmup: float = 0.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, mesh(Path(tmp)) as nodes:
        root = Path(tmp)
        homes = _init(root, size)
        started = time.monotonic()
        _start(homes, nodes, parallel, rng)
        up_s = time.monotonic() - started
        clients = [DaemonClient(n.home) for n in nodes]
        progress = _Progress(clients, started)
        try:
            wait_for(
                "every node to know every other",
                lambda: progress.tick() and all(len(c.get("/v1/peers")) == size - 1
                                                for c in clients),
                timeout=600,
            )
        except AssertionError:
            print("not meshed:", progress.state(), flush=True)
            raise
        full_mesh_s = time.monotonic() - started
        pids = [n.proc.pid for n in nodes if n.proc]
        ports = {_port(n.addr) for n in nodes}
        start_cpu = [cpu_seconds(p) for p in pids]
        # Past the first refreshes and the start-up's suspicions: the steady state.
        time.sleep(warmup)
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                 str(pids[1 % len(pids)]), "--duration", str(int(settle)), "--format", "raw",
                 "--nonblocking", "--rate", "50",
                 "--output", str(profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mark = time.time()
        before = sample(pids, ports)
        time.sleep(settle)
        after = sample(pids, ports)
        rss = [rss_mb(p) for p in pids]
        links = [c.get("/v1/status")["connected_peers"] for c in clients]
        time.sleep(5)  # a grace period for announcements still in flight
        if spy is not None:
            spy.wait(timeout=120)
        cpu = [100 * (after.cpu_s[p] - before.cpu_s[p]) / settle for p in pids]
        traffic = [(after.bytes[p] - before.bytes[p]) / settle for p in pids]
        latencies: list[float] = []
        for client in clients:
            samples = client.get("/v1/gossip", since=mark)["samples"]
            # Count what was published inside the window, however late it arrived.
            latencies += [ms for at, ms, _ in samples if mark <= at - ms / 1000 <= mark + settle]

        result = {
            "nodes": size,
            "samples": len(latencies),
            "p50_ms": quantile(latencies, 0.50) if latencies else float("nan"),
            "p99_ms": quantile(latencies, 0.99) if latencies else float("nan"),
            "cpu_mean": statistics.fmean(cpu), "cpu_max": max(cpu),
            "kbps_mean": statistics.fmean(traffic) / 1024, "kbps_max": max(traffic) / 1024,
            "rss_mean": statistics.fmean(rss),
            "links_mean": statistics.fmean(links),
            "up_s": up_s,
            "start_cpu_mean": statistics.fmean(start_cpu), "start_cpu_max": max(start_cpu),
            "meshed_s": full_mesh_s,
            "learn_from_api_up_s": float("nan"),
            "learn_from_launch_s": float("nan"),
        }
        if not newcomer:
            return result
        joiner = Daemon(root, "newcomer", "bench", fast=False)
        launched = time.monotonic()
        joiner.start(nodes[0].addr, log_level="info", timeout=120)
        api_up = time.monotonic()
        probe = DaemonClient(joiner.home)
        wait_for("the newcomer to list the whole mesh",
                 lambda: len(probe.get("/v1/peers")) == size, timeout=120, every=0.02)
        learned = time.monotonic()
        nodes.append(joiner)
        result["learn_from_api_up_s"] = learned - api_up
        result["learn_from_launch_s"] = learned - launched
        return result


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so that every daemon started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 15, 25])
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds of idle mesh to measure (default 60)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="daemons launched at a time (default 1: one after the other)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy raw profile of one daemon during the window: "
                             "PROFILE.<nodes>.txt")
    parser.add_argument("--no-newcomer", action="store_true",
                        help="skip timing how fast a new node learns the mesh")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds of idle mesh before the measured window (default 0: "
                        "the window starts as the mesh forms)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"launched {args.parallel} at a time")
    print("nodes  up s  meshed s  start CPU s/node (mean, max)  cpu %/node (mean, max)  "
          "KB/s/node (mean, max)  RSS MB  links  presence n  p50 ms  p99 ms  "
          "newcomer learns mesh s (from launch)")
    for size in args.sizes:
        profile = (args.profile.with_suffix(f".{size}.txt") if args.profile else None)
        load = os.getloadavg()[0]
        r = run(size, args.settle, args.parallel, rng, profile, not args.no_newcomer,
                args.warmup)
        print(
            f"{r['nodes']:5}  {r['up_s']:5.0f}  {r['meshed_s']:8.0f}  "
            f"{r['start_cpu_mean']:10.2f} {r['start_cpu_max']:5.2f}  "
            f"{r['cpu_mean']:10.2f} {r['cpu_max']:6.2f}  "
            f"{r['kbps_mean']:14.2f} {r['kbps_max']:6.2f}  {r['rss_mean']:6.0f}  "
            f"{r['links_mean']:5.1f}  "
            f"{r['samples']:10}  {r['p50_ms']:6.1f}  {r['p99_ms']:6.1f}  "
            f"{r['learn_from_api_up_s']:.2f} ({r['learn_from_launch_s']:.2f})  "
            f"[load {load:.1f} -> {os.getloadavg()[0]:.1f}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
