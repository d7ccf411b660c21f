"""Fixtures of the ask tests: Milvus Lite stores holding the demo knowledge bases and the
fake OpenAI server, shared with the agent tests."""

from tests.agents.conftest import fake_openai, kb_store, llm_settings, signer, store

__all__ = ["fake_openai", "kb_store", "llm_settings", "signer", "store"]
