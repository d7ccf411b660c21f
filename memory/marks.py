"""Per-author marks: how far along each author's sequence a node holds everything.

Every record accounts for positions of its author's sequence (see
:attr:`protocols.records.MemoryRecord.positions`): its own seq and, for a version-2
tombstone, the seq of the record it deleted. An author's **mark** is the end of the unbroken
run of accounted positions from 1; positions accounted beyond a gap wait in ``ahead`` until
the gap is filled. So a record the node never got (withheld by a sync peer, missing from a
partial backup) keeps the mark before it however much arrives after it, and sync and
announcements still ask for it.

``top`` is the highest seq the node holds of the author: the author's own next record must
come after it even when the mark is lower.

:class:`Marks` is pure data: the store feeds it what it stores. :func:`load_marks` makes
it from what a backend holds when the store opens (blocking; run it in a worker thread).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocols.records import COLLECTIONS, TOMBSTONE

if TYPE_CHECKING:
    from memory.backend import Backend

log = logging.getLogger(__name__)
_TOMBSTONES = f'kind == "{TOMBSTONE}"'


@dataclass(slots=True)
class _Author:
    mark: int = 0
    top: int = 0
    ahead: set[int] = field(default_factory=set)


class Marks:
    def __init__(self) -> None:
        self._authors: dict[str, _Author] = {}

    def mark(self, author: str) -> int:
        entry = self._authors.get(author)
        return entry.mark if entry is not None else 0

    def top(self, author: str) -> int:
        entry = self._authors.get(author)
        return entry.top if entry is not None else 0

    def marks(self) -> dict[str, int]:
        return {a: e.mark for a, e in self._authors.items() if e.mark}

    def authors(self) -> list[str]:
        """Every author with a record held, in order."""
        return sorted(a for a, e in self._authors.items() if e.top)

    def ahead(self, author: str) -> int:
        """How many positions of ``author`` are accounted beyond a gap."""
        entry = self._authors.get(author)
        return len(entry.ahead) if entry is not None else 0

    def account(self, author: str, positions: Iterable[int], *, held: Iterable[int] = ()) -> int:
        """Record that ``positions`` of ``author`` are accounted for, of which the seqs in
        ``held`` are records now held; return the new mark."""
        entry = self._authors.setdefault(author, _Author())
        entry.top = max([entry.top, *held])
        entry.ahead.update(p for p in positions if p > entry.mark)
        while entry.mark + 1 in entry.ahead:
            entry.mark += 1
            entry.ahead.discard(entry.mark)
        return entry.mark

    def forget(self, author: str) -> None:
        self._authors.pop(author, None)

    @classmethod
    def walk(
        cls,
        author: str,
        held: Iterable[int],
        freed: Iterable[int],
        legacy_tombstones: Iterable[int] = (),
    ) -> tuple[int, int, set[int]]:
        """(mark, top, ahead) of an author from what a store holds: the seqs ``held``, the
        seqs ``freed`` by its version-2 tombstones, and the seqs of its version-1 tombstones.

        A version-1 tombstone freed one earlier seq without saying which; every one held
        fills one gap below it, as the node accepted such gaps before tombstones said what
        they free. Only a store's own records get that credit, never a sync peer's word.
        """
        held_set = set(held)
        positions = held_set | set(freed)
        credits = sorted(legacy_tombstones)
        used = 0
        mark = 0
        top = max(held_set, default=0)
        while True:
            if mark + 1 in positions:
                mark += 1
                continue
            # The first unused credit from a tombstone after this gap.
            used = max(used, bisect.bisect_right(credits, mark + 1))
            if used < len(credits):
                used += 1
                mark += 1
                continue
            break
        return mark, top, {p for p in positions if p > mark}

    def load(self, author: str, mark: int, top: int, ahead: set[int]) -> None:
        self._authors[author] = _Author(mark, top, set(ahead))


@dataclass(slots=True)
class _Seqs:
    """What a store holds of one author: seqs held, seqs freed, version-1 tombstones."""

    held: set[int] = field(default_factory=set)
    freed: set[int] = field(default_factory=set)
    legacy: list[int] = field(default_factory=list)

    def add(self, seq: int, meta: object, tombstone: bool) -> None:
        self.held.add(seq)
        freed = meta.get("frees") if tombstone and isinstance(meta, dict) else None
        if isinstance(freed, int) and not isinstance(freed, bool):
            self.freed.add(freed)
        elif tombstone:
            self.legacy.append(seq)


def load_marks(backend: Backend) -> Marks:
    """The marks of everything ``backend`` holds. Blocking.

    Cheap columns first (author and seq of every row, meta of tombstones); then only
    verified records may set a mark: the rows at each author's top and mark are checked,
    and an author with one that does not verify (planted on a shared server, say: a row
    claiming seq 2^63-1 would block the author's next write) is recounted from its valid
    records alone.
    """
    seqs: dict[str, _Seqs] = {}
    for name in COLLECTIONS:
        for row in backend.scan(name, ("author", "seq")):
            seqs.setdefault(row["author"], _Seqs()).held.add(int(row["seq"]))
        for row in backend.scan(name, ("author", "seq", "meta"), where=_TOMBSTONES):
            seqs.setdefault(row["author"], _Seqs()).add(int(row["seq"]), row.get("meta"), True)
    walked = {a: Marks.walk(a, e.held, e.freed, e.legacy) for a, e in seqs.items()}
    wanted = sorted({(a, q) for a, (mark, top, _) in walked.items()
                     for q in (mark, top) if q in seqs[a].held})
    found = {(r.author, r.seq) for name in COLLECTIONS for r in backend.at_seqs(name, wanted)}
    marks = Marks()
    for author, (mark, top, ahead) in walked.items():
        if {(author, q) for q in (mark, top) if q in seqs[author].held} <= found:
            marks.load(author, mark, top, ahead)
            continue
        log.warning("rows of %s that do not verify: counting its valid records only", author)
        valid = _Seqs()
        for record in backend.records_between(author, 0, top, top):
            valid.add(record.seq, record.meta, record.is_tombstone)
        if valid.held:
            marks.load(author, *Marks.walk(author, valid.held, valid.freed, valid.legacy))
    return marks

