"""Is an answer grounded? Per-sentence faithfulness, passage relevance and echo detection.

Pure text functions (no I/O), shared by the agents that write answers and by the askers
that judge them, so that both sides apply the same rules:

- :func:`passage_of`: the part of a record that may be served as an answer. A solution
  record (``problem_solutions``) is "Problem: <question> / Solution: <answer>": only the
  answer part may be quoted or cited, never the question it records. An exchange log
  (``collaboration_history``) likewise offers only its answer part.
- :func:`claims`: an answer's sentences, each with the citation numbers ``[n]`` that back
  it. A sentence with no marker of its own is backed by the next marker of its paragraph
  (extractive answers cite a group of quoted sentences once, at its end); a sentence after
  the last marker of its paragraph is uncited.
- :func:`support`: how much of a sentence a passage contains: the share of the sentence's
  keywords found in the passage (1.0 for a quotation). A sentence is supported when some
  passage it cites reaches :data:`SUPPORTED` (see bench/RESULTS.md, "Answer quality").
- :func:`restates`: whether a sentence merely restates the question (an echo): it holds
  (nearly) all of the question's keywords and adds none of its own (labels such as
  "Problem:" aside). Such a sentence never counts as supported, whatever it cites, and
  neither does a question.
- :func:`coverage`: how much of the question a passage is about: the share of the
  question's keywords found in the passage; relevant from :data:`RELEVANT`.
- :func:`check_answer`: all of the above for one answer and its cited passages.

Keywords are the words of :func:`meshnode.agents.passages._terms` (no stopwords, crudely
stemmed) cut to their first :data:`KEY_LEN` letters, so that "deploy", "deployment" and
"deployed" meet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshnode.agents.passages import _MARKERS, _terms

#: A sentence is supported by a passage holding this share of its keywords. Quotations score
#: 1.0; a paraphrase that keeps the passage's technical terms scores 0.6-0.9; a claim the
#: passage does not make shares only its topic words (0.2-0.5). Tuned on bench/eval.
SUPPORTED = 0.6
#: A passage holding this share of the question's keywords is relevant to it.
RELEVANT = 0.5
#: A sentence holding this share of the question's keywords, and no other keyword,
#: restates it. ("HNSW is the Milvus index for low-latency search." answers "Which Milvus
#: index gives low-latency search?" with one new keyword: a short answer, not an echo.)
RESTATE_COVER = 0.8
KEY_LEN = 6
#: Fixed notices of this project's agents: statements about the answer, not claims.
NOTICES = (
    "No LLM is configured on this node, so this answer is extracted from its memory: "
    "the passages that best match the question, quoted with their sources.",
)
_SOLUTION = re.compile(r"(?:^|\n)\s*Solution:\s*", re.IGNORECASE)
_EXCHANGE_ANSWER = re.compile(r"(?:^|\n)\s*Answer from [^:\n]{1,80}:\s*")
_LABEL = re.compile(r"\b(?:Problem|Question|Solution|Answer)\s*:", re.IGNORECASE)
# A run of markers right after the end of a sentence belongs to that sentence.
_MARKERS_AFTER_STOP = re.compile(r"([.!?])((?:[ \t]*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def keys(text: str) -> set[str]:
    """The keywords of ``text`` as compared here."""
    return {term[:KEY_LEN] for term in _terms(text)}


def passage_of(collection: str, kind: str, text: str) -> str:
    """The part of a record that may be served as (part of) an answer; "" for none."""
    if collection == "problem_solutions":
        found = _SOLUTION.search(text)
        if found is not None:
            return text[found.end():].strip()
        # Not in the solution format: whatever is not the recorded problem.
        return "\n".join(ln for ln in text.splitlines()
                         if not ln.lstrip().lower().startswith("problem:")).strip()
    if collection == "collaboration_history":
        found = _EXCHANGE_ANSWER.search(text)
        return text[found.end():].strip() if found is not None else ""
    return text


@dataclass(frozen=True, slots=True)
class Claim:
    text: str  # the sentence without its markers
    cites: tuple[int, ...]  # citation numbers (1-based) backing it


def _strip_notices(text: str) -> str:
    text = text.strip()
    for notice in NOTICES:
        if text.startswith(notice):
            text = text[len(notice):].strip()
    return text


def claims(text: str) -> list[Claim]:
    """The sentences of an answer with the citations backing each (see the module doc)."""
    out: list[Claim] = []
    for paragraph in re.split(r"\n\s*\n", _strip_notices(text)):
        paragraph = _MARKERS_AFTER_STOP.sub(r"\2\1", " ".join(paragraph.split()))
        pending: list[str] = []
        for sentence in _SENTENCE_END.split(paragraph):
            cites = tuple(dict.fromkeys(
                int(n) for run in _MARKERS.findall(sentence) for n in run.split(",")))
            bare = _MARKERS.sub("", sentence).strip()
            if not keys(bare):
                continue  # no content words: "Yes.", a lone marker, punctuation
            if not cites:
                pending.append(bare)
                continue
            out.extend(Claim(p, cites) for p in pending)
            pending.clear()
            out.append(Claim(bare, cites))
        out.extend(Claim(p, ()) for p in pending)
    return out


def support(sentence: str, passage: str) -> float:
    """The share (0..1) of ``sentence``'s keywords that ``passage`` contains."""
    return _share(keys(_LABEL.sub(" ", sentence)), keys(passage))


def _share(wanted: set[str], have: set[str]) -> float:
    return len(wanted & have) / len(wanted) if wanted else 0.0


def coverage(question: str, passage: str) -> float:
    """The share (0..1) of ``question``'s keywords that ``passage`` contains."""
    return _share(keys(question), keys(passage))


def restates(sentence: str, question: str) -> bool:
    """Whether ``sentence`` only says the question again (or is itself a question)."""
    if sentence.rstrip().endswith("?"):
        return True
    asked = keys(question)
    said = keys(_LABEL.sub(" ", sentence))
    if not asked or not said:
        return False
    return not said - asked and len(asked & said) / len(asked) >= RESTATE_COVER


@dataclass(frozen=True, slots=True)
class SentenceCheck:
    text: str
    cites: tuple[int, ...]
    support: float  # the best support among the usable passages it cites
    supported: bool
    relevant: bool  # supported by a passage relevant to the question
    why: str  # "" when supported, else why not

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "cites": list(self.cites), "support": round(self.support, 3),
                "supported": self.supported, "why": self.why}


@dataclass(frozen=True, slots=True)
class Grounding:
    """The checks of one answer against its cited passages."""

    sentences: tuple[SentenceCheck, ...]
    relevant_passages: tuple[bool, ...]  # per citation: relevant to the question
    usable_passages: tuple[bool, ...]  # per citation: its record could be checked

    @property
    def faithfulness(self) -> float:
        """The share of sentences supported by a passage they cite (0 with no sentence)."""
        n = len(self.sentences)
        return sum(s.supported for s in self.sentences) / n if n else 0.0

    @property
    def retrieval_precision(self) -> float:
        """The share of cited passages relevant to the question (0 with no citation)."""
        n = len(self.relevant_passages)
        return sum(self.relevant_passages) / n if n else 0.0

    @property
    def quality(self) -> float:
        """The share of sentences supported by a cited passage relevant to the question:
        faithful and on topic. An echo, an uncited answer or one quoting passages about
        something else scores 0."""
        n = len(self.sentences)
        return sum(s.relevant for s in self.sentences) / n if n else 0.0

    def supported_text(self) -> str:
        """The supported sentences, in order, without markers."""
        return " ".join(s.text for s in self.sentences if s.supported)

    def supporting(self) -> list[int]:
        """The citation numbers that back some supported sentence, in order."""
        return list(dict.fromkeys(n for s in self.sentences if s.supported for n in s.cites))


def check_answer(
    question: str, text: str, passages: Sequence[str | None],
    recalled: Sequence[bool] | None = None,
) -> Grounding:
    """Check ``text`` against ``passages`` (citation n is ``passages[n - 1]``; None when its
    record is missing, forged or unverifiable). A passage is relevant when it holds
    :data:`RELEVANT` of the question's keywords, or when ``recalled[n - 1]`` (the checker's
    own retrieval found that record relevant to the question)."""
    asked = keys(question)
    have = [keys(p) if p else None for p in passages]
    recalled = recalled or [False] * len(passages)
    relevant = tuple(h is not None and (_share(asked, h) >= RELEVANT or r)
                     for h, r in zip(have, recalled, strict=True))
    checked: list[SentenceCheck] = []
    for claim in claims(text):
        said = keys(_LABEL.sub(" ", claim.text))
        scores = {n: _share(said, h) for n in claim.cites
                  if 1 <= n <= len(have) and (h := have[n - 1]) is not None}
        usable = list(scores)
        best = max(scores.values(), default=0.0)
        backing = [n for n, s in scores.items() if s >= SUPPORTED]
        if restates(claim.text, question):
            why = "restates the question"
        elif not claim.cites:
            why = "cites nothing"
        elif not usable:
            why = "cites no record that could be checked"
        elif not backing:
            why = f"not supported by what it cites (best {best:.2f})"
        else:
            why = ""
        ok = not why
        checked.append(SentenceCheck(claim.text, claim.cites, best, ok,
                                     ok and any(relevant[n - 1] for n in backing), why))
    return Grounding(tuple(checked), relevant, tuple(p is not None for p in passages))


def supported_ids(grounding: Grounding, ids: Iterable[str]) -> list[str]:
    """The ids (in citation order) of the records that back a supported sentence."""
    by_number = dict(enumerate(ids, 1))
    return [by_number[n] for n in grounding.supporting() if n in by_number]
