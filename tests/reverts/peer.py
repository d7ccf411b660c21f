"""Reverts for findings 5, 7 and 9 of the hostile-peers issue: presence, dialing, trust,
per-peer limits, the API and the CLI (see tests/reverts/__init__.py).

Each ``_*`` function below puts back what commit e70e586 did for one finding (read with
``git show e70e586:<path>``), re-created against today's classes and call signatures; the
:class:`Revert` entries at the end name the tests that must then fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import pytest

from bootstrap import parse_bootstrap
from bootstrap.dialer import DialPolicy, _DialState
from meshnode.api.app import ApiApp
from meshnode.ask.candidates import AgentDirectory
from meshnode.ask.relevance import SkillIndex
from meshnode.cli import output
from meshnode.config import NodeConfig
from meshnode.node.admission import PresenceAdmission
from meshnode.node.handshake import HELLO_PROTOCOL
from meshnode.node.limits import LimitedHost, PeerLimits
from meshnode.node.peers import PeerTable
from meshnode.node.transport import Validator
from meshnode.trust import service as trust_service
from meshnode.trust.evidence import Evidence, EvidenceTable, Outcome, Tally
from protocols.a2a import (
    A2A_PROTOCOL,
    AgentCard,
)
from tests.reverts.revert import Revert

# ---- 5. presence flood -------------------------------------------------------------------


def _presence_any_signer(self: PresenceAdmission, origin: str, forwarder: str, author: str,
                         *, known: bool, now: float) -> None:
    # The rest of today's admission, without comparing the signer with the publisher.
    self._rate("presence", author, now)
    if not known:
        self.vouch(forwarder, author, now)


def presence_any_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PresenceAdmission, "presence", _presence_any_signer)


def _vouch_for_anyone(self: PresenceAdmission, source: str, author: str, now: float) -> None:
    pass  # e70e586: no cost for introducing an identity, however many one peer relays


def presence_no_vouching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PresenceAdmission, "vouch", _vouch_for_anyone)


def _room_while_not_full(self: PeerTable, peer_id: str, verified: bool, now: float,
                         size: int) -> bool:
    # e70e586 peers.py:65-75: entries counted, not weighed; full means no one new.
    return len(self._peers) < self.max_peers


def peer_table_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PeerTable, "_make_room", _room_while_not_full)


def _choose_any_announced(
    self: DialPolicy, *, known: Mapping[str, Sequence[str]], connected: Iterable[str],
    bootstrap: Mapping[str, str], self_id: str, now: float, verified: Set[str] | None = None,
) -> list[tuple[str, list[str]]]:
    # e70e586 bootstrap/dialer.py:47-80: every announced peer is a candidate, at all of its
    # addresses, until the target is met; verified peers first or not, no budget.
    connected = set(connected)
    missing = self.target - len(connected) - len(self._in_flight)
    picks: list[tuple[str, list[str]]] = []
    if not connected and not self._in_flight:
        for peer_id, addr in bootstrap.items():
            if peer_id != self_id and self._ready(peer_id, now):
                picks.append((peer_id, [addr]))
    if missing > len(picks):
        candidates = [p for p, addrs in known.items()
                      if addrs and p != self_id and p not in connected
                      and all(p != q for q, _ in picks) and self._ready(p, now)]
        self._rng.shuffle(candidates)
        picks += [(p, list(known[p])) for p in candidates[: missing - len(picks)]]
    self._in_flight.update(p for p, _ in picks)
    return picks


def _failed_peer_only(self: DialPolicy, peer_id: str, now: float,
                      addrs: Sequence[str] = ()) -> float:
    # e70e586 bootstrap/dialer.py:92-101: the peer backs off, its addresses do not.
    self._done(peer_id)
    return self._backoff(self._state.setdefault(peer_id, _DialState()), now)


def dial_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DialPolicy, "choose", _choose_any_announced)
    monkeypatch.setattr(DialPolicy, "failed", _failed_peer_only)


def _every_agent(self: AgentDirectory,
                 known: list[tuple[str, AgentCard]]) -> list[tuple[str, AgentCard]]:
    return known  # e70e586 asking.py:153-160: every announced agent scored on every ask


def _score_embedding_all() -> Any:
    score = SkillIndex.score

    async def scoring(self: SkillIndex, question: str,
                      agents: Sequence[tuple[str, Sequence[str]]], *,
                      max_new: int | None = None) -> dict[str, float]:
        # e70e586 relevance.py:37-52: every skill set not seen before embedded at once.
        return await score(self, question, agents, max_new=None)

    return scoring


def relevance_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AgentDirectory, "bounded", _every_agent)
    monkeypatch.setattr(SkillIndex, "score", _score_embedding_all())


# ---- 7. bootstrap peers pre-trusted by default --------------------------------------------


def _pre_trusted_with_bootstrap(config: NodeConfig, self_id: str) -> set[str]:
    # e70e586 trust_service.py:34-37, word for word.
    peers = set(config.trust.pre_trusted) or {parse_bootstrap(a).peer_id
                                              for a in config.bootstrap}
    return peers | {self_id}


def bootstrap_pre_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trust_service, "pre_trusted_peers", _pre_trusted_with_bootstrap)


# ---- 9. the smaller ones -----------------------------------------------------------------


def _take_except(protocol: str) -> Any:
    take = PeerLimits.take

    def taking(self: PeerLimits, peer: str, key: str, rate_per_s: float, burst: float) -> bool:
        return True if key == protocol else take(self, peer, key, rate_per_s, burst)

    return taking


def _open_any_stream(self: PeerLimits, peer: str, protocol: str) -> bool:
    return True  # e70e586: streams were neither counted nor limited


def no_request_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PeerLimits, "take", _take_except(A2A_PROTOCOL))
    monkeypatch.setattr(PeerLimits, "open_stream", _open_any_stream)


def repeated_hellos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PeerLimits, "take", _take_except(HELLO_PROTOCOL))


def _validator_as_given(self: LimitedHost, topic: str, validator: Validator) -> None:
    self.inner.set_topic_validator(topic, validator)  # e70e586 host.py:230-231


def junk_gossip_unbudgeted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LimitedHost, "set_topic_validator", _validator_as_given)


def _record_one_table(self: EvidenceTable, peer: str, outcome: Outcome, *,
                      skill: str | None, now: float) -> None:
    # e70e586 trust.py:204-221: one table of max_peers; a newcomer pushes out the stalest,
    # whatever its record.
    evidence = self._good.get(peer)
    if evidence is None:
        if len(self._good) >= self.max_peers:
            stalest = min(self._good, key=lambda p: self._good[p].last)
            del self._good[stalest]
        evidence = self._good[peer] = Evidence(Tally(at=now), last=now)
    evidence.tally.add(outcome.weight, now, self.half_life_s)
    evidence.last = max(evidence.last, now)
    evidence.counts[outcome.value] = evidence.counts.get(outcome.value, 0) + 1
    if skill is not None:
        tally = evidence.skills.get(skill)
        if tally is None and len(evidence.skills) < self.max_skills:
            tally = evidence.skills[skill] = Tally(at=now)
        if tally is not None:
            tally.add(outcome.weight, now, self.half_life_s)


def evidence_one_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EvidenceTable, "record", _record_one_table)


def _any_host(self: ApiApp, *_: str) -> bool:
    return True  # e70e586 api.py:110-145: no Host or Origin header was looked at


def host_origin_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ApiApp, "host_allowed", _any_host)
    monkeypatch.setattr(ApiApp, "origin_allowed", _any_host)


def _as_sent(text: object, *, multiline: bool = False) -> str:
    return str(text)  # e70e586 output.py:12-31: str() of whatever a peer sent


def cli_prints_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "clean", _as_sent)


# ---- the entries -------------------------------------------------------------------------

LIMITS = "tests/node/test_hostile_limits_inmemory.py::"
PRESENCE = "tests/node/test_hostile_presence_inmemory.py::"
TRUST = "tests/trust/test_hostile_trust_inmemory.py::"
CLI = "tests/cli/test_hostile_output.py::"
DIALER = "tests/bootstrap/test_dialer.py::"
APP = "tests/api/test_app.py::test_host_and_origin_are_checked"

REVERTS: tuple[Revert, ...] = (
    Revert(
        "presence-any-signer", "5. presence flood (signer not the publisher)",
        "membership.py:181-211 admitted a presence on its own signature: the GossipSub "
        "publisher was never compared with the signer, so one connection spoke for any key.",
        presence_any_signer,
        (PRESENCE + "test_presences_signed_by_other_keys_than_their_publisher_go_nowhere",),
    ),
    Revert(
        "presence-no-vouching", "5. presence flood (many identities per connection)",
        "membership.py:191-211 listed every valid presence, however many new identities one "
        "neighbour relayed.",
        presence_no_vouching,
        (PRESENCE + "test_one_connection_introduces_only_a_few_new_identities",),
    ),
    Revert(
        "peer-table-by-count",
        "5. presence flood (a full table refuses honest newcomers; bytes held unbounded)",
        "peers.py:65-75: the table counted entries only (10,000 of up to 62 KB each) and, "
        "once full, ignored every new peer, so Sybils that filled it kept honest newcomers "
        "out.",
        peer_table_by_count,
        (PRESENCE + "test_a_full_table_still_takes_an_honest_newcomer",
         "tests/node/test_peers.py::test_a_full_table_keeps_verified_and_trusted_peers_"
         "against_a_flood",
         "tests/node/test_peers.py::test_bytes_held_are_bounded"),
    ),
    Revert(
        "dial-announced", "5. presence flood (dialing announced addresses again and again)",
        "bootstrap/dialer.py:47-101 dialed any announced peer at every address it announced "
        "until the target was met, with backoff per peer only (not per address, no budget "
        "for unverified peers).",
        dial_announced,
        (PRESENCE + "test_addresses_a_swarm_announces_are_not_dialed_again_and_again",
         DIALER + "test_verified_peers_come_first_and_announced_ones_within_a_budget",
         DIALER + "test_an_address_that_failed_backs_off_whoever_announces_it",
         DIALER + "test_only_a_few_addresses_of_a_peer_are_dialed"),
    ),
    Revert(
        "relevance-unbounded", "5. presence flood (every ask scores every Sybil card)",
        "asking.py:153-160 and relevance.py:37-52 scored every announced agent on every "
        "ask and embedded every skill set not seen before, however many a swarm announced.",
        relevance_unbounded,
        ("tests/ask/test_relevance_bound.py::"
         "test_an_ask_scores_a_bounded_number_of_a_swarms_agents",),
    ),
    Revert(
        "bootstrap-pre-trusted", "7. bootstrap peers pre-trusted by default",
        "trust_service.py:34-37 anchored global trust on the bootstrap peers when "
        "trust.pre_trusted was empty.",
        bootstrap_pre_trusted,
        (TRUST + "test_a_bootstrap_peer_does_not_own_a_newcomers_trust",),
    ),
    Revert(
        "no-request-limits", "9. no per-peer stream or request limits",
        "tasks.py:167-168 set the A2A stream handler (tasks.py:300-337) as it was: no count of a "
        "peer's open streams, no rate of its requests.",
        no_request_limits,
        (LIMITS + "test_a_fast_peer_is_refused_and_others_are_not",
         LIMITS + "test_a_peer_cannot_hold_more_streams_than_its_budget",
         LIMITS + "test_the_budget_tables_are_bounded"),
    ),
    Revert(
        "repeated-hellos", "9. no per-peer limits (repeated hellos)",
        "membership.py:100-125 answered and applied every hello a peer sent, as often as "
        "it sent one.",
        repeated_hellos,
        (LIMITS + "test_repeated_handshakes_are_refused",),
    ),
    Revert(
        "junk-gossip-unbudgeted", "9. no per-peer limits (junk gossip per neighbour)",
        "host.py:230-231 set each topic's validator as given: a neighbour's every message "
        "was decoded and its signature checked, however much junk it had delivered.",
        junk_gossip_unbudgeted,
        (LIMITS + "test_a_neighbour_delivering_junk_gossip_is_dropped_unread",),
    ),
    Revert(
        "evidence-one-table", "9. Sybils' malformed hellos push out good evidence",
        "trust.py:204-221 held the evidence of max_peers (4096) peers in one table where a "
        "new peer pushed out the stalest, so 4096 bad hellos evicted every honest record.",
        evidence_one_table,
        (TRUST + "test_a_swarm_of_bad_hellos_cannot_push_out_good_evidence",),
    ),
    Revert(
        "host-origin-unchecked", "9. public_a2a without Host/Origin check (DNS rebinding)",
        "api.py:110-145 routed a request whatever its Host and Origin headers said.",
        host_origin_unchecked,
        tuple(f"{APP}[{case}]" for case in (
            "evil.example:7700-None-421", "localhost.evil.example:7700-None-421",
            "127.0.0.1@evil.example-None-421", "-None-421",
            "127.0.0.1:7700-http://evil.example-403",
            "127.0.0.1:7700-http://127.0.0.1:8080-403", "127.0.0.1:7700-null-403",
            "127.0.0.1:7700-file://-403")),
    ),
    Revert(
        "cli-prints-raw", "9. the CLI prints peers' strings raw (terminal escapes)",
        "output.py:12-31 and cli.py printed tables, answers and errors with str() of what "
        "the peers sent.",
        cli_prints_raw,
        (CLI + "test_tables_show_peer_strings_escaped[agents]",
         CLI + "test_tables_show_peer_strings_escaped[peers]",
         CLI + "test_tables_show_peer_strings_escaped[trust]",
         CLI + "test_answers_and_their_explanation_are_escaped",
         CLI + "test_errors_quoting_a_peer_are_escaped",
         CLI + "test_clean"),
    ),
)

# Every hostile test of these findings is an attack.
NOT_ATTACKS: dict[str, str] = {}
