"""Tests of memory.ingest: file discovery, Markdown-aware chunking, the manifest's plans."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.ingest import (
    IngestError,
    IngestManifest,
    chunk_text,
    ingest,
    iter_source_files,
)
from tests.sync.conftest import OpenStore
from tests.sync.helpers import ALICE

PROPS = settings(
    deadline=timedelta(seconds=2),
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
paragraphs = st.lists(words, min_size=1, max_size=80).map(" ".join)
sections = st.tuples(
    st.integers(1, 4),
    st.lists(words, min_size=1, max_size=5).map(" ".join),
    st.lists(paragraphs, min_size=1, max_size=5),
)
documents = st.lists(sections, min_size=1, max_size=6)


def markdown(doc: list[tuple[int, str, list[str]]]) -> str:
    return "\n\n".join(
        f"{'#' * level} {title}\n\n" + "\n\n".join(paras) for level, title, paras in doc
    )


@PROPS
@given(documents, st.integers(60, 1500), st.integers(0, 200))
def test_chunks_are_bounded_and_lose_no_word(
    doc: list[tuple[int, str, list[str]]], max_chars: int, overlap: int
) -> None:
    overlap = min(overlap, max_chars - 1)
    text = markdown(doc)
    chunks = chunk_text(text, max_chars=max_chars, overlap=overlap)
    assert chunks and all(0 < len(c) <= max_chars for c in chunks)
    # No word is cut (all are shorter than any piece), and every word is somewhere.
    assert {w for c in chunks for w in c.split()} <= set(text.split())
    for _, _, paras in doc:
        for word in " ".join(paras).split():
            assert any(word in c.split() for c in chunks)


@PROPS
@given(documents)
def test_each_chunk_starts_with_its_heading(doc: list[tuple[int, str, list[str]]]) -> None:
    chunks = chunk_text(markdown(doc), max_chars=400, overlap=50)
    headings = {f"{'#' * level} {title}" for level, title, _ in doc}
    for chunk in chunks:
        assert chunk.split("\n", 1)[0] in headings


@PROPS
@given(st.text(max_size=3000), st.integers(32, 2000), st.integers(0, 300))
def test_any_text_gives_bounded_chunks(text: str, max_chars: int, overlap: int) -> None:
    overlap = min(overlap, max_chars - 1)
    chunks = chunk_text(text, max_chars=max_chars, overlap=overlap)
    assert all(0 < len(c) <= max_chars for c in chunks)
    assert chunks == chunk_text(text, max_chars=max_chars, overlap=overlap)
    if "#" not in text:  # only a lone heading may vanish (it is context, not content)
        assert bool(chunks) == bool(text.strip())


def test_long_paragraphs_are_cut_between_sentences_with_overlap() -> None:
    sentences = [f"Sentence number {i} says something about Milvus." for i in range(60)]
    chunks = chunk_text(" ".join(sentences), max_chars=300, overlap=60)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        assert before.endswith(".")  # cut after a sentence
        shared = max(n for n in range(len(after)) if before.endswith(after[:n]))
        assert 10 <= shared <= 60


def test_code_fences_stay_whole_and_are_not_headings() -> None:
    code = "```python\n# not a heading\n\nx = 1\n```"
    chunks = chunk_text(f"# Title\n\nIntro.\n\n{code}\n\nOutro.", max_chars=1200)
    assert chunks == [f"# Title\n\nIntro.\n\n{code}\n\nOutro."]
    assert chunk_text("# T\n\n    indented = True\n") == ["# T\n\n    indented = True"]


def test_headings_nest_and_context_is_kept() -> None:
    text = "# Install\n\nGeneral.\n\n## Linux\n\nUse apt.\n\n# Usage\n\nRun it."
    assert chunk_text(text, max_chars=1200) == [
        "# Install\n\nGeneral.",
        "# Install\n## Linux\n\nUse apt.",
        "# Usage\n\nRun it.",
    ]


def test_a_word_longer_than_a_chunk_is_cut_hard() -> None:
    chunks = chunk_text("x" * 250, max_chars=100, overlap=10)
    assert "".join(chunks) == "x" * 250 and all(len(c) <= 100 for c in chunks)


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        chunk_text("a", max_chars=10)
    with pytest.raises(ValueError):
        chunk_text("a", max_chars=100, overlap=100)


# -- files and manifest ----------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_source_files_are_found_recursively_skipping_hidden(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    wanted = [
        write(docs / "a.md", "a"),
        write(docs / "sub" / "b.TXT", "b"),
        write(docs / "sub" / "deeper" / "c.rst", "c"),
        write(docs / "d.markdown", "d"),
    ]
    write(docs / "e.py", "e")
    write(docs / ".hidden.md", "h")
    write(docs / ".git" / "f.md", "f")
    single = write(tmp_path / "single.md", "s")
    assert iter_source_files([docs, single, docs / "a.md"]) == sorted([*wanted, single])
    with pytest.raises(IngestError, match="no such"):
        iter_source_files([tmp_path / "missing"])
    with pytest.raises(IngestError, match="not a text file"):
        iter_source_files([docs / "e.py"])


def test_links_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    inside = write(docs / "guide.md", "g")
    secret = write(tmp_path / "home" / ".ssh" / "notes.md", "private")
    write(tmp_path / "home" / "public" / "p.md", "p")
    (docs / "leak.md").symlink_to(secret)
    (docs / "linked").symlink_to(tmp_path / "home" / "public", target_is_directory=True)
    (docs / "alias.md").symlink_to(inside)  # stays inside: fine
    assert iter_source_files([docs]) == [docs / "alias.md", inside]


def test_records_name_their_file_relative_to_the_folder(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "sub" / "b.txt", "Bravo.")
    single = write(tmp_path / "elsewhere" / "single.md", "Solo.")
    manifest = IngestManifest.load(tmp_path / "manifest.json")
    plan = manifest.plan([docs, single])
    records = manifest.build(plan, ALICE, {}, tenant="dev", agent="", collection=
                             "expert_knowledge", first_seq=1, now=1.0)
    assert sorted(str(r.meta["source"]) for r in records) == ["single.md", "sub/b.txt"]
    assert not any(str(tmp_path) in str(r.meta) for r in records)
    assert str(single) in {c.path for c in plan.changed}  # the manifest keeps full paths


def test_manifest_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\nalpha")
    manifest = IngestManifest.load(tmp_path / "manifest.json")
    assert manifest.entries == {}
    plan = manifest.plan([tmp_path / "docs"])
    records = manifest.build(
        plan,
        ALICE,
        {},
        tenant="dev",
        agent="docs",
        collection="expert_knowledge",
        first_seq=7,
        now=1.0,
    )
    assert [r.seq for r in records] == [7]
    assert manifest.commit(plan, records).records == 1
    manifest.save()
    again = IngestManifest.load(manifest.path)
    assert again.entries == manifest.entries
    assert again.plan([tmp_path / "docs"]).is_noop

    (tmp_path / "bad.json").write_text(json.dumps({"version": 1, "files": []}))
    with pytest.raises(IngestError, match="unreadable"):
        IngestManifest.load(tmp_path / "bad.json")


async def test_reingesting_is_a_no_op_and_changes_replace_chunks(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = await open_store("a")
    docs = tmp_path / "docs"
    long_text = "# Guide\n\n" + "\n\n".join(
        f"Paragraph {i} about vector search." * 8 for i in range(6)
    )
    guide = write(docs / "guide.md", long_text)
    write(docs / "faq.txt", "How do I restart? Run restart.")
    manifest = IngestManifest.load(tmp_path / "manifest.json")

    first, _ = await ingest(store, manifest, ALICE, [docs], agent="docs", now=1.0)
    assert first.changed == 2 and first.tombstones == 0 and first.records > 2
    assert (await store.count())["expert_knowledge"] == first.records
    old_ids = manifest.entries[str(guide)].record_ids

    reloaded = IngestManifest.load(manifest.path)
    second, _ = await ingest(store, reloaded, ALICE, [docs], agent="docs", now=2.0)
    assert (second.changed, second.unchanged, second.records) == (0, 2, 0)
    assert (await store.count())["expert_knowledge"] == first.records

    write(guide, "# Guide\n\nRewritten from scratch.")
    third, _ = await ingest(store, reloaded, ALICE, [docs], agent="docs", now=3.0)
    assert (third.changed, third.records, third.tombstones) == (1, 1, len(old_ids))
    assert await store.get(list(old_ids)) == []
    [new_id] = reloaded.entries[str(guide)].record_ids
    [new] = await store.get([new_id])
    assert new.text == "# Guide\n\nRewritten from scratch." and new.meta["source"] == "guide.md"
    seqs = [r.seq for r in await store.records_since(ALICE.peer_id, 0, 1000)]
    assert seqs == sorted(seqs) and seqs[-1] == await store.next_seq(ALICE.peer_id) - 1


async def test_removed_files_are_pruned_only_when_asked(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = await open_store("a")
    docs = tmp_path / "docs"
    gone = write(docs / "gone.md", "Soon deleted.")
    kept = write(docs / "kept.md", "Staying.")
    manifest = IngestManifest.load(tmp_path / "manifest.json")
    await ingest(store, manifest, ALICE, [docs], agent="docs", now=1.0)
    [gone_id] = manifest.entries[str(gone)].record_ids
    gone.unlink()
    write(kept, "Staying, edited.")

    untouched, _ = await ingest(store, manifest, ALICE, [docs], agent="docs", now=2.0)
    assert (untouched.changed, untouched.removed, untouched.tombstones) == (1, 0, 1)
    assert str(gone) in manifest.entries and await store.get([gone_id]) != []

    pruned, _ = await ingest(store, manifest, ALICE, [docs], agent="docs", prune=True, now=3.0)
    assert (pruned.removed, pruned.tombstones) == (1, 1)
    assert str(gone) not in manifest.entries and await store.get([gone_id]) == []
