"""Tests of meshnode.ask.policy: scores, ranking with exploration, answer choice, forwarding."""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshnode.ask.policy import (
    DEFAULT_POLICY,
    Candidate,
    RoutingPolicy,
    choose_answer,
    corroborated_choice,
    forward_targets,
    rank,
    score,
    waves,
)

PROPS = settings(
    deadline=timedelta(seconds=2),
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
FLOOR = DEFAULT_POLICY.trust_floor


def cand(
    peer: str,
    relevance: float = 0.8,
    trust: float = 0.5,
    load: float = 0.0,
    rtt_ms: float | None = 20.0,
    experience: float = 1.0,
) -> Candidate:
    return Candidate(f"agent-{peer}", peer, relevance, trust, load, rtt_ms, experience)


any_float = st.floats(allow_nan=True, allow_infinity=True)
unit = st.floats(0.0, 1.0)
candidates = st.builds(
    Candidate,
    agent=st.text(max_size=4),
    peer_id=st.text(alphabet="abcdef", min_size=1, max_size=3),
    relevance=unit,
    trust=unit,
    load=st.floats(0.0, 10.0),
    rtt_ms=st.none() | st.floats(0.0, 5000.0),
    experience=st.floats(0.0, 2.0),
)


# -- the score -----------------------------------------------------------------------------


def test_score_is_the_documented_product() -> None:
    s = score(cand("a", relevance=0.9, trust=0.5, load=1.0, rtt_ms=1000.0, experience=1.5))
    assert s.factors == pytest.approx(
        {"relevance": 0.81, "experience": 1.5, "trust": 0.5, "load": 0.5, "latency": 0.5}
    )
    assert s.score == pytest.approx(0.81 * 1.5 * 0.5 * 0.5 * 0.5)


@PROPS
@given(any_float, any_float, any_float, st.none() | any_float, any_float)
def test_score_is_finite_and_non_negative_for_any_input(
    relevance: float, trust: float, load: float, rtt: float | None, experience: float
) -> None:
    s = score(Candidate("x", "p", relevance, trust, load, rtt, experience))
    assert math.isfinite(s.score) and s.score >= 0.0
    json.dumps(s.explain())


@PROPS
@given(candidates, unit, unit)
def test_score_is_monotone(c: Candidate, a: float, b: float) -> None:
    lo, hi = sorted([a, b])

    def with_(**change: float) -> float:
        fields = {
            "agent": c.agent, "peer_id": c.peer_id, "relevance": c.relevance, "trust": c.trust,
            "load": c.load, "rtt_ms": c.rtt_ms, "experience": c.experience,
        }  # fmt: skip
        return score(Candidate(**(fields | change))).score  # type: ignore[arg-type]

    assert with_(relevance=lo) <= with_(relevance=hi)
    assert with_(trust=lo) <= with_(trust=hi)
    assert with_(experience=2 * lo) <= with_(experience=2 * hi)
    assert with_(load=lo) >= with_(load=hi)
    assert with_(rtt_ms=1000 * lo) >= with_(rtt_ms=1000 * hi)


def test_trust_below_the_floor_counts_as_a_stranger() -> None:
    # A clique's dust must not lift its identities above an honest stranger.
    assert score(cand("dust", trust=FLOOR / 2)).score == score(cand("new", trust=0.0)).score
    assert score(cand("known", trust=0.5)).score > 20 * score(cand("new", trust=0.0)).score


def test_a_known_liar_ranks_below_a_stranger() -> None:
    liar, stranger = cand("liar", trust=0.0, experience=0.3), cand("new", trust=0.0)
    ranked = rank([liar, stranger], min_relevance=0.5, explore=0.0, rng=random.Random(0))
    assert [s.candidate.peer_id for s in ranked] == ["new", "liar"]


# -- ranking and exploration ----------------------------------------------------------------


@PROPS
@given(st.lists(candidates, max_size=12), unit, st.integers(0, 2**32))
def test_rank_orders_the_relevant_candidates(
    cs: list[Candidate], min_relevance: float, seed: int
) -> None:
    ranked = rank(cs, min_relevance=min_relevance, explore=0.0, rng=random.Random(seed))
    relevant = [c for c in cs if c.relevance >= min_relevance]
    assert sorted(map(id, (s.candidate for s in ranked))) == sorted(map(id, relevant))
    scores = [s.score for s in ranked]
    assert scores == sorted(scores, reverse=True) and not any(s.explore for s in ranked)


@PROPS
@given(st.lists(candidates, max_size=12), st.integers(0, 2**32))
def test_exploration_moves_one_newcomer_to_the_front(cs: list[Candidate], seed: int) -> None:
    plain = rank(cs, min_relevance=0.3, explore=0.0, rng=random.Random(seed))
    ranked = rank(cs, min_relevance=0.3, explore=1.0, rng=random.Random(seed))
    newcomers = [
        s for s in plain if s.candidate.trust < DEFAULT_POLICY.newcomer_trust
        and s.candidate.experience >= 1.0
    ]  # fmt: skip
    established = [
        s for s in plain if s.candidate.trust >= DEFAULT_POLICY.newcomer_trust
        or s.candidate.experience > 1.0
    ]  # fmt: skip
    if not established:  # a fresh mesh: nobody to explore away from, the ranking stands
        newcomers = []
    assert [s.explore for s in ranked].count(True) == (1 if newcomers else 0)
    if newcomers:
        assert ranked[0].explore and ranked[0].candidate in [s.candidate for s in newcomers]
        rest = [s.candidate for s in plain if s.candidate is not ranked[0].candidate]
        assert [s.candidate for s in ranked[1:]] == rest  # the others keep their order
    else:
        assert [s.candidate for s in ranked] == [s.candidate for s in plain]


def test_exploration_happens_at_the_configured_rate() -> None:
    cs = [
        cand("trusted", trust=1.0),
        cand("new", trust=0.0),
        cand("liar", trust=0.0, experience=0.5),
    ]
    rng = random.Random(42)
    picks = [rank(cs, min_relevance=0.5, explore=0.1, rng=rng)[0] for _ in range(5000)]
    explored = [s for s in picks if s.explore]
    assert 0.08 < len(explored) / len(picks) < 0.12
    assert {s.candidate.peer_id for s in explored} == {"new"}  # never the known liar
    assert all(s.candidate.peer_id == "trusted" for s in picks if not s.explore)


def test_a_fresh_mesh_is_ranked_by_relevance_not_chance() -> None:
    # Nobody has trust or experience yet: exploring would only put a less relevant agent
    # first at random.
    cs = [cand("expert", relevance=1.0, trust=0.0), cand("other", relevance=0.7, trust=0.0)]
    rng = random.Random(7)
    for _ in range(200):
        ranked = rank(cs, min_relevance=0.0, explore=1.0, rng=rng)
        assert [s.candidate.peer_id for s in ranked] == ["expert", "other"]
        assert not any(s.explore for s in ranked)


def test_nothing_relevant_gives_an_empty_ranking() -> None:
    cs = [cand("a", relevance=0.2), cand("b", relevance=0.1, trust=0.0)]
    assert rank(cs, min_relevance=0.5, explore=1.0, rng=random.Random(0)) == []


def test_ties_break_on_peer_id_not_input_order() -> None:
    cs = [cand("b", trust=0.0), cand("a", trust=0.0), cand("c", trust=0.0)]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        ranked = rank([cs[i] for i in order], min_relevance=0.0, explore=0.0, rng=random.Random())
        assert [s.candidate.peer_id for s in ranked] == ["a", "b", "c"]


# -- waves ------------------------------------------------------------------------------


@PROPS
@given(st.lists(candidates, max_size=15), st.integers(1, 4), st.integers(1, 5), st.booleans(),
       st.integers(0, 3))
def test_waves_partition_the_ranking(
    cs: list[Candidate], fanout: int, max_waves: int, explore: bool, seats: int
) -> None:
    ranked = rank(cs, min_relevance=0.0, explore=float(explore), rng=random.Random(1))
    groups = waves(ranked, fanout=fanout, max_waves=max_waves, probation_seats=seats)
    assert len(groups) <= max_waves and (groups or not ranked)
    flat = [s for g in groups for s in g]
    assert len({id(s) for s in flat}) == len(flat)  # nobody is asked twice
    explored = [s for s in ranked if s.explore]
    # The first wave: the exploration pick, the best by score, and extras (the ``seats``
    # neediest on probation left out, then the most relevant left out); the others: in
    # order, fanout each.
    if groups:
        first = groups[0]
        assert all(s in first for s in explored)
        plain = [s for s in ranked if not s.explore]
        assert [s for s in first if not s.explore][:fanout] == plain[:fanout]
        assert len(first) <= fanout + len(explored) + seats + 1
        later = [s for g in groups[1:] for s in g]
        assert all(0 < len(g) <= fanout for g in groups[1:])
        extra = [s for s in first if not s.explore][fanout:]
        # By identity: equal candidates may be ranked twice.
        remaining = [s for s in plain[fanout:] if all(s is not e for e in extra)]
        assert later == remaining[: len(later)]
        left_out = plain[fanout:]
        for _ in range(seats):  # the neediest on probation are asked now
            if not any(s.probation for s in left_out):
                break
            assert extra and extra[0].probation
            need = [s.factors["relevance"] / (s.factors["trust"] * s.factors["experience"])
                    for s in (extra[0], *(s for s in left_out if s.probation))]
            assert need[0] == max(need)
            left_out = [s for s in left_out if s is not extra[0]]
            extra = extra[1:]
        if extra:  # the most relevant candidate left out
            assert len(extra) == 1
            assert extra[0].candidate.relevance >= max(s.candidate.relevance for s in left_out)


def test_trust_picks_the_answer_and_relevance_who_gives_it() -> None:
    trusted = cand("t", relevance=0.5, trust=1.0)
    expert = cand("e", relevance=1.0, trust=0.0)
    liar = cand("l", relevance=1.0, trust=0.0, rtt_ms=1.0)
    answers: list[tuple[Candidate, float | None]] = [(trusted, 0.8), (expert, 0.9), (liar, 0.95)]
    choice = choose_answer(answers, min_quality=0.5)
    assert choice.index == 0  # by quality x trust, the trusted answer
    # The expert says the same as the trusted answer: being the most relevant, it answers
    # (and so earns trust); the liar, as relevant and nearer, says something else: never.
    same = corroborated_choice(choice, answers, [True, True, False], min_quality=0.5)
    assert same.index == 1 and "fits the question best" in same.reasons[1]
    assert corroborated_choice(choice, answers, [True, False, False]).index == 0
    # A liar caught before (a bad record here) does not answer by quoting the truth.
    caught = cand("c", relevance=1.0, trust=0.0, experience=0.5)
    quoting: list[tuple[Candidate, float | None]] = [(trusted, 0.8), (caught, 0.9)]
    assert corroborated_choice(choose_answer(quoting, min_quality=0.5), quoting, [True, True],
                               min_quality=0.5).index == 0
    # Too poor an answer does not answer, even saying the same.
    poor: list[tuple[Candidate, float | None]] = [(trusted, 0.8), (expert, 0.3)]
    assert corroborated_choice(choose_answer(poor, min_quality=0.5), poor, [True, True],
                               min_quality=0.5).index == 0
    # Nothing chosen: nothing to corroborate.
    none = choose_answer([(trusted, None)], min_quality=0.5)
    assert corroborated_choice(none, [(trusted, None)], [False]).index is None


def test_the_most_relevant_candidate_joins_the_first_wave() -> None:
    # The trusted generalists rank first; the stranger expert, most relevant, is asked too.
    cs = [cand("g1", relevance=0.6, trust=1.0), cand("g2", relevance=0.5, trust=1.0),
          cand("g3", relevance=0.4, trust=1.0), cand("expert", relevance=1.0, trust=0.0)]
    ranked = rank(cs, min_relevance=0.0, explore=0.0, rng=random.Random(0))
    first, *rest = waves(ranked, fanout=2, max_waves=3)
    assert [s.candidate.peer_id for s in first] == ["g1", "g2", "expert"]
    assert [[s.candidate.peer_id for s in g] for g in rest] == [["g3"]]


def test_a_candidate_on_probation_is_asked_beside_the_trusted_ones() -> None:
    # An expert that answered well here once (experience 4/3) but that few vouch for yet
    # scores a fiftieth of the trusted experts: without the seat it would never be asked
    # again, and a more relevant stranger (which nobody vouches for) takes the fittest seat.
    cs = [cand("t1", relevance=0.8, trust=1.0, experience=1.9),
          cand("t2", relevance=0.8, trust=1.0, experience=1.8),
          cand("t3", relevance=0.8, trust=1.0, experience=1.7),
          cand("new", relevance=0.8, trust=0.0, experience=4 / 3),
          cand("stranger", relevance=0.9, trust=0.0)]
    ranked = rank(cs, min_relevance=0.5, explore=0.05, rng=random.Random(0))
    assert [s.candidate.peer_id for s in ranked if s.probation] == ["new"]
    first, *rest = waves([s for s in ranked if not s.explore], fanout=2, max_waves=3)
    assert [s.candidate.peer_id for s in first] == ["t1", "t2", "new", "stranger"]
    assert [[s.candidate.peer_id for s in g] for g in rest] == [["t3"]]
    # Exploration off (the operator's choice): nobody is on probation.
    plain = rank(cs, min_relevance=0.5, explore=0.0, rng=random.Random(0))
    assert not any(s.probation for s in plain)
    assert "new" not in [s.candidate.peer_id for s in waves(plain, fanout=2, max_waves=3)[0]]


def test_only_the_vouched_for_with_no_bad_record_are_on_probation() -> None:
    cs = [cand("fresh", trust=0.0),  # a new identity nobody vouches for: a Sybil's, maybe
          cand("dust", trust=FLOOR / 2),  # what a clique spreads over its identities
          cand("vouched", trust=FLOOR),  # others' good record with it
          cand("known", trust=0.0, experience=1.2),  # this node's good record with it
          cand("caught", trust=0.3, experience=0.8),  # a bad record here outweighs trust
          cand("proven", trust=DEFAULT_POLICY.proven_trust, experience=1.5)]  # ranks itself
    ranked = rank(cs, min_relevance=0.0, explore=0.05, rng=random.Random(1))
    assert sorted(s.candidate.peer_id for s in ranked if s.probation) == ["known", "vouched"]


def test_the_probation_seat_goes_to_the_least_proven_for_its_fit() -> None:
    trusted = [cand(f"t{i}", trust=1.0, experience=2.0) for i in range(2)]
    rising = cand("rising", relevance=0.8, trust=0.3, experience=1.9)
    newer = cand("newer", relevance=0.8, trust=0.03, experience=1.3)
    off_topic = cand("poor-fit", relevance=0.1, trust=0.02, experience=1.3)
    ranked = rank([*trusted, rising, newer, off_topic], min_relevance=0.0, explore=0.05,
                  rng=random.Random(2))
    first = waves([s for s in ranked if not s.explore], fanout=2, max_waves=2,
                  probation_seats=1)[0]
    assert [s.candidate.peer_id for s in first] == ["t0", "t1", "newer"]
    # One on probation ranks among the trusted: the seat still goes to the least proven.
    held = waves([s for s in ranked if not s.explore], fanout=3, max_waves=2,
                 probation_seats=1)[0]
    assert [s.candidate.peer_id for s in held] == ["t0", "t1", "rising", "newer"]
    # As trusted, as relevant: the one this node knows less (a smaller record here) is the
    # one asking teaches more about, though the other scores higher.
    known = cand("known", relevance=0.8, trust=0.1, experience=1.9)
    unknown = cand("unknown", relevance=0.8, trust=0.1, experience=1.0)
    ranked = rank([*trusted, known, unknown], min_relevance=0.0, explore=0.05,
                  rng=random.Random(3))
    first = waves([s for s in ranked if not s.explore], fanout=2, max_waves=2,
                  probation_seats=1)[0]
    assert [s.candidate.peer_id for s in first] == ["t0", "t1", "unknown"]


def test_waves_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        waves([], fanout=0, max_waves=1)
    with pytest.raises(ValueError):
        waves([], fanout=1, max_waves=0)


# -- choosing the answer --------------------------------------------------------------------


def test_choose_by_quality_times_trust() -> None:
    trusted, stranger = cand("t", trust=1.0), cand("s", trust=0.0)
    choice = choose_answer([(stranger, 0.95), (trusted, 0.7)])
    assert choice.index == 1  # a confident stranger does not beat a trusted expert
    assert choice.scores[0] == pytest.approx(0.95 * FLOOR) and choice.scores[1] == 0.7
    alone = choose_answer([(stranger, 0.9)], min_quality=0.5)
    assert alone.index == 0  # a stranger's answer is taken when it is the only good one
    json.dumps(choice.explain())


def test_failed_and_poor_answers_fail_over() -> None:
    choice = choose_answer(
        [(cand("a"), None), (cand("b"), 0.3), (cand("c"), math.nan)], min_quality=0.5
    )
    assert choice.index is None and choice.scores == [None, None, None]
    assert "no answer" in choice.reasons[0] and "below" in choice.reasons[1]
    assert choose_answer([]).index is None


def test_ties_go_to_the_better_ranked_answer() -> None:
    assert choose_answer([(cand("a"), 0.8), (cand("b"), 0.8)]).index == 0


def test_near_ties_go_to_the_more_relevant_then_the_nearer_agent_not_to_chance() -> None:
    # In a fresh mesh (everyone at the trust floor) two answers of nearly the same quality:
    # the agent whose skills fit the question better wins, even if answered second.
    generalist = cand("a", relevance=0.6, trust=0.0)
    expert = cand("b", relevance=1.0, trust=0.0)
    choice = choose_answer([(generalist, 0.84), (expert, 0.8)])
    assert choice.index == 1 and "near-tie" in choice.reasons[1]
    # Equally relevant: the nearer one.
    far, near = cand("c", rtt_ms=300.0), cand("d", rtt_ms=5.0)
    assert choose_answer([(far, 0.8), (near, 0.78)]).index == 1
    # A clearly better answer is no tie: quality still decides.
    assert choose_answer([(generalist, 0.9), (expert, 0.5)]).index == 0
    # An answer of quality 0 (an echo, nothing grounded) is never taken, even alone.
    assert choose_answer([(expert, 0.0)], min_quality=0.0).index is None


@PROPS
@given(st.lists(st.tuples(candidates, st.none() | unit), max_size=8), unit)
def test_the_choice_has_the_best_acceptable_score(
    answers: list[tuple[Candidate, float | None]], min_quality: float
) -> None:
    choice = choose_answer(answers, min_quality=min_quality)
    acceptable = [i for i, (_, q) in enumerate(answers)
                  if q is not None and q >= min_quality and q > 0.0]
    if not acceptable:
        assert choice.index is None
        return
    assert choice.index in acceptable
    chosen = choice.scores[choice.index]
    top = max(choice.scores[i] or 0.0 for i in acceptable)
    # The best score, or one within the near-tie margin of it (then the most relevant).
    assert chosen is not None and chosen >= (1.0 - DEFAULT_POLICY.near_tie) * top


# -- forwarding -----------------------------------------------------------------------------


def test_forward_to_the_most_trusted_unvisited_neighbours() -> None:
    plan = forward_targets(
        {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.7}, {"me", "a"}, hop_limit=3, hops=0, fanout=2
    )
    assert plan.targets == ["d", "c"] and plan.hops == 1
    assert plan.visited == {"me", "a", "d", "c"}  # siblings will not ask them again
    json.dumps(plan.explain())


def test_forwarding_stops_at_the_hop_limit_and_when_all_were_visited() -> None:
    at_limit = forward_targets({"a": 1.0}, {"me"}, hop_limit=2, hops=2, fanout=3)
    assert at_limit.targets == [] and "hop limit" in at_limit.reason
    seen = forward_targets({"a": 1.0}, {"me", "a"}, hop_limit=2, hops=0, fanout=3)
    assert seen.targets == [] and "seen" in seen.reason
    assert forward_targets({"a": 1.0}, set(), hop_limit=0, hops=0, fanout=1).targets == []


@PROPS
@given(
    st.dictionaries(st.text(max_size=3), unit, max_size=10),
    st.sets(st.text(max_size=3), max_size=5),
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, 4),
)
def test_forward_targets_properties(
    trust: dict[str, float], visited: set[str], hop_limit: int, hops: int, fanout: int
) -> None:
    plan = forward_targets(trust, visited, hop_limit, hops, fanout)
    assert len(plan.targets) <= fanout and len(set(plan.targets)) == len(plan.targets)
    assert not set(plan.targets) & visited and set(plan.targets) <= set(trust)
    assert plan.visited == frozenset(visited) | set(plan.targets)
    if hops >= hop_limit:
        assert plan.targets == []
    if plan.targets:
        assert plan.hops == hops + 1
        left = [trust[p] for p in trust if p not in plan.visited]
        assert min(trust[p] for p in plan.targets) >= max(left, default=0.0)


def test_a_custom_policy_can_ignore_trust() -> None:
    relevance_only = RoutingPolicy(trust_exp=0.0)
    ranked = rank(
        [cand("t", relevance=0.7, trust=1.0), cand("s", relevance=0.9, trust=0.0)],
        min_relevance=0.0, explore=0.0, rng=random.Random(0), policy=relevance_only,
    )  # fmt: skip
    assert [s.candidate.peer_id for s in ranked] == ["s", "t"]


def test_probation_seats_are_asked_by_need_and_can_be_turned_off() -> None:
    trusted = [cand(f"t{i}", trust=1.0, experience=2.0) for i in range(2)]
    rising = cand("rising", relevance=0.8, trust=0.3, experience=1.9)
    newer = cand("newer", relevance=0.8, trust=0.03, experience=1.3)
    ranked = [s for s in rank([*trusted, rising, newer], min_relevance=0.0, explore=0.05,
                              rng=random.Random(2)) if not s.explore]
    first = waves(ranked, fanout=2, max_waves=2)[0]
    assert [s.candidate.peer_id for s in first] == ["t0", "t1", "newer", "rising"]
    one = waves(ranked, fanout=2, max_waves=2, probation_seats=1)
    assert [s.candidate.peer_id for s in one[0]] == ["t0", "t1", "newer"]
    assert [s.candidate.peer_id for g in waves(ranked, fanout=2, max_waves=2,
                                               probation_seats=0) for s in g][:2] == ["t0", "t1"]
