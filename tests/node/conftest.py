"""Shared fixtures of the node unit tests: temporary homes and real peer IDs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from meshnode.home import init_home
from protocols.peerid import Signer


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An initialised node home (identity, token, config) for network ``test-net``."""
    path = tmp_path / "home"
    init_home(path, network_id="test-net")
    return path


@pytest.fixture
def new_peer_id() -> Callable[[], str]:
    """Make a fresh, real Ed25519 libp2p peer ID."""
    return lambda: Signer.generate().peer_id


@pytest.fixture(autouse=True)
def _no_user_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may read or write the real ~/.meshnode or honour a developer's MESHNODE_HOME."""
    monkeypatch.delenv("MESHNODE_HOME", raising=False)
    monkeypatch.delenv("MESHNODE_NETWORK_SECRET", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
