"""meshnode.config: the TOML template, load_config's validation and with_overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from meshnode.agents.llm import LLMSettings
from meshnode.config import (
    _NODE_KEYS,
    _SUB_TABLES,
    CONFIG_FILE,
    TEMPLATE,
    GossipSettings,
    MemorySettings,
    NodeConfig,
    load_config,
)
from meshnode.errors import ConfigError
from meshnode.node.home import init_home
from meshnode.settings import doc_of, render_section

PEER = "12D3KooWHcUHPSVKsRVM9kvcdBUQb2Pa2H6NnKiXhD4CSboopHFn"


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


# ---- the template ---------------------------------------------------------------------


def test_template_written_by_init_loads_as_the_defaults(tmp_path: Path) -> None:
    home = tmp_path / "h"
    init_home(home, network_id="dev-support")
    config = load_config(home)
    assert config == NodeConfig(home=home, network_id="dev-support")
    # Spot-check that equality really compares values (and the int → float coercion).
    assert config.gossip.presence_interval_s == 60.0
    assert isinstance(config.gossip.presence_interval_s, float)
    assert config.listen == ("/ip4/0.0.0.0/tcp/4001",)
    assert config.bootstrap == ()


def test_template_documents_every_setting_and_nothing_else() -> None:
    data = tomllib.loads(TEMPLATE.format(network_id="x"))
    written = {(section, key) for section, table in data.items() for key in table}
    expected = set(_NODE_KEYS) | {
        (section, f.name) for section, cls in _SUB_TABLES.items() for f in fields(cls)
    } | {("llm", f.name) for f in fields(LLMSettings)}
    assert written == expected


def test_template_values_match_dataclass_defaults() -> None:
    # A default changed in the dataclass but not in the template (or back) is caught here.
    data = tomllib.loads(TEMPLATE.format(network_id="default"))
    defaults = NodeConfig(home=Path())
    for (section, key), attr in _NODE_KEYS.items():
        value = data[section][key]
        value = tuple(value) if isinstance(value, list) else value
        assert value == getattr(defaults, attr), (section, key)
    for section, cls in _SUB_TABLES.items():
        for f in fields(cls):
            expected = getattr(getattr(defaults, section), f.name)
            value = data[section][f.name]
            value = tuple(value) if isinstance(value, list) else value
            assert value == expected, (section, f.name)


def test_a_config_written_by_an_earlier_init_still_loads(tmp_path: Path) -> None:
    # What `meshnode init --network-id dev-support` wrote before the template was generated
    # from the settings' descriptions: existing homes must keep starting.
    old = (Path(__file__).parents[1] / "data" / "config_init_0.1.0.toml").read_text()
    write_config(tmp_path, old)
    # It wrote every value out: those whose defaults changed since stay as written.
    written = GossipSettings(presence_interval_s=5.0, peer_ttl_s=30.0, ping_interval_s=10.0)
    assert load_config(tmp_path) == NodeConfig(home=tmp_path, network_id="dev-support",
                                               gossip=written)
    example = old[old.index("# [[agents]]"):]
    write_config(tmp_path, old + "\n".join(line.removeprefix("#").removeprefix(" ")
                                           for line in example.splitlines()))
    assert [a.name for a in load_config(tmp_path).agents] == ["python-expert"]


def test_every_setting_is_documented_in_the_template() -> None:
    # The help text lives once, on the dataclass field; the template is made from it.
    words = " ".join(TEMPLATE.replace("#", " ").split())
    documented = [f for cls in (*_SUB_TABLES.values(), LLMSettings) for f in fields(cls)]
    documented += [f for f in fields(NodeConfig) if f.name in _NODE_KEYS.values()]
    for f in documented:
        doc = doc_of(f)
        assert doc is not None and doc.help, f.name
        assert " ".join(doc.help.split()) in words, f.name


def test_a_section_renders_the_values_it_is_given() -> None:
    text = render_section("memory", MemorySettings(sync_interval_s=12.5, uri="unix:/m.sock"))
    assert "\nsync_interval_s = 12.5\n" in text and '\nuri = "unix:/m.sock"\n' in text
    assert tomllib.loads(text)["memory"]["embedder"] == "hashing"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    assert load_config(tmp_path) == NodeConfig(home=tmp_path)


def test_values_are_read(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        f"""
[node]
network_id = "team.a_1"
network_secret = "s3cret"
[network]
listen = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]
bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/{PEER}"]
target_connections = 3
dial_timeout_s = 2
[gossip]
presence_interval_s = 1
peer_ttl_s = 2.0
mesh_degree = 3
mesh_degree_low = 3
mesh_degree_high = 3
[api]
listen = "127.0.0.1:0"
[log]
level = "debug"
format = "text"
""",
    )
    config = load_config(tmp_path)
    assert config.network_id == "team.a_1"
    assert config.network_secret == "s3cret"
    assert config.listen == ("/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0")
    assert config.bootstrap == (f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}",)
    assert config.target_connections == 3
    assert config.dial_timeout_s == 2.0 and isinstance(config.dial_timeout_s, float)
    assert config.gossip == GossipSettings(
        presence_interval_s=1.0, peer_ttl_s=2.0, mesh_degree=3, mesh_degree_low=3,
        mesh_degree_high=3,
    )
    assert config.api_listen == "127.0.0.1:0"
    assert (config.log_level, config.log_format) == ("debug", "text")


# ---- errors -----------------------------------------------------------------------------


def test_missing_config_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="meshnode init") as info:
        load_config(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[node\nnetwork_id = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(path) in str(info.value)


BAD_CONFIGS = [
    # unknown keys and sections
    ("[node]\nnetwork_idd = 'x'\n", "node.network_idd"),
    ("[nodes]\nnetwork_id = 'x'\n", "nodes.network_id"),
    ("[gossip]\nlisten = ['/ip4/0.0.0.0/tcp/1']\n", "gossip.listen"),
    ("[api]\nlevel = 'info'\n", "api.level"),
    ("network_id = 'x'\n", "'network_id'"),
    # wrong types
    ("[network]\ntarget_connections = '8'\n", "network.target_connections"),
    ("[network]\ntarget_connections = 8.5\n", "network.target_connections"),
    ("[network]\ntarget_connections = true\n", "network.target_connections"),
    ("[network]\nlisten = '/ip4/0.0.0.0/tcp/1'\n", "network.listen"),
    ("[network]\nbootstrap = [1]\n", "network.bootstrap"),
    ("[network]\ndial_timeout_s = 'soon'\n", "network.dial_timeout_s"),
    ("[gossip]\npresence_interval_s = '5'\n", "gossip.presence_interval_s"),
    ("[gossip]\nmesh_degree = 6.0\n", "gossip.mesh_degree"),
    ("[gossip]\nheartbeat_s = false\n", "gossip.heartbeat_s"),
    ("[log]\nlevel = 3\n", "log.level"),
    ("[node]\nnetwork_id = 42\n", "node.network_id"),
    ("[api]\nlisten = ['127.0.0.1:1']\n", "api.listen"),
    # bad network IDs
    ("[node]\nnetwork_id = 'a/b'\n", "node.network_id"),
    ("[node]\nnetwork_id = ''\n", "node.network_id"),
    ("[node]\nnetwork_id = 'has space'\n", "node.network_id"),
    (f"[node]\nnetwork_id = '{'x' * 65}'\n", "node.network_id"),
    # bad log settings
    ("[log]\nlevel = 'verbose'\n", "log.level"),
    ("[log]\nlevel = 'INFO'\n", "log.level"),
    ("[log]\nformat = 'xml'\n", "log.format"),
    # degree bounds
    ("[gossip]\nmesh_degree_low = 0\nmesh_degree = 0\n", "mesh_degree_low"),
    ("[gossip]\nmesh_degree_low = 7\n", "mesh_degree_low"),
    ("[gossip]\nmesh_degree = 13\n", "mesh_degree_high"),
    ("[gossip]\nmesh_degree_high = 5\n", "mesh_degree_high"),
    # TTL against the presence interval
    ("[gossip]\npeer_ttl_s = 9.9\n", "gossip.peer_ttl_s"),
    ("[gossip]\npresence_interval_s = 91\n", "gossip.peer_ttl_s"),
    # non-positive or non-finite numbers
    ("[network]\ntarget_connections = 0\n", "network.target_connections"),
    ("[gossip]\nping_interval_s = 0\n", "gossip.ping_interval_s"),
    ("[gossip]\nheartbeat_s = -1.0\n", "gossip.heartbeat_s"),
    ("[gossip]\npresence_interval_s = nan\n", "gossip.presence_interval_s"),
    ("[gossip]\nping_interval_s = inf\n", "gossip.ping_interval_s"),
    ("[gossip]\nmax_messages_per_s = 0\n", "gossip.max_messages_per_s"),
    ("[network]\ndial_timeout_s = 0\n", "network.dial_timeout_s"),
    ("[network]\ndial_timeout_s = -inf\n", "network.dial_timeout_s"),
    # bootstrap addresses are checked before the daemon starts
    ("[network]\nbootstrap = ['/ip4/10.0.0.1/tcp/4001']\n", "network.bootstrap"),
    (f"[network]\nbootstrap = ['/ip4/10.0.0.1/tcp/0/p2p/{PEER}']\n", "network.bootstrap"),
    ("[network]\nbootstrap = ['/ip4/10.0.0.1/tcp/1/p2p/QmNotAPeer']\n", "network.bootstrap"),
    # the other tables go through the same reader and validator
    ("[memory]\nembedder = 'bert'\n", "memory.embedder 'bert': use hashing, minilm or openai"),
    ("[memory]\nuri = ''\n", "memory.uri"),
    ("[memory]\ntenant = 'a b'\n", "memory.tenant"),
    ("[memory]\nembedder_dim = -1\n", "memory.embedder_dim"),
    ("[routing]\nexplore = 1.5\n", "routing.explore: must be in 0..1"),
    ("[routing]\nfanout = 0\n", "routing.fanout: must be at least 1"),
    ("[routing]\nhop_limit = 9\n", "routing.hop_limit"),
    ("[routing]\nrating_window_s = -1\n", "routing.rating_window_s"),
    ("[trust]\npre_trusted = ['QmNotAPeer']\n", "trust.pre_trusted"),
    ("[trust]\npublish_interval_s = 0\n", "trust.publish_interval_s"),
    ("[llm]\nmodle = 'x'\n", "llm.modle: unknown setting (known: enabled, base_url"),
    ("llm = 3\n", "'llm'"),
    ("[log]\nlevels = 'x'\n", "log.levels: unknown setting (known: level, format)"),
]


@pytest.mark.parametrize(("text", "key"), BAD_CONFIGS)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert "\n" not in message  # one line for the CLI


def test_ttl_of_exactly_twice_the_interval_is_allowed(tmp_path: Path) -> None:
    write_config(tmp_path, "[gossip]\npresence_interval_s = 5\npeer_ttl_s = 10\n")
    assert load_config(tmp_path).gossip.peer_ttl_s == 10.0


def test_equal_degrees_are_allowed(tmp_path: Path) -> None:
    write_config(tmp_path, "[gossip]\nmesh_degree_low = 1\nmesh_degree = 1\nmesh_degree_high = 1\n")
    assert load_config(tmp_path).gossip.mesh_degree == 1


# ---- with_overrides ---------------------------------------------------------------------


def test_with_overrides_ignores_none(tmp_path: Path) -> None:
    base = NodeConfig(home=tmp_path, network_id="a", bootstrap=(f"/dns4/x.org/tcp/1/p2p/{PEER}",))
    same = base.with_overrides(
        network_id=None, listen=None, bootstrap=None, api_listen=None, log_level=None,
        network_secret=None,
    )
    assert same == base


def test_with_overrides_applies_and_converts_lists(tmp_path: Path) -> None:
    base = NodeConfig(home=tmp_path)
    boot = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"
    new = base.with_overrides(
        network_id="b", listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=[boot], api_listen="127.0.0.1:0",
        log_level="debug", network_secret="",
    )
    assert new.network_id == "b"
    assert new.listen == ("/ip4/127.0.0.1/tcp/0",)
    assert new.bootstrap == (boot,)
    assert isinstance(new.listen, tuple) and isinstance(new.bootstrap, tuple)
    assert new.api_listen == "127.0.0.1:0"
    assert new.log_level == "debug"
    assert new.network_secret == ""  # "" is a value, not "no override"
    assert base == NodeConfig(home=tmp_path)  # the original is untouched


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"network_id": "no/slash"}, "node.network_id"),
        ({"log_level": "loud"}, "log.level"),
        ({"bootstrap": ["not-an-address"]}, "network.bootstrap"),
        ({"target_connections": 0}, "network.target_connections"),
        ({"gossip": GossipSettings(peer_ttl_s=9.0)}, "gossip.peer_ttl_s"),
        ({"gossip": GossipSettings(mesh_degree=20)}, "mesh_degree_high"),
    ],
)
def test_with_overrides_validates(tmp_path: Path, overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        NodeConfig(home=tmp_path).with_overrides(**overrides)


def test_config_is_immutable(tmp_path: Path) -> None:
    config = NodeConfig(home=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.network_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("uri", ["http://milvus:19530", "unix:/run/milvus/milvus.sock"])
def test_server_uris_are_used_as_they_are(tmp_path: Path, uri: str) -> None:
    # memory.uris decides what a server is; a Unix socket is one (pymilvus dials it).
    write_config(tmp_path, f'[memory]\nuri = "{uri}"\n')
    config = load_config(tmp_path)
    assert config.memory.is_server and config.memory_uri == uri


def test_a_lite_path_is_made_absolute_against_the_home(tmp_path: Path) -> None:
    write_config(tmp_path, '[memory]\nuri = "data/memory.db"\n')
    config = load_config(tmp_path)
    assert not config.memory.is_server
    assert config.memory_uri == str(tmp_path / "data" / "memory.db")
