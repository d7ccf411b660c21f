"""Issue 5 end to end: trust learnt from ratings steers routing, here and through gossip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for
from tests.integration.test_agents_mesh import _expert, _seed

pytestmark = pytest.mark.integration
QUESTIONS = [
    "Which Milvus index type should I use, HNSW or IVF_FLAT?",
    "Why are my Milvus Lite searches slow after a bulk insert?",
    "What does flush do to growing segments in Milvus?",
    "How does a partition key isolate tenants in Milvus?",
]
# Wrong, but phrased like the questions, so that the asker's automatic quality estimate
# cannot tell these answers from right ones: only ratings do.
WRONG = """# Milvus answers

Which Milvus index type should I use, HNSW or IVF_FLAT? Use neither HNSW nor IVF_FLAT:
a Milvus index type only slows searches down.

Why are my Milvus Lite searches slow after a bulk insert? Milvus Lite searches are slow
after a bulk insert because of the network; a bulk insert never affects Milvus Lite.

What does flush do to growing segments in Milvus? Flush deletes the growing segments in
Milvus, so never flush.

How does a partition key isolate tenants in Milvus? A partition key does not isolate
tenants in Milvus; every tenant sees every record.
"""
NO_EXPLORING: dict[str, dict[str, Any]] = {
    "trust": {"publish_interval_s": 1.0, "recompute_interval_s": 1.0},
    "routing": {"explore": 0.0},
}


def _ask(node: Daemon, question: str, *extra: str) -> dict[str, Any]:
    return cli_json(node.home, "ask", question, *extra)  # type: ignore[no-any-return]


def test_ratings_steer_routing_and_attestations_carry_it(tmp_path: Path) -> None:
    wrong_kb = tmp_path / "wrong"
    wrong_kb.mkdir()
    (wrong_kb / "tips.md").write_text(WRONG)
    with mesh(tmp_path) as nodes:
        # Neither expert is pre-trusted by the asker: it bootstraps from nobody.
        asker = Daemon(tmp_path, "asker", "dev-support", NO_EXPLORING).start()
        bad = Daemon(tmp_path, "liar", "dev-support")
        bad.add_agent(_liar_toml())
        bad.start(asker.addr)
        good = _expert(tmp_path, "milvus-expert").start(asker.addr)
        nodes += [asker, bad, good]
        _seed(good, "milvus")
        assert cli_json(bad.home, "memory", "ingest", str(wrong_kb))["records"] >= 1
        wait_for("the asker to know both experts",
                 lambda: len(cli_json(asker.home, "agents")) == 2, timeout=30)

        # A few rated questions to each (asked by name, so both surely answer some)...
        for i, (agent, rating) in enumerate([("milvus-guru", "bad"), ("milvus-expert", "good"),
                                             ("milvus-guru", "bad"), ("milvus-expert", "good")]):
            answer = _ask(asker, QUESTIONS[i], "--agent", agent)
            assert cli(asker.home, "rate", answer["task_id"], rating).returncode == 0
        # ...and from then on routing, which sees two agents with the same skills, picks the
        # honest one.
        for question in QUESTIONS:
            answer = _ask(asker, question, "--explain")
            assert answer["peer"] == good.peer_id, answer["explain"]

        trust = cli_json(asker.home, "trust")
        row = {p["peer_id"]: p for p in trust["peers"]}
        assert row[good.peer_id]["local"] > row.get(bad.peer_id, {}).get("local", 0.0)
        assert row[bad.peer_id]["evidence"].get("rated_bad", 0) >= 1

        # A node that never asked either, whose operator pre-trusts the asker (a choice
        # written in its config: bootstrapping from it is not enough), learns the same
        # preference from the asker's signed attestations alone.
        # (No exploration here: a newcomer's share of questions would make this a dice roll.)
        anchored = {**NO_EXPLORING,
                    "trust": {**NO_EXPLORING["trust"], "pre_trusted": [asker.peer_id]}}
        newcomer = Daemon(tmp_path, "newcomer", "dev-support", anchored).start(asker.addr)
        nodes.append(newcomer)

        def trusts_the_good_one() -> bool:
            peers = {p["peer_id"]: p for p in cli_json(newcomer.home, "trust")["peers"]}
            return peers.get(good.peer_id, {}).get("global", 0.0) > peers.get(
                bad.peer_id, {}).get("global", 0.0)

        wait_for("attestations to reach the newcomer", trusts_the_good_one, timeout=40)
        wait_for("the newcomer to know both experts",
                 lambda: len(cli_json(newcomer.home, "agents")) == 2, timeout=30)
        for question in QUESTIONS[:2]:
            answer = _ask(newcomer, question, "--explain")
            assert answer["peer"] == good.peer_id, answer["explain"]
            assert answer["explain"]["candidates"][0]["peer_id"] == good.peer_id


def _liar_toml() -> str:
    """The Milvus expert's card, skills and all, under another name."""
    from dataclasses import replace

    from meshnode.cli.demo import agent_toml
    from tests.integration.test_agents_mesh import EXPERTS

    return agent_toml(replace(EXPERTS["milvus-expert"], name="milvus-guru"))
