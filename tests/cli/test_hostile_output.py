"""Peers' strings on the operator's terminal: agent names and descriptions, answers, reasons
and addresses that carry terminal escapes are printed escaped in every table and message,
and exactly as sent with --json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshnode.cli import agents as agents_cli
from meshnode.cli import commands as cli
from meshnode.cli import output
from meshnode.errors import ApiError

#: Clears the screen, homes the cursor, sets the window title, hides what follows, and
#: reverses the text direction: what a hostile peer puts in its agent card.
EVIL = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[8mhidden\u202eesrever\x9b31m\r"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


class Fake:
    responses: dict[str, Any] = {}
    lines: list[dict[str, Any]] = []

    def __init__(self, home: Path, **_: Any) -> None:
        pass

    def get(self, path: str, **_: Any) -> Any:
        return self.responses[path]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.responses[path]

    def stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from self.lines


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> type[Fake]:
    monkeypatch.setattr(cli, "DaemonClient", Fake)
    monkeypatch.setattr(agents_cli, "DaemonClient", Fake)
    Fake.responses, Fake.lines = {}, []
    return Fake


RESULT = {
    "task_id": "t1", "agent": "agent" + EVIL, "peer": "12D3KooWPeer" + EVIL,
    "answer": {"text": "Use HNSW.\n" + EVIL + "\nDone.", "mode": "llm" + EVIL,
               "citations": [{"id": "r1", "collection": "c" + EVIL, "author": "a" + EVIL,
                              "snippet": "s" + EVIL}]},
    "timings": {"total_s": 1.0, "routing_s": 0.1, "network_s": 0.1, "retrieval_s": 0.1,
                "llm_s": 0.1},
    "explain": {"candidates": [{"agent": EVIL, "peer_id": "p" + EVIL, "score": 0.5,
                                "factors": {"relevance": 1.0, "trust": 0.5}, "explore": False}],
                "waves": [{"outcomes": [{"agent": EVIL, "peer": "p" + EVIL, "state": "failed",
                                         "reason": "because " + EVIL, "quality": None,
                                         "seconds": 1.0}],
                           "choice": {"reasons": [EVIL]}}],
                "chosen": {"agent": EVIL, "peer": "p" + EVIL, "why": EVIL}},
}
VIEWS: dict[str, tuple[list[str], str, Any]] = {
    "agents": (["agents"], "/v1/agents", [{
        "agent": "x" + EVIL, "peer_id": "12D3KooWPeer", "local": False,
        "description": EVIL, "version": "1", "skills": [{"id": "s", "name": EVIL, "tags": []}],
    }]),
    "peers": (["peers"], "/v1/peers", [{
        "peer_id": "12D3KooWPeer", "connected": True, "rtt_ms": 1.0, "last_seen": 0.0,
        "addrs": ["/dns4/" + EVIL + "/tcp/1"], "agents": [], "refused": {"rate:a2a": 2},
    }]),
    "trust": (["trust"], "/v1/trust", {
        "pre_trusted": [], "authors": 0, "last_run": {},
        "peers": [{"peer_id": "12D3KooW" + EVIL, "self": False, "pre_trusted": False,
                   "local": 0.0, "global": 0.0, "evidence": {EVIL: 1, "refused": 3},
                   "attestation": None}],
    }),
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_tables_show_peer_strings_escaped(view: str, daemon: type[Fake], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    args, path, payload = VIEWS[view]
    daemon.responses[path] = payload
    assert cli.main([*args, "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in RAW), out
    assert "\\x1b[2J" in out  # shown, escaped, so the operator sees the attempt
    assert cli.main([*args, "--home", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == payload  # --json stays exact


def test_answers_and_their_explanation_are_escaped(daemon: type[Fake], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    daemon.lines = [{"progress": {"stage": "asking", "agent": EVIL, "peer": "p" + EVIL}},
                    {"progress": {"stage": "status", "agent": EVIL, "state": EVIL}},
                    {"result": RESULT}]
    assert cli.main(["ask", "q", "--explain", "--home", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert not any(c in text for c in RAW), text
    assert "Use HNSW.\n" in captured.out and "\nDone." in captured.out  # lines stay lines
    assert cli.main(["ask", "q", "--home", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == RESULT


def test_errors_quoting_a_peer_are_escaped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    class Refusing(Fake):
        def stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
            raise ApiError(502, "no agent gave an acceptable answer: x: failed " + EVIL)

    monkeypatch.setattr(agents_cli, "DaemonClient", Refusing)
    assert cli.main(["ask", "q", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("meshnode: no agent gave") and not any(c in err for c in RAW)


def test_clean() -> None:
    clean = output.clean  # looked up when the test runs, as the CLI's own printing does
    assert clean("plain text, ünïcödé, 日本語 ✓") == "plain text, ünïcödé, 日本語 ✓"
    assert clean("a\tb\nc") == "a b c"
    assert clean("a\tb\nc\r", multiline=True) == "a\tb\nc\\x0d"
    assert clean("\x1b[31m\u200b\U000e0041") == "\\x1b[31m\\u200b\\U000e0041"
