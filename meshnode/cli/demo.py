"""`meshnode demo`: the developer-support community on this machine, on embedded defaults.

Three expert nodes (Python, Milvus, DevOps), each seeded with the knowledge base shipped in
meshnode/data/kb, and an asking node: four real daemons on loopback with Milvus Lite and no
LLM key. The demo asks a question on the asking node and shows which expert answered, why,
and the cited answer; then the mesh keeps running until Ctrl-C (or stops at once, --once).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
#: The demo wants a mesh that notices things in seconds: (section, key) -> value.
FAST: dict[tuple[str, str], Any] = {
    ("gossip", "presence_interval_s"): 1.0,
    ("gossip", "peer_ttl_s"): 10.0,
    ("memory", "sync_interval_s"): 5.0,
}


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


def set_setting(text: str, section: str, key: str, value: Any) -> str:
    """``text`` (a config file) with ``key`` of ``[section]`` set to ``value``."""
    start = re.search(rf"^\[{re.escape(section)}\]\s*$", text, re.M)
    if start is None:
        raise MeshnodeError(f"demo: the config template has no [{section}] table")
    line = re.compile(rf"^#?\s*{re.escape(key)} = .*$", re.M)
    found = line.search(text, start.end())
    rendered = f"{key} = {json.dumps(value)}"
    if found is None:
        return text[:start.end()] + "\n" + rendered + text[start.end():]
    return text[:found.start()] + rendered + text[found.end():]


class DemoNode:
    def __init__(self, root: Path, name: str, spec: AgentSpec | None,
                 settings: dict[tuple[str, str], Any] | None = None,
                 code: Path | None = None) -> None:
        self.name = name
        self.home = root / name
        #: Run the daemon from this source tree instead of the installed meshnode.
        self.code = code
        init_home(self.home, network_id=NETWORK)
        path = self.home / "config.toml"
        text = path.read_text(encoding="utf-8")
        for (section, key), value in {**FAST, **(settings or {})}.items():
            text = set_setting(text, section, key, value)
        if spec is not None:
            text += "\n" + agent_toml(spec)
        path.write_text(text, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, bootstrap: str | None) -> None:
        args = [sys.executable, "-m", "meshnode.cli", "start", "--home", str(self.home),
                "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        log = (self.home / "daemon.log").open("ab")
        env = None
        if self.code is not None:
            env = {**os.environ, "PYTHONPATH": str(self.code)}
        # Its own session (terminal signals reach the demo, which stops the mesh in order),
        # and dead with the demo even if the demo is SIGKILLed.
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True,
                                     cwd=self.code, env=env,
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


def demo_nodes(root: Path, settings: dict[tuple[str, str], Any] | None = None,
               code: Path | None = None) -> list[DemoNode]:
    """The demo's nodes (not started): one per expert of demo_agents.toml, then the asker."""
    nodes = [DemoNode(root, spec.name, spec, settings, code) for spec in demo_agents()]
    nodes.append(DemoNode(root, "asker", None, settings, code))
    return nodes


def start_demo_mesh(nodes: list[DemoNode], say: Callable[[str], None] = print) -> None:
    """Start ``nodes`` (demo_nodes), seed each expert with its knowledge base and wait until
    the asking node (the last) knows every expert and holds its knowledge."""
    first = None
    # The asking node starts first and bootstraps from nobody: bootstrap peers may be
    # pre-trusted, and in a fresh mesh such trust would outweigh skill relevance.
    for node in [nodes[-1], *nodes[:-1]]:
        node.start(first)
        status = _wait(f"{node.name} to start", node.status, 120)
        first = first or status["listen_addrs"][0]
        say(f"  {node.name:14} {status['peer_id']}")
    seeded = 0
    for node in nodes[:-1]:
        topic = node.name.removesuffix("-expert")
        report = node.client().post("/v1/memory/ingest", {"paths": [str(data_path("kb", topic))]})
        seeded += report["records"]
        say(f"  seeded {node.name} with {report['records']} passages from kb/{topic}")
    asker = nodes[-1].client()
    _wait("the asking node to know all the experts",
          lambda: len(asker.get("/v1/agents")) >= len(nodes) - 1, 60)
    # Routing reads the asker's replica of memory to see who holds knowledge on a question.
    _wait("the experts' knowledge to reach the asking node",
          lambda: asker.get("/v1/memory/stats")["collections"]["expert_knowledge"] >= seeded,
          120)


def _run_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="meshnode-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    nodes = demo_nodes(root)
    print(f"starting a {len(nodes)}-node mesh in {root} (network {NETWORK!r}, Milvus Lite, "
          "no LLM key)...", flush=True)
    try:
        start_demo_mesh(nodes, lambda line: print(line, flush=True))
        asker = nodes[-1].client()
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
