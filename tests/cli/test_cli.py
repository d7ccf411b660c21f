"""meshnode.cli.commands, run in-process: init, status/peers without a daemon, --help, tables."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshnode.cli import commands as cli
from meshnode.cli.output import render_table
from meshnode.node.home import load_signer, write_runtime

SUBCOMMANDS = ["init", "start", "status", "peers"]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("meshnode: "), err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- init -------------------------------------------------------------------------------


def test_init_prints_the_peer_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    assert cli.main(["init", "--home", str(home), "--network-id", "dev-support"]) == 0
    out, err = capsys.readouterr()
    peer_id = load_signer(home).peer_id
    assert f"peer ID: {peer_id}" in out.splitlines()
    assert str(home) in out
    assert err == ""

    assert cli.main(["init", "--home", str(home)]) == 0
    out, _ = capsys.readouterr()
    assert "already has an identity" in out
    assert f"peer ID: {peer_id}" in out.splitlines()


def test_init_explains_that_nobody_is_pre_trusted(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    boot = f"/ip4/10.0.0.1/tcp/4001/p2p/{load_signer(tmp_path / 'boot').peer_id}" \
        if cli.main(["init", "--home", str(tmp_path / "boot")]) == 0 else ""
    capsys.readouterr()
    assert cli.main(["init", "--home", str(home)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no peer is pre-trusted" in out and "trust.pre_trusted" in out
    assert "Bootstrap peers get no trust for being bootstrap peers" in out
    assert out.split()[-3:-1] == ["peer", "ID:"]  # still the last line, for scripts
    template = " ".join((home / "config.toml").read_text().replace("#", " ").split())
    assert "Bootstrap peers are never trusted for being bootstrap peers" in template
    # ...and they are not: a node started with one pre-trusts only itself.
    from meshnode.config import load_config
    from meshnode.trust.service import pre_trusted_peers

    config = load_config(home).with_overrides(bootstrap=[boot])
    assert pre_trusted_peers(config, "me") == {"me"}


def test_init_force_prints_a_new_peer_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "h"
    cli.main(["init", "--home", str(home)])
    old = load_signer(home).peer_id
    capsys.readouterr()
    assert cli.main(["init", "--home", str(home), "--force"]) == 0
    out, _ = capsys.readouterr()
    new = load_signer(home).peer_id
    assert new != old
    assert f"peer ID: {new}" in out.splitlines()


def test_init_uses_meshnode_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MESHNODE_HOME", str(tmp_path / "env-home"))
    assert cli.main(["init"]) == 0
    out, _ = capsys.readouterr()
    assert f"peer ID: {load_signer(tmp_path / 'env-home').peer_id}" in out


def test_init_bad_network_id_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "--home", str(tmp_path / "h"), "--network-id", "a b"]) != 0
    out, err = capsys.readouterr()
    assert "network ID" in one_error_line(err)
    assert out == ""


# ---- status / peers without a daemon ---------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "peers"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_no_daemon_is_one_line_on_stderr(
    home: Path, capsys: pytest.CaptureFixture[str], command: str, json_flag: list[str]
) -> None:
    assert cli.main([command, "--home", str(home), *json_flag]) == 1
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert "not running" in line and str(home) in line
    assert out == ""


@pytest.mark.parametrize("command", ["status", "peers"])
def test_stale_runtime_file_is_one_line_on_stderr(
    home: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # The daemon died without removing its runtime file: the port is closed now.
    write_runtime(home, {"pid": 1, "api": f"http://127.0.0.1:{closed_port()}"})
    assert cli.main([command, "--home", str(home)]) == 1
    out, err = capsys.readouterr()
    assert "not running" in one_error_line(err)
    assert out == ""


@pytest.mark.parametrize("command", ["status", "peers"])
def test_uninitialised_home_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert cli.main([command, "--home", str(tmp_path / "nothing")]) == 1
    assert one_error_line(capsys.readouterr().err)


def test_start_without_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["start", "--home", str(tmp_path / "nothing")]) == 1
    assert "meshnode init" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--bootstrap", "/ip4/1.2.3.4/tcp/4001"], "network.bootstrap"),
        (["--network-id", "no/slash"], "node.network_id"),
    ],
)
def test_start_with_bad_flags_is_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], flags: list[str], key: str
) -> None:
    # Validation happens before the daemon runs: no traceback, no network.
    assert cli.main(["start", "--home", str(home), *flags]) == 1
    assert key in one_error_line(capsys.readouterr().err)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    # `meshnode start` configures the root logger for a daemon; give the next tests theirs.
    root = logging.getLogger()
    saved = (root.handlers[:], root.filters[:], root.level)
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    root.handlers[:], root.filters[:] = saved[0], saved[1]
    root.setLevel(saved[2])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_a_daemon_that_cannot_start_says_why_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The failure comes from deep inside the daemon's nurseries (binding the API port); the
    # one error mapping turns it into one line and exit status 1, not a traceback.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["start", "--home", str(home), "--api", f"127.0.0.1:{port}",
                     "--listen", "/ip4/127.0.0.1/tcp/0"])
    assert code == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the daemon's own log lines
    assert last.startswith("meshnode: cannot start: ") and "in use" in last


# ---- help and version -------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: meshnode {command}")
    assert "--home" in out


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


def test_top_level_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 success; 1 an error" in out and "130 interrupted" in out


def test_a_missing_file_is_one_line_not_a_traceback(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["memory", "import", "--home", str(home), str(tmp_path / "gone.jsonl")]) == 1
    assert "gone.jsonl" in one_error_line(capsys.readouterr().err)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("meshnode ")


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# ---- rendering with a stand-in daemon -----------------------------------------------------------


class FakeClient:
    responses: dict[str, Any] = {}

    def __init__(self, home: Path) -> None:
        self.home = home

    def get(self, path: str, **_: Any) -> Any:
        return self.responses[path]


STATUS = {
    "peer_id": "12D3KooWSelf",
    "network_id": "dev-support",
    "private": True,
    "version": "0.1.0",
    "uptime_s": 61.4,
    "connected_peers": 2,
    "known_peers": 3,
    "api": "http://127.0.0.1:7700",
    "listen_addrs": ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.2/tcp/4001"],
}


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(cli, "DaemonClient", FakeClient)
    FakeClient.responses = {}
    return FakeClient


def test_status_human(
    fake_daemon: type[FakeClient], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_daemon.responses["/v1/status"] = STATUS
    assert cli.main(["status", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["peer", "ID", "12D3KooWSelf"]
    assert "dev-support (private)" in lines[1]
    assert any(line.endswith("2 connected, 3 known") for line in lines)
    assert [line.split()[-1] for line in lines if line.startswith("listening")] == [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/10.0.0.2/tcp/4001",
    ]
    # Values start in one column, two spaces after the longest label ("listening").
    labels = [re.match(r"\S+(?: \S+)*? {2,}", line) for line in lines]
    assert {m.end() if m else None for m in labels} == {len("listening") + 2}


def test_status_human_shows_contained_faults(
    fake_daemon: type[FakeClient], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_daemon.responses["/v1/status"] = {**STATUS, "faults": {}}
    assert cli.main(["status", "--home", str(home)]) == 0
    assert "faults" not in capsys.readouterr().out
    fake_daemon.responses["/v1/status"] = {**STATUS, "faults": {"embedder": 2, "hello": 1}}
    assert cli.main(["status", "--home", str(home)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("faults")]
    assert line.split(None, 1)[1] == "embedder: 2, hello: 1"


def test_status_json(
    fake_daemon: type[FakeClient], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_daemon.responses["/v1/status"] = STATUS
    assert cli.main(["status", "--home", str(home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_peers_human(
    fake_daemon: type[FakeClient], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_daemon.responses["/v1/peers"] = [
        {"peer_id": "12D3KooWAaaa", "connected": True, "rtt_ms": 1.234,
         "last_seen": time.time() - 5, "addrs": ["/ip4/10.0.0.1/tcp/1"], "agents": [{}, {}]},
        {"peer_id": "12D3KooWBbbbbbbb", "connected": False, "rtt_ms": None,
         "last_seen": time.time() - 600, "addrs": [],
         "refused": {"rate:a2a": 3, "streams:a2a": 1}},
    ]
    assert cli.main(["peers", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PEER", "CONNECTED", "RTT", "ms", "LAST", "SEEN", "AGENTS",
                                "REFUSED", "ADDRESS"]
    assert lines[2].split() == ["12D3KooWAaaa", "yes", "1.2", "5s", "ago", "2", "-",
                                "/ip4/10.0.0.1/tcp/1"]
    assert lines[3].split() == ["12D3KooWBbbbbbbb", "no", "-", "10m", "ago", "0", "4", "-"]


def test_peers_human_empty(
    fake_daemon: type[FakeClient], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_daemon.responses["/v1/peers"] = []
    assert cli.main(["peers", "--home", str(home)]) == 0
    assert capsys.readouterr().out.strip() == "no peers known yet"


# ---- render_table -----------------------------------------------------------------------------


def column_starts(header: str, names: list[str]) -> list[int]:
    return [header.index(name) for name in names]


def test_render_table_aligns_columns() -> None:
    table = render_table(
        ["A", "LONG HEADER", "C"],
        [("short", 1, None), ("a much longer cell", 22, "x"), ("b", 333, "end")],
    )
    lines = table.splitlines()
    assert len(lines) == 5  # header, rule, three rows
    header, rule, *rows = lines
    starts = column_starts(header, ["A", "LONG HEADER", "C"])
    assert starts == [0, len("a much longer cell") + 2, len("a much longer cell") + 2 + 11 + 2]
    # Every row's cells begin exactly where the header's do.
    assert rows[0][starts[1]:] == "1"  # the empty last cell leaves no padding
    assert rows[1][starts[1]:].startswith("22 ")
    assert rows[2][starts[1]:].startswith("333 ")
    assert rows[1][starts[2]:] == "x"
    assert rows[2][starts[2]:] == "end"
    # The rule is one run of dashes per column, as wide as that column.
    assert [len(run) for run in rule.split("  ")] == [18, 11, 3]
    assert set(rule.replace(" ", "")) == {"-"}
    # None renders empty, and no line has trailing blanks.
    assert rows[0].rstrip() == rows[0]
    assert rows[0].split() == ["short", "1"]
    assert all(line == line.rstrip() for line in lines)


def test_render_table_without_rows() -> None:
    assert render_table(["X", "YY"], []).splitlines() == ["X  YY", "-  --"]
