"""The agents a node hosts: their specs (from the config), and how they answer questions.

An agent is an :class:`AgentSpec`: a name, a description, instructions for the LLM, the
skills it advertises (which the router embeds to judge relevance, see :func:`skill_text`),
the memory collections it reads, and whether it writes what it learns back to memory.

One :class:`Answerer` per node answers for all of its agents: it retrieves the most relevant
records from the agent's collections, then either asks the LLM to answer from those
numbered passages with ``[n]`` citations, or, with no LLM configured, answers extractively:
it quotes the sentences of the retrieved records that best match the question, cites them,
and says plainly that it did so. With nothing relevant in memory it says that instead of
inventing an answer. In both modes citation ``[n]`` of ``Answer.text`` is
``Answer.citations[n - 1]``.

:meth:`Answerer.record_exchange` writes the question and answer to collaboration history
and, once accepted, the solution to ``problem_solutions``, through a ``write`` callback (the
node's ``KnowledgeService.add``): this module never signs or stores records itself.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import trio

from memory.errors import MemoryStoreError
from memory.store import MAX_K, MemoryStore, SearchHit
from meshnode.errors import ConfigError, MeshnodeError
from meshnode.llm import LLMClient
from protocols.records import (
    COLLECTIONS,
    MAX_AGENT_LEN,
    MAX_META_VALUE_LEN,
    MAX_TEXT_BYTES,
    MemoryRecord,
    MetaValue,
)

log = logging.getLogger("meshnode.agents")

# ---- specs ---------------------------------------------------------------------------------

DEFAULT_READS = ("expert_knowledge", "problem_solutions")
MAX_AGENTS = 32
MAX_SKILLS = 32
MAX_TAGS = 32
MAX_EXAMPLES = 16
MAX_DESCRIPTION = 1000
MAX_INSTRUCTIONS = 8000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class SkillSpec:
    id: str
    name: str
    description: str
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    description: str
    instructions: str
    skills: tuple[SkillSpec, ...]
    reads: tuple[str, ...] = DEFAULT_READS
    writes: bool = True


AGENTS_TEMPLATE = """\
# Agents hosted by this node: one [[agents]] table each, with its skills as
# [[agents.skills]] tables below it. Remove the leading "# " of a block to use it.
# With no agents the node still routes questions to the rest of the mesh.
#
# [[agents]]
# # Unique on this node: letters, digits, '-', '_', '.' (at most 64 characters).
# name = "python-expert"
# # What this agent is good at, in one or two sentences (shown in its agent card).
# description = "Answers questions about Python packaging, typing, testing and concurrency."
# # Guidance given to the LLM before every question (optional; default from description).
# instructions = "You are a senior Python engineer. Answer precisely and briefly."
# # Memory collections the agent answers from: any of expert_knowledge,
# # problem_solutions, collaboration_history (default: the first two).
# reads = ["expert_knowledge", "problem_solutions"]
# # Whether its exchanges and accepted solutions are written back to shared memory.
# writes = true
#
# [[agents.skills]]
# # Unique within the agent: letters, digits, '-', '_', '.' (default: from name).
# id = "python-packaging"
# name = "Python packaging"
# description = "Virtual environments, pip, pyproject.toml, building and publishing."
# # Keywords and sample questions; the router compares questions with all of these.
# tags = ["python", "pip", "venv", "pyproject"]
# examples = ["Why does pip say externally-managed-environment?"]
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:MAX_AGENT_LEN] or "skill"


class _Table:
    """Typed access to one TOML table; every error names the key by its full path."""

    def __init__(self, data: Any, where: str, known: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table, got {_shown(data)}")
        self.data = data
        self.where = where
        allowed = set(known)
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{where}.{key}: unknown setting (known: {', '.join(sorted(allowed))})"
                )

    def text(
        self, key: str, *, max_len: int, default: str | None = None, pattern: bool = False
    ) -> str:
        where = f"{self.where}.{key}"
        if key not in self.data:
            if default is None:
                raise ConfigError(f"{where}: required")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_shown(value)}")
        value = value.strip()
        if not 1 <= len(value) <= max_len:
            raise ConfigError(f"{where}: must be 1 to {max_len} characters, got {len(value)}")
        if pattern and not _NAME.fullmatch(value):
            raise ConfigError(
                f"{where}: {value!r} must start with a letter or digit and contain only "
                "letters, digits, '-', '_' and '.'"
            )
        return value

    def texts(
        self, key: str, *, max_items: int, max_len: int, default: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        where = f"{self.where}.{key}"
        if key not in self.data:
            return default
        values = self.data[key]
        if not isinstance(values, list):
            raise ConfigError(f"{where}: expected a list of strings, got {_shown(values)}")
        if len(values) > max_items:
            raise ConfigError(f"{where}: at most {max_items} entries, got {len(values)}")
        out: list[str] = []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ConfigError(f"{where}[{i}]: expected a string, got {_shown(value)}")
            if not 1 <= len(value.strip()) <= max_len:
                raise ConfigError(f"{where}[{i}]: must be 1 to {max_len} characters")
            out.append(value.strip())
        return tuple(out)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}.{key}: expected true or false, got {_shown(value)}")
        return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_AGENT_KEYS = ("name", "description", "instructions", "skills", "reads", "writes")
_SKILL_KEYS = ("id", "name", "description", "tags", "examples")


def _skill(data: Any, where: str) -> SkillSpec:
    t = _Table(data, where, _SKILL_KEYS)
    name = t.text("name", max_len=100)
    return SkillSpec(
        id=t.text("id", max_len=MAX_AGENT_LEN, default=_slug(name), pattern=True),
        name=name,
        description=t.text("description", max_len=MAX_DESCRIPTION),
        tags=t.texts("tags", max_items=MAX_TAGS, max_len=64),
        examples=t.texts("examples", max_items=MAX_EXAMPLES, max_len=500),
    )


def _agent(data: Any, where: str) -> AgentSpec:
    t = _Table(data, where, _AGENT_KEYS)
    name = t.text("name", max_len=MAX_AGENT_LEN, pattern=True)
    description = t.text("description", max_len=MAX_DESCRIPTION)
    instructions = t.text(
        "instructions", max_len=MAX_INSTRUCTIONS, default=f"You are {name}. {description}"
    )
    raw_skills = data.get("skills")
    if raw_skills is None:
        raise ConfigError(f"{where}.skills: required (add at least one [[agents.skills]] table)")
    if not isinstance(raw_skills, list) or not raw_skills:
        raise ConfigError(f"{where}.skills: expected one or more [[agents.skills]] tables")
    if len(raw_skills) > MAX_SKILLS:
        raise ConfigError(f"{where}.skills: at most {MAX_SKILLS} skills, got {len(raw_skills)}")
    skills = tuple(_skill(s, f"{where}.skills[{j}]") for j, s in enumerate(raw_skills))
    seen: dict[str, int] = {}
    for j, skill in enumerate(skills):
        if skill.id in seen:
            raise ConfigError(
                f"{where}.skills[{j}].id: {skill.id!r} is already the id of "
                f"{where}.skills[{seen[skill.id]}] (give each skill a distinct id)"
            )
        seen[skill.id] = j
    reads = t.texts("reads", max_items=len(COLLECTIONS), max_len=64, default=DEFAULT_READS)
    if not reads:
        raise ConfigError(f"{where}.reads: name at least one collection")
    for i, name_ in enumerate(reads):
        if name_ not in COLLECTIONS:
            raise ConfigError(
                f"{where}.reads[{i}]: unknown collection {name_!r} (use {', '.join(COLLECTIONS)})"
            )
    if len(set(reads)) != len(reads):
        raise ConfigError(f"{where}.reads: a collection is listed twice")
    return AgentSpec(name, description, instructions, skills, reads, t.flag("writes", True))


def agents_from_config(tables: Any, *, where: str) -> tuple[AgentSpec, ...]:
    """Parse the ``[[agents]]`` array of tables (``tables`` is its TOML value; None means no
    agents). ``where`` prefixes every error, e.g. ``"/home/n/config.toml: agents"``."""
    if tables is None:
        return ()
    if isinstance(tables, dict):
        raise ConfigError(f"{where}: write each agent as an [[agents]] table, not [agents]")
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: expected [[agents]] tables, got {_shown(tables)}")
    if len(tables) > MAX_AGENTS:
        raise ConfigError(f"{where}: at most {MAX_AGENTS} agents per node, got {len(tables)}")
    agents = tuple(_agent(data, f"{where}[{i}]") for i, data in enumerate(tables))
    seen: dict[str, int] = {}
    for i, agent in enumerate(agents):
        key = agent.name.casefold()
        if key in seen:
            raise ConfigError(
                f"{where}[{i}].name: {agent.name!r} is already the name of {where}[{seen[key]}]"
                " (agent names are unique per node, ignoring case)"
            )
        seen[key] = i
    return agents


def load_agents_file(path: Path) -> tuple[AgentSpec, ...]:
    """Agents from a TOML file holding only ``[[agents]]`` tables (like the demo's)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    extra = sorted(set(data) - {"agents"})
    if extra:
        raise ConfigError(f"{path}: {extra[0]}: unknown setting (only [[agents]] belongs here)")
    return agents_from_config(data.get("agents", []), where=f"{path}: agents")


def data_path(*parts: str) -> Path:
    """A file or folder shipped in ``meshnode/data`` (the demo agents and knowledge bases)."""
    return Path(str(resources.files("meshnode").joinpath("data", *parts)))


def demo_agents() -> tuple[AgentSpec, ...]:
    """The demo's expert agents; each one's knowledge base is ``data_path("kb", topic)``
    where topic is the part of its name before ``-expert`` (python, milvus, devops)."""
    return load_agents_file(data_path("demo_agents.toml"))


def skill_text(spec: AgentSpec) -> list[str]:
    """One text per skill (name, description, tags, examples) for the router to embed;
    an agent without skills is described by its own description."""
    texts = []
    for skill in spec.skills:
        parts = [f"{skill.name}: {skill.description}"]
        if skill.tags:
            parts.append("Topics: " + ", ".join(skill.tags) + ".")
        if skill.examples:
            parts.append("Example questions: " + " ".join(skill.examples))
        texts.append(" ".join(parts))
    return texts or [f"{spec.name}: {spec.description}"]


# ---- answers -------------------------------------------------------------------------------


class AgentError(MeshnodeError):
    """An answer could not be produced for a reason other than the LLM (see LLMError):
    ``kind`` is "timeout" (the deadline passed while reading memory) or "memory"."""

    def __init__(self, kind: Literal["timeout", "memory"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Citation:
    id: str
    collection: str
    author: str
    score: float
    snippet: str


AnswerMode = Literal["llm", "extractive"]


@dataclass(frozen=True, slots=True)
class Answer:
    """An agent's answer. ``mode`` is "llm" when the LLM wrote ``text``, else "extractive"
    (quoted from memory, or the honest "nothing relevant" reply, which has no citations
    and so is not ``grounded``). Timings are wall-clock seconds."""

    text: str
    citations: tuple[Citation, ...]
    mode: AnswerMode
    model: str | None
    retrieval_s: float
    llm_s: float
    #: The text without the extractive preamble and with no [n] markers, as stored as a
    #: solution; empty when nothing relevant was found.
    body: str = field(default="", repr=False)

    @property
    def grounded(self) -> bool:
        """Whether the answer rests on at least one cited record."""
        return bool(self.citations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "mode": self.mode,
            "model": self.model,
            "citations": [
                {"id": c.id, "collection": c.collection, "author": c.author,
                 "score": round(c.score, 4), "snippet": c.snippet}
                for c in self.citations
            ],
            "retrieval_s": round(self.retrieval_s, 4),
            "llm_s": round(self.llm_s, 4),
        }


EXTRACTIVE_PREAMBLE = (
    "No LLM is configured on this node, so this answer is extracted from its memory: "
    "the passages that best match the question, quoted with their sources."
)
# Relevance of a retrieved record (see Answerer._retrieve). The similarities are those of
# the node's embedder; the thresholds suit the built-in hashing embedder and are lenient
# for sentence-transformers models, whose related texts score higher.
#: A hit sharing a keyword with the question is relevant from this cosine similarity on.
MIN_SCORE = 0.12
#: Hits at or above this score are relevant even without a shared keyword (paraphrases).
STRONG_SCORE = 0.45
#: A hit sharing this share of the question's keyword weight is relevant at any similarity.
LEXICAL_ALONE = 0.45
#: How much keyword overlap adds to similarity when ranking hits.
LEXICAL_WEIGHT = 0.5
MAX_PASSAGE_CHARS = 1500
MAX_CONTEXT_CHARS = 6000
MAX_EXTRACT_SENTENCES = 4
MAX_EXTRACT_CHARS = 900
SNIPPET_CHARS = 200

_WORD = re.compile(r"[^\W_]+")  # "IVF_FLAT" is two keywords, like "IVF-FLAT"
# Function words and question filler: sharing only these says nothing about relevance.
_STOPWORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for",
        "with", "from", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its",
        "this", "that", "these", "those", "i", "me", "my", "we", "our", "you", "your", "he", "she",
        "they", "them", "their", "what", "which", "who", "whom", "how", "why", "when", "where",
        "do", "does", "did", "doing", "have", "has", "had", "can", "could", "should", "would",
        "will", "shall", "may", "might", "must", "not", "no", "so", "than", "then", "there", "here",
        "into", "out", "up", "down", "over", "under", "about", "just", "also", "very", "too", "any",
        "some", "such", "only", "own", "same", "other", "each", "all", "both", "more", "most",
        "few", "again", "after", "before", "once", "while", "s", "t", "don", "doesn", "isn", "vs",
        "versus", "between", "difference", "explain", "tell", "please", "use", "using", "used",
        "get", "make", "way", "best", "good", "work", "works", "need", "want", "know", "thing",
        "things", "like", "one", "two",
    }
)
_SUFFIXES = ("ing", "ed", "es", "s")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
# A citation: [3] or [1, 2], not x[0] (code) nor [2024] (a year); with the blanks before it.
_MARKERS = re.compile(r"[ \t]*(?<![\w)])\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")
_PRONOUN_START = re.compile(r"^(It|Its|This|That|These|Those|They|Their|Then|So|Both)\b")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {
        _stem(w) for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS and len(w) > 1
    }


class _Idf:
    """Keyword rarity within a small pool of texts (inverse document frequency)."""

    def __init__(self, documents: Sequence[set[str]]) -> None:
        self._n = len(documents)
        self._df: Counter[str] = Counter(t for doc in documents for t in doc)

    def weight(self, term: str) -> float:
        return math.log((self._n + 1) / (self._df[term] + 0.5))

    def share(self, wanted: set[str], shared: set[str]) -> float:
        """The weight of ``shared`` as a share (0..1) of the weight of ``wanted``."""
        total = sum(self.weight(t) for t in wanted)
        return sum(self.weight(t) for t in shared) / total if total > 0 else 0.0


def _compact(text: str) -> str:
    return " ".join(text.split())


def _snippet(text: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    compact = _compact(" ".join(lines)) or _compact(text)
    if len(compact) <= SNIPPET_CHARS:
        return compact
    cut = compact.rfind(" ", 0, SNIPPET_CHARS - 1)
    return compact[: cut if cut > SNIPPET_CHARS // 2 else SNIPPET_CHARS - 1] + "…"


@dataclass(slots=True)
class _Sentence:
    text: str
    passage: int  # index into the relevant hits
    position: int  # order within its passage
    score: float = 0.0
    shares: bool = False  # has a keyword of the question


def _sentences(text: str) -> list[str]:
    """Prose sentences of a Markdown passage: no headings, no code blocks, list items alone."""
    blocks: list[str] = []
    current: list[str] = []
    fenced = False

    def close() -> None:
        if current:
            blocks.append(" ".join(current))
            current.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            close()
            fenced = not fenced
            continue
        stripped = line.strip()
        if fenced or not stripped or stripped.startswith("#"):
            close()
            continue
        if _LIST_ITEM.match(line):
            close()
            stripped = _LIST_ITEM.sub("", line).strip()
        current.append(stripped)
    close()
    out = []
    for block in blocks:
        for sentence in _SENTENCE_SPLIT.split(block.replace("**", "")):
            sentence = sentence.strip()
            # A chunk that starts mid-sentence (ingest overlap) begins with a fragment.
            if (
                25 <= len(sentence) <= 600
                and (sentence[0].isupper() or sentence[0] in "`\"(")
                and not sentence.endswith(":")  # it introduced a code block or list
            ):
                out.append(sentence)
    return out


def _renumber(text: str, given: int) -> tuple[str, list[int]]:
    """Keep only markers of passages 1..``given``, renumbered by first appearance; returns
    the new text and, for each new number, the original passage index (0-based)."""
    order: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = []
        for raw in match.group(1).split(","):
            n = int(raw)
            if 1 <= n <= given:
                if n - 1 not in order:
                    order.append(n - 1)
                new = order.index(n - 1) + 1
                if new not in numbers:
                    numbers.append(new)
        if not numbers:
            return ""
        blanks = match.group(0)[: match.start(1) - 1 - match.start(0)]
        return blanks + "".join(f"[{n}]" for n in numbers)

    return _MARKERS.sub(replace, text).strip(), order


def _strip_markers(text: str) -> str:
    return _MARKERS.sub("", text).strip()


WriteFn = Callable[..., Awaitable[MemoryRecord]]


class Answerer:
    """Answers questions for the agents of one node; see the module docstring."""

    def __init__(
        self,
        store: MemoryStore,
        llm: LLMClient | None,
        *,
        k: int = 5,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if not 1 <= k <= 50:
            raise ValueError(f"k must be in 1..50, got {k}")
        self.store = store
        self.llm = llm
        self.k = k
        self._limiter = limiter or trio.CapacityLimiter(2)

    # -- retrieval ------------------------------------------------------------------------

    async def retrieve(self, spec: AgentSpec, question: str) -> list[SearchHit]:
        """The records of the agent's collections relevant to ``question``, best first."""
        return [hit for _, hit in await self._retrieve(spec, question)]

    async def _retrieve(self, spec: AgentSpec, question: str) -> list[tuple[float, SearchHit]]:
        """(relevance, hit) for the records of the agent's collections relevant to
        ``question``, best first, without duplicates: at most ``k``, possibly none.

        A wide pool of nearest neighbours is re-ranked by similarity plus keyword overlap
        weighted by rarity within the pool (so "HNSW" counts for more than "Milvus"), and a
        record must share a keyword with the question unless its similarity is high.
        """
        pool_size = min(max(8 * self.k, 40), MAX_K)
        pool: list[SearchHit] = []
        for collection in spec.reads:
            pool.extend(await self.store.search(question, k=pool_size, collection=collection))
        unique: dict[str, SearchHit] = {}
        for hit in sorted(pool, key=lambda h: (-h.score, h.record.id)):
            unique.setdefault(_compact(hit.record.text), hit)
        hits = [hit for text, hit in unique.items() if text]
        wanted = _terms(question)
        terms = [_terms(hit.record.text) for hit in hits]
        idf = _Idf(terms)
        ranked: list[tuple[float, SearchHit]] = []
        for hit, have in zip(hits, terms, strict=True):
            shared = wanted & have
            lexical = idf.share(wanted, shared)
            relevant = hit.score >= STRONG_SCORE or (
                bool(shared) and (hit.score >= MIN_SCORE or lexical >= LEXICAL_ALONE)
            )
            if relevant:
                ranked.append((hit.score + LEXICAL_WEIGHT * lexical, hit))
        ranked.sort(key=lambda pair: (-pair[0], pair[1].record.id))
        return ranked[: self.k]

    # -- answering ------------------------------------------------------------------------

    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
        """Answer ``question`` as ``spec`` within ``deadline_s`` seconds.

        Raises LLMError when the LLM fails (any kind, including its share of the deadline)
        and AgentError when memory cannot be read in time or at all.
        """
        question = question.strip()
        deadline = trio.current_time() + deadline_s
        started = time.perf_counter()
        try:
            with trio.fail_after(max(deadline_s, 0.0)):
                ranked = await self._retrieve(spec, question)
        except trio.TooSlowError:
            raise AgentError("timeout", "reading memory took longer than the deadline") from None
        except MemoryStoreError as exc:
            raise AgentError("memory", f"cannot read memory: {exc}") from exc
        retrieval_s = time.perf_counter() - started
        hits = [hit for _, hit in ranked]
        if not hits:
            return self._nothing(spec, retrieval_s)
        if self.llm is None:
            top = ranked[0][0]
            weights = [relevance / top if top > 0 else 1.0 for relevance, _ in ranked]
            return await self._extractive(question, hits, weights, deadline, retrieval_s)
        return await self._with_llm(self.llm, spec, question, hits, deadline, retrieval_s)

    def _nothing(self, spec: AgentSpec, retrieval_s: float) -> Answer:
        searched = ", ".join(spec.reads)
        text = (
            f"I found nothing relevant to this question in this node's memory (searched: "
            f"{searched}), so I cannot answer it rather than guess."
        )
        if self.llm is None:
            text += " No LLM is configured on this node; answers come only from memory."
        return Answer(text, (), "extractive", None, retrieval_s, 0.0)

    async def _with_llm(
        self,
        llm: LLMClient,
        spec: AgentSpec,
        question: str,
        hits: list[SearchHit],
        deadline: float,
        retrieval_s: float,
    ) -> Answer:
        passages: list[str] = []
        used: list[SearchHit] = []
        room = MAX_CONTEXT_CHARS
        for hit in hits:
            text = hit.record.text.strip()[:MAX_PASSAGE_CHARS]
            if used and len(text) > room:
                break
            used.append(hit)
            passages.append(f"[{len(used)}] (from {hit.collection})\n{text}")
            room -= len(text)
        system = (
            f"{spec.instructions}\n\n"
            f"You are the agent {spec.name!r} on a peer-to-peer network of expert agents. "
            "Answer the question using only the numbered passages from shared memory that "
            "the user gives you. After each statement, cite the passages that support it by "
            "their numbers in square brackets, like [1] or [2][3]. If the passages do not "
            "contain the answer, say so plainly instead of guessing. Be concise."
        )
        user = "Passages:\n\n" + "\n\n".join(passages) + f"\n\nQuestion: {question}"
        started = time.perf_counter()
        reply = await llm.chat(
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            timeout=deadline - trio.current_time(),
        )
        llm_s = time.perf_counter() - started
        text, order = _renumber(reply, len(used))
        citations = tuple(self._citation(used[i]) for i in order)
        return Answer(text, citations, "llm", llm.model, retrieval_s, llm_s,
                      body=_strip_markers(text))

    @staticmethod
    def _citation(hit: SearchHit) -> Citation:
        r = hit.record
        return Citation(r.id, hit.collection, r.author, float(hit.score), _snippet(r.text))

    async def _extractive(
        self,
        question: str,
        hits: list[SearchHit],
        weights: list[float],
        deadline: float,
        retrieval_s: float,
    ) -> Answer:
        candidates: list[_Sentence] = []
        seen: set[str] = set()
        for p, hit in enumerate(hits):
            for position, text in enumerate(_sentences(hit.record.text)):
                key = text.casefold()
                if key not in seen:
                    seen.add(key)
                    candidates.append(_Sentence(text, p, position))
        if not candidates:  # relevant records, but no prose in them (e.g. only code)
            candidates = [
                _Sentence(_snippet(hit.record.text), p, 0) for p, hit in enumerate(hits)
            ]
        await self._score(question, candidates, weights, deadline)
        chosen = self._choose(candidates)
        chosen.sort(key=lambda s: (s.passage, s.position))
        parts: list[str] = []
        for i, sentence in enumerate(chosen):
            parts.append(sentence.text)
            last_of_group = i + 1 == len(chosen) or chosen[i + 1].passage != sentence.passage
            if last_of_group:
                parts.append(f"[{sentence.passage + 1}]")
        body, order = _renumber(" ".join(parts), len(hits))
        citations = tuple(self._citation(hits[i]) for i in order)
        return Answer(f"{EXTRACTIVE_PREAMBLE}\n\n{body}", citations, "extractive", None,
                      retrieval_s, 0.0, body=_strip_markers(body))

    async def _score(
        self, question: str, candidates: list[_Sentence], weights: list[float], deadline: float
    ) -> None:
        """Score sentences by embedding similarity to the question, shared keywords and
        the relevance (``weights``, 0..1) of the passage they come from. An embedder that
        fails or is too slow for the deadline leaves the keywords to decide."""
        similarity = [0.0] * len(candidates)
        texts = [question] + [c.text for c in candidates]
        embed = functools.partial(self.store.embedder.embed, texts)
        with trio.move_on_at(deadline):
            try:
                # Embedders hold no resources a late thread could misuse: safe to abandon.
                vectors = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                    embed, limiter=self._limiter, abandon_on_cancel=True
                )
                matrix = np.asarray(vectors, dtype=float)
                norms = np.linalg.norm(matrix, axis=1)
                norms[norms == 0] = 1.0
                unit = matrix / norms[:, None]
                similarity = (unit[1:] @ unit[0]).tolist()
            except Exception as exc:  # e.g. an embeddings endpoint failing
                log.info("sentence scoring without embeddings", extra={"error": str(exc)})
        wanted = _terms(question)
        terms = [_terms(c.text) for c in candidates]
        idf = _Idf(terms)
        for candidate, have, cosine in zip(candidates, terms, similarity, strict=True):
            candidate.shares = bool(wanted & have)
            overlap = idf.share(wanted, wanted & have)
            candidate.score = 0.4 * cosine + 0.4 * overlap + 0.2 * weights[candidate.passage]

    @staticmethod
    def _choose(candidates: list[_Sentence]) -> list[_Sentence]:
        ranked = sorted(candidates, key=lambda s: (-s.score, s.passage, s.position))
        best = ranked[0].score
        by_place = {(c.passage, c.position): c for c in candidates}
        chosen: list[_Sentence] = []
        size = 0

        def take(sentence: _Sentence) -> bool:
            nonlocal size
            if sentence in chosen:
                return True
            if chosen and size + len(sentence.text) > MAX_EXTRACT_CHARS:
                return False
            chosen.append(sentence)
            size += len(sentence.text) + 1
            return True

        for sentence in ranked:
            if len(chosen) >= MAX_EXTRACT_SENTENCES or (chosen and sentence.score < 0.65 * best):
                break
            if sentence in chosen or not (sentence.shares or sentence.score >= STRONG_SCORE):
                continue
            # "It ..." or "This ..." needs the sentence before it to make sense.
            before = by_place.get((sentence.passage, sentence.position - 1))
            needs_before = before is not None and _PRONOUN_START.match(sentence.text)
            if before is not None and needs_before and not take(before):
                continue
            take(sentence)
        return chosen

    # -- writing back ---------------------------------------------------------------------

    async def record_exchange(
        self,
        write: WriteFn,
        *,
        spec: AgentSpec,
        question: str,
        answer: Answer,
        asker: str,
        task_id: str,
        accepted: bool,
    ) -> list[MemoryRecord]:
        """Write the exchange to ``collaboration_history`` and, when ``accepted`` and the
        answer is grounded, the solution to ``problem_solutions``; nothing if the agent does
        not write. ``write`` is called like ``KnowledgeService.add(text, kind=,
        collection=, meta=, agent=)``. Returns the records written."""
        if not spec.writes:
            return []
        meta: dict[str, MetaValue] = {
            "asker": _meta_text(asker),
            "agent": _meta_text(spec.name),
            "task": _meta_text(task_id),
            "mode": answer.mode,
            "accepted": accepted,
        }
        if answer.model:
            meta["model"] = _meta_text(answer.model)
        if answer.citations:
            meta["sources"] = _id_list(c.id for c in answer.citations)
        agent = spec.name[:MAX_AGENT_LEN]
        exchange = await write(
            _fit(f"Question: {question.strip()}\n\nAnswer from {spec.name}: {answer.text}"),
            kind="exchange", collection="collaboration_history", meta=meta, agent=agent,
        )
        written = [exchange]
        if accepted and answer.grounded and answer.body:
            solution_meta: dict[str, MetaValue] = {
                k: v for k, v in meta.items() if k != "accepted"
            }
            solution_meta["exchange"] = exchange.id
            written.append(await write(
                _fit(f"Problem: {question.strip()}\n\nSolution: {answer.body}"),
                kind="solution", collection="problem_solutions", meta=solution_meta,
                agent=agent,
            ))
        return written


def _meta_text(value: str) -> str:
    return value[:MAX_META_VALUE_LEN]


def _id_list(ids: Iterable[str]) -> str:
    out = ""
    for record_id in ids:
        candidate = f"{out},{record_id}" if out else record_id
        if len(candidate) > MAX_META_VALUE_LEN:
            break
        out = candidate
    return out


def _fit(text: str) -> str:
    """``text`` cut to the record size limit (at a character boundary)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_TEXT_BYTES:
        return text
    return encoded[: MAX_TEXT_BYTES - 3].decode("utf-8", "ignore") + "…"


def describe_spec(spec: AgentSpec) -> dict[str, Any]:
    """A JSON-friendly view of an agent for the local API and ``meshnode agents``."""
    return {
        "name": spec.name,
        "description": spec.description,
        "reads": list(spec.reads),
        "writes": spec.writes,
        "skills": [
            {"id": s.id, "name": s.name, "description": s.description,
             "tags": list(s.tags), "examples": list(s.examples)}
            for s in spec.skills
        ],
    }

