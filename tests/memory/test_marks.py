"""Marks: the mark never passes a position nothing accounts for, whatever arrives when."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memory.marks import Marks

A = "author"


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[int, tuple[int, ...]], list[int]]:
    """An author's sequence of ``n`` records, some deleted by tombstones later in it, as
    {seq: positions that record accounts for}, and the order some of them arrive in."""
    n = draw(st.integers(1, 40))
    positions: dict[int, tuple[int, ...]] = {seq: (seq,) for seq in range(1, n + 1)}
    deletable = list(range(1, n + 1))
    for seq in range(n + 1, n + 1 + draw(st.integers(0, 10))):
        # A tombstone frees an earlier record that is not a tombstone, deleted once only.
        target = draw(st.sampled_from(deletable)) if deletable else None
        if target is None:
            break
        deletable.remove(target)
        del positions[target]
        positions[seq] = (target, seq)
    arrived = draw(st.permutations(sorted(positions)))
    kept = draw(st.integers(0, len(arrived)))
    return positions, list(arrived[:kept])


def expected_mark(positions: dict[int, tuple[int, ...]], arrived: list[int]) -> int:
    accounted = {p for seq in arrived for p in positions[seq]}
    mark = 0
    while mark + 1 in accounted:
        mark += 1
    return mark


@given(histories())
def test_the_mark_is_the_unbroken_run_of_accounted_positions(
    history: tuple[dict[int, tuple[int, ...]], list[int]],
) -> None:
    positions, arrived = history
    marks = Marks()
    for seq in arrived:
        marks.account(A, positions[seq], held=[seq])
        # After every arrival, not only at the end: no order lets the mark jump a gap.
        assert marks.mark(A) == expected_mark(positions, arrived[: arrived.index(seq) + 1])
    assert marks.top(A) == max(arrived, default=0)
    freed = [p for seq in arrived for p in positions[seq] if p != seq]
    mark, top, ahead = Marks.walk(A, arrived, freed)
    assert (mark, top) == (marks.mark(A), marks.top(A))
    assert ahead == {p for seq in arrived for p in positions[seq] if p > mark}
    assert marks.ahead(A) == len(ahead)


def test_a_partial_backup_does_not_move_the_mark() -> None:
    marks = Marks()
    assert marks.account(A, range(5, 11), held=range(5, 11)) == 0
    assert (marks.top(A), marks.ahead(A), marks.marks()) == (10, 6, {})
    assert marks.account(A, range(1, 5), held=range(1, 5)) == 10
    assert marks.ahead(A) == 0 and marks.marks() == {A: 10}


def test_version_1_tombstones_fill_one_gap_each_below_them() -> None:
    # Held: 1, 3, 5 and an old tombstone at 6 (it deleted #2 or #4, without saying which).
    assert Marks.walk(A, [1, 3, 5, 6], [], [6])[0] == 3
    assert Marks.walk(A, [1, 3, 5, 6, 7], [], [6, 7])[0] == 7
    # A credit only fills a gap below its tombstone.
    assert Marks.walk(A, [1, 2, 4], [], [2])[0] == 2
