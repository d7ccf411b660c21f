"""The asker's check of an answer, sentence by sentence: what it cites must exist (signed,
carried or held here) and support it, and the passages must be on the question. An echo,
an uncited or unfaithful answer and an invented citation score low; the LLM path (the real
openai client against the fake server) gets the same checks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from memory.store import MemoryStore
from meshnode.agents.answering import Answerer
from meshnode.agents.grounding import NOTICES, check_answer, claims, restates, support
from meshnode.agents.llm import LLMClient, LLMSettings
from meshnode.agents.specs import demo_agents
from meshnode.ask.quality import AnswerChecker, QualityBook
from protocols.peerid import Signer
from protocols.records import MemoryRecord, new_record, record_to_json
from tests.fakes.openai_server import FakeOpenAI

TENANT = "dev-support"
AUTHOR = Signer.from_seed(bytes(range(32)))
QUESTION = "How do I roll back a Kubernetes deployment?"
ROLLBACK = ("A rolling update replaces instances a few at a time. "
            "`kubectl rollout undo deployment/web` returns to the previous revision.")
CAKE = "Mix flour, sugar and cocoa, then bake the cake for forty minutes at 180 degrees."
_, MILVUS, DEVOPS = demo_agents()


def record(text: str, *, collection: str = "expert_knowledge", kind: str = "note",
           tenant: str = TENANT, seq: int = 1) -> MemoryRecord:
    return new_record(AUTHOR, collection=collection, tenant=tenant, text=text, kind=kind,
                      agent="", created=1.8e9, seq=seq)


def answer(text: str, *records: MemoryRecord, carry: bool = True) -> dict[str, Any]:
    return {"text": text,
            "citations": [{"id": r.id, "collection": r.collection} for r in records],
            "records": [record_to_json(r) for r in records] if carry else []}


async def check(data: dict[str, Any], question: str = QUESTION) -> Any:
    return await AnswerChecker(TENANT).check(question, data)


# ---- sentences and their citations ---------------------------------------------------------


def test_claims_carry_the_citations_of_their_group() -> None:
    text = (f"{NOTICES[0]}\n\nFirst quoted sentence here. Second one, same passage. [1] "
            "A third from elsewhere. [2]\n\nAn LLM claim [3]. Another [1][2]. Trailing words.")
    assert [(c.text, c.cites) for c in claims(text)] == [
        ("First quoted sentence here.", (1,)),
        ("Second one, same passage.", (1,)),
        ("A third from elsewhere.", (2,)),
        ("An LLM claim.", (3,)),
        ("Another.", (1, 2)),
        ("Trailing words.", ()),
    ]


def test_support_is_the_share_of_the_sentence_found_in_the_passage() -> None:
    assert support("`kubectl rollout undo deployment/web` returns to the previous revision.",
                   ROLLBACK) == 1.0
    assert support("Kubernetes deployments can never be rolled back.", ROLLBACK) < 0.6
    assert support("Bake the cake at 180 degrees.", ROLLBACK) == 0.0


def test_restating_the_question_is_no_answer() -> None:
    assert restates(f"Problem: {QUESTION}", QUESTION)
    assert restates(f"Solution: Problem: {QUESTION}", QUESTION)
    assert restates("Is that a question?", QUESTION)
    assert not restates("Run `kubectl rollout undo` to roll back a Kubernetes deployment.",
                        QUESTION)
    # A short answer repeating most of its question still adds the answer.
    assert not restates("HNSW is the Milvus index for low-latency vector search.",
                        "Which Milvus index gives low-latency vector search?")


# ---- whole answers -------------------------------------------------------------------------


async def test_a_faithful_answer_scores_one() -> None:
    kb = record(ROLLBACK)
    quality = await check(answer(f"{NOTICES[0]}\n\n{ROLLBACK} [1]", kb))
    assert (quality.faithfulness, quality.retrieval_precision, quality.quality) == (1, 1, 1)
    assert quality.sources() == [kb.id] and quality.unverified == 0
    assert quality.supported_text() == ROLLBACK  # no notice, no markers


async def test_an_echo_scores_zero() -> None:
    # The old echo: a solution whose answer is its question, cited by an answer restating it.
    echo = record(f"Problem: {QUESTION}\n\nSolution: Problem: {QUESTION}",
                  collection="problem_solutions", kind="solution")
    text = f"Problem: {QUESTION} Solution: Problem: {QUESTION} [1]"
    quality = await check(answer(text, echo))
    assert quality.faithfulness == quality.quality == 0.0
    assert {s.why for s in quality.grounding.sentences} == {"restates the question"}
    # Even citing a passage that holds the question verbatim.
    holds = record(f"{QUESTION} {ROLLBACK}")
    assert (await check(answer(f"Problem: {QUESTION} [1]", holds))).faithfulness == 0.0


async def test_an_uncited_answer_scores_zero() -> None:
    quality = await check({"text": ROLLBACK, "citations": []})
    assert quality.faithfulness == quality.quality == 0.0
    assert {s.why for s in quality.grounding.sentences} == {"cites nothing"}


async def test_an_unfaithful_sentence_scores_low() -> None:
    kb = record(ROLLBACK)
    text = (f"{ROLLBACK} [1] Kubernetes deletes every old revision after a rollback, so "
            "back up your cluster first [1].")
    quality = await check(answer(text, kb))
    assert quality.faithfulness == pytest.approx(2 / 3)
    assert quality.grounding.sentences[-1].why.startswith("not supported")


async def test_an_invented_citation_scores_zero() -> None:
    real = record(ROLLBACK)
    invented = "0" * 64
    data = {"text": f"{ROLLBACK} [1]", "citations": [{"id": invented}], "records": []}
    assert (await check(data)).faithfulness == 0.0
    # A forged record: the text changed, the id and signature kept.
    forged = dataclasses.replace(real, text="Roll back by deleting the namespace.")
    data = {"text": "Roll back by deleting the namespace. [1]", "citations": [{"id": real.id}],
            "records": [record_to_json(forged)]}
    quality = await check(data)
    assert quality.faithfulness == 0.0 and quality.unverified == 1
    # Another mesh's record (tenant) backs nothing here either.
    elsewhere = record(ROLLBACK, tenant="other-mesh")
    assert (await check(answer(f"{ROLLBACK} [1]", elsewhere))).faithfulness == 0.0


async def test_a_citation_is_found_in_this_nodes_memory(store: MemoryStore) -> None:
    kb = record(ROLLBACK)
    await store.put([kb])
    data = answer(f"{ROLLBACK} [1]", kb, carry=False)  # not carried: looked up here
    assert (await AnswerChecker(TENANT, store).check(QUESTION, data)).faithfulness == 1.0
    assert (await AnswerChecker(TENANT).check(QUESTION, data)).faithfulness == 0.0


async def test_passages_about_something_else_make_no_quality() -> None:
    cake = record(CAKE)
    quality = await check(answer(f"{CAKE} [1]", cake))
    assert quality.faithfulness == 1.0  # it does say what it cites...
    assert quality.retrieval_precision == 0.0 and quality.quality == 0.0  # ...off the question


async def test_a_passage_this_nodes_retrieval_recalls_is_relevant() -> None:
    # A paraphrase sharing few of the question's words: relevant only by the embedder's
    # judgement, i.e. when this node's own retrieval recalls the record for the question.
    para = record("`kubectl rollout undo` restores the earlier revision of a workload.")
    data = answer(f"{para.text} [1]", para)
    assert (await check(data)).retrieval_precision == 0.0
    recalled = await AnswerChecker(TENANT).check(QUESTION, data, frozenset({para.id}))
    assert recalled.retrieval_precision == 1.0 and recalled.quality == 1.0


async def test_an_uncited_answer_of_an_agent_in_code_is_judged_on_topic_never_above_grounded(
) -> None:
    async def similarity(a: str, b: str) -> float:
        return 0.9

    checker = AnswerChecker(TENANT, similarity=similarity)
    code = {"text": "12 * (3 + 4) = 84", "mode": "code", "citations": []}
    quality = await checker.check("What is 12 * (3 + 4)?", code)
    assert quality.quality == pytest.approx(0.45) and quality.faithfulness == 0.0
    assert not quality.figures()["grounded_check"]
    # An echo scores 0 whatever mode it claims; a memory answer must cite.
    for echo in (QUESTION, QUESTION.upper(), "roll back a Kubernetes deployment"):
        data = {"text": echo, "mode": "code", "citations": []}
        assert (await checker.check(QUESTION, data)).quality == 0.0, echo
    # The question's words in another order can be an answer (a word reverser's).
    reversed_ = {"text": "Reversed words: gamma beta alpha", "mode": "code"}
    assert (await checker.check("Reverse the words: alpha beta gamma", reversed_)).quality > 0
    extractive = {"text": ROLLBACK, "mode": "extractive", "citations": []}
    assert (await checker.check(QUESTION, extractive)).quality == 0.0


async def test_answers_agree_only_by_resting_on_a_common_record() -> None:
    truth = record(ROLLBACK)
    lie = record("A rolling update never replaces instances. `kubectl rollout undo "
                 "deployment/web` deletes the previous revision.", seq=2)
    right = await check(answer(f"{ROLLBACK} [1]", truth))
    again = await check(answer(f"{ROLLBACK.split('. ')[1]} [1]", truth))
    wrong = await check(answer(f"{lie.text} [1]", lie))
    assert right.quality == wrong.quality == 1.0  # both grounded in what they cite...
    assert right.agrees(again) and again.agrees(right)
    assert not right.agrees(wrong) and not wrong.agrees(right)  # ...the same words, not so
    # The truth quoted beside a lie: says more than the truth alone.
    both = await check(answer(f"{ROLLBACK} [1] {lie.text} [2]", truth, lie))
    assert right.agrees(both) and not both.agrees(right)
    # Corroborating takes one's own knowledge, not quoting another's replicated records.
    assert right.rests_on_own(AUTHOR.peer_id) and not right.rests_on_own("someone-else")


async def test_hostile_answer_data_is_bounded_and_checked() -> None:
    kb = record(ROLLBACK)
    data: dict[str, Any] = {
        "text": f"{ROLLBACK} [1]" * 10_000,
        "citations": [{"id": kb.id}, "junk", {"id": 7}] + [{"id": "x"}] * 1000,
        "records": [record_to_json(kb), {"sig": "zz"}, 5, {"sig": "00" * 64}] * 100,
    }
    quality = await check(data)
    assert 0 < quality.faithfulness <= 1 and len(quality.cited) == 64
    assert (await check({"text": 5, "citations": {}, "records": "no"})).faithfulness == 0.0


def test_the_quality_book_keeps_means_per_agent() -> None:
    book = QualityBook(keep=2)
    good = check_answer(QUESTION, f"{ROLLBACK} [1]", [ROLLBACK])
    bad = check_answer(QUESTION, f"{ROLLBACK}", [ROLLBACK])
    from meshnode.ask.quality import AnswerQuality

    book.record("p1", "a", AnswerQuality(good, ("x",), 0), chosen=True)
    book.record("p1", "a", AnswerQuality(bad, (), 0), chosen=False)
    assert book.summary("p1", "a") == {"answers": 2, "chosen": 1, "faithfulness": 0.5,
                                       "retrieval_precision": 1.0, "quality": 0.5}
    book.record("p2", "b", AnswerQuality(good, ("x",), 0), chosen=True)
    book.record("p3", "c", AnswerQuality(good, ("x",), 0), chosen=True)
    assert book.summary("p1", "a") is None and len(book.to_json()) == 2  # bounded


# ---- the LLM path ----------------------------------------------------------------------------


async def test_llm_answers_get_the_same_checks(kb_store: MemoryStore, fake_openai: FakeOpenAI,
                                               llm_settings: LLMSettings) -> None:
    llm = LLMClient(llm_settings)
    question = "Which Milvus index should I use, HNSW or IVF_FLAT?"
    try:
        # The fake model quotes its passages, citing each: faithful.
        faithful = await Answerer(kb_store, llm).answer(MILVUS, question, deadline_s=30)
        # A model that makes things up, citing real passages.
        fake_openai.reply = ("Milvus only supports one index, which was written in COBOL in "
                             "1972 [1]. Never use HNSW on Tuesdays [2].")
        invented = await Answerer(kb_store, llm).answer(MILVUS, question, deadline_s=30)
    finally:
        llm.close()
    assert faithful.mode == invented.mode == "llm"
    checker = AnswerChecker(TENANT, kb_store)
    good = await checker.check(question, faithful.to_dict())
    bad = await checker.check(question, invented.to_dict())
    assert good.faithfulness == 1.0 and good.quality > 0.5
    assert bad.faithfulness == 0.0 and bad.quality == 0.0
