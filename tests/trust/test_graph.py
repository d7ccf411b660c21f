"""Tests of meshnode.trust.graph: evidence, local trust, attestations and global trust."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshnode.trust.graph import Outcome, TrustGraph, TrustStateError
from protocols.trust import MAX_TRUST_PEERS, TrustAttestation, attestation_from_envelope
from tests.trust.helpers import NOW, attestation, pid, signer, wire

PROPS = settings(
    deadline=timedelta(seconds=5),
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
ME, BOOT = pid(0), pid(1)
DAY = 86_400.0


def graph(**options: float | int | None) -> TrustGraph:
    """Node 0, with node 1 as its bootstrap peer: pre-trusted {0, 1}."""
    return TrustGraph(ME, {ME, BOOT}, **options)  # type: ignore[arg-type]


def reference(g: TrustGraph) -> dict[str, float]:
    """Global trust by the textbook: a dense matrix C whose rows are completed with p."""
    rows = {ME: g.local_trust()}
    rows |= {a: dict(k.attestation.scores) for a, k in g._attestations.items()}
    peers = sorted({ME, *g.pre_trusted, *rows, *(j for r in rows.values() for j in r)})
    at = {peer: i for i, peer in enumerate(peers)}
    p = np.array([1.0 / len(g.pre_trusted) if q in g.pre_trusted else 0.0 for q in peers])
    c = np.tile(p, (len(peers), 1))  # a peer that published nothing trusts as p does
    for author, row in rows.items():
        c[at[author]] = p * (1.0 - sum(row.values()))
        for j, v in row.items():
            c[at[author], at[j]] += v
    t = p.copy()
    for _ in range(2000):
        t = (1 - g.alpha) * c.T @ t + g.alpha * p
    return {peer: float(t[at[peer]]) for peer in peers}


# -- outcomes and local trust -------------------------------------------------------------


def test_outcome_weights_have_the_right_signs() -> None:
    assert Outcome.ACCEPTED.weight > 0 and Outcome.RATED_GOOD.weight > Outcome.ACCEPTED.weight
    for bad in (Outcome.RATED_BAD, Outcome.FAILED, Outcome.TIMEOUT, Outcome.MALFORMED):
        assert bad.weight < 0
    assert Outcome.BAD_SIGNATURE.weight <= Outcome.RATED_BAD.weight < Outcome.TIMEOUT.weight
    assert Outcome("rated_good") is Outcome.RATED_GOOD  # wire/CLI names map back


def test_no_evidence_gives_the_pre_trusted_distribution() -> None:
    g = TrustGraph(ME, {ME, pid(1), pid(2)})
    assert g.local_trust() == {pid(1): 0.5, pid(2): 0.5}  # never itself
    assert TrustGraph(ME, {ME}).local_trust() == {}
    assert TrustGraph(ME, set()).pre_trusted == {ME}  # anchored on itself when none given


def test_local_trust_is_normalised_net_satisfaction() -> None:
    g = graph()
    for _ in range(3):
        g.record(pid(5), Outcome.ACCEPTED, now=NOW)
    g.record(pid(6), Outcome.RATED_GOOD, now=NOW)  # net 2
    g.record(pid(6), Outcome.FAILED, now=NOW)  # net 1
    g.record(pid(7), Outcome.ACCEPTED, now=NOW)
    g.record(pid(7), Outcome.RATED_BAD, now=NOW)  # net -3: no trust, and no negative trust
    g.record(pid(8), Outcome.ACCEPTED, now=NOW)
    g.record(pid(8), Outcome.FAILED, now=NOW)  # net 0: not listed at all
    assert g.local_trust() == pytest.approx({pid(5): 0.75, pid(6): 0.25})
    assert g.evidence_counts(pid(6)) == {"rated_good": 1, "failed": 1}
    assert g.evidence_counts(pid(99)) == {}


def test_only_bad_evidence_falls_back_to_pre_trusted() -> None:
    g = graph()
    g.record(pid(5), Outcome.TIMEOUT, now=NOW)
    g.record(pid(6), Outcome.BAD_SIGNATURE, now=NOW)
    assert g.local_trust() == {BOOT: 1.0}


def test_a_node_cannot_vouch_for_itself() -> None:
    g = graph()
    g.record(ME, Outcome.RATED_GOOD, now=NOW)
    assert g.evidence_counts(ME) == {} and ME not in g.attestation(NOW).scores


def test_evidence_decays_with_its_half_life() -> None:
    g = graph(half_life_s=DAY)
    for _ in range(8):
        g.record(pid(5), Outcome.ACCEPTED, now=NOW)
    g.record(pid(6), Outcome.ACCEPTED, now=NOW + 3 * DAY)  # 8 halved three times is 1
    assert g.local_trust() == pytest.approx({pid(5): 0.5, pid(6): 0.5})
    # A peer that turns bad cannot live on an old reputation.
    g.record(pid(5), Outcome.RATED_BAD, now=NOW + 3 * DAY)
    assert g.local_trust() == {pid(6): 1.0}


def test_experience_tells_a_liar_from_a_stranger() -> None:
    g = graph()
    assert g.experience(pid(5)) == 1.0
    g.record(pid(5), Outcome.RATED_BAD, skill="python", now=NOW)
    g.record(pid(6), Outcome.RATED_GOOD, skill="python", now=NOW)
    assert g.experience(pid(5)) < 0.5 < 1.0 < g.experience(pid(6)) < 2.0
    # Per skill: good at python overall, but this node saw it fail at milvus.
    g.record(pid(6), Outcome.FAILED, skill="milvus", now=NOW)
    g.record(pid(6), Outcome.FAILED, skill="milvus", now=NOW)
    assert g.experience(pid(6), "milvus") < 1.0 <= g.experience(pid(6), "python")
    assert g.experience(pid(6), "unseen-skill") == g.experience(pid(6))


def test_evidence_is_bounded() -> None:
    g = graph(max_peers=3, max_skills=2)
    for i, peer in enumerate([5, 6, 7, 8]):
        g.record(pid(peer), Outcome.RATED_GOOD, now=NOW + i)
        g.record(pid(peer), Outcome.RATED_GOOD, now=NOW + i)
    assert set(g.local_trust()) == {pid(6), pid(7), pid(8)}  # the stalest went
    for skill in ["a", "b", "c"]:
        g.record(pid(8), Outcome.FAILED, skill=skill, now=NOW + 9)
    # Skill "c" found no room, so only the peer's overall record speaks for it.
    assert g.experience(pid(8), "c") == g.experience(pid(8)) > 1.0 > g.experience(pid(8), "a")


# -- the published vector ---------------------------------------------------------------


def test_attestation_decodes_and_its_seq_grows() -> None:
    g = graph()
    g.record(pid(5), Outcome.ACCEPTED, now=NOW)
    first, second = g.attestation(NOW), g.attestation(NOW)
    assert second.seq > first.seq >= int(NOW * 1e6)
    decoded = attestation_from_envelope(wire(signer(0), second.to_body()))
    assert decoded.scores == {pid(5): 1.0} and decoded.author == ME


def test_a_long_vector_is_cut_to_its_top_entries() -> None:
    g = graph()
    for i in range(MAX_TRUST_PEERS + 5):
        for _ in range(1 + (i < 5)):  # five peers with twice the evidence
            g.record(pid(100 + i), Outcome.ACCEPTED, now=NOW)
    att = attestation_from_envelope(wire(signer(0), g.attestation(NOW).to_body()))
    assert len(att.scores) == MAX_TRUST_PEERS and sum(att.scores.values()) < 1.0
    assert all(pid(100 + i) in att.scores for i in range(5))


# -- attestations kept --------------------------------------------------------------------


def test_only_the_newest_attestation_per_author_is_kept() -> None:
    g = graph()  # the author is node 1, pre-trusted, so what it says counts
    assert g.accept_attestation(attestation(1, {5: 1.0}, seq=2), NOW)
    assert not g.accept_attestation(attestation(1, {6: 1.0}, seq=1), NOW)  # late arrival
    assert not g.accept_attestation(attestation(1, {6: 1.0}, seq=2), NOW)  # a replay
    assert not g.accept_attestation(attestation(0, {6: 1.0}, seq=9), NOW)  # our own, echoed
    g.compute_global()
    assert g.global_trust(pid(5)) > 0 and g.global_trust(pid(6)) == 0
    assert g.accept_attestation(attestation(1, {6: 1.0}, seq=3), NOW)
    g.compute_global()
    assert g.global_trust(pid(5)) == 0 and g.global_trust(pid(6)) > 0


def test_a_flood_of_new_authors_cannot_displace_trusted_ones() -> None:
    g = graph(max_authors=2)
    g.record(pid(2), Outcome.ACCEPTED, now=NOW)  # node 2 earns trust, node 3 does not
    assert g.accept_attestation(attestation(2, {5: 1.0}), NOW)
    assert g.accept_attestation(attestation(3, {5: 1.0}), NOW)
    g.compute_global()
    for sybil in range(50, 60):  # each fresher than the last, none trusted
        assert g.accept_attestation(attestation(sybil, {51: 1.0}), NOW + sybil)
    kept = {p["peer_id"] for p in g.snapshot(limit=10_000)["peers"] if p["attestation"]}
    assert kept == {pid(2), pid(59)}
    # An untrusted author no fresher than the stalest untrusted one kept is dropped.
    assert not g.accept_attestation(attestation(70, {5: 1.0}), NOW + 59)


def test_attestations_of_vanished_authors_expire() -> None:
    g = graph(attestation_ttl_s=600.0)
    g.record(pid(2), Outcome.ACCEPTED, now=NOW)
    g.accept_attestation(attestation(2, {5: 1.0}), NOW)
    g.compute_global()
    assert g.global_trust(pid(5)) > 0
    g.record(pid(9), Outcome.TIMEOUT, now=NOW + 601)  # time passes; node 2 stays silent
    g.compute_global()
    assert g.global_trust(pid(5)) == 0 and g.snapshot()["authors"] == 0


# -- global trust -------------------------------------------------------------------------


def test_with_no_evidence_global_trust_stays_on_the_anchor() -> None:
    g = graph()
    t = g.compute_global()
    assert set(t) == {ME, BOOT} and sum(t.values()) == pytest.approx(1.0)
    assert t == pytest.approx(reference(g))
    assert g.relative_trust(ME) == 1.0 and g.relative_trust(pid(9)) == 0.0
    assert g.last_run["converged"]
    assert TrustGraph(ME, {ME}).compute_global() == {ME: 1.0}


def test_newcomers_start_at_zero_and_earn_trust() -> None:
    g = graph()
    g.accept_attestation(attestation(1, {2: 1.0}), NOW)
    g.compute_global()
    assert g.global_trust(pid(7)) == 0.0 and g.relative_trust(pid(7)) == 0.0
    g.record(pid(7), Outcome.ACCEPTED, now=NOW)
    g.compute_global()
    assert g.global_trust(pid(7)) > 0.1 and g.relative_trust(pid(7)) > 0.5


def test_only_pre_trusted_peers() -> None:
    g = TrustGraph(ME, {ME, pid(1), pid(2)})
    g.accept_attestation(attestation(1, {2: 1.0}), NOW)
    g.accept_attestation(attestation(2, {1: 1.0}), NOW)
    t = g.compute_global()
    assert set(t) == {ME, pid(1), pid(2)} and sum(t.values()) == pytest.approx(1.0)
    assert t[pid(1)] == pytest.approx(t[pid(2)]) and t[pid(1)] > t[ME]


def test_a_clique_that_only_vouches_for_itself_gets_nothing() -> None:
    g = graph()
    g.record(pid(2), Outcome.ACCEPTED, now=NOW)
    g.accept_attestation(attestation(2, {3: 1.0}), NOW)
    clique = range(50, 70)
    for member in clique:
        g.accept_attestation(attestation(member, {m: 1 / 19 for m in clique if m != member}), NOW)
    t = g.compute_global()
    assert sum(t[pid(m)] for m in clique) == 0.0
    assert max(g.relative_trust(pid(m)) for m in clique) == 0.0


@st.composite
def meshes(draw: st.DrawFn) -> TrustGraph:
    """A graph with random evidence and random honest attestations about peers 1..12."""
    g = graph(alpha=draw(st.sampled_from([0.1, 0.15, 0.3, 0.5])))
    for peer in draw(st.lists(st.integers(1, 12), max_size=20)):
        g.record(pid(peer), draw(st.sampled_from(list(Outcome))), now=NOW)
    for author in draw(st.lists(st.integers(1, 12), unique=True, max_size=12)):
        others = [p for p in range(13) if p != author]
        peers = draw(st.lists(st.sampled_from(others), unique=True))
        raw = [draw(st.floats(0.0, 1.0)) for _ in peers]
        total = max(1.0, sum(raw))
        g.accept_attestation(
            attestation(author, dict(zip(peers, [v / total for v in raw], strict=True))), NOW
        )
    return g


@PROPS
@given(meshes())
def test_global_trust_is_the_eigentrust_fixed_point(g: TrustGraph) -> None:
    t = g.compute_global()
    assert g.last_run["converged"] and g.last_run["iterations"] < g.max_iterations
    assert sum(t.values()) == pytest.approx(1.0) and min(t.values()) >= 0.0
    assert t == pytest.approx(reference(g), abs=1e-7)
    for peer in t:
        assert 0.0 <= g.relative_trust(peer) <= 1.0


@PROPS
@given(meshes(), st.integers(2, 8), st.floats(0.0, 0.2))
def test_a_colluding_clique_gains_little(g: TrustGraph, size: int, leak: float) -> None:
    """A clique holds at most (1 - alpha) / alpha times what honest peers give it."""
    clique = [pid(40 + i) for i in range(size)]
    for member in clique:
        praise = {m: 1.0 / (size - 1) for m in clique if m != member}
        g.accept_attestation(TrustAttestation(member, 1, NOW, praise), NOW)
    # One honest author (node 1, pre-trusted) is fooled into giving the clique ``leak``.
    row = {pid(2): 1.0 - leak, clique[0]: leak}
    g.accept_attestation(TrustAttestation(pid(1), 99, NOW, row), NOW)
    t = g.compute_global()
    honest_rows = {ME: g.local_trust()} | {
        a: k.attestation.scores for a, k in g._attestations.items() if a not in clique
    }
    inflow = sum(t[a] * sum(row.get(m, 0.0) for m in clique) for a, row in honest_rows.items())
    held = sum(t[m] for m in clique)
    assert held <= (1 - g.alpha) / g.alpha * inflow + 1e-7
    if leak == 0.0:
        assert held == 0.0


def test_iteration_stops_at_max_iterations() -> None:
    g = graph(max_iterations=1, eps=0.0)
    g.record(pid(5), Outcome.ACCEPTED, now=NOW)
    t = g.compute_global()
    assert g.last_run["iterations"] == 1 and not g.last_run["converged"]
    assert sum(t.values()) == pytest.approx(1.0)


def test_relative_trust_measures_against_the_typical_peer() -> None:
    g = graph()
    for peer, n in [(5, 6), (6, 3), (7, 1)]:
        for _ in range(n):
            g.record(pid(peer), Outcome.ACCEPTED, now=NOW)
    # A dust-sized clique hangs off node 7, which got one accept out of ten.
    g.accept_attestation(attestation(7, {m: 1 / 40 for m in range(50, 90)}), NOW)
    t = g.compute_global()
    typical = sum(v * v for p, v in t.items() if p != ME) / sum(v for p, v in t.items() if p != ME)
    assert g.relative_trust(pid(6)) == pytest.approx(min(1.0, t[pid(6)] / typical))
    assert g.relative_trust(BOOT) == 1.0  # capped
    ranks = [g.relative_trust(pid(p)) for p in (5, 6, 7)]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] < 1.0
    # Node 7's small share, spread over forty identities, is dust next to it.
    assert max(g.relative_trust(pid(m)) for m in range(50, 90)) < ranks[2] / 40


# -- persistence and the view -------------------------------------------------------------


def populated() -> TrustGraph:
    g = graph(half_life_s=DAY)
    g.record(pid(5), Outcome.ACCEPTED, skill="python", now=NOW)
    g.record(pid(5), Outcome.RATED_GOOD, skill="python", now=NOW + 10)
    g.record(pid(6), Outcome.TIMEOUT, now=NOW + 20)
    g.accept_attestation(attestation(2, {5: 0.5, 7: 0.5}, seq=4), NOW + 30)
    g.attestation(NOW + 40)
    g.compute_global()
    return g


def test_json_round_trip() -> None:
    g = populated()
    last_seq = g.to_json()["seq"]
    data = json.loads(json.dumps(g.to_json()))
    h = TrustGraph.from_json(data, self_id=ME, pre_trusted={ME, BOOT}, half_life_s=DAY)
    assert h.snapshot() == g.snapshot()
    assert h.experience(pid(5), "python") == g.experience(pid(5), "python")
    assert h.attestation(NOW).seq > last_seq  # even if the clock went back meanwhile


@PROPS
@given(st.lists(st.tuples(st.integers(1, 8), st.sampled_from(list(Outcome))), max_size=30))
def test_json_round_trip_property(events: list[tuple[int, Outcome]]) -> None:
    g = graph()
    for i, (peer, outcome) in enumerate(events):
        g.record(pid(peer), outcome, skill=str(peer % 3), now=NOW + i)
    h = TrustGraph.from_json(g.to_json(), self_id=ME, pre_trusted={ME, BOOT})
    assert h.local_trust() == g.local_trust()
    assert h.compute_global() == g.compute_global()
    assert all(
        h.experience(pid(p), str(p % 3)) == g.experience(pid(p), str(p % 3)) for p in range(9)
    )


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    g = populated()
    g.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["trust.json"]  # no temporary left over
    h = TrustGraph.load(path, self_id=ME, pre_trusted={ME, BOOT}, half_life_s=DAY)
    assert h.snapshot() == g.snapshot()
    # The configuration comes from the caller, not the file.
    other = TrustGraph.load(path, self_id=ME, pre_trusted={ME, pid(2)}, alpha=0.5)
    assert other.pre_trusted == {ME, pid(2)} and other.alpha == 0.5
    fresh = TrustGraph.load(tmp_path / "missing.json", self_id=ME, pre_trusted={ME})
    assert fresh.local_trust() == {} and fresh.snapshot()["authors"] == 0


def test_a_new_identity_drops_what_concerns_itself() -> None:
    g = populated()
    # The node's key was replaced by peer 5's: it may hold no evidence about itself.
    h = TrustGraph.from_json(g.to_json(), self_id=pid(5), pre_trusted={pid(5), BOOT})
    assert h.evidence_counts(pid(5)) == {} and pid(5) not in h.local_trust()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[]", id="a-list"),
        pytest.param('{"version": 99}', id="unknown-version"),
        pytest.param("{}", id="empty-object"),
    ],
)
def test_unreadable_state_is_reported(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TrustStateError, match="move it away"):
        TrustGraph.load(path, self_id=ME, pre_trusted={ME})


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["evidence"][pid(5)].update(tally=[math.nan, 0, 0]),
        lambda d: d["evidence"][pid(5)].update(tally=[-1, 0, 0]),
        lambda d: d["evidence"][pid(5)].update(tally=[1, 0]),
        lambda d: d["attestations"][pid(2)]["body"]["scores"].update({pid(7): 2.0}),
        lambda d: d["attestations"][pid(2)]["body"]["scores"].update({pid(7): "x"}),
        lambda d: d.update(clock=math.inf),
    ],
)
def test_damaged_values_are_refused(damage: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(json.dumps(populated().to_json()))
    damage(data)
    with pytest.raises(TrustStateError):
        TrustGraph.from_json(data, self_id=ME, pre_trusted={ME})


def test_snapshot_shows_what_the_cli_needs() -> None:
    view = populated().snapshot()
    assert view["self_id"] == ME and view["pre_trusted"] == sorted({ME, BOOT})
    assert view["last_run"]["converged"] and view["authors"] == 1
    by_peer = {p["peer_id"]: p for p in view["peers"]}
    assert by_peer[pid(5)]["evidence"] == {"accepted": 1, "rated_good": 1}
    assert by_peer[pid(5)]["local"] == 1.0 and by_peer[pid(5)]["global"] > 0
    assert by_peer[pid(2)]["attestation"] == {
        "seq": 4,
        "issued": NOW,
        "last_seen": NOW + 30,
        "peers": 2,
    }
    assert by_peer[ME]["self"] and by_peer[BOOT]["pre_trusted"]
    globals_ = [p["global"] for p in view["peers"]]
    assert globals_ == sorted(globals_, reverse=True)
    json.dumps(view)  # plain data, ready for --json
