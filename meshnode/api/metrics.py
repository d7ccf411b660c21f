"""Prometheus metrics of one node, served at ``GET /metrics`` in the text exposition format.

Each node owns one :class:`prometheus_client.CollectorRegistry` (no global registry, so two
nodes in one process, as in tests, never mix their figures). Most families are read from
the services' own state at scrape time by :class:`NodeCollector`, so the services keep no
metric objects; only timings that must count every event (ask stages, memory searches,
presence latency) are histograms fed by small hooks.

Names are prefixed ``meshnode_``, or ``libp2p_`` where they mean what go-libp2p's do:
``libp2p_rcmgr_connections{dir,scope="system"}`` is, as in go-libp2p's resource manager,
the number of open connections of the whole host by direction. The family list is in the
README ("Metrics").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import trio
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meshnode.a2a.tasks import TaskService
from meshnode.api.app import ApiApp, Request, StreamingResponse
from meshnode.api.responses import body_response
from meshnode.ask.asker import Asker
from meshnode.ask.history import STAGES, AskRecord
from meshnode.node.faults import Faults
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.membership import Membership
from meshnode.trust.service import TrustService

METRICS_PATH = "/metrics"
#: Per-peer series (RTT, replication) are capped, so a mesh of thousands of peers cannot
#: blow up the scrape; the most recent peers are kept.
MAX_PEER_SERIES = 64
#: Counting records asks Milvus once per collection (a filtered count: it grows with the
#: records): at most this often, and at most 5% of the time (see bench/RESULTS.md).
MEMORY_REFRESH_S = 5.0
MEMORY_REFRESH_SHARE = 0.05
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
_GOSSIP_KINDS = ("presence", "trust", "knowledge")
#: The refusal reason each gossip topic's invalid messages are counted under.
_INVALID = {"presence": "invalid_presence", "trust": "invalid_attestation",
            "knowledge": "invalid_announcement"}


class NodeCollector(Collector):
    """Reads the node's services when Prometheus scrapes; holds no state of its own except
    the last record counts (refreshed by :meth:`NodeMetrics.render`)."""

    def __init__(
        self,
        *,
        peer_id: str,
        network_id: str,
        version: str,
        membership: Membership,
        tasks: TaskService,
        trust: TrustService,
        knowledge: KnowledgeService,
        connections: Callable[[], Mapping[str, int]],
        published: Mapping[str, int],
        faults: Faults | None = None,
    ) -> None:
        self.info = {"peer_id": peer_id, "network_id": network_id, "version": version}
        self.membership = membership
        self.tasks = tasks
        self.trust = trust
        self.knowledge = knowledge
        self.connections = connections
        self.published = published
        # The services' own topic names: a topic's version is theirs to change.
        self.topics = {"presence": membership.presence_topic.topic, "trust": trust.topic.topic,
                       "knowledge": knowledge.topic.topic}
        self.records: dict[str, int] = {}
        self.faults = faults

    def collect(self) -> Iterator[Metric]:
        yield from self._node()
        yield from self._gossip()
        yield from self._tasks()
        yield from self._memory()
        yield from self._trust()
        yield from self._faults()

    def _faults(self) -> Iterator[Metric]:
        contained = CounterMetricFamily(
            "meshnode_faults_contained",
            "Failures contained where they happened (a stream handler, a task, the embedder, "
            "the LLM...): each failed only its own unit of work.", labels=["where"])
        for where, count in sorted((self.faults.counts() if self.faults else {}).items()):
            contained.add_metric([where], float(count))
        yield contained

    def _node(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("meshnode_info", "This node: its peer ID, network and version.",
                                 labels=list(self.info))
        info.add_metric(list(self.info.values()), 1.0)
        yield info
        counts = self.connections()
        conns = GaugeMetricFamily(
            "libp2p_rcmgr_connections", "Open libp2p connections of the host, by direction.",
            labels=["dir", "scope"])
        for direction in ("inbound", "outbound"):
            conns.add_metric([direction, "system"], float(counts.get(direction, 0)))
        yield conns
        table = self.membership.table
        connected = self.membership.verified_connected()
        peers = GaugeMetricFamily(
            "meshnode_peers", "Peers of this mesh: known (in the peer table) and connected "
            "(with a verified handshake).", labels=["state"])
        peers.add_metric(["known"], float(len(table)))
        peers.add_metric(["connected"], float(len(connected)))
        yield peers
        yield GaugeMetricFamily(
            "meshnode_local_health", "Lifeguard's local health score of this node: 0 when "
            "healthy, up to 8 when its own probes fail, it must refute suspicions or its "
            "loop runs late (its failure-detection timeouts stretch by score + 1).",
            value=float(self.membership.detector.health.score))
        rtt = GaugeMetricFamily("meshnode_peer_rtt_seconds",
                                "Last measured round-trip time to each connected peer.",
                                labels=["peer"])
        measured = [r for r in table if r.peer_id in connected and r.rtt_ms is not None]
        measured.sort(key=lambda r: -r.last_seen)
        for record in measured[:MAX_PEER_SERIES]:
            rtt.add_metric([record.peer_id], (record.rtt_ms or 0.0) / 1000)
        yield rtt

    def _gossip(self) -> Iterator[Metric]:
        received = {
            "presence": self.membership.presence_received,
            "trust": self.trust.accepted,
            "knowledge": self.knowledge.announcements_received,
        }
        invalid = {
            "presence": self.membership.presence_rejected,
            "trust": self.trust.rejected,
            "knowledge": self.knowledge.announcements_rejected,
        }
        messages = CounterMetricFamily(
            "meshnode_gossip_messages",
            "Gossip messages per topic: in (received and valid) and out (published here).",
            labels=["topic", "direction"])
        for kind in _GOSSIP_KINDS:
            messages.add_metric([kind, "in"], float(received[kind]))
            messages.add_metric([kind, "out"], float(self.published.get(self.topics[kind], 0)))
        yield messages
        refused = CounterMetricFamily(
            "meshnode_refused", "Work this node refused, per reason (invalid gossip per "
            "topic: bad signature, wrong network, stale, replayed, malformed; and what the "
            "per-peer budgets refused: streams, request rates, tasks).",
            labels=["reason"])
        for kind in _GOSSIP_KINDS:
            refused.add_metric([_INVALID[kind]], float(invalid[kind]))
        # A handful of fixed reasons (see meshnode.node.limits), so the series stay few.
        for reason, count in sorted(self.tasks.store.quota.limits.refused.items()):
            refused.add_metric([reason], float(count))
        yield refused

    def _tasks(self) -> Iterator[Metric]:
        by_state = self.tasks.store.by_state()
        states = GaugeMetricFamily("meshnode_a2a_tasks",
                                   "A2A tasks in this node's task store, by state.",
                                   labels=["state"])
        for state, count in by_state.items():
            states.add_metric([str(state)], float(count))
        yield states
        yield GaugeMetricFamily("meshnode_a2a_tasks_running",
                                "A2A tasks running on this node now.",
                                value=float(self.tasks.store.running()))
        yield GaugeMetricFamily("meshnode_a2a_task_bytes",
                                "Bytes of A2A tasks held in the task store (wire size).",
                                value=float(self.tasks.store.quota.bytes))

    def _memory(self) -> Iterator[Metric]:
        records = GaugeMetricFamily("meshnode_memory_records",
                                    "Records held per memory collection (tombstones excluded; "
                                    "counted at most every 5 s).", labels=["collection"])
        for collection, count in sorted(self.records.items()):
            records.add_metric([collection], float(count))
        yield records
        if not self.knowledge.replicating:
            return
        lag = self.knowledge.replicator.lag()
        peers = sorted(lag, key=lambda p: -(lag[p].get("last_sync") or 0.0))[:MAX_PEER_SERIES]
        behind = GaugeMetricFamily(
            "meshnode_replication_authors_behind",
            "Authors of whom a peer held more records than this node, at the last summary.",
            labels=["peer"])
        last = GaugeMetricFamily("meshnode_replication_last_sync_timestamp_seconds",
                                 "When this node last synced memory with a peer.",
                                 labels=["peer"])
        failing = GaugeMetricFamily("meshnode_replication_failing",
                                    "1 if the last memory sync with a peer failed.",
                                    labels=["peer"])
        for peer in peers:
            view: dict[str, Any] = lag[peer]
            behind.add_metric([peer], float(view.get("authors_behind") or 0))
            if view.get("last_sync") is not None:
                last.add_metric([peer], float(view["last_sync"]))
            failing.add_metric([peer], 1.0 if view.get("last_error") else 0.0)
        yield from (behind, last, failing)

    def _trust(self) -> Iterator[Metric]:
        graph = self.trust.graph
        evidence = GaugeMetricFamily("meshnode_trust_evidence",
                                     "Trust evidence this node holds about its peers, by "
                                     "outcome.", labels=["outcome"])
        for outcome, count in sorted(graph.evidence_totals().items()):
            evidence.add_metric([outcome], float(count))
        yield evidence
        yield GaugeMetricFamily("meshnode_trust_attestations",
                                "Signed trust attestations kept (one per author).",
                                value=float(graph.attestation_count))


class NodeMetrics:
    """The node's registry: its collector, the process collectors and the histograms."""

    def __init__(self, collector: NodeCollector, asker: Asker,
                 knowledge: KnowledgeService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = collector
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.ask_seconds = Histogram(
            "meshnode_ask_stage_seconds", "Time per stage of the questions routed here "
            "(routing, network, retrieval, llm, total).", ["stage"],
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.asks = Counter("meshnode_asks", "Questions routed here, by outcome (answered "
                            "or failed).", ["outcome"], registry=self.registry)
        self.search_seconds = Histogram(
            "meshnode_memory_search_seconds", "Time of one memory search, embedding included.",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.presence_latency = Histogram(
            "meshnode_presence_latency_seconds", "Presence announcements: time from "
            "publishing to receipt here (includes clock skew between nodes).",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._knowledge = knowledge
        self._presence_seen = 0.0
        self._refresh_at = -1.0
        self._lock = trio.Lock()
        for stage in STAGES:
            self.ask_seconds.labels(stage)  # every stage is listed from the first scrape
        asker.history.listeners.append(self._observe_ask)
        knowledge.store.search_observers.append(self.search_seconds.observe)

    def _observe_ask(self, record: AskRecord) -> None:
        self.asks.labels("answered" if record.ok else "failed").inc()
        for stage, seconds in record.stage_seconds().items():
            self.ask_seconds.labels(stage).observe(seconds)

    def _drain_presence(self) -> None:
        # Membership keeps its recent samples (bounded); each scrape adds those newer than
        # the last one seen, so the histogram counts every sample unless over 4096 arrive
        # between two scrapes.
        newest = self._presence_seen
        for received, ms, _ in list(self.collector.membership.latency_samples):
            if received > self._presence_seen:
                self.presence_latency.observe(max(0.0, ms / 1000))
                newest = max(newest, received)
        self._presence_seen = newest

    async def render(self) -> bytes:
        """The exposition text, with the record counts at most MEMORY_REFRESH_S old."""
        async with self._lock:
            if trio.current_time() >= self._refresh_at:
                started = trio.current_time()
                self.collector.records = await self._knowledge.store.count()
                took = trio.current_time() - started
                self._refresh_at = started + max(MEMORY_REFRESH_S, took / MEMORY_REFRESH_SHARE)
            self._drain_presence()
            return generate_latest(self.registry)


def add_metrics_route(app: ApiApp, metrics: NodeMetrics, *, public: bool) -> None:
    """Serve ``GET /metrics``; with ``public`` it needs no API token."""

    async def scrape(_: Request) -> StreamingResponse:
        started = time.perf_counter()
        body = await metrics.render()
        return body_response(
            CONTENT_TYPE_PLAIN_0_0_4, body,
            (("x-render-seconds", f"{time.perf_counter() - started:.6f}"),))

    app.route("GET", METRICS_PATH, scrape, public=public)
