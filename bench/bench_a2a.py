"""A2A benchmark: round trip and throughput over real libp2p, and where `ask` spends its time.

Part 1 (in one process, two real MeshHosts on loopback, Noise + yamux): a no-op agent that
answers at once, asked through the real TaskService code, three ways in the same run:

- ``bare``: not a task at all: a 200-byte echo over one reused py-libp2p stream (raw
  py-libp2p streams, none of meshnode's code): the floor any A2A call sits on;
- ``1.0``: one stream per task (``/meshnode/a2a/1.0.0``, ``call_agent``), as before;
- ``1.1``: tasks pipelined on one long-lived session (``/meshnode/a2a/1.1.0``, A2AClient).

Reports the round trip (p50/p99) and calls per second with N in flight.

Part 2 (real daemons): an asking node and the Milvus expert seeded with its knowledge base;
`ask` is called repeatedly through the local API and the per-stage timings the daemon
reports are summarised: routing (embedding + ranking), network (A2A over libp2p, both
ways, and the answering node's own overhead), retrieval (Milvus Lite), LLM (a local
OpenAI-compatible server returning canned text, so this is client + HTTP overhead only).

    python bench/bench_a2a.py --tasks 500 --concurrency 1 8 32 --asks 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.session import A2AClient, SessionServer
from meshnode.a2a.tasks import AGENT_KEY, TaskService, call_agent
from meshnode.agents.answering import Answer
from meshnode.agents.specs import AgentSpec
from meshnode.config import GossipSettings, LimitSettings
from meshnode.node.host import MeshHost
from meshnode.node.limits import LimitedHost, PeerLimits
from meshnode.stats import quantile
from protocols.a2a import Message, StreamEvent, TextPart
from protocols.peerid import Signer

NOOP = AgentSpec(name="noop", description="answers at once", instructions="", skills=())


class NoopAnswerer:
    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
        return Answer(text="ok", citations=(), mode="extractive", model=None, retrieval_s=0.0,
                      llm_s=0.0)


class NoKnowledge:
    """What TaskService needs of a KnowledgeService when the agent records nothing."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    async def add(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the no-op agent writes nothing")



ECHO = "/bench/echo/1.0.0"


async def _echo(stream: Any) -> None:  # a raw py-libp2p stream
    try:
        while data := await stream.read(4096):
            await stream.write(data)
    except Exception:
        pass


async def _measure(label: str, call: Callable[[], Awaitable[None]], tasks: int,
                   concurrency: list[int]) -> None:
    async def timed() -> float:
        start = time.perf_counter()
        await call()
        return (time.perf_counter() - start) * 1000

    for _ in range(20):  # warm up: streams, muxer windows, code paths
        await timed()

    async def worker(count: int, samples: list[float]) -> None:
        for _ in range(count):
            samples.append(await timed())

    for level in concurrency:
        samples: list[float] = []
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(level):
                nursery.start_soon(worker, tasks // level + (i < tasks % level), samples)
        elapsed = time.perf_counter() - start
        print(f"{label:5}  {level:9}  {len(samples):5}  {quantile(samples, .5):6.2f}  "
              f"{quantile(samples, .99):6.2f}  {len(samples) / elapsed:7.0f}", flush=True)


async def _admit_all(_: str) -> bool:
    return True


async def roundtrips(tasks: int, concurrency: list[int]) -> None:
    key_a, key_b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    listen = ["/ip4/127.0.0.1/tcp/0"]
    async with MeshHost(key_a, listen=listen, gossip=GossipSettings()) as a, \
            MeshHost(key_b, listen=listen, gossip=GossipSettings()) as b, \
            trio.open_nursery() as nursery:
        # The node's path (per-peer budgets, then the task store), with the budgets lifted:
        # one asker with many tasks in flight is past what a real node lets one peer do,
        # and this measures throughput, not policy.
        unlimited = PeerLimits(LimitSettings(
            streams_per_peer=1 << 20, a2a_requests_per_s=1e9, tasks_running_per_peer=1 << 20,
            tasks_running=1 << 21))
        service = TaskService(LimitedHost(b, unlimited), (NOOP,), NoopAnswerer(),
                              NoKnowledge(Signer(key_b)),  # type: ignore[arg-type]
                              version="bench", store=TaskStore(limits=unlimited))
        service.serve(admit=_admit_all)  # two bare hosts: no hello runs here
        SessionServer(service, unlimited).serve()
        b._host.set_stream_handler(ECHO, _echo)
        client = A2AClient(a)
        await nursery.start(client.run)
        await a.connect(b.peer_id, b.listen_addrs(), timeout=10)

        def message() -> Message:
            return Message(role="user", parts=(TextPart("ping"),),
                           message_id=str(uuid.uuid4()), metadata={AGENT_KEY: "noop"})

        async def no_event(event: StreamEvent) -> None:
            pass

        async def legacy() -> None:
            await call_agent(a, b.peer_id, message(), no_event, timeout=30)

        async def session() -> None:
            await client.call(b.peer_id, message(), no_event, timeout=30)

        echo = await a._host.new_stream(ID.from_base58(b.peer_id), [ECHO])
        lock = trio.Lock()
        payload = b"x" * 200

        async def bare() -> None:
            async with lock:  # one stream: one round trip at a time on it
                await echo.write(payload)
                got = b""
                while len(got) < len(payload):
                    got += await echo.read(4096)

        print("path   in flight  calls  p50 ms  p99 ms  calls/s")
        for label, call in (("bare", bare), ("1.0", legacy), ("1.1", session)):
            await _measure(label, call, tasks, concurrency)
        await echo.close()
        nursery.cancel_scope.cancel()


def stage_breakdown(asks: int) -> None:
    from meshnode.agents.specs import data_path, demo_agents
    from meshnode.cli.client import DaemonClient
    from meshnode.cli.demo import agent_toml
    from tests.fakes.openai_server import FakeOpenAI
    from tests.integration.harness import Daemon, cli_json, mesh, wait_for

    questions = [
        "Which Milvus index type should I use, HNSW or IVF_FLAT?",
        "Why are my Milvus Lite searches slow after a bulk insert?",
        "How does a partition key isolate tenants in Milvus?",
        "What does flush do in Milvus?",
    ]
    expert = {s.name: s for s in demo_agents()}["milvus-expert"]
    for label, llm in (("no LLM (extractive)", None), ("LLM (local fake server)", True)):
        with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as fake, mesh(Path(tmp)) as nodes:
            root = Path(tmp)
            asker = Daemon(root, "asker", "bench").start(log_level="warning")
            settings = {"llm": {"base_url": fake.base_url, "api_key": "k"}} if llm else None
            node = Daemon(root, "milvus", "bench", settings)
            node.add_agent(agent_toml(expert))
            node.start(asker.addr, log_level="warning")
            nodes += [asker, node]
            cli_json(node.home, "memory", "ingest", str(data_path("kb", "milvus")))
            wait_for("the expert", lambda h=asker.home: len(cli_json(h, "agents")) == 1,
                     timeout=30)
            client = DaemonClient(asker.home, timeout=120)
            stages: dict[str, list[float]] = {}
            for i in range(asks):
                body = {"question": questions[i % len(questions)], "timeout": 60}
                result = next(line["result"] for line in client.stream_lines("/v1/ask", body)
                              if "result" in line)
                for stage, seconds in result["timings"].items():
                    stages.setdefault(stage, []).append(seconds * 1000)
            print(f"\n{label}: {asks} asks")
            print("stage          p50 ms   mean ms  share of total")
            total = statistics.fmean(stages["total_s"])
            for stage in ("routing_s", "network_s", "retrieval_s", "llm_s", "total_s"):
                values = stages[stage]
                print(f"{stage[:-2]:12}  {quantile(values, .5):7.1f}  "
                      f"{statistics.fmean(values):8.1f}  {statistics.fmean(values) / total:6.0%}",
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--asks", type=int, default=30,
                        help="asks through real daemons for the stage breakdown (0: skip)")
    args = parser.parse_args()
    trio.run(roundtrips, args.tasks, args.concurrency)
    if args.asks:
        stage_breakdown(args.asks)


if __name__ == "__main__":
    main()
