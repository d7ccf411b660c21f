"""Issue 4 end to end: questions routed to the right expert across real daemons."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshnode.agents.specs import data_path, demo_agents
from meshnode.cli.demo import agent_toml
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for

pytestmark = pytest.mark.integration
EXPERTS = {spec.name: spec for spec in demo_agents()}


def _expert(root: Path, name: str, llm: dict[str, object] | None = None) -> Daemon:
    node = Daemon(root, name, "dev-support", {"llm": llm} if llm else None)
    node.add_agent(agent_toml(EXPERTS[name]))
    return node


def _seed(node: Daemon, topic: str) -> None:
    report = cli_json(node.home, "memory", "ingest", str(data_path("kb", topic)))
    assert report["records"] > 5


def test_questions_reach_the_matching_expert(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", "dev-support").start()
        python = _expert(tmp_path, "python-expert").start(asker.addr)
        milvus = _expert(tmp_path, "milvus-expert").start(python.addr)
        nodes += [asker, python, milvus]
        _seed(python, "python")
        _seed(milvus, "milvus")
        wait_for("the asker to know both experts",
                 lambda: len(cli_json(asker.home, "agents")) == 2, timeout=30)

        # Asked on A, answered by the Milvus expert on C: routing, not the bootstrap peer.
        answer = cli_json(asker.home, "ask",
                          "Which Milvus index type should I use, HNSW or IVF_FLAT?")
        assert answer["agent"] == "milvus-expert" and answer["peer"] == milvus.peer_id
        citations = answer["answer"]["citations"]
        assert citations and all(len(c["id"]) == 64 for c in citations)
        assert answer["answer"]["mode"] == "extractive"
        assert "no llm is configured" in answer["answer"]["text"].lower()
        assert set(answer["timings"]) >= {"routing_s", "network_s", "retrieval_s", "llm_s"}

        # --agent forces the Python expert even for a Milvus question.
        forced = cli_json(asker.home, "ask", "--agent", "python-expert",
                          "How do I flush a Milvus collection?")
        assert forced["agent"] == "python-expert" and forced["peer"] == python.peer_id

        # Answering wrote nothing; rated good, the answer becomes the asker's solution (signed
        # by the asker), and the verdict a line of its collaboration_history.
        assert cli_json(milvus.home, "memory", "stats")["collections"]["problem_solutions"] == 0
        rated = cli(asker.home, "rate", answer["task_id"], "good")
        assert rated.returncode == 0, rated.stderr
        wait_for("the solution and the verdict to be written", lambda: all(
            cli_json(asker.home, "memory", "stats")["collections"][c] >= 1
            for c in ("problem_solutions", "collaboration_history")), timeout=20)

        # --explain prints the decision.
        explained = cli(asker.home, "ask", "--explain", "How do pytest fixture scopes work?")
        assert explained.returncode == 0, explained.stderr
        assert "candidates" in explained.stdout and "chosen: python-expert" in explained.stdout

        unknown = cli(asker.home, "ask", "--agent", "nobody", "hello?")
        assert unknown.returncode == 1 and "no agent named 'nobody'" in unknown.stderr


def test_llm_answers_errors_and_a_node_killed_mid_task(tmp_path: Path) -> None:
    with FakeOpenAI() as llm, mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", "dev-support").start()
        devops = _expert(tmp_path, "devops-expert", {"base_url": llm.base_url,
                                                      "api_key": "test-key",
                                                      "model": "fake-model",
                                                      "timeout_s": 30.0,
                                                      "max_retries": 0}).start(asker.addr)
        nodes += [asker, devops]
        _seed(devops, "devops")
        wait_for("the asker to know the expert",
                 lambda: len(cli_json(asker.home, "agents")) == 1, timeout=30)

        # The real openai client, over HTTP, against an OpenAI-compatible server.
        answer = cli_json(asker.home, "ask", "How do I roll back a bad deploy?")
        assert answer["answer"]["mode"] == "llm" and answer["answer"]["model"] == "fake-model"
        assert answer["answer"]["citations"], "the LLM's [n] markers became citations"
        request = llm.chat_requests[-1]
        assert request.headers.get("authorization") == "Bearer test-key"
        assert "roll back" in request.messages[-1]["content"]

        # A rate limit is a failed task with a clear message, not a hang.
        llm.mode = "rate_limit"
        limited = cli(asker.home, "ask", "--timeout", "20", "How do I write a systemd unit?")
        assert limited.returncode == 1 and "rate" in limited.stderr.lower()

        # The expert's node dies while the LLM is thinking: the asker fails cleanly, in time.
        llm.mode, llm.delay_s = "slow", 60.0
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshnode.cli", "ask", "--home", str(asker.home),
             "--timeout", "20", "What is an SLO?"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        wait_for("the task to reach the LLM", lambda: len(llm.chat_requests) >= 3, timeout=20)
        devops.kill()
        out, err = proc.communicate(timeout=40)
        assert proc.returncode == 1, out
        assert time.monotonic() - started < 25
        assert "no agent gave an acceptable answer" in err and "devops-expert" in err
