"""The node's config file (TOML in the node home) and the settings it holds.

The sub-tables' classes live in :mod:`meshnode.config.tables`; import them from here.

Each setting is described once, as a field of the dataclasses below (default, help text,
check; see :mod:`meshnode.settings`): the loader, the validator and the commented template
that `meshnode init` writes all come from that description.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bootstrap.network import BootstrapError, parse_bootstrap
from meshnode.agents.llm import LLM_TEMPLATE, LLMSettings
from meshnode.agents.specs import AGENTS_TEMPLATE, AgentSpec, agents_from_config
from meshnode.config.tables import (
    GossipSettings,
    LimitSettings,
    MemorySettings,
    RoutingSettings,
    TrustSettings,
    valid_network_id,
)
from meshnode.errors import ConfigError
from meshnode.settings import (
    accepted_by,
    at_least,
    check,
    each,
    one_of,
    positive,
    read_table,
    render_section,
    setting,
    settings_of,
)

__all__ = [
    "CONFIG_FILE",
    "SECTIONS",
    "TEMPLATE",
    "GossipSettings",
    "LimitSettings",
    "MemorySettings",
    "NodeConfig",
    "RoutingSettings",
    "TrustSettings",
    "load_config",
]

CONFIG_FILE = "config.toml"
_bootstrap = accepted_by(parse_bootstrap, BootstrapError)


def _host_name(value: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?", value)
    return None if ok else f" {value!r}: must be a host name (no scheme, port or path)"




@dataclass(frozen=True)
class NodeConfig:
    home: Path
    network_id: str = setting(
        "default", "The mesh this node belongs to. Nodes only ever talk to nodes with the "
        "same network ID (gossip topics and the connection handshake are namespaced by it).",
        section="node", check=valid_network_id)
    network_secret: str = setting(
        "", "A shared secret that makes the mesh private: every connection is encrypted with "
        "a pre-shared key derived from it (libp2p private networks), so a node without it "
        "cannot even complete a handshake. Empty means a public mesh. MESHNODE_NETWORK_SECRET "
        "overrides it.", section="node", repr=False)
    listen: tuple[str, ...] = setting(
        ("/ip4/0.0.0.0/tcp/4001",), "libp2p addresses to listen on. Port 0 picks a free port.",
        section="network")
    bootstrap: tuple[str, ...] = setting(
        (), "Peers to join through, as /ip4/<ip>/tcp/<port>/p2p/<peer-id>. Only an entry "
        "point: the node learns the rest of the mesh by gossip and keeps working when they "
        "leave.", section="network", check=each(_bootstrap))
    target_connections: int = setting(
        8, "How many connections the node keeps open; it dials peers learned by gossip until "
        "it has this many.", section="network", check=at_least(1))
    dial_timeout_s: float = setting(
        10.0, "Deadline for one dial (seconds).", section="network", check=positive)
    mdns: bool = setting(
        True, "Find the nodes of this mesh on the local network by mDNS, with no bootstrap "
        "address. Announces this node's non-loopback addresses under a service name derived "
        "from the network ID (and secret); the hello handshake still checks everyone it "
        "finds.", section="network")
    autonat_confirmations: int = setting(
        3, "NAT traversal. Every node learns from its peers whether it is publicly reachable "
        "(AutoNAT; shown by `meshnode status`). A node that is not reserves a slot on up to "
        "two relay-capable peers and advertises its relayed address, so the mesh can reach "
        "it, then upgrades each relayed connection to a direct one by hole punching when the "
        "NATs allow. This many agreeing AutoNAT verdicts decide reachability (fewer if fewer "
        "peers answer).", section="network", check=at_least(1))
    hole_punching: bool = setting(
        True, "Try to replace relayed connections by direct ones (DCUtR).", section="network")
    hole_punch_retry_s: float = setting(
        60.0, "How often a failed hole punch is retried (seconds).", section="network",
        check=positive)
    relay_service: bool = setting(
        False, "Serve as a relay for nodes behind NAT. Only for a publicly reachable node, and "
        "it costs bandwidth: every relayed connection passes through it, within the limits "
        "below.", section="network")
    relay_max_reservations: int = setting(
        32, "Relay slots this node grants at once.", section="network", check=at_least(1))
    relay_max_circuits: int = setting(
        16, "Relayed connections through this node at once.", section="network",
        check=at_least(1))
    relay_circuit_duration_s: int = setting(
        600, "A relayed connection is cut after this long (seconds) or this many bytes (both "
        "directions); the nodes redial, through the relay again if hole punching has not "
        "worked by then.", section="network", check=at_least(1))
    relay_circuit_bytes: int = setting(
        16 * 1024 * 1024, "Bytes a relayed connection may carry (both directions).",
        section="network", check=at_least(1))
    gossip: GossipSettings = field(default_factory=GossipSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    api_listen: str = setting(
        "127.0.0.1:7700", "Where the local HTTP API listens. Keep it on 127.0.0.1: every call "
        "needs the token in api.token, but the API is meant for this machine only. Port 0 "
        "picks a free port.", section="api", key="listen")
    public_a2a: bool = setting(
        False, "Serve the A2A endpoint (agent card and JSON-RPC) without the token, for A2A "
        "clients on other machines (then also listen on a reachable address). A client "
        "without the token is anonymous, known by its address (behind a reverse proxy, "
        "all of them are one): it sees only its own tasks, has a peer's budgets ([limits]), "
        "and its questions make no trust evidence. Off: A2A clients send the token.",
        section="api")
    allowed_hosts: tuple[str, ...] = setting(
        (), "Host names (besides localhost and IP addresses) under which browsers and A2A "
        "clients may reach the API, e.g. [\"node1.example.org\"]. A request naming another "
        "host is refused (421), and one from a web page of another origin too (403): a "
        "hostile page cannot reach the API by DNS rebinding.", section="api",
        check=each(_host_name))
    public_metrics: bool = setting(
        False, "Serve /metrics (Prometheus) without the token. Off: give the scraper the "
        "token instead (Prometheus: an authorization block with credentials_file = "
        "<home>/api.token).", section="api")
    log_level: str = setting(
        "info", "debug, info, warning or error.", section="log", key="level",
        check=one_of("debug", "info", "warning", "error"))
    log_format: str = setting(
        "json", '"json" (one JSON object a line, for journald and log shippers) or "text".',
        section="log", key="format", check=one_of("json", "text"))
    agents: tuple[AgentSpec, ...] = ()

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


#: [table] -> its settings class, for the tables that map one to one onto a class.
_SUB_TABLES: dict[str, type] = {
    "gossip": GossipSettings,
    "memory": MemorySettings,
    "routing": RoutingSettings,
    "trust": TrustSettings,
    "limits": LimitSettings,
}
#: (table, key) -> NodeConfig attribute, for the tables of NodeConfig's own fields.
_NODE_KEYS = {(doc.section, key): f.name for key, f, doc in settings_of(NodeConfig)}
#: Every table of the file, in the template's order.
SECTIONS = ("node", "network", *_SUB_TABLES, "llm", "api", "log")

_PREAMBLE = """\
# meshnode configuration. Every setting is optional: delete a line to get its default.
# Command-line flags of `meshnode start` override what is written here.
"""


def _template() -> str:
    defaults = NodeConfig(home=Path())
    parts = [_PREAMBLE]
    for name in SECTIONS:
        if name == "llm":
            parts.append(LLM_TEMPLATE)
        elif name in _SUB_TABLES:
            parts.append(render_section(name, getattr(defaults, name)))
        else:
            parts.append(render_section(name, defaults, section=name,
                                        values={"network_id": '"{network_id}"'}))
    return "\n".join(parts) + "\n" + AGENTS_TEMPLATE


#: What `meshnode init` writes (``str.format`` it with ``network_id``): every setting at its
#: default, documented.
TEMPLATE = _template()

def _validated(config: NodeConfig) -> NodeConfig:
    """The one validator: every setting's own check, then the cross-field invariants.
    ``[llm]`` and ``[[agents]]`` were checked when they were made."""
    check(config, "node")
    for name in _SUB_TABLES:
        check(getattr(config, name), name)
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
    for section, table in data.items():
        if section != "agents" and not isinstance(table, dict):
            raise ConfigError(f"{path}: {section!r} must be a [table]")
    agents = agents_from_config(data.pop("agents", None), where=f"{path}: agents")
    llm = LLMSettings.from_env_and_config(data.pop("llm", None), where=f"{path}: llm")
    tables = {name: read_table(cls, data.pop(name, {}), f"{path}: {name}")
              for name, cls in _SUB_TABLES.items()}
    node_values: dict[str, Any] = {}
    for section, table in data.items():
        # Of a table that is no section at all, its first key is the unknown setting.
        node_values |= read_table(NodeConfig, table, f"{path}: {section}", section=section)
    config = NodeConfig(
        home=home,
        gossip=GossipSettings(**tables["gossip"]),
        memory=MemorySettings(**tables["memory"]),
        routing=RoutingSettings(**tables["routing"]),
        trust=TrustSettings(**tables["trust"]),
        limits=LimitSettings(**tables["limits"]),
        llm=llm,
        agents=agents,
        **node_values,
    )
    try:
        return _validated(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
