"""What the hostile-peer defences cost per unit of work (issue 9).

- the per-peer budget check a stream passes before its handler runs (token bucket and
  open-stream count, ``meshnode.node.limits``);
- the wire size the task store counts for a task, computed when it starts and ends
  (``meshnode.a2a.lifecycle.wire_size``), for a small and a large task;
- recording trust evidence into full tables: a peer's first good evidence when 4096
  peers with good evidence are held (the worst record is looked for and dropped), and a
  bad-only peer into the separate bounded table (what a Sybil's bad hello costs);
- a junk gossip message: what a neighbour makes this node spend with a batched knowledge
  announcement of 256 records whose last signature is forged (decoded and 256 signatures
  checked before it is refused), against the invalid-gossip budget's check that drops it
  unread once the neighbour is over budget.

    python bench/bench_budgets.py
"""

from __future__ import annotations

import dataclasses
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
from protocols.errors import ProtocolError
from protocols.memsync import decode_announcements, encode_announcements
from protocols.peerid import Signer
from protocols.records import new_record


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
    _junk_gossip()


def _junk_gossip() -> None:
    signer = Signer.generate()
    records = [new_record(signer, collection="expert_knowledge", tenant="bench",
                          text=f"record {i} " + "x" * 200, kind="note", agent="", created=1.0,
                          seq=i + 1, meta={}) for i in range(256)]
    records[-1] = dataclasses.replace(records[-1], signature=bytes(64))  # forged
    [junk] = encode_announcements(records)

    def validate() -> None:
        try:
            decode_announcements(junk)
        except ProtocolError:
            return
        raise AssertionError("the forged batch was accepted")

    n = 20
    spent = timeit.timeit(validate, number=n) / n
    print(f"junk batch ({len(junk) // 1024} KiB, 256 signatures) decoded and refused: "
          f"{spent * 1e3:.1f} ms")
    limits = PeerLimits(LimitSettings(invalid_gossip_per_min=1.0), clock=time.monotonic)
    limits.gossip_invalid("junk")
    limits.gossip_invalid("junk")
    n = 100_000
    spent = timeit.timeit(lambda: limits.gossip_allowed("junk"), number=n) / n
    print(f"the same dropped unread (neighbour over its invalid-gossip budget): "
          f"{spent * 1e6:.2f} us")


if __name__ == "__main__":
    main()
