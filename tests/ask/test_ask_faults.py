"""An ask's faults and deadline, in process: an embedder that fails or hangs fails that ask
(with a clear error, counted) and never MeshA2A; one deadline covers relevance scoring, the
waves and the quality check (which reads cited records from this node's memory)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from memory.embedders import HashingEmbedder
from memory.errors import EmbedderError, MemoryStoreError
from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.owners import OPERATOR
from meshnode.a2a.tasks import AGENT_KEY, TaskService
from meshnode.agents.answering import Answer, Citation
from meshnode.agents.llm import LLMError
from meshnode.agents.specs import AgentSpec, SkillSpec
from meshnode.api.mesh_agent import TIMEOUT_KEY, MeshA2A
from meshnode.ask.asker import Asker, AskError
from meshnode.ask.relevance import SkillIndex
from meshnode.config import RoutingSettings
from meshnode.node.faults import Faults
from meshnode.node.peers import PeerTable
from meshnode.trust.graph import TrustGraph
from protocols.a2a import (
    CancelTask,
    GetTask,
    ListTasks,
    Message,
    StreamEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
)
from protocols.peerid import Signer
from protocols.records import MemoryRecord, new_record

SPEC = AgentSpec(
    name="milvus-expert", description="Answers questions about Milvus.", instructions="",
    skills=(SkillSpec(id="index", name="Milvus indexes",
                      description="Choosing and tuning Milvus index types",
                      tags=("milvus", "hnsw"), examples=("Which index should I use?",)),),
)
QUESTION = "Which Milvus index type should I use, HNSW or IVF_FLAT?"
TIP = "Use the HNSW index type in Milvus for fast searches; IVF_FLAT uses less memory."
TENANT = "test"


class Embedder:
    """The built-in embedder, with an outage switch and calls that can be made to hang."""

    def __init__(self) -> None:
        self._real = HashingEmbedder()
        self.failing = False
        self.calls = 0
        self.hang_from_call: int | None = None
        self.release = threading.Event()
        self.hung_calls_finished = 0

    @property
    def name(self) -> str:
        return self._real.name

    @property
    def dim(self) -> int:
        return self._real.dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.failing:
            raise EmbedderError("embedding endpoint failed for openai:x: 503 Service Unavailable")
        if self.hang_from_call is not None and self.calls >= self.hang_from_call:
            self.release.wait(20)
            self.hung_calls_finished += 1
        return self._real.embed(texts)


def _tip(signer: Signer) -> MemoryRecord:
    return new_record(signer, collection="expert_knowledge", tenant=TENANT, text=TIP,
                      kind="tip", agent="", created=1.8e9, seq=1)


class QuotingAnswerer:
    """An agent that answers at once, quoting (and carrying) a record on the question."""

    def __init__(self, signer: Signer, *, carry: bool = True) -> None:
        self.record = _tip(signer)
        self.carry = carry

    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
        r = self.record
        return Answer(f"{TIP} [1]", (Citation(r.id, r.collection, r.author, 0.9, TIP),),
                      "extractive", None, 0.0, 0.0, records=(r,) if self.carry else ())


class Store:
    """This node's memory as the asker uses it: cited records can hang or fail to load."""

    embedder = HashingEmbedder()

    def __init__(self, records: Sequence[MemoryRecord]) -> None:
        self.records = {r.id: r for r in records}
        self.failing = False
        self.hanging = False

    async def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        if self.hanging:
            await trio.sleep_forever()
        if self.failing:
            raise MemoryStoreError("cannot read memory: disk failure")
        return [self.records[i] for i in ids if i in self.records]

    async def search(self, *_: Any, **__: Any) -> list[Any]:
        return []


def _node(embedder: Embedder, *, carry: bool = True) -> tuple[Asker, MeshA2A, Faults, Store]:
    faults = Faults()
    signer = Signer.generate()
    answerer = QuotingAnswerer(signer, carry=carry)
    store = Store([answerer.record])
    knowledge: Any = SimpleNamespace(signer=signer, add=None, store=store)
    tasks = TaskService(None, (SPEC,), answerer, knowledge,  # type: ignore[arg-type]
                        version="test", store=TaskStore(faults=faults))
    membership: Any = SimpleNamespace(signer=signer, table=PeerTable(signer.peer_id, 60.0),
                                      verified_connected=set, agent_sets=list,
                                      config=SimpleNamespace(tenant=TENANT))
    asker = Asker(None, membership, tasks,  # type: ignore[arg-type]
                  SkillIndex(embedder, trio.CapacityLimiter(2)),
                  TrustGraph(signer.peer_id, [signer.peer_id]), settings=RoutingSettings(),
                  faults=faults, knowledge=knowledge)
    return asker, MeshA2A(asker, tasks, network_id="test", version="test"), faults, store


def _question(timeout: float = 30.0) -> Message:
    return Message(role="user", parts=(TextPart(QUESTION),), message_id="q",
                   metadata={TIMEOUT_KEY: timeout})


async def _stream(mesh: MeshA2A, message: Message) -> list[StreamEvent]:
    return [event async for event in mesh.stream(message)]


def _final(events: list[StreamEvent]) -> TaskStatusUpdateEvent:
    final = events[-1]
    assert isinstance(final, TaskStatusUpdateEvent) and final.final
    return final


async def test_an_embedder_outage_fails_the_ask_clearly_and_mesh_a2a_goes_on() -> None:
    embedder = Embedder()
    asker, mesh, faults, _ = _node(embedder)
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        ok = _final(await _stream(mesh, _question()))
        assert ok.status.state == TaskState.COMPLETED

        embedder.failing = True
        failed = _final(await _stream(mesh, _question()))
        assert failed.status.state == TaskState.FAILED
        assert failed.status.message is not None
        reason = failed.status.message.text
        assert "embedder failed" in reason and "503" in reason
        assert faults.counts() == {"embedder": 1}
        with pytest.raises(AskError, match="embedder failed"):
            await asker.ask(QUESTION)

        embedder.failing = False  # the endpoint is back: so are the answers
        again = _final(await _stream(mesh, _question()))
        assert again.status.state == TaskState.COMPLETED
        nursery.cancel_scope.cancel()


async def test_the_deadline_covers_relevance_scoring_and_abandons_the_embedder() -> None:
    embedder = Embedder()
    embedder.hang_from_call = 1
    asker, _, _, _ = _node(embedder)
    try:
        with pytest.raises(AskError, match=r"deadline of 0\.5 s passed while scoring relevance"):
            await asker.ask(QUESTION, timeout=0.5)
        # The ask did not wait for the embedder: its thread is still in the call.
        assert embedder.hung_calls_finished == 0
    finally:
        embedder.release.set()


async def test_the_deadline_covers_the_quality_check() -> None:
    # The answer carries no records: the check reads them from this node's memory, which hangs.
    asker, _, _, store = _node(Embedder(), carry=False)
    store.hanging = True
    with pytest.raises(AskError, match="passed while asking agents and checking"):
        await asker.ask(QUESTION, timeout=2.0)


async def test_a_failing_quality_check_leaves_the_answer_unrated() -> None:
    asker, _, faults, store = _node(Embedder(), carry=False)
    store.failing = True
    with pytest.raises(AskError) as failed:
        await asker.ask(QUESTION)
    # The answer stays "completed" (our memory failing is no evidence against the agent
    # that answered), unrated, so not taken.
    assert "milvus-expert: completed quality check failed" in str(failed.value)
    assert "disk failure" in str(failed.value)
    assert faults.counts() == {"memory": 1}
    store.failing = False  # memory is back: the same answer is checked and taken
    result = await asker.ask(QUESTION)
    assert result["answer"]["faithfulness"] == 1.0


class BrokenAnswerer(QuotingAnswerer):
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
        raise self.error


async def test_an_agent_that_raises_fails_its_task_and_is_counted() -> None:
    asker, _, faults, _ = _node(Embedder())
    for error, where, reason in (
        # An unexpected error: its type only (the reason may go to a peer; details are logged).
        (RuntimeError("a bug in answering"), "a2a task", "internal error (RuntimeError)"),
        (LLMError("rate_limited", "the LLM is rate limiting us"), "llm", "rate limiting us"),
    ):
        asker.tasks.answerer = BrokenAnswerer(error)
        message = Message(role="user", parts=(TextPart(QUESTION),), message_id="q",
                          metadata={AGENT_KEY: SPEC.name})
        task = await asker.tasks.run_task(message, owner=OPERATOR)
        assert task.status.state == TaskState.FAILED
        assert task.status.message is not None and reason in task.status.message.text
        assert faults.counts()[where] == 1


async def test_a_mesh_ask_can_be_canceled_while_agents_work() -> None:
    embedder = Embedder()
    asker, mesh, _, _ = _node(embedder)
    asked = trio.Event()

    class SlowAnswerer(QuotingAnswerer):
        async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
            asked.set()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    asker.tasks.answerer = SlowAnswerer(asker.membership.signer)
    events: list[StreamEvent] = []
    streamed = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)

        async def ask() -> None:
            events.extend(await _stream(mesh, _question()))
            streamed.set()

        nursery.start_soon(ask)
        await asked.wait()
        operator = mesh.handler(OPERATOR)
        ask_id = next(t.id for t in await operator.list_tasks(ListTasks())
                      if t.history[0].message_id == "q")
        canceled = await operator.cancel_task(CancelTask(ask_id))
        assert canceled.status.state == TaskState.CANCELED
        with trio.fail_after(10):
            await streamed.wait()
        nursery.cancel_scope.cancel()
    assert _final(events).status.state == TaskState.CANCELED
    assert (await operator.get_task(GetTask(ask_id))).status.state == TaskState.CANCELED
