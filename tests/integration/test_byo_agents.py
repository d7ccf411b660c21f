"""Bring your own agent, end to end with real daemons (the README's path): an agent in code
from the config, a program running a node with its own agent (meshnode.run_node), an
existing a2a-sdk server behind [[agents]] url, each asked from another node; and a
question that needs two experts, answered by one consulting the other, in --explain."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from meshnode.agents.specs import agent_toml, data_path, demo_agents
from tests.fakes.a2a_sdk_server import running
from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for

pytestmark = pytest.mark.integration
NET = "dev-support"
TOKEN = "s3cret"

PROGRAM = '''
import sys, trio, meshnode

async def reverse(ctx: meshnode.Context) -> str:
    words = ctx.question.rstrip("?.!").split(":")[-1].split()
    await ctx.progress(f"reversing {len(words)} words")
    return "Reversed words: " + " ".join(reversed(words))

agent = meshnode.Agent(
    name="reverser", description="Reverses the order of words.",
    skills=[meshnode.Skill("Word reversal", "Reverse the order of the words of a text.",
                           tags=("reverse", "words", "order", "backwards"),
                           examples=("Reverse the words: alpha beta gamma",))],
    handler=reverse)

async def main() -> None:
    async with meshnode.run_node(sys.argv[1], agents=[agent]) as node:
        print("READY", node.peer_id, flush=True)
        await trio.sleep_forever()

trio.run(main)
'''


def _agents(node: Daemon) -> dict[str, str]:
    return {a["agent"]: a["peer_id"] for a in cli_json(node.home, "agents")}


def test_agents_in_code_and_an_a2a_server_answer_routed_questions(tmp_path: Path) -> None:
    with running("1.0", token=TOKEN) as a2a_url, mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", NET).start()
        nodes.append(asker)
        tools = Daemon(tmp_path, "tools", NET)
        tools.add_agent('[[agents]]\nhandler = "meshnode.examples.calculator:agent"\n')
        tools.add_agent(f'[[agents]]\nname = "currency"\nurl = "{a2a_url}"\n'
                        f'token = "{TOKEN}"\n')
        nodes.append(tools.start(asker.addr))
        # A program of its own: a node with an agent in code, in-process.
        program = Daemon(tmp_path, "program", NET, {
            "network": {"bootstrap": [asker.addr], "listen": ["/ip4/127.0.0.1/tcp/0"],
                        "mdns": False},
            "api": {"listen": "127.0.0.1:0"}})
        script = tmp_path / "my_agent.py"
        script.write_text(textwrap.dedent(PROGRAM))
        proc = subprocess.Popen([sys.executable, str(script), str(program.home)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                # This checkout's meshnode, as `python -m` from here gets it.
                                env={**os.environ, "MESHNODE_HOME": "",
                                     "PYTHONPATH": os.pathsep.join(
                                         [str(Path.cwd()), os.environ.get("PYTHONPATH", "")])})
        try:
            known = wait_for("the asker to know all three agents", lambda: (
                found if {"calculator", "currency", "reverser"} <= set(
                    found := _agents(asker)) else None), timeout=60)
            assert known["calculator"] == known["currency"] == tools.peer_id

            calc = cli_json(asker.home, "ask", "What is 12 * (3 + 4)?")
            assert (calc["agent"], calc["peer"]) == ("calculator", tools.peer_id)
            assert calc["answer"]["text"] == "12 * (3 + 4) = 84"

            money = cli_json(asker.home, "ask", "How much is 100 USD in EUR?")
            assert (money["agent"], money["answer"]["mode"]) == ("currency", "remote")
            assert money["answer"]["text"].endswith("= 42 EUR")

            reversed_ = cli_json(asker.home, "ask", "Reverse the words: alpha beta gamma")
            assert reversed_["agent"] == "reverser"
            assert reversed_["answer"]["text"] == "Reversed words: gamma beta alpha"

            # A failing question fails that ask only, with the reason the agent gave.
            refused = cli(asker.home, "ask", "--agent", "calculator", "--timeout", "20",
                          "Calculate the sum of my worries")
            assert refused.returncode == 1 and "no arithmetic" in refused.stderr
            assert cli_json(asker.home, "ask", "What is 2 ** 10?")["answer"]["text"] \
                == "2 ** 10 = 1024"
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert "READY" in out


def test_one_expert_consults_another_visible_in_explain(tmp_path: Path) -> None:
    experts = {spec.name: spec for spec in demo_agents()}
    with mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", NET).start()
        nodes.append(asker)
        daemons = {}
        for name, other, topic in (("python-expert", "milvus-expert", "python"),
                                   ("milvus-expert", "python-expert", "milvus")):
            node = Daemon(tmp_path, name, NET)
            node.add_agent(agent_toml(dataclasses.replace(experts[name], consults=(other,))))
            nodes.append(node.start(asker.addr))
            report = cli_json(node.home, "memory", "ingest", str(data_path("kb", topic)))
            assert report["records"] > 5
            daemons[name] = node
        wait_for("every node to know both experts", lambda: all(
            len(cli_json(n.home, "agents")) == 2 for n in nodes), timeout=60)
        wait_for("the Milvus notes on the python node", lambda: cli_json(
            daemons["python-expert"].home, "memory", "stats")["collections"][
                "expert_knowledge"] >= 2 * 5, timeout=60)
        question = ("How do I create a virtual environment and install packages with pip, "
                    "and which Milvus index type gives low-latency vector search?")
        shown = cli(asker.home, "ask", "--explain", "--agent", "python-expert", question,
                    timeout=90)
        assert shown.returncode == 0, shown.stderr
        out = shown.stdout
        milvus_id = daemons["milvus-expert"].peer_id
        assert "consulted (as the answering node reports it):" in out, out
        assert f"python-expert -> milvus-expert@{milvus_id[-8:]}: completed" in out
        assert "reused, no new search" in out
        assert "milvus-expert (consulted on" in out and "HNSW" in out
