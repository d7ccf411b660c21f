"""`meshnode demo`: the developer-support community on this machine, on embedded defaults.

Three expert nodes (Python, Milvus, DevOps), each seeded with the knowledge base shipped in
meshnode/data/kb, and an asking node: four real daemons on loopback with Milvus Lite and no
LLM key. The demo asks a question on the asking node and shows which expert answered, why,
and the cited answer; then the mesh keeps running until Ctrl-C (or stops at once, --once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from meshnode.agents.specs import AgentSpec, agent_toml, data_path, demo_agents
from meshnode.cli.agents import format_answer
from meshnode.cli.children import Stopped, die_with_parent, stop_on_signals
from meshnode.cli.client import DaemonClient
from meshnode.cli.output import say
from meshnode.errors import MeshnodeError
from meshnode.node.home import init_home

T = TypeVar("T")
NETWORK = "dev-support"
QUESTION = "My Milvus Lite searches got slow after a bulk insert. How do I make them fast again?"
FAST = """
[gossip]
presence_interval_s = 1.0
peer_ttl_s = 10.0

[memory]
sync_interval_s = 5.0
"""


def _wait(what: str, check: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except MeshnodeError:
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise MeshnodeError(f"demo: timed out after {timeout:.0f} s waiting for {what}")


class DemoNode:
    def __init__(self, root: Path, name: str, spec: AgentSpec | None) -> None:
        self.name = name
        self.home = root / name
        init_home(self.home, network_id=NETWORK)
        with (self.home / "config.toml").open("a", encoding="utf-8") as f:
            f.write(FAST)  # later tables of the same name would be an error: see below
        self._merge_fast_settings()
        if spec is not None:
            with (self.home / "config.toml").open("a", encoding="utf-8") as f:
                f.write("\n" + agent_toml(spec))
        self.proc: subprocess.Popen[bytes] | None = None

    def _merge_fast_settings(self) -> None:
        # The template already has [gossip] and [memory]: set the values in place instead.
        path = self.home / "config.toml"
        text = path.read_text(encoding="utf-8").replace(FAST, "")
        for old, new in (("presence_interval_s = 60.0", "presence_interval_s = 1.0"),
                         ("peer_ttl_s = 180.0", "peer_ttl_s = 10.0"),
                         ("sync_interval_s = 30.0", "sync_interval_s = 5.0")):
            text = text.replace(old, new, 1)
        path.write_text(text, encoding="utf-8")

    def start(self, bootstrap: str | None) -> None:
        args = [sys.executable, "-m", "meshnode.cli", "start", "--home", str(self.home),
                "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        log = (self.home / "daemon.log").open("ab")
        # Its own session (terminal signals reach the demo, which stops the mesh in order),
        # and dead with the demo even if the demo is SIGKILLed.
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True,
                                     preexec_fn=partial(die_with_parent, os.getpid()))

    def client(self) -> DaemonClient:
        return DaemonClient(self.home, timeout=120)

    def status(self) -> dict[str, Any]:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.home / "daemon.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"demo: node {self.name} exited ({self.proc.returncode}):\n{tail}")
        status: dict[str, Any] = self.client().get("/v1/status")
        return status

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_demo(args: argparse.Namespace) -> int:
    with stop_on_signals():
        try:
            return _run_demo(args)
        except Stopped as stop:
            print(f"\n{stop}: the mesh was stopped", flush=True)
            return 0


def _run_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="meshnode-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    experts = demo_agents()
    nodes = [DemoNode(root, spec.name, spec) for spec in experts]
    nodes.append(DemoNode(root, "asker", None))
    print(f"starting a {len(nodes)}-node mesh in {root} (network {NETWORK!r}, Milvus Lite, "
          "no LLM key)...", flush=True)
    try:
        first = None
        # The asking node starts first and bootstraps from nobody: a node pre-trusts its
        # bootstrap peers, and in a fresh mesh that trust would outweigh skill relevance.
        for node in [nodes[-1], *nodes[:-1]]:
            node.start(first)
            status = _wait(f"{node.name} to start", node.status, 120)
            first = first or status["listen_addrs"][0]
            print(f"  {node.name:14} {status['peer_id']}", flush=True)
        for node, spec in zip(nodes, experts, strict=False):
            topic = spec.name.removesuffix("-expert")
            report = node.client().post("/v1/memory/ingest",
                                        {"paths": [str(data_path("kb", topic))]})
            print(f"  seeded {node.name} with {report['records']} passages from kb/{topic}",
                  flush=True)
        asker = nodes[-1].client()
        _wait("the asking node to know all three experts",
              lambda: len(asker.get("/v1/agents")) >= len(experts), 60)
        question = args.question or QUESTION
        print(f"\nasking on node 'asker': {question}\n", flush=True)
        result = None
        for line in asker.stream_lines("/v1/ask", {"question": question, "timeout": 60}):
            if "progress" in line and line["progress"].get("stage") == "asking":
                say(f"... asking {line['progress']['agent']}", flush=True)
            if "error" in line:
                raise MeshnodeError(f"demo: the mesh could not answer: {line['error']}")
            result = line.get("result", result)
        if result is None:
            raise MeshnodeError("demo: no answer came back")
        say(format_answer(result, explain=True))
        if args.once:
            return 0
        print(f"\nthe mesh keeps running; ask it yourself:\n"
              f"  meshnode ask --home {nodes[-1].home} --explain \"How do I roll back a bad "
              f"deploy?\"\nwatch it, and ask from a browser:\n"
              f"  meshnode dashboard --home {nodes[-1].home} --open\nCtrl-C stops it.",
              flush=True)
        while all(n.proc is not None and n.proc.poll() is None for n in nodes):
            time.sleep(1)
        return 0
    finally:
        print("stopping the mesh...", flush=True)
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def add_demo_command(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the developer-support demo mesh on this machine")
    p.add_argument("--once", action="store_true",
                   help="stop the mesh after the first answer instead of waiting for Ctrl-C")
    p.add_argument("--question", help="what to ask (default: a Milvus performance question)")
    p.add_argument("--dir", help="keep the node homes here (default: a temporary folder)")
    p.set_defaults(func=run_demo)
