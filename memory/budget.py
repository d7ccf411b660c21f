"""Budgets: how much of this node's memory and work one author or one peer may take.

Any key can sign records, and every node stores and embeds what it accepts, so what a node
takes from the network is budgeted on receive (announcements and sync alike):

- **per author**: records per hour (a token bucket: a burst of ``records_per_hour``, then
  that many an hour) and bytes held (text and metadata of the author's records in the
  store).
- **strangers together**: records per hour of every author this node has no good evidence
  of, shared. A key costs nothing to make, so per-author budgets alone would let a swarm
  of N keys publish N times as much; this bounds what the swarm takes as a whole, while
  authors with a good record here are held to their own budgets only.

  A record over either is refused, counted by reason, and logged (once per author and
  reason per quarter hour, naming the setting); it is not lost: the author's mark stays
  before it, so a later sync asks for it again once the budget allows. An honest heavy
  author is slowed down, visibly, never cut off silently.
- **per peer serving sync**: pulls per minute and bytes served per minute. A peer over
  budget gets an Error frame (``busy``) and may come back later.

Pure data: callers pass the time (trio's clock) and what the store holds.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from protocols.bucket import TokenBucket
from protocols.records import MemoryRecord

log = logging.getLogger(__name__)

#: Entries a table keeps; past it one of the least recently used goes (it is rebuilt if
#: needed: for an author, by counting its bytes in the store again).
MAX_ENTRIES = 65_536
#: How many of the least recently used entries an eviction weighs: the one whose key this
#: node has the worst record with goes, so a swarm of fresh keys pushes out its own kind
#: before an author or peer with good evidence (bounded work per eviction, not a scan).
EVICTION_SAMPLE = 16
_LOG_EVERY_S = 900.0
#: How often the bytes an author holds may be read from the store again (it costs a scan).
RECOUNT_S = 900.0
RATE = "rate"
BYTES = "bytes"
STRANGERS = "strangers"
_SETTINGS = {RATE: "limits.author_records_per_hour", BYTES: "limits.author_max_bytes",
             STRANGERS: "limits.stranger_records_per_hour"}


@dataclass(frozen=True, slots=True)
class Limits:
    """The knobs (``[limits]`` in config.toml): see meshnode.config.LimitSettings."""

    author_records_per_hour: int = 3600
    author_max_bytes: int = 128 * 1024 * 1024
    peer_sync_pulls_per_minute: int = 600
    peer_sync_bytes_per_minute: int = 64 * 1024 * 1024
    stranger_records_per_hour: int = 36_000


def content_bytes(text: str, meta: Mapping[str, object]) -> int:
    """What a record holds in the store, as budgeted: its text and metadata."""
    return len(text.encode("utf-8")) + sum(len(k) + len(str(v)) for k, v in meta.items())


def record_bytes(record: MemoryRecord) -> int:
    """:func:`content_bytes` of a record; a tombstone counts nothing (its target goes)."""
    return 0 if record.is_tombstone else content_bytes(record.text, record.meta)


def _no_standing(_key: str) -> float:
    return 1.0


_V = TypeVar("_V")


class _Table(OrderedDict[str, _V]):
    """Bounded, least recently used first, but weighed by ``standing`` (see
    EVICTION_SAMPLE)."""

    def __init__(self, standing: Callable[[str], float]) -> None:
        super().__init__()
        self._standing = standing

    def touch(self, key: str) -> None:
        self.move_to_end(key)
        while len(self) > MAX_ENTRIES:
            oldest = list(islice(self, EVICTION_SAMPLE))
            # min() keeps the first of equals: with no evidence either way, plain LRU.
            del self[min(oldest, key=self._standing)]


@dataclass(slots=True)
class _Author:
    rate: TokenBucket
    held: int
    #: When ``held`` was read from the store.
    since: float


class AuthorBudget:
    """Records per author per hour and bytes held per author, for records from the network.

    ``exempt`` authors (this node) are never limited. ``standing`` is this node's record
    with an author (1 for none, more for good: the trust graph's experience, set by the
    node); when the table is full, authors with good evidence are the last to go, and
    authors without it (standing <= 1: strangers) also share one bucket of records.
    """

    def __init__(self, limits: Limits, *, exempt: frozenset[str] = frozenset()) -> None:
        self.limits = limits
        self.exempt = exempt
        self.refused: Counter[str] = Counter()
        self.refused_authors: Counter[str] = Counter()
        self.standing: Callable[[str], float] = _no_standing
        self._authors: _Table[_Author] = _Table(lambda author: self.standing(author))
        per_hour = limits.stranger_records_per_hour
        self._strangers = TokenBucket(per_hour, per_hour / 3600.0, 0.0)
        self._logged: OrderedDict[tuple[str, str], float] = OrderedDict()

    def knows(self, author: str) -> bool:
        """Whether the bytes ``author`` holds are known (else: :meth:`start` it)."""
        return author in self.exempt or author in self._authors

    def start(self, author: str, held_bytes: int, now: float) -> None:
        per_hour = self.limits.author_records_per_hour
        self._authors[author] = _Author(TokenBucket(per_hour, per_hour / 3600.0, now), held_bytes,
                                        now)
        self._authors.touch(author)

    def throttled(self, author: str, now: float) -> bool:
        """Whether ``author`` is out of records for now (cheap: for gossip validators);
        if so, a record of it is being refused: counted and logged as such."""
        entry = self._authors.get(author)
        if entry is not None and entry.rate.level(now) < 1.0:
            reason = RATE
        elif (author not in self.exempt and self._strangers.level(now) < 1.0
              and self.standing(author) <= 1.0):
            reason = STRANGERS
        else:
            return False
        self._refuse(author, reason, 1, now)
        return True

    def admit(self, records: Sequence[MemoryRecord], now: float) -> tuple[int, str]:
        """How many of ``records`` (a prefix, in order) may be stored, and the reason the
        rest may not ("" if all may). Takes their share of the budget."""
        # An author's standing is read once per call, not per record: a batch is one
        # author's run of records, and the trust graph's experience is not free.
        strangers: dict[str, bool] = {}
        for i, record in enumerate(records):
            author = record.author
            if author not in strangers and author not in self.exempt:
                strangers[author] = self.standing(author) <= 1.0
            reason = self._take(record, now, strangers.get(author, False))
            if reason:
                self._refuse(record.author, reason, len(records) - i, now)
                entry = self._authors.get(record.author)
                if reason == BYTES and entry is not None and now - entry.since > RECOUNT_S:
                    # Deletions give bytes back: count again (at most this often).
                    self._authors.pop(record.author)
                return i, reason
        return len(records), ""

    def _take(self, record: MemoryRecord, now: float, stranger: bool) -> str:
        if record.author in self.exempt:
            return ""
        entry = self._authors.get(record.author)
        if entry is None:
            raise KeyError(f"start({record.author!r}) before admitting its records")
        self._authors.touch(record.author)
        size = record_bytes(record)
        if entry.held + size > self.limits.author_max_bytes:
            return BYTES
        if stranger and self._strangers.level(now) < 1.0:
            return STRANGERS
        if not entry.rate.take(1.0, now):
            return RATE
        if stranger:
            self._strangers.take(1.0, now)
        entry.held += size
        return ""

    def _refuse(self, author: str, reason: str, count: int, now: float) -> None:
        self.refused[reason] += count
        self.refused_authors[author] += count
        self._log(author, reason, now)

    def forget(self, author: str) -> None:
        """Drop what is known of ``author`` (its held bytes are counted again next time:
        after its deletions, say)."""
        self._authors.pop(author, None)

    def _log(self, author: str, reason: str, now: float) -> None:
        key = (author, reason)
        last = self._logged.get(key)
        if last is not None and now - last < _LOG_EVERY_S:
            return
        self._logged[key] = now
        self._logged.move_to_end(key)
        while len(self._logged) > MAX_ENTRIES:
            self._logged.popitem(last=False)
        setting = _SETTINGS[reason]
        log.warning("refusing records of %s: over its budget (%s); they are asked for again "
                    "at a later sync", author, setting,
                    extra={"author": author, "reason": reason, "setting": setting})


class PeerSyncBudget:
    """Pulls and bytes a peer may take from this node's sync server, per minute; with
    ``standing`` as in :class:`AuthorBudget`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.refused: Counter[str] = Counter()
        self.standing: Callable[[str], float] = _no_standing
        self._peers: _Table[tuple[TokenBucket, TokenBucket]] = _Table(
            lambda peer: self.standing(peer))

    def _buckets(self, peer: str, now: float) -> tuple[TokenBucket, TokenBucket]:
        buckets = self._peers.get(peer)
        if buckets is None:
            pulls = self.limits.peer_sync_pulls_per_minute
            size = self.limits.peer_sync_bytes_per_minute
            buckets = (TokenBucket(pulls, pulls / 60.0, now), TokenBucket(size, size / 60.0, now))
            self._peers[peer] = buckets
        self._peers.touch(peer)
        return buckets

    def pull(self, peer: str, now: float) -> str:
        """Take one pull (a summary counts as one); "" if allowed, else why not."""
        pulls, size = self._buckets(peer, now)
        if size.level(now) <= 0:
            self.refused["bytes"] += 1
            return (f"sync budget spent: over {self.limits.peer_sync_bytes_per_minute} bytes a "
                    f"minute; retry in {size.wait_s(now, 0.0):.0f} s")
        if not pulls.take(1.0, now):
            self.refused["pulls"] += 1
            return (f"sync budget spent: over {self.limits.peer_sync_pulls_per_minute} pulls a "
                    f"minute; retry in {pulls.wait_s(now):.0f} s")
        return ""

    def served(self, peer: str, size: int, now: float) -> None:
        """Count ``size`` bytes sent (into debt if need be: a batch is never cut for it;
        the next pull waits until the debt is paid)."""
        self._buckets(peer, now)[1].spend(size, now)
