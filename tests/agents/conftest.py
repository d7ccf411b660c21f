"""Fixtures of the agent tests: the fake OpenAI server, and Milvus Lite stores holding the
demo knowledge bases (ingested exactly as `meshnode memory ingest` would)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from memory.embedders import HashingEmbedder
from memory.ingest import IngestManifest, ingest
from memory.store import MemoryStore
from meshnode.agents.llm import LLMSettings
from meshnode.agents.specs import data_path
from protocols.peerid import Signer
from tests.fakes.knowledge import LocalKnowledge
from tests.fakes.openai_server import FakeOpenAI

TENANT = "dev-support"



@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def llm_settings(fake_openai: FakeOpenAI) -> LLMSettings:
    return LLMSettings(
        base_url=fake_openai.base_url, api_key="test-key", model="fake-model", timeout_s=10.0
    )


@pytest.fixture
def signer() -> Signer:
    return Signer.from_seed(bytes(range(32)))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    """An empty Milvus Lite store."""
    async with MemoryStore(
        str(tmp_path / "memory.db"), tenant=TENANT, embedder=HashingEmbedder()
    ) as opened:
        yield opened


@pytest.fixture
async def kb_store(store: MemoryStore, signer: Signer, tmp_path: Path) -> MemoryStore:
    """The store with the three demo knowledge bases in expert_knowledge."""
    manifest = IngestManifest(tmp_path / "ingest-manifest.json")
    report, _ = await ingest(store, manifest, signer, [data_path("kb")], agent="")
    assert report.changed >= 12 and report.records > 0
    return store


@pytest.fixture
def knowledge(store: MemoryStore, signer: Signer) -> LocalKnowledge:
    return LocalKnowledge(store, signer)
