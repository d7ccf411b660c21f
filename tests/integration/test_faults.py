"""A dependency failing under a real daemon fails the work that needed it, not the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshnode.agents.specs import demo_agents
from meshnode.cli.demo import agent_toml
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.harness import Daemon, cli, cli_json, mesh
from tests.integration.test_agents_mesh import _seed

pytestmark = pytest.mark.integration
QUESTION = "Which Milvus index type should I use, HNSW or IVF_FLAT?"
DIM = 64


def test_an_embedder_outage_fails_the_ask_and_the_daemon_keeps_serving(tmp_path: Path) -> None:
    with FakeOpenAI(embedding_dim=DIM) as endpoint, mesh(tmp_path) as nodes:
        node = Daemon(tmp_path, "node", "dev-support", {"memory": {
            "embedder": "openai", "embedder_base_url": endpoint.base_url,
            "embedder_model": "fake-embed", "embedder_dim": DIM}})
        node.add_agent(agent_toml(next(s for s in demo_agents() if s.name == "milvus-expert")))
        node.start()
        nodes.append(node)
        _seed(node, "milvus")  # embedded by the endpoint
        # The fake's vectors carry no meaning: name the agent, so relevance cannot rule it out.
        ask = ("ask", "--agent", "milvus-expert", "--timeout", "30", QUESTION)
        answer = cli_json(node.home, *ask)
        assert answer["agent"] == "milvus-expert" and answer["answer"]["citations"]
        assert cli_json(node.home, "status")["faults"] == {}

        endpoint.embeddings_mode = "server_error"
        failed = cli(node.home, *ask)
        assert failed.returncode == 1
        assert "embedder failed" in failed.stderr and "500" in failed.stderr, failed.stderr
        # The daemon is up and answers: status (which counts the fault), memory routes.
        status = cli_json(node.home, "status")
        assert status["faults"].get("embedder", 0) >= 1
        stats = cli_json(node.home, "memory", "stats")
        assert stats["collections"]["expert_knowledge"] > 5
        search = cli(node.home, "memory", "search", "HNSW index")
        assert search.returncode != 0 and "embedding endpoint failed" in search.stderr

        endpoint.embeddings_mode = None  # the endpoint is back: so are the answers
        again = cli_json(node.home, *ask)
        assert again["agent"] == "milvus-expert"
        assert node.proc is not None and node.proc.poll() is None
