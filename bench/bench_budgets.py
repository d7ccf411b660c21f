"""What the hostile-peer defences cost per unit of work (issue 9).

- the per-peer budget check a stream passes before its handler runs (token bucket and
  open-stream count, ``meshnode.node.limits``);
- the wire size the task store counts for a task, computed when it starts and ends
  (``meshnode.a2a.lifecycle.wire_size``), for a small and a large task;
- recording trust evidence into full tables: a peer's first good evidence when 4096
  peers with good evidence are held (the worst record is looked for and dropped), and a
  bad-only peer into the separate bounded table (what a Sybil's bad hello costs).

    python bench/bench_budgets.py
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.a2a.lifecycle import wire_size
from meshnode.config import LimitSettings
from meshnode.node.limits import PeerLimits
from meshnode.trust.graph import Outcome, TrustGraph
from protocols.a2a import Message, Task, TaskState, TaskStatus, TextPart


def _task(text_bytes: int) -> Task:
    message = Message("user", (TextPart("q" * text_bytes),), "m")
    return Task("t", "c", TaskStatus(TaskState.COMPLETED, timestamp=1.0), history=(message,))


def main() -> None:
    limits = PeerLimits(LimitSettings(), clock=time.monotonic)

    def budget_check() -> None:
        limits.take("peer", "/meshnode/a2a/1.0.0", 5.0, 20.0)
        limits.open_stream("peer", "/meshnode/a2a/1.0.0")
        limits.close_stream("peer", "/meshnode/a2a/1.0.0")

    n = 100_000
    print(f"budget check per stream: {timeit.timeit(budget_check, number=n) / n * 1e6:.2f} us")
    for label, size, n in (("200 B", 200, 2000), ("500 KB", 500_000, 200)):
        task = _task(size)
        spent = timeit.timeit(lambda t=task: wire_size(t), number=n) / n  # type: ignore[misc]
        print(f"wire size of a {label} task: {spent * 1e6:.1f} us")

    graph = TrustGraph("me", {"me"})
    for i in range(graph.max_peers):
        graph.record(f"good-{i}", Outcome.ACCEPTED, now=1.0 + i)
    n = 200
    start = time.perf_counter()
    for i in range(n):
        graph.record(f"new-{i}", Outcome.ACCEPTED, now=10_000.0 + i)
    spent = (time.perf_counter() - start) / n
    print(f"first good evidence of a peer, {graph.max_peers} held: {spent * 1e3:.2f} ms")
    n = 2 * graph.max_peers
    start = time.perf_counter()
    for i in range(n):
        graph.record(f"sybil-{i}", Outcome.MALFORMED, now=20_000.0 + i)
    spent = (time.perf_counter() - start) / n
    print(f"bad evidence of a new peer (bad-only table full): {spent * 1e6:.1f} us")


if __name__ == "__main__":
    main()
