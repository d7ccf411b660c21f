"""Turning text files into memory records.

Three steps, each testable alone: find the files (:func:`iter_source_files`), cut each into
chunks that make sense on their own (:func:`chunk_text`), and compare with the
:class:`IngestManifest` kept in the node home so that re-ingesting is honest and cheap:
an unchanged file costs one hash, a changed file gets new chunk records plus tombstones
for its old ones, and a file that disappeared is left alone unless pruning is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from memory.errors import IngestError
from memory.files import write_atomic
from protocols.peerid import Signer
from protocols.records import MemoryRecord, MetaValue, new_record, new_tombstone

if TYPE_CHECKING:  # the store (pymilvus) is not imported for what the CLI uses here
    from memory.store import MemoryStore

SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
KIND = "document"
MANIFEST_NAME = "ingest-manifest.json"
_MANIFEST_VERSION = 1
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SENTENCE_ENDS = (". ", "! ", "? ", "\n")


def iter_source_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The supported text files named by ``paths`` (files, or folders searched recursively,
    skipping hidden files and folders), absolute, sorted and without duplicates.

    Inside a folder, a symbolic link is followed only if it stays inside that folder: a
    link in a shared docs folder must not publish ``~/.ssh`` (linked folders are never
    entered: os.walk does not follow them)."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(
                    Path(folder, name)
                    for name in files
                    if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES
                    and Path(folder, name).resolve().is_relative_to(path)
                )
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise IngestError(f"{raw}: not a text file ({', '.join(sorted(SUFFIXES))})")
            found.add(path)
        else:
            raise IngestError(f"{raw}: no such file or folder")
    return sorted(found)


def source_name(path: Path, roots: Sequence[Path]) -> str:
    """What ``meta.source`` says of ``path``: relative to the folder it was found in (a file
    named alone: its name). Records travel to every node; this node's paths do not."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def _fence_after(line: str, fence: str | None) -> str | None:
    """The open code fence after ``line``: headings and blank lines inside one are text."""
    match = _FENCE.match(line)
    if match is None:
        return fence
    if fence is None:
        return match.group(1)
    return None if match.group(1) == fence else fence


def _sections(text: str) -> Iterator[tuple[list[str], str]]:
    """(heading trail, body) for each part of a Markdown document, in order."""
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        if fence is None and _HEADING.match(line):
            yield [h for _, h in trail], "\n".join(body)
            body = []
            level = len(line.lstrip(" ")) - len(line.lstrip(" ").lstrip("#"))
            trail = [(lvl, h) for lvl, h in trail if lvl < level] + [(level, line.strip())]
        else:
            body.append(line)
        fence = _fence_after(line, fence)
    yield [h for _, h in trail], "\n".join(body)


def _paragraphs(body: str) -> list[str]:
    paragraphs: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in body.splitlines():
        if fence is None and not line.strip():
            if current:
                paragraphs.append("\n".join(current).rstrip())
            current = []
        else:
            current.append(line)
        fence = _fence_after(line, fence)
    if current:
        paragraphs.append("\n".join(current).rstrip())
    return paragraphs


def _cut_point(text: str, limit: int) -> int:
    """Where to cut ``text`` so the first part has at most ``limit`` characters: after a
    sentence in the second half if there is one, else at the last space, else hard."""
    sentence = max(text.rfind(end, limit // 2, limit) for end in _SENTENCE_ENDS)
    if sentence > 0:
        return sentence + 1
    for i in range(min(limit, len(text) - 1), 0, -1):
        if text[i].isspace():
            return i
    return limit


def _split_long(paragraph: str, limit: int) -> list[str]:
    if len(paragraph) <= limit:
        return [paragraph]  # as written, indentation included
    pieces = []
    rest = paragraph.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _tail(text: str, size: int) -> str:
    """The last ``size`` characters of ``text`` or fewer, starting at a word."""
    start = max(len(text) - size, 0)
    if start and not text[start - 1].isspace():
        while start < len(text) and not text[start].isspace():
            start += 1
    return text[start:].strip()


def _pack(pieces: Sequence[tuple[str, str]], room: int, overlap: int) -> list[str]:
    """Fill chunks of at most ``room`` characters with (separator, piece) pairs; a new
    chunk starts with the tail of the previous one so no idea is cut off from its lead-in."""
    bodies: list[str] = []
    current = ""
    for sep, piece in pieces:
        if current and len(current) + len(sep) + len(piece) <= room:
            current += sep + piece
            continue
        if current:
            bodies.append(current)
            tail = _tail(current, overlap)
            current = f"{tail}{sep}{piece}" if tail else piece
        else:
            current = piece
    if current:
        bodies.append(current)
    return bodies


def chunk_text(text: str, *, max_chars: int = 1200, overlap: int = 150) -> list[str]:
    """Cut a document into chunks of at most ``max_chars`` characters.

    Markdown-aware: a chunk never spans two sections, starts with the headings above it
    (so it can be understood alone), keeps paragraphs and code blocks whole when they fit,
    and otherwise cuts after a sentence or between words. Consecutive chunks of a section
    share up to ``overlap`` characters. A heading with no text under it only appears as
    context of its subsections.
    """
    if max_chars < 32 or not 0 <= overlap < max_chars:
        raise ValueError("need max_chars >= 32 and 0 <= overlap < max_chars")
    chunks: list[str] = []
    for trail, body in _sections(text):
        paragraphs = _paragraphs(body)
        if not paragraphs:
            continue
        context = "\n".join(trail)
        if len(context) > max_chars // 4:
            context = _split_long(trail[-1], max_chars // 4)[0]
        room = max_chars - (len(context) + 2 if context else 0)
        shared = min(overlap, room // 4)
        pieces = [
            ("\n\n" if i == 0 else " ", piece)
            for paragraph in paragraphs
            for i, piece in enumerate(_split_long(paragraph, room - shared - 2))
        ]
        for chunk in _pack(pieces, room, shared):
            chunks.append(f"{context}\n\n{chunk}" if context else chunk)
    return chunks


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What was ingested from one file: its content hash and the records made from it."""

    sha256: str
    record_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FileChange:
    #: Absolute: the manifest's key (it stays in the node home).
    path: str
    sha256: str
    chunks: tuple[str, ...]
    old: ManifestEntry | None
    #: Relative: what the records say (see :func:`source_name`).
    source: str = ""


@dataclass(frozen=True, slots=True)
class IngestPlan:
    changed: tuple[FileChange, ...]
    unchanged: tuple[str, ...]
    #: Manifest entries under the given folders whose file is gone; acted on only if pruning.
    removed: tuple[ManifestEntry, ...]
    removed_paths: tuple[str, ...]
    prune: bool

    @property
    def is_noop(self) -> bool:
        return not self.changed and not (self.prune and self.removed)

    def superseded(self) -> list[str]:
        """Ids of the records this plan deletes: old chunks of changed (and pruned) files."""
        old = [c.old for c in self.changed if c.old is not None]
        old += self.removed if self.prune else ()
        return [i for entry in old for i in entry.record_ids]


@dataclass(frozen=True, slots=True)
class IngestReport:
    changed: int
    unchanged: int
    removed: int
    records: int
    tombstones: int


class IngestManifest:
    """absolute path → :class:`ManifestEntry`, stored as JSON in the node home."""

    def __init__(self, path: Path, entries: dict[str, ManifestEntry] | None = None) -> None:
        self.path = path
        self.entries: dict[str, ManifestEntry] = dict(entries or {})

    @classmethod
    def load(cls, path: Path) -> IngestManifest:
        """The manifest at ``path``; an empty one if the file does not exist yet."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["version"] != _MANIFEST_VERSION:
                raise ValueError(f"unsupported version {data['version']!r}")
            entries = {
                str(name): ManifestEntry(str(e["sha256"]), tuple(map(str, e["ids"])))
                for name, e in data["files"].items()
            }
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IngestError(
                f"ingest manifest {path} is unreadable ({exc}); "
                "move it away to ingest everything afresh"
            ) from None
        return cls(path, entries)

    def save(self) -> None:
        """Write atomically, so a crash never leaves half a manifest."""
        files = {
            name: {"sha256": e.sha256, "ids": list(e.record_ids)}
            for name, e in sorted(self.entries.items())
        }
        write_atomic(
            self.path, json.dumps({"version": _MANIFEST_VERSION, "files": files}, indent=1)
        )

    def plan(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        prune: bool = False,
        max_chars: int = 1200,
        overlap: int = 150,
    ) -> IngestPlan:
        """Read and hash the files under ``paths``; chunk only those that changed."""
        roots = [Path(p).expanduser().resolve() for p in paths]
        files = iter_source_files(roots)
        changed: list[FileChange] = []
        unchanged: list[str] = []
        for path in files:
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
            digest = hashlib.sha256(content).hexdigest()
            old = self.entries.get(str(path))
            if old is not None and old.sha256 == digest:
                unchanged.append(str(path))
                continue
            text = content.decode("utf-8", errors="replace")
            chunks = chunk_text(text, max_chars=max_chars, overlap=overlap)
            changed.append(FileChange(str(path), digest, tuple(chunks), old,
                                      source_name(path, roots)))
        seen = {str(p) for p in files}
        gone = [
            name
            for name in sorted(self.entries)
            if name not in seen and any(Path(name).is_relative_to(r) for r in roots)
        ]
        removed = tuple(self.entries[name] for name in gone)
        return IngestPlan(tuple(changed), tuple(unchanged), removed, tuple(gone), prune)

    def build(
        self,
        plan: IngestPlan,
        signer: Signer,
        held: Mapping[str, MemoryRecord],
        *,
        tenant: str,
        agent: str,
        collection: str,
        first_seq: int,
        now: float,
    ) -> list[MemoryRecord]:
        """The records that carry out ``plan``, numbered from ``first_seq``: tombstones for
        the superseded records still ``held`` (id → record), then the new chunks. Call
        :meth:`commit` once they are stored."""
        records: list[MemoryRecord] = []
        for record_id in plan.superseded():
            if record_id in held:
                seq = first_seq + len(records)
                records.append(new_tombstone(signer, held[record_id], created=now, seq=seq))
        for change in plan.changed:
            for i, chunk in enumerate(change.chunks):
                meta: dict[str, MetaValue] = {
                    "source": (change.source or Path(change.path).name)[-512:],
                    "chunk": i,
                    "chunks": len(change.chunks),
                    "sha256": change.sha256,
                }
                seq = first_seq + len(records)
                records.append(
                    new_record(
                        signer,
                        collection=collection,
                        tenant=tenant,
                        text=chunk,
                        kind=KIND,
                        agent=agent,
                        created=now,
                        seq=seq,
                        meta=meta,
                    )
                )
        return records

    def commit(self, plan: IngestPlan, records: Sequence[MemoryRecord]) -> IngestReport:
        """Record in the manifest what :meth:`build` made of ``plan``, once it is stored."""
        chunks = iter(r for r in records if not r.is_tombstone)
        for change in plan.changed:
            ids = tuple(next(chunks).id for _ in change.chunks)
            self.entries[change.path] = ManifestEntry(change.sha256, ids)
        if plan.prune:
            for name in plan.removed_paths:
                self.entries.pop(name, None)
        tombstones = sum(r.is_tombstone for r in records)
        return IngestReport(
            changed=len(plan.changed),
            unchanged=len(plan.unchanged),
            removed=len(plan.removed) if plan.prune else 0,
            records=len(records) - tombstones,
            tombstones=tombstones,
        )


async def ingest(
    store: MemoryStore,
    manifest: IngestManifest,
    signer: Signer,
    paths: Iterable[str | os.PathLike[str]],
    *,
    agent: str,
    collection: str = "expert_knowledge",
    prune: bool = False,
    now: float | None = None,
) -> tuple[IngestReport, list[MemoryRecord]]:
    """Plan, sign, store, then save the manifest (only once the records are stored, so a
    failure leaves the manifest describing what the store holds). Returns the report and
    the records stored, for the caller to announce."""
    from memory.backend import MAX_WINDOW  # with a store open, pymilvus is loaded anyway

    plan = await trio.to_thread.run_sync(functools.partial(manifest.plan, paths, prune=prune))
    if plan.is_noop:
        return manifest.commit(plan, []), []
    old = plan.superseded()
    held = {
        r.id: r
        for i in range(0, len(old), MAX_WINDOW)
        for r in await store.get(old[i : i + MAX_WINDOW])
    }
    records = manifest.build(
        plan,
        signer,
        held,
        tenant=store.tenant,
        agent=agent,
        collection=collection,
        first_seq=await store.next_seq(signer.peer_id),
        now=time.time() if now is None else now,
    )
    await store.put(records)
    report = manifest.commit(plan, records)
    await trio.to_thread.run_sync(manifest.save)
    return report, records
