"""Hostile peers against real daemons (issue 9, the peer side).

The attackers are built from meshnode's own code (tests/hostile.py): a real MeshHost
(libp2p, Noise, yamux, GossipSub) in this test process, with a fresh key and a valid hello
for the network, writing A2A frames, signed presence and signed trust attestations by hand.
Each test performs attacks and then checks, through the daemon's own CLI, that nothing
leaked, that no trust was gained or lost unfairly, that the daemon holds bounded state and
that it still serves its operator.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode.a2a.tasks import AGENT_KEY
from meshnode.config import GossipSettings
from meshnode.node.host import MeshHost
from meshnode.node.members import PROTOCOL_ID as MEMBERS_PROTOCOL
from meshnode.node.members import MembersServer
from meshnode.node.topics import EnvelopeCodec
from protocols.a2a import (
    TASK_NOT_FOUND,
    AgentCard,
    AgentSkill,
    CancelTask,
    ErrorReply,
    GetTask,
    ListTasks,
    Result,
    SendMessage,
    TaskState,
    TaskStatusUpdateEvent,
    card_to_wire,
)
from protocols.envelope import EnvelopeGuard
from protocols.peerid import Signer
from protocols.presence import (
    MAX_PRESENCE_SIZE,
    PRESENCE,
    PRESENCE_TOPIC_VERSION,
    Presence,
    cards_digest,
    pack_cards,
    presence_from_envelope,
    topic,
)
from protocols.trust import MAX_TRUST_SIZE, TRUST, TrustAttestation, attestation_from_envelope
from tests.hostile import Hostile, forwarded, question
from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for
from tests.integration.test_agents_mesh import _expert, _seed

pytestmark = pytest.mark.integration
NET = "dev-support"
T = TypeVar("T")
SECRET = "Which Milvus index type should confidential-project-7 use, HNSW or IVF_FLAT?"
EVIL = "\x1b[2J\x1b]0;pwned\x07\x1b[8m\u202e"
NONSENSE = "zqx vwk plo murr fenth"


@asynccontextmanager
async def hostile_node() -> AsyncIterator[Hostile]:
    """A fresh identity on a real libp2p host of its own, on loopback."""
    key = Ed25519PrivateKey.generate()
    async with MeshHost(key, listen=["/ip4/127.0.0.1/tcp/0"],
                        gossip=GossipSettings(heartbeat_s=0.5)) as host:
        yield Hostile(host, Signer(key), NET)


def _dial(daemon: Daemon) -> tuple[str, list[str]]:
    return daemon.peer_id, [daemon.addr.split("/p2p/")[0]]


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """A blocking call (the CLI, a poll) without stalling the hostile host's event loop."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


def _trust_row(node: Daemon, peer: str) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {
        p["peer_id"]: p for p in cli_json(node.home, "trust")["peers"]}
    return rows.get(peer, {"evidence": {}, "global": 0.0, "local": 0.0})


# ---- 1. tasks, budgets, Sybils, terminal escapes ------------------------------------------


ASKER: dict[str, dict[str, Any]] = {
    "routing": {"rating_window_s": 0.0, "explore": 0.0},  # an answer counts at once
    "limits": {"tasks_kept_per_peer": 5, "task_mib_per_peer": 1.0, "a2a_requests_per_s": 2.0},
    "trust": {"max_peers": 8},
}


def test_a_hostile_peer_reads_cancels_fills_and_floods_nothing(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", NET, ASKER).start()
        expert = _expert(tmp_path, "milvus-expert").start(asker.addr)
        nodes += [asker, expert]
        _seed(expert, "milvus")
        wait_for("the asker to know the expert", lambda: cli_json(asker.home, "agents"),
                 timeout=30)
        asked = cli_json(asker.home, "ask", SECRET)
        assert asked["peer"] == expert.peer_id
        assert _trust_row(asker, expert.peer_id)["evidence"] == {"accepted": 1}
        trio.run(_attack_tasks_and_budgets, asker, expert, asked["task_id"])

        status = asker.status()
        assert status["refused"].get("rate:a2a", 0) >= 10, status["refused"]
        # Bounded: the attacker's 12 tasks of 300 KB became at most 1 MiB of them.
        assert status["tasks"]["by_owner"].get("peer", 0) <= 3
        assert status["tasks"]["bytes"] < 2 * 1024 * 1024
        # Refusals show per peer and are evidence against the attacker only.
        attacker = next(p for p in asker.peers() if p["refused"])
        assert attacker["refused"]["rate:a2a"] >= 10
        table = cli(asker.home, "peers").stdout
        assert "REFUSED" in table and str(sum(attacker["refused"].values())) in table
        assert _trust_row(asker, attacker["peer_id"])["evidence"].get("refused", 0) >= 1

        # Sybils, each with one malformed hello: twice as many as the evidence table holds.
        trio.run(_sybil_hellos, asker, 16)
        wait_for("the Sybils' hellos refused",
                 lambda: asker.status()["handshakes"].get("refused", 0) >= 16, timeout=60)
        trust = cli_json(asker.home, "trust")
        assert trust["suspects"] <= 8
        assert _trust_row(asker, expert.peer_id)["evidence"] == {"accepted": 1}
        assert _trust_row(asker, expert.peer_id)["local"] == 1.0

        # A peer's agent card with terminal escapes: escaped on the terminal, exact in JSON.
        trio.run(_evil_presence, asker)
        shown = cli(asker.home, "agents")
        assert shown.returncode == 0 and "evil" in shown.stdout
        assert "\x1b" not in shown.stdout and "\\x1b[2J" in shown.stdout
        assert any(a["description"] == EVIL for a in cli_json(asker.home, "agents"))
        assert "\x1b" not in cli(asker.home, "peers").stdout

        # Alive and serving its operator.
        again = cli_json(asker.home, "ask", "Why are Milvus Lite searches slow after inserts?")
        assert again["peer"] == expert.peer_id


async def _attack_tasks_and_budgets(asker: Daemon, expert: Daemon, task_id: str) -> None:
    async with hostile_node() as attacker:
        await attacker.join(*_dial(asker))
        await attacker.join(*_dial(expert))
        for victim in (asker, expert):  # the asker's own ask, and the expert's task for it
            listing = await attacker.request(victim.peer_id, ListTasks())
            assert isinstance(listing, Result) and listing.value == (), listing
        for op in (GetTask(task_id), CancelTask(task_id)):
            reply = await attacker.request(asker.peer_id, op)
            assert isinstance(reply, ErrorReply) and reply.code == TASK_NOT_FOUND, reply
            assert "confidential" not in repr(reply)

        # Twelve tasks of 300 KB each, paced under the request rate: kept, then dropped.
        for i in range(12):
            message = question(f"{i} " + "x" * 300 * 1024, **{AGENT_KEY: "nobody"})
            reply = await attacker.request(asker.peer_id, SendMessage(message))
            assert isinstance(reply, Result), reply
            await trio.sleep(0.6)
        listing = await attacker.request(asker.peer_id, ListTasks())
        assert isinstance(listing, Result) and isinstance(listing.value, tuple)
        assert 1 <= len(listing.value) <= 3

        # Then as fast as it can: most are refused unread.
        replies = [await attacker.request(asker.peer_id, ListTasks()) for _ in range(30)]
        assert sum(r is None for r in replies) >= 10


async def _sybil_hellos(victim: Daemon, count: int) -> None:
    for _ in range(count):
        async with hostile_node() as sybil:
            sybil.answer_hellos(malformed=True)
            with trio.move_on_after(15):
                await sybil.host.connect(*_dial(victim), timeout=10)
                await sybil.hello(victim.peer_id, malformed=True)


async def _evil_presence(victim: Daemon) -> None:
    card = AgentCard(name="evil" + EVIL, description=EVIL, version="1" + EVIL, skills=(
        AgentSkill(id="s", name="skill" + EVIL, description="d" + EVIL, tags=("t" + EVIL,)),))
    # Presence names the cards by digest; the victim fetches them from the announcer.
    packed = pack_cards([card_to_wire(card)])
    digest = cards_digest(packed)
    async with hostile_node() as evil:
        evil.host.set_stream_handler(MEMBERS_PROTOCOL, MembersServer(
            lambda d: packed if d == digest else None, lambda _limit: []))
        await evil.join(*_dial(victim))
        presence_topic = topic(NET, "presence", PRESENCE_TOPIC_VERSION)
        await evil.host.subscribe(presence_topic)
        codec = EnvelopeCodec(EnvelopeGuard(NET), PRESENCE, presence_from_envelope,
                              max_size=MAX_PRESENCE_SIZE + 1024, clock=time.time)
        seq = time.time_ns()

        def listed() -> bool:
            return any(a["agent"].startswith("evil") for a in cli_json(victim.home, "agents"))

        with trio.fail_after(60):
            while True:
                seq += 1
                addr = f"/dns4/host{EVIL}/tcp/1/p2p/{evil.peer_id}"  # addresses name their peer
                body = Presence(evil.peer_id, (addr,), "x", seq, 60.0, cards=digest,
                                agents=1).to_body()
                await evil.host.publish(presence_topic, codec.seal(evil.signer, body))
                if await _off_loop(listed):
                    return
                await trio.sleep(0.5)


# ---- 2. forwarded questions ---------------------------------------------------------------


def test_forwarded_questions_farm_no_trust_and_blame_no_one(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        victim = Daemon(tmp_path, "victim", NET, ASKER).start()
        honest = Daemon(tmp_path, "honest", NET).start(victim.addr)
        nodes += [victim, honest]
        wait_for("the honest neighbour", lambda: honest.peer_id in victim.peer_ids(
            connected=True), timeout=30)
        accomplice = trio.run(_forwarding_attacks, victim, honest)
        # The victim did forward the second question to the honest node (which held it).
        assert honest.status()["tasks"]["tasks"] >= 1
        for peer in (accomplice, honest.peer_id):
            assert _trust_row(victim, peer)["evidence"] == {}, peer
            assert _trust_row(victim, peer)["local"] == 0.0
        assert victim.status()["refused"] == {}  # within every budget: only the rule helped


async def _forwarding_attacks(victim: Daemon, honest: Daemon) -> str:
    async with (hostile_node() as attacker, hostile_node() as accomplice,
                hostile_node() as bystander):
        accomplice.serve_echo()
        for peer in (attacker, accomplice, bystander):
            await peer.join(*_dial(victim))
        await _off_loop(wait_for, "the victim to know all three", lambda: {
            attacker.peer_id, accomplice.peer_id, bystander.peer_id} <= victim.peer_ids(
            connected=True), 30)

        # Farming: everyone but the accomplice "visited", so the victim asks it alone.
        events = await attacker.stream_task(victim.peer_id, forwarded(
            NONSENSE, hops=1, visited=[attacker.peer_id, honest.peer_id, bystander.peer_id]))
        assert isinstance(events, list) and _final(events) == TaskState.COMPLETED, events
        # Blame: one hop short of the limit, towards the honest node, which cannot go on.
        # The bystander announced no agents, so the victim forwards (a node that knows
        # every agent of the mesh and finds none fits does not): to the honest node and
        # the bystander, which serves no A2A.
        events = await attacker.stream_task(victim.peer_id, forwarded(
            NONSENSE + " again", hops=1, visited=[attacker.peer_id, accomplice.peer_id]))
        assert isinstance(events, list) and _final(events) == TaskState.FAILED, events
        return accomplice.peer_id


def _final(events: list[Any]) -> TaskState | None:
    finals = [e for e in events if isinstance(e, TaskStatusUpdateEvent) and e.final]
    return finals[-1].status.state if finals else None


# ---- 3. a hostile bootstrap peer; DNS rebinding -------------------------------------------


def test_a_hostile_bootstrap_peer_owns_no_trust_and_pages_reach_no_api(tmp_path: Path) -> None:
    sybil = Signer.generate().peer_id
    with mesh(tmp_path) as nodes:
        settings: dict[str, dict[str, Any]] = {
            "trust": {"publish_interval_s": 1.0, "recompute_interval_s": 1.0},
            "api": {"public_a2a": True},
        }
        newcomer = Daemon(tmp_path, "newcomer", NET, settings)
        nodes.append(newcomer)
        trio.run(_hostile_bootstrap, newcomer, sybil)
        trust = cli_json(newcomer.home, "trust")
        assert trust["pre_trusted"] == [newcomer.peer_id]
        assert _trust_row(newcomer, sybil)["global"] == 0.0

        api = newcomer.status()["api"]
        card = f"{api}/.well-known/agent-card.json"
        assert httpx.get(card).status_code == 200
        rebound = httpx.get(card, headers={"Host": "attacker.example:7700"})
        assert rebound.status_code == 421 and "name" not in rebound.json()
        cross = httpx.post(f"{api}/a2a", headers={"Origin": "http://attacker.example"},
                           content=b'{"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}')
        assert cross.status_code == 403


async def _hostile_bootstrap(newcomer: Daemon, sybil: str) -> None:
    async with hostile_node() as boot:
        boot.answer_hellos()
        trust_topic = topic(NET, "trust")
        await boot.host.subscribe(trust_topic)
        address = f"{boot.host.listen_addrs()[0].split('/p2p/')[0]}/p2p/{boot.peer_id}"
        await _off_loop(newcomer.start, address)
        codec = EnvelopeCodec(EnvelopeGuard(NET, max_age_s=600.0), TRUST,
                              attestation_from_envelope, max_size=MAX_TRUST_SIZE + 1024,
                              clock=time.time)

        def attested() -> bool:
            row = _trust_row(newcomer, boot.peer_id)
            return bool(row.get("attestation")) and sybil in {
                p["peer_id"] for p in cli_json(newcomer.home, "trust")["peers"]}

        with trio.fail_after(60):
            while True:  # "my Sybil is the best peer there is", signed, every half second
                vouch = TrustAttestation(boot.peer_id, time.time_ns() // 1000, time.time(),
                                         {sybil: 1.0})
                await boot.host.publish(trust_topic, codec.seal(boot.signer, vouch.to_body()))
                if await _off_loop(attested):
                    break
                await trio.sleep(0.5)
        await trio.sleep(2.5)  # a recomputation or two with the attestation held
