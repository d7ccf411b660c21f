"""The systemd unit written by `meshnode service`: hardened, and valid for systemd itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshnode.cli.commands import main
from meshnode.cli.service import render_unit
from meshnode.errors import ConfigError


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_is_hardened_and_restarts_on_failure() -> None:
    settings = _settings(render_unit(network_id="dev-support", python="/usr/bin/python3"))
    for key, value in {
        "Type": "notify", "DynamicUser": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "Restart": "on-failure", "StateDirectory": "meshnode", "StandardError": "journal",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings[key] == [value], key
    assert settings["ExecStart"] == ['"/usr/bin/python3" "-m" "meshnode.cli" "start" "--home" '
                                     '"/var/lib/meshnode"']
    assert '"--network-id" "dev-support"' in settings["ExecStartPre"][0]


def test_a_virtualenv_in_a_home_stays_readable() -> None:
    unit = render_unit(python="/home/ops/venv/bin/python")
    assert _settings(unit)["ProtectHome"] == ["read-only"]


def test_arguments_cannot_inject_settings_or_expand_variables() -> None:
    unit = render_unit(bootstrap=('/ip4/1.2.3.4/tcp/1/p2p/x" "--api" "0.0.0.0:1', "$HOME%h"))
    assert '"/ip4/1.2.3.4/tcp/1/p2p/x\\" \\"--api\\" \\"0.0.0.0:1"' in unit
    assert '"$$HOME%%h"' in unit
    with pytest.raises(ConfigError):
        render_unit(bootstrap=("/ip4/1.2.3.4/tcp/1\nUser=root",))
    with pytest.raises(ConfigError):
        render_unit(name="../evil")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    path = tmp_path / "meshnode.service"
    path.write_text(render_unit(network_id="dev-support", python=sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60)
    # verify reports unknown or malformed settings on stderr without failing: none allowed.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_would_catch_a_broken_unit(tmp_path: Path) -> None:
    path = tmp_path / "meshnode.service"
    path.write_text(render_unit(python=sys.executable).replace("ProtectHome=yes",
                                                               "ProtectHome=bogus"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert "ProtectHome" in result.stderr or "protect home" in result.stderr


def test_install_and_uninstall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "install", "--unit-dir", str(tmp_path), "--name", "mesh-a",
                 "--network-id", "dev"]) == 0
    unit = (tmp_path / "mesh-a.service").read_text()
    assert "StateDirectory=mesh-a" in unit and '"--home" "/var/lib/mesh-a"' in unit
    assert "systemctl enable --now mesh-a" in capsys.readouterr().out
    assert main(["service", "uninstall", "--unit-dir", str(tmp_path), "--name", "mesh-a"]) == 0
    assert not (tmp_path / "mesh-a.service").exists()
    assert main(["service", "uninstall", "--unit-dir", str(tmp_path), "--name", "mesh-a"]) == 1
