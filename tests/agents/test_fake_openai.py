"""The fake OpenAI server itself, driven by the real openai client: what other suites rely on."""

from __future__ import annotations

import openai
import pytest

from memory.embedders import OpenAIEmbedder
from memory.errors import EmbedderError
from tests.fakes.openai_server import FakeOpenAI


def client(server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=5)


def test_streaming_chat(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "streamed words arrive in order [1]"
    stream = client(fake_openai).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "streamed words arrive in order [1]"
    assert fake_openai.chat_requests[0].body["stream"] is True


def test_reply_may_depend_on_the_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = lambda body: f"model was {body['model']}"
    response = client(fake_openai).chat.completions.create(
        model="m-7", messages=[{"role": "user", "content": "hi"}]
    )
    assert response.choices[0].message.content == "model was m-7"


def test_embeddings_work_with_the_openai_embedder(fake_openai: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder("fake-embed", dim=16, base_url=fake_openai.base_url, api_key="k",
                              max_retries=0)
    first, second, again = embedder.embed(["alpha", "beta", "alpha"])
    assert len(first) == 16 and first == again and first != second
    assert abs(sum(x * x for x in first) - 1.0) < 1e-9
    (request,) = fake_openai.requests
    assert request.path == "/v1/embeddings" and request.body["input"] == ["alpha", "beta",
                                                                          "alpha"]
    fake_openai.mode = "server_error"
    with pytest.raises(EmbedderError, match="embedding endpoint failed"):
        embedder.embed(["x"])


def test_unknown_routes_are_404(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client(fake_openai).completions.create(model="m", prompt="x")


def test_an_embeddings_outage_leaves_chat_working(fake_openai: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder("fake-embed", dim=16, base_url=fake_openai.base_url, api_key="k",
                              max_retries=0)
    fake_openai.embeddings_mode = "server_error"
    with pytest.raises(EmbedderError, match="500"):
        embedder.embed(["x"])
    reply = client(fake_openai).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    fake_openai.embeddings_mode = None  # recovered
    assert len(embedder.embed(["x"])[0]) == 16


def test_an_input_over_the_context_length_is_refused(fake_openai: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder("fake-embed", dim=16, base_url=fake_openai.base_url, api_key="k",
                              max_retries=0)
    fake_openai.max_input_chars = 100
    assert len(embedder.embed(["short"])[0]) == 16
    with pytest.raises(EmbedderError, match="maximum context length"):
        embedder.embed(["short", "x" * 101])
    fake_openai.max_input_chars = None
    assert len(embedder.embed(["x" * 101])[0]) == 16
