"""Text handling for answers: question keywords and their rarity, the prose sentences of
Markdown passages, snippets of records, ``[n]`` citation markers, and texts cut to the
limits of a memory record."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memory.embedders import STOPWORDS, stem
from protocols.records import MAX_META_VALUE_LEN, MAX_TEXT_BYTES

SNIPPET_CHARS = 200

_WORD = re.compile(r"[^\W_]+")  # "IVF_FLAT" is two keywords, like "IVF-FLAT"
# Function words and question filler: sharing only these says nothing about relevance.
_STOPWORDS = STOPWORDS | frozenset(
    {
        "vs", "versus", "between", "difference", "explain", "tell", "please", "use", "using",
        "used", "get", "make", "way", "best", "good", "work", "works", "need", "want", "know",
        "thing", "things", "like", "one", "two",
    }
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
# A citation: [3] or [1, 2], not x[0] (code) nor [2024] (a year); with the blanks before it.
_MARKERS = re.compile(r"[ \t]*(?<![\w)])\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")
_PRONOUN_START = re.compile(r"^(It|Its|This|That|These|Those|They|Their|Then|So|Both)\b")


def _terms(text: str) -> set[str]:
    return {
        stem(w) for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS and len(w) > 1
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
