"""Hostile peers against a real daemon's memory (the fast versions of these attacks run on
the in-memory mesh: tests/node/test_hostile_data_inmemory.py).

Each hostile node is built from the project's own code: a real MeshHost and Membership in a
thread of this process (it passes the hello as any member can), plus a memsync state
machine or plain gossip publishing. The defences asserted: nothing hidden, the budget
enforced and visible, one bad record costing only itself, and the daemon alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.config import GossipSettings, NodeConfig
from meshnode.node.host import MeshHost
from meshnode.node.membership import Membership
from protocols.memsync import PROTOCOL_ID as MEMSYNC
from protocols.memsync import encode_announcement
from protocols.peerid import Signer
from protocols.presence import topic
from protocols.records import MemoryRecord, new_record
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for
from tests.sync.helpers import withholding_server

pytestmark = pytest.mark.integration
NETWORK = "dev-support"
KNOWLEDGE = topic(NETWORK, "knowledge")
Plan = Callable[[MeshHost], Awaitable[None]]


def chain(signer: Signer, n: int, text: str = "Honest note {seq} about flushing Milvus."
          ) -> list[MemoryRecord]:
    return [new_record(signer, collection="expert_knowledge", tenant=NETWORK,
                       text=text.format(seq=seq), kind="note", agent="", created=time.time(),
                       seq=seq) for seq in range(1, n + 1)]


async def _hostile(bootstrap: str, home: Path, plan: Plan, done: threading.Event,
                   handlers: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.generate()
    config = NodeConfig(home=home, network_id=NETWORK, bootstrap=(bootstrap,),
                        gossip=GossipSettings(presence_interval_s=1.0, heartbeat_s=0.5))
    async with MeshHost(key, listen=["/ip4/127.0.0.1/tcp/0"], gossip=config.gossip) as host:
        for protocol, handler in handlers.items():
            host.set_stream_handler(protocol, handler)
        membership = Membership(config, host, Signer(key), version="hostile")
        async with trio.open_nursery() as nursery:
            await nursery.start(membership.run)
            await plan(host)
            while not await trio.to_thread.run_sync(done.wait, 0.5):
                pass
            nursery.cancel_scope.cancel()


class Hostile:
    """A hostile node in a thread, running ``plan``; stopped when the block ends."""

    def __init__(self, victim: Daemon, home: Path, plan: Plan,
                 handlers: dict[str, Any] | None = None) -> None:
        self.done = threading.Event()
        self.errors: list[BaseException] = []

        def run() -> None:
            try:
                trio.run(_hostile, victim.addr, home, plan, self.done, handlers or {})
            except BaseException as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        assert not self.errors, self.errors


async def _until_gossip_peers(host: MeshHost) -> None:
    with trio.fail_after(30):
        while not host.topic_peers(KNOWLEDGE):  # noqa: ASYNC110 (py-libp2p has no event)
            await trio.sleep(0.2)


def held(node: Daemon, author: str) -> set[int]:
    return {r["seq"] for r in node.api("/v1/memory/export") if r["author"] == author}


def test_a_sync_peer_cannot_hide_a_record(tmp_path: Path) -> None:
    author = Signer.generate()  # an honest author whose records the liar relays
    records = chain(author, 3)
    announced = threading.Event()

    async def announce_the_rest_later(host: MeshHost) -> None:
        await trio.to_thread.run_sync(announced.wait)
        await host.subscribe(KNOWLEDGE)
        await _until_gossip_peers(host)
        for _ in range(20):  # until seen: a first message can precede the mesh link
            for record in records[1:]:
                await host.publish(KNOWLEDGE, encode_announcement(record))
            await trio.sleep(1)

    with mesh(tmp_path) as nodes:
        victim = Daemon(tmp_path, "victim", NETWORK).start()
        nodes.append(victim)
        liar = withholding_server(records, {2})
        with Hostile(victim, tmp_path / "liar", announce_the_rest_later, {MEMSYNC: liar}):
            # The handshake (and every sync_interval_s) syncs with the liar: #1 only.
            wait_for("#1 from the liar", lambda: held(victim, author.peer_id) == {1},
                     timeout=40)
            time.sleep(4)  # a periodic sync with the liar comes and goes: still only #1
            assert held(victim, author.peer_id) == {1}
            # #2 is still wanted, so its announcement is applied (it used to be a
            # "duplicate", hidden forever), and #3 follows.
            announced.set()
            wait_for("#2 and #3", lambda: held(victim, author.peer_id) == {1, 2, 3},
                     timeout=60)
        assert victim.status()["peer_id"] == victim.peer_id


def test_a_flooding_author_is_held_to_its_budget(tmp_path: Path) -> None:
    mallory = Signer.generate()
    flood = chain(mallory, 120, "Spam {seq}: buy now, limited offer, click here.")
    honest = Signer.generate()

    async def flood_then_honest(host: MeshHost) -> None:
        await host.subscribe(KNOWLEDGE)
        await _until_gossip_peers(host)
        for record in flood:
            await host.publish(KNOWLEDGE, encode_announcement(record))
            await trio.sleep(0.02)  # gossip queues drop a burst: keep most of it coming
        await trio.sleep(2)
        for _ in range(20):
            for record in chain(honest, 2, "Honest tip {seq}: flush after bulk inserts."):
                await host.publish(KNOWLEDGE, encode_announcement(record))
            await trio.sleep(1)

    with mesh(tmp_path) as nodes:
        victim = Daemon(tmp_path, "victim", NETWORK,
                        {"memory": {"sync_interval_s": 3.0},
                         "limits": {"author_records_per_hour": 20}}
                        ).start()
        nodes.append(victim)
        with Hostile(victim, tmp_path / "flooder", flood_then_honest):
            wait_for("the honest author's records", lambda: held(victim, honest.peer_id)
                     == {1, 2}, timeout=60)
            stats = cli_json(victim.home, "memory", "stats")["replication"]
        assert held(victim, mallory.peer_id) == set(range(1, 21))
        # Refused, counted by reason, and shown with the author (never silently).
        assert stats["refused"]["rate"] >= 1, stats
        assert stats["refused_authors"][mallory.peer_id] == stats["refused"]["rate"]
        assert "limits.author_records_per_hour" in victim.log_text()
        assert victim.status()["peer_id"] == victim.peer_id


def test_a_record_the_embedder_refuses_costs_only_itself_and_comes_later(
    tmp_path: Path,
) -> None:
    with FakeOpenAI() as fake, mesh(tmp_path) as nodes:
        fake.max_input_chars = 2000
        writer = Daemon(tmp_path, "writer", NETWORK).start()
        nodes.append(writer)
        reader = Daemon(tmp_path, "reader", NETWORK, {"memory": {
            "embedder": "openai", "embedder_base_url": fake.base_url,
            "embedder_model": "fake-embed", "embedder_dim": 16, "sync_interval_s": 3.0}})
        reader.start(writer.addr, env={"OPENAI_API_KEY": "test-key"})
        nodes.append(reader)
        wait_for("the two nodes to meet", lambda: writer.peer_id in reader.peer_ids(
            connected=True), timeout=40)
        long = "Milvus compaction merges small segments. " * 100  # ~4,200 characters
        assert cli(writer.home, "memory", "add", long).returncode == 0
        assert cli(writer.home, "memory", "add", "Flush after bulk inserts.").returncode == 0
        # The reader's embedder refuses the long one: a contained fault, not a dead node.
        wait_for("the refusal", lambda: fake.requests and any(
            len(str(t)) > 2000 for r in fake.requests if r.path == "/v1/embeddings"
            for t in (r.body.get("input") or [])), timeout=40)
        wait_for("the fault to be counted", lambda: sum(reader.status().get(
            "faults", {}).values()) + cli_json(reader.home, "memory", "stats")[
            "replication"]["refused"].get("store", 0) >= 1, timeout=40)
        assert held(reader, writer.peer_id) == set()  # #2 waits behind #1
        # The node serves on: status, its own writes, searches.
        assert reader.status()["peer_id"] == reader.peer_id
        assert cli(reader.home, "memory", "add", "The reader's own note.").returncode == 0
        assert cli_json(reader.home, "memory", "search", "own note")
        # The endpoint takes it now: the next periodic sync brings both.
        fake.max_input_chars = None
        wait_for("both records at the reader", lambda: held(reader, writer.peer_id)
                 == {1, 2}, timeout=60)
        assert reader.proc is not None and reader.proc.poll() is None
