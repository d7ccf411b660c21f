"""The node home: config, identity key, API token and the daemon's runtime file."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from memory.files import write_atomic
from meshnode.config import CONFIG_FILE, TEMPLATE
from meshnode.errors import ConfigError
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError
from protocols.peerid import Signer

IDENTITY_FILE = "identity.key"
TOKEN_FILE = "api.token"
RUNTIME_FILE = "daemon.json"


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """--home, else $MESHNODE_HOME, else ~/.meshnode."""
    if home is None:
        home = os.environ.get("MESHNODE_HOME") or Path.home() / ".meshnode"
    return Path(home).expanduser().absolute()


def init_home(home: Path, *, network_id: str, force: bool = False) -> tuple[str, bool]:
    """Create the home. Returns (peer ID, whether a new identity was made).

    An existing identity is kept unless ``force``; an existing config is kept as well (only
    its network ID is not rewritten), so re-running init is safe. The config can hold the
    network secret: it is created 0600, and an existing one is made so.
    """
    try:
        validate_network_id(network_id)
    except DecodeError as exc:
        raise ConfigError(str(exc)) from None
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = home / IDENTITY_FILE
    created = False
    if key_path.exists() and not force:
        signer = load_signer(home)
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_atomic(key_path, pem, private=True)
        signer = Signer(key)
        created = True
    config_path = home / CONFIG_FILE
    if not config_path.exists() or force:
        write_atomic(config_path, TEMPLATE.format(network_id=network_id), private=True)
    elif config_path.stat().st_mode & 0o077:
        config_path.chmod(0o600)
    if not (home / TOKEN_FILE).exists() or force:
        write_atomic(home / TOKEN_FILE, secrets.token_urlsafe(32), private=True)
    return signer.peer_id, created


def load_private_key(home: Path) -> Ed25519PrivateKey:
    path = home / IDENTITY_FILE
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"no identity at {path}: run `meshnode init --home {home}`") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a valid private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} must hold an Ed25519 key")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others; run `chmod 600 {path}`")
    return key


def load_signer(home: Path) -> Signer:
    return Signer(load_private_key(home))


def load_token(home: Path) -> str:
    path = home / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"no API token at {path}: run `meshnode init --home {home}`") from None


def write_runtime(home: Path, info: dict[str, Any]) -> None:
    write_atomic(home / RUNTIME_FILE, json.dumps(info))


def read_runtime(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / RUNTIME_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def clear_runtime(home: Path) -> None:
    (home / RUNTIME_FILE).unlink(missing_ok=True)
