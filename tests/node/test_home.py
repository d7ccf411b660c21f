"""meshnode.node.home: init_home, the identity key and token, resolve_home, the runtime file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from meshnode.config import CONFIG_FILE, load_config
from meshnode.errors import ConfigError
from meshnode.node.home import (
    IDENTITY_FILE,
    RUNTIME_FILE,
    TOKEN_FILE,
    clear_runtime,
    init_home,
    load_private_key,
    load_signer,
    load_token,
    read_runtime,
    resolve_home,
    write_runtime,
)
from protocols.peerid import Signer, validate_peer_id


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def peer_id_of_key_file(path: Path) -> str:
    """The peer ID of a PEM key file, computed without meshnode.home."""
    key = load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return Signer(key).peer_id


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# ---- init_home --------------------------------------------------------------------------


def test_init_creates_private_files_and_returns_the_keys_peer_id(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    peer_id, created = init_home(home, network_id="dev-support")
    assert created is True
    assert mode(home) == 0o700
    assert mode(home / IDENTITY_FILE) == 0o600
    assert mode(home / TOKEN_FILE) == 0o600
    assert mode(home / CONFIG_FILE) == 0o600  # it can hold the network secret
    assert peer_id == peer_id_of_key_file(home / IDENTITY_FILE)
    assert validate_peer_id(peer_id) == peer_id and peer_id.startswith("12D3KooW")
    assert load_signer(home).peer_id == peer_id
    assert load_config(home).network_id == "dev-support"
    assert sorted(p.name for p in home.iterdir()) == sorted(
        [IDENTITY_FILE, TOKEN_FILE, CONFIG_FILE]
    )  # no temporary files left behind


def test_secret_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    with umask(0):
        init_home(tmp_path / "h", network_id="n")
    assert mode(tmp_path / "h" / IDENTITY_FILE) == 0o600
    assert mode(tmp_path / "h" / TOKEN_FILE) == 0o600
    assert mode(tmp_path / "h" / CONFIG_FILE) == 0o600
    assert mode(tmp_path / "h") == 0o700


def test_rerun_makes_an_existing_config_private(tmp_path: Path) -> None:
    home = tmp_path / "h"
    init_home(home, network_id="n")
    (home / CONFIG_FILE).chmod(0o644)  # written by an earlier version, with the umask
    edited = (home / CONFIG_FILE).read_text() + "# kept\n"
    (home / CONFIG_FILE).write_text(edited)
    init_home(home, network_id="n")
    assert mode(home / CONFIG_FILE) == 0o600 and (home / CONFIG_FILE).read_text() == edited


def test_token_is_long_random_and_per_home(tmp_path: Path) -> None:
    init_home(tmp_path / "a", network_id="n")
    init_home(tmp_path / "b", network_id="n")
    token_a, token_b = load_token(tmp_path / "a"), load_token(tmp_path / "b")
    assert len(token_a) >= 32
    assert token_a != token_b
    assert token_a == (tmp_path / "a" / TOKEN_FILE).read_text().strip()


def test_rerun_keeps_identity_token_and_config(tmp_path: Path) -> None:
    home = tmp_path / "h"
    first, _ = init_home(home, network_id="one")
    key_bytes = (home / IDENTITY_FILE).read_bytes()
    token = load_token(home)
    config_path = home / CONFIG_FILE
    config_path.write_text(config_path.read_text() + "\n# edited by the operator\n")
    edited = config_path.read_text()

    again, created = init_home(home, network_id="two")
    assert (again, created) == (first, False)
    assert (home / IDENTITY_FILE).read_bytes() == key_bytes
    assert load_token(home) == token
    assert config_path.read_text() == edited
    assert load_config(home).network_id == "one"


def test_rerun_recreates_a_missing_token(tmp_path: Path) -> None:
    home = tmp_path / "h"
    first, _ = init_home(home, network_id="n")
    (home / TOKEN_FILE).unlink()
    again, created = init_home(home, network_id="n")
    assert (again, created) == (first, False)
    assert len(load_token(home)) >= 32
    assert mode(home / TOKEN_FILE) == 0o600


def test_force_replaces_identity_token_and_config(tmp_path: Path) -> None:
    home = tmp_path / "h"
    first, _ = init_home(home, network_id="one")
    token = load_token(home)
    second, created = init_home(home, network_id="two", force=True)
    assert created is True
    assert second != first
    assert second == peer_id_of_key_file(home / IDENTITY_FILE)
    assert load_token(home) != token
    assert load_config(home).network_id == "two"
    assert mode(home / IDENTITY_FILE) == 0o600


def test_bad_network_id_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with pytest.raises(ConfigError, match="network ID"):
        init_home(home, network_id="bad/id")
    assert not home.exists()


def test_rerun_refuses_a_world_readable_identity(tmp_path: Path) -> None:
    home = tmp_path / "h"
    init_home(home, network_id="n")
    os.chmod(home / IDENTITY_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        init_home(home, network_id="n")


# ---- load_private_key ---------------------------------------------------------------------


@pytest.mark.parametrize("bad_mode", [0o644, 0o604, 0o640, 0o660])
def test_load_private_key_refuses_a_key_readable_by_others(tmp_path: Path, bad_mode: int) -> None:
    home = tmp_path / "h"
    init_home(home, network_id="n")
    key_path = home / IDENTITY_FILE
    os.chmod(key_path, bad_mode)
    with pytest.raises(ConfigError) as info:
        load_private_key(home)
    assert str(key_path) in str(info.value)
    assert "chmod 600" in str(info.value)


def test_load_private_key_accepts_0400(tmp_path: Path) -> None:
    home = tmp_path / "h"
    peer_id, _ = init_home(home, network_id="n")
    os.chmod(home / IDENTITY_FILE, 0o400)
    assert Signer(load_private_key(home)).peer_id == peer_id


def test_load_private_key_missing_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="meshnode init"):
        load_private_key(tmp_path)


def test_load_private_key_garbage(tmp_path: Path) -> None:
    (tmp_path / IDENTITY_FILE).write_bytes(b"not a key")
    os.chmod(tmp_path / IDENTITY_FILE, 0o600)
    with pytest.raises(ConfigError, match="not a valid private key"):
        load_private_key(tmp_path)


def test_load_private_key_refuses_other_key_types(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (tmp_path / IDENTITY_FILE).write_bytes(pem)
    os.chmod(tmp_path / IDENTITY_FILE, 0o600)
    with pytest.raises(ConfigError, match="Ed25519"):
        load_private_key(tmp_path)


def test_load_token_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="meshnode init"):
        load_token(tmp_path)


# ---- resolve_home -------------------------------------------------------------------------


def test_resolve_home_flag_beats_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESHNODE_HOME", str(tmp_path / "env"))
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_home(str(tmp_path / "flag")) == tmp_path / "flag"


def test_resolve_home_environment_beats_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESHNODE_HOME", str(tmp_path / "env"))
    assert resolve_home(None) == tmp_path / "env"


def test_resolve_home_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.delenv("MESHNODE_HOME", raising=False)
    assert resolve_home(None) == tmp_path / "me" / ".meshnode"
    monkeypatch.setenv("MESHNODE_HOME", "")  # set but empty: ignored
    assert resolve_home(None) == tmp_path / "me" / ".meshnode"


def test_resolve_home_expands_user_and_makes_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert resolve_home("~/nodes/a") == tmp_path / "me" / "nodes" / "a"
    monkeypatch.setenv("MESHNODE_HOME", "~/from-env")
    assert resolve_home(None) == tmp_path / "me" / "from-env"
    monkeypatch.chdir(tmp_path)
    resolved = resolve_home("relative")
    assert resolved.is_absolute()
    assert resolved == tmp_path / "relative"


# ---- runtime file ---------------------------------------------------------------------------


def test_runtime_round_trip_and_clear(tmp_path: Path) -> None:
    assert read_runtime(tmp_path) is None
    info = {"pid": 123, "api": "http://127.0.0.1:7700", "peer_id": "x"}
    write_runtime(tmp_path, info)
    assert read_runtime(tmp_path) == info
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUNTIME_FILE]
    clear_runtime(tmp_path)
    assert read_runtime(tmp_path) is None
    clear_runtime(tmp_path)  # idempotent


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '"text"', ""])
def test_read_runtime_ignores_unusable_files(tmp_path: Path, content: str) -> None:
    (tmp_path / RUNTIME_FILE).write_text(content)
    assert read_runtime(tmp_path) is None
