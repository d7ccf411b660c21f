"""What watching a node costs it: one /metrics scrape, one dashboard SSE event.

One node's real services, built in-process as the daemon builds them (MeshHost, Membership,
KnowledgeService over Milvus Lite, TaskService, TrustService, Asker), filled with the state
of a busy node: N peers with presence and agent cards, each with trust evidence, an
attestation and replication lag; T tasks in the task store; the asker's recent asks; R
records in memory. Then, per round:

- scrape: ``NodeMetrics.render()`` (the collector walks the services, Milvus counts the
  records, prometheus_client formats the text) — what a Prometheus scrape costs the node,
  without the HTTP layer;
- SSE event: ``Dashboard.snapshot()`` rebuilt plus its JSON encoding — what each event of
  the live stream costs (shared by every open dashboard);
- memory stats: ``KnowledgeService.stats()`` (counts every record's author), which the
  dashboard runs at most every 10 s.

    python bench/bench_metrics.py                    # the RESULTS.md run
    python bench/bench_metrics.py --peers 100 --tasks 1000 --rounds 50
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory.replication import _PeerLag
from memory.store import MemoryStore
from meshnode import __version__
from meshnode.a2a.owners import OPERATOR
from meshnode.a2a.tasks import TaskService, agent_card
from meshnode.agents.answering import Answerer
from meshnode.agents.specs import demo_agents
from meshnode.api.dashboard import Dashboard
from meshnode.api.metrics import NodeCollector, NodeMetrics
from meshnode.ask.asker import Asker
from meshnode.ask.relevance import SkillIndex
from meshnode.config import load_config
from meshnode.daemon import make_embedder
from meshnode.node.home import init_home, load_private_key
from meshnode.node.host import MeshHost
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.membership import Membership
from meshnode.stats import quantile as pct
from meshnode.trust.graph import Outcome
from meshnode.trust.service import TrustService
from protocols.a2a import Message, TaskState, TextPart, card_to_wire
from protocols.peerid import Signer
from protocols.presence import Presence
from protocols.records import new_record
from protocols.trust import TrustAttestation

NETWORK = "bench-metrics"


def _result(i: int, peer: str) -> dict[str, Any]:
    """An asker result of the size a real one has (explanation, cited answer)."""
    return {
        "task_id": f"task-{i}", "agent": "milvus-expert", "peer": peer,
        "answer": {"text": "Use HNSW when the index fits in memory. " * 30, "mode": "extractive",
                   "model": None, "retrieval_s": 0.5, "llm_s": 0.0,
                   "citations": [{"id": "ab" * 32, "collection": "expert_knowledge",
                                  "author": peer, "score": 0.3, "snippet": "x" * 160}] * 3},
        "timings": {"routing_s": 0.005, "retrieval_s": 0.5, "llm_s": 0.0, "network_s": 0.04,
                    "total_s": 0.6},
        "explain": {"candidates": [{"agent": f"a{j}", "peer_id": peer, "score": 0.5,
                                    "factors": {"relevance": 1.0, "trust": 0.5},
                                    "explore": False} for j in range(6)],
                    "waves": [{"asked": [], "outcomes": [], "choice": {}}], "irrelevant": 0},
    }


async def build(home: Path, peers: int, tasks_n: int, records: int) -> tuple[Any, ...]:
    init_home(home, network_id=NETWORK)
    config = load_config(home)
    key = load_private_key(home)
    signer = Signer(key)
    embedder = make_embedder(config.memory)
    store = MemoryStore(config.memory_uri, tenant=config.tenant, embedder=embedder)
    await store.__aenter__()
    host = MeshHost(key, listen=["/ip4/127.0.0.1/tcp/0"], gossip=config.gossip)
    membership = Membership(config, host, signer, version=__version__)
    knowledge = KnowledgeService(config, host, membership, signer, store)
    tasks = TaskService(host, (), Answerer(store, None), knowledge, version=__version__)
    trust = TrustService(config, host, signer)
    asker = Asker(host, membership, tasks, SkillIndex(embedder, trio.CapacityLimiter(2)),
                  trust.graph, settings=config.routing)
    now = time.time()
    specs = demo_agents()
    others = [Signer.generate() for _ in range(peers)]
    for i, other in enumerate(others):
        card = card_to_wire(agent_card(specs[i % len(specs)], version=__version__))
        membership.table.saw_presence(Presence(
            peer_id=other.peer_id, addrs=(f"/ip4/10.0.0.{i % 250}/tcp/4001",),
            version=__version__, seq=1, ttl_s=30.0, load=0.0, agents=(card,)), now)
        membership.table.saw_ping(other.peer_id, 1.5, now)
        membership.latency_samples.append((now, 12.0, other.peer_id))
        trust.graph.record(other.peer_id, Outcome.ACCEPTED, now=now)
        trust.graph.accept_attestation(TrustAttestation(
            author=other.peer_id, seq=1, issued=now,
            scores={o.peer_id: 1.0 / peers for o in others}), now)
        # Private in a benchmark only: the lag a real sync leaves per peer.
        knowledge.replicator._lag[other.peer_id] = _PeerLag(last_sync=now, pulled=3)
    trust.graph.compute_global()
    for i in range(tasks_n):
        message = Message("user", (TextPart(f"question {i}"),), f"m{i}")
        async with tasks.store.run(message, owner=OPERATOR) as run:
            await run.working("answering")
            await run.finish(TaskState.COMPLETED)
    for i in range(100):
        asker.history.record(f"question {i}", started=time.monotonic(), forwarded=False,
                             result=_result(i, others[i % peers].peer_id if peers else ""))
    batch = [new_record(others[i % max(1, peers)] if peers else signer,
                        collection="expert_knowledge", tenant=config.tenant,
                        text=f"record {i} about milvus indexes and segments", kind="note",
                        agent="", created=now, seq=i // max(1, peers) + 1)
             for i in range(records)]
    await store.put(batch)
    collector = NodeCollector(
        peer_id=signer.peer_id, network_id=NETWORK, version=__version__,
        membership=membership, tasks=tasks, trust=trust, knowledge=knowledge,
        connections=host.connection_counts, published=host.published)
    metrics = NodeMetrics(collector, asker, knowledge)
    dashboard = Dashboard("token", membership=membership, asker=asker, trust=trust,
                          tasks=tasks, memory_stats=knowledge.stats)
    return store, metrics, dashboard, knowledge


async def measure(peers: int, tasks_n: int, records: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store, metrics, dashboard, knowledge = await build(Path(tmp) / "home", peers, tasks_n,
                                                           records)
        try:
            scrape, cached, event, stats = [], [], [], []
            size = event_size = 0
            await dashboard.snapshot()  # memory stats once; they are measured apart below
            dashboard._memory_at = float("inf")
            for _ in range(rounds):
                metrics._refresh_at = -1.0  # count the records: what one scrape in ~20 pays
                started = time.perf_counter()
                body = await metrics.render()
                scrape.append((time.perf_counter() - started) * 1000)
                size = len(body)
                started = time.perf_counter()
                await metrics.render()  # with the counts of a moment ago: most scrapes
                cached.append((time.perf_counter() - started) * 1000)
                dashboard._snapshot_at = -1e9  # rebuild every round, as each 1 s tick does
                started = time.perf_counter()
                encoded = json.dumps(await dashboard.snapshot(), default=str,
                                     sort_keys=True).encode()
                event.append((time.perf_counter() - started) * 1000)
                event_size = len(encoded)
                started = time.perf_counter()
                await knowledge.stats()
                stats.append((time.perf_counter() - started) * 1000)
        finally:
            await store.__aexit__(None, None, None)
    return {"peers": peers, "tasks": tasks_n, "records": records,
            "scrape_p50": pct(scrape, 0.5), "scrape_p99": pct(scrape, 0.99),
            "cached_p50": pct(cached, 0.5), "cached_p99": pct(cached, 0.99),
            "scrape_kb": size / 1024,
            "event_p50": pct(event, 0.5), "event_p99": pct(event, 0.99),
            "event_kb": event_size / 1024, "stats_p50": pct(stats, 0.5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[1, 25, 100])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')} {platform.machine()} {platform.python_version()}")
    print("| peers | tasks | records | scrape p50 / p99 ms (counting records) "
          "| scrape p50 / p99 ms (counts cached) | scrape KiB "
          "| SSE event p50 / p99 ms | event KiB | memory stats p50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for peers in args.peers:
        r = trio.run(measure, peers, args.tasks, args.records, args.rounds)
        print(f"| {r['peers']} | {r['tasks']} | {r['records']} | {r['scrape_p50']:.1f} / "
              f"{r['scrape_p99']:.1f} | {r['cached_p50']:.1f} / {r['cached_p99']:.1f} | "
              f"{r['scrape_kb']:.1f} | {r['event_p50']:.1f} / {r['event_p99']:.1f} | "
              f"{r['event_kb']:.1f} | {r['stats_p50']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
