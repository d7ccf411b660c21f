"""The budget tables stay bounded, and a swarm of fresh keys pushes out its own kind first.

A full table evicts one of its least recently used entries; among those, the author (or
sync peer) this node has the worst record with goes. An honest author with good evidence
keeps its entry (no recount of its bytes, no reset of its rate) however many fresh keys
a swarm signs records with.
"""

from __future__ import annotations

import pytest

from memory import budget
from memory.budget import AuthorBudget, Limits, PeerSyncBudget
from protocols.records import MemoryRecord

GOOD = "good-author"


def _standing(key: str) -> float:
    return 1.6 if key == GOOD else 1.0


@pytest.fixture(autouse=True)
def _small_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_ENTRIES", 32)


def test_a_swarm_of_fresh_authors_does_not_push_out_a_trusted_one() -> None:
    authors = AuthorBudget(Limits())
    authors.standing = _standing
    authors.start(GOOD, 10, 0.0)
    for i in range(1000):
        authors.start(f"sybil-{i}", 0, 1.0 + i)
    assert authors.knows(GOOD)
    assert len(authors._authors) == budget.MAX_ENTRIES
    # Among equals it is plain LRU: the newest sybils are the ones kept.
    assert authors.knows("sybil-999") and not authors.knows("sybil-0")


def test_without_evidence_the_oldest_author_goes() -> None:
    authors = AuthorBudget(Limits())
    authors.start(GOOD, 10, 0.0)
    for i in range(budget.MAX_ENTRIES):
        authors.start(f"sybil-{i}", 0, 1.0 + i)
    assert not authors.knows(GOOD)


def test_a_swarm_of_sync_peers_does_not_push_out_a_trusted_one() -> None:
    peers = PeerSyncBudget(Limits(peer_sync_pulls_per_minute=2))
    peers.standing = _standing
    assert peers.pull(GOOD, 0.0) == "" and peers.pull(GOOD, 0.0) == ""
    for i in range(1000):
        assert peers.pull(f"sybil-{i}", 0.0) == ""
    # Still the same bucket, still spent: being pushed out would have refilled it.
    assert peers.pull(GOOD, 0.0).startswith("sync budget spent")
    assert len(peers._peers) == budget.MAX_ENTRIES


def _record(author: str, seq: int = 1) -> MemoryRecord:
    return MemoryRecord(id=f"{author}-{seq}", collection="knowledge", tenant="t", text="x",
                        kind="note", author=author, agent="a", created=0.0, seq=seq, meta={},
                        signature=b"")


def test_a_swarm_of_fresh_keys_shares_one_budget() -> None:
    authors = AuthorBudget(Limits(stranger_records_per_hour=10), exempt=frozenset({"me"}))
    authors.standing = _standing
    admitted = 0
    for i in range(50):
        authors.start(f"sybil-{i}", 0, 0.0)
        admitted += authors.admit([_record(f"sybil-{i}")], 0.0)[0]
    # Each key is within its own budget; together they get the strangers' ten.
    assert admitted == 10 and authors.refused[budget.STRANGERS] == 40
    assert authors.throttled("sybil-49", 0.0)
    # An author with a good record here, and this node itself, are not held to it.
    authors.start(GOOD, 0, 0.0)
    assert authors.admit([_record(GOOD)], 0.0) == (1, "")
    assert authors.admit([_record("me")], 0.0) == (1, "")
    assert not authors.throttled(GOOD, 0.0)
    # Slowed, not cut off: the shared bucket refills (ten an hour).
    assert authors.admit([_record("sybil-49")], 360.0) == (1, "")
