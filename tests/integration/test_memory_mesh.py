"""Issue 3 end to end: three Milvus Lite nodes share what they learn, through real daemons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for

pytestmark = pytest.mark.integration


def _search_ids(node: Daemon, query: str) -> set[str]:
    return {hit["id"] for hit in cli_json(node.home, "memory", "search", query, "--k", "20")}


def _add(node: Daemon, text: str, *extra: str) -> dict[str, Any]:
    return cli_json(node.home, "memory", "add", text, *extra)  # type: ignore[no-any-return]


def _counts(node: Daemon) -> dict[str, int]:
    return cli_json(node.home, "memory", "stats")["collections"]  # type: ignore[no-any-return]


def test_records_replicate_catch_up_and_never_duplicate(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        a = Daemon(tmp_path, "a", "dev-support").start()
        b = Daemon(tmp_path, "b", "dev-support").start(a.addr)
        c = Daemon(tmp_path, "c", "dev-support").start(b.addr)
        nodes += [a, b, c]
        for node in nodes:
            wait_for(f"{node.name} to know the others",
                     lambda n=node: len(n.peer_ids()) == 2, timeout=40)

        # Added on A, found by search on C (C is not even A's bootstrap peer).
        first = _add(a, "HNSW indexes trade memory for recall; raise ef to improve recall",
                     "--kind", "tip", "--meta", "topic=milvus")
        assert first["seq"] == 1 and first["meta"] == {"topic": "milvus"}
        wait_for("C to find A's record", lambda: first["id"] in _search_ids(c, "HNSW recall ef"),
                 timeout=30)

        # C goes down; records are added meanwhile on A and B; C catches up on restart.
        assert c.stop() == 0
        later = [_add(a, f"Use a partition key to isolate tenant number {i}") for i in range(3)]
        later.append(_add(b, "Flush Milvus Lite after bulk inserts so searches hit an index"))
        c.start(b.addr)
        wanted = {r["id"] for r in later}
        wait_for("C to catch up", lambda: wanted <= _search_ids(c, "partition key tenant flush")
                 | _search_ids(c, "Flush Milvus Lite bulk inserts"), timeout=60)

        # Nothing duplicated anywhere: five records, five distinct ids, on every node.
        for node in nodes:
            wait_for(f"{node.name} to hold exactly five records",
                     lambda n=node: _counts(n)["expert_knowledge"] == 5, timeout=30)
            exported = cli(node.home, "memory", "export")
            ids = [json.loads(line)["id"] for line in exported.stdout.splitlines()]
            assert len(ids) == len(set(ids)) == 5

        # A deletes its first record: the tombstone travels, the record disappears on C.
        assert cli(a.home, "memory", "delete", first["id"]).returncode == 0
        wait_for("the deletion to reach C", lambda: _counts(c)["expert_knowledge"] == 4,
                 timeout=30)
        assert first["id"] not in _search_ids(c, "HNSW recall ef")
        # Only the author may delete.
        refused = cli(c.home, "memory", "delete", later[0]["id"])
        assert refused.returncode == 1 and "only its author" in refused.stderr

        stats = cli_json(c.home, "memory", "stats")
        assert stats["replication"]["peers"], "C reports per-peer replication state"


def test_ingest_is_chunked_replicated_and_idempotent(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text(
        "# Deploying\n\nRun one daemon per machine under systemd.\n\n"
        "## Rollback\n\nKeep the previous release and switch the symlink back.\n"
    )
    (docs / "notes.txt").write_text("Blue-green deployments keep two environments alive.\n")
    with mesh(tmp_path) as nodes:
        a = Daemon(tmp_path, "a", "docs-mesh").start()
        b = Daemon(tmp_path, "b", "docs-mesh").start(a.addr)
        nodes += [a, b]
        first = cli_json(a.home, "memory", "ingest", str(docs))
        assert first["changed"] == 2 and first["records"] >= 2
        again = cli_json(a.home, "memory", "ingest", str(docs))
        assert again == {**again, "changed": 0, "unchanged": 2, "records": 0}
        wait_for("B to find the ingested rollback advice",
                 lambda: any("symlink" in h["text"] for h in
                             cli_json(b.home, "memory", "search", "rollback symlink")),
                 timeout=30)
        (docs / "notes.txt").write_text("Canary releases send a slice of traffic first.\n")
        changed = cli_json(a.home, "memory", "ingest", str(docs))
        assert changed["changed"] == 1 and changed["tombstones"] >= 1
