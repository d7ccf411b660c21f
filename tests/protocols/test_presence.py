"""Tests of protocols.presence: announcements, the hello handshake, and topic names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocols import envelope as envelope_mod
from protocols.codec import pack, unpack
from protocols.envelope import (
    VERSION,
    Envelope,
    decode_envelope,
    encode_envelope,
    seal,
    validate_network_id,
)
from protocols.errors import BadSignature, DecodeError, FrameTooLarge
from protocols.peerid import Signer
from protocols.presence import (
    HELLO,
    MAX_ADDR_LEN,
    MAX_ADDRS,
    MAX_AGENTS,
    MAX_CARDS_SIZE,
    MAX_PRESENCE_SIZE,
    PRESENCE,
    SUSPECT,
    Hello,
    LocalHealth,
    Presence,
    Suspect,
    cards_digest,
    hello_from_envelope,
    membership_from_envelope,
    pack_cards,
    presence_from_envelope,
    refresh_interval,
    suspect_from_envelope,
    suspicion_timeout,
    topic,
    unpack_cards,
)

FUZZ = settings(
    deadline=timedelta(seconds=2),
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)

ALICE = Signer.from_seed(b"A" * 32)
BOB = Signer.from_seed(b"B" * 32)
MALLORY = Signer.from_seed(b"M" * 32)
SIGNERS = [ALICE, BOB, MALLORY]
NOW = 1_700_000_000.0
NET = "dev-support"
KINDS = ["presence", "knowledge", "trust"]

json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
agent_cards = st.dictionaries(st.text(max_size=12), json_like, max_size=4)
# Short in the random tests; the exact length and count limits have their own tests.
addrs = st.builds(lambda s: "/" + s, st.text(max_size=40))
digests = st.builds(lambda b: b.hex(), st.binary(min_size=32, max_size=32))
CARD = {"name": "python-expert", "skills": [{"id": "py", "tags": ["python"]}]}
DIGEST = cards_digest(pack_cards([CARD]))


def own(addr: str, signer: Signer) -> str:
    """``addr`` as an address of ``signer``'s (presence addresses end in /p2p/<sender>)."""
    return f"{addr}/p2p/{signer.peer_id}"
network_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)


@st.composite
def presences(draw: st.DrawFn) -> tuple[Signer, Presence]:
    signer = draw(st.sampled_from(SIGNERS))
    cards = draw(st.none() | digests)
    presence = Presence(
        peer_id=signer.peer_id,
        addrs=tuple(own(a, signer) for a in draw(st.lists(addrs, max_size=MAX_ADDRS))),
        version=draw(st.text(max_size=64)),
        seq=draw(st.integers(0, 2**63 - 1)),
        ttl_s=draw(st.floats(1.0, 86_400.0)),
        load=draw(st.floats(0.0, 1e6)),
        cards=cards or "",
        agents=draw(st.integers(1, MAX_AGENTS)) if cards else 0,
        leaving=draw(st.booleans()),
    )
    return signer, presence


def wire(signer: Signer, body: Any, type_: str = PRESENCE) -> Envelope:
    """Seal, encode and decode (with signature check), as a receiver would see it."""
    env = seal(signer, NET, type_, body, now=NOW)
    return decode_envelope(encode_envelope(env))


def presence_body(signer: Signer = ALICE, **changes: Any) -> dict[str, Any]:
    body = Presence(
        peer_id=signer.peer_id,
        addrs=(own("/ip4/127.0.0.1/tcp/4001", signer), own("/ip6/::1/tcp/4001", signer)),
        version="meshnode/0.1.0",
        seq=7,
        ttl_s=60.0,
        load=0.25,
        cards=DIGEST,
        agents=1,
    ).to_body()
    body.update(changes)
    return body


# -- presence ----------------------------------------------------------------------------


@FUZZ
@given(presences())
def test_presence_roundtrip(case: tuple[Signer, Presence]) -> None:
    signer, presence = case
    decoded = presence_from_envelope(wire(signer, presence.to_body()))
    assert decoded == presence
    assert decoded.peer_id == signer.peer_id


def test_presence_example_roundtrip() -> None:
    decoded = presence_from_envelope(wire(ALICE, presence_body()))
    assert decoded.addrs == (own("/ip4/127.0.0.1/tcp/4001", ALICE), own("/ip6/::1/tcp/4001", ALICE))
    assert (decoded.cards, decoded.agents, decoded.leaving) == (DIGEST, 1, False)
    assert (decoded.seq, decoded.ttl_s, decoded.load) == (7, 60.0, 0.25)


def test_presence_naming_another_peer_is_refused() -> None:
    # Bob (validly) signs an announcement that claims to be Alice's.
    env = wire(BOB, presence_body(ALICE))
    assert env.sender == BOB.peer_id  # the envelope itself is genuine
    with pytest.raises(DecodeError, match="signer"):
        presence_from_envelope(env)


def test_reannouncing_someone_elses_presence_is_refused() -> None:
    # Mallory takes Alice's genuine presence body and re-seals it under her own key.
    alice_env = wire(ALICE, presence_body(ALICE))
    stolen = seal(MALLORY, NET, PRESENCE, unpack(alice_env.body), now=NOW)
    with pytest.raises(DecodeError, match="signer"):
        presence_from_envelope(decode_envelope(encode_envelope(stolen)))


def test_forged_presence_is_refused() -> None:
    # Valid format, Alice's peer ID as sender and in the body, signed by Mallory.
    body = pack(presence_body(ALICE, addrs=[own("/ip4/6.6.6.6/tcp/1", ALICE)]))
    items = [VERSION, NET, PRESENCE, ALICE.peer_id, NOW, b"f" * 16, body]
    forged = pack([*items, MALLORY.sign(envelope_mod._signed_part(*items))])
    with pytest.raises(BadSignature):
        presence_from_envelope(decode_envelope(forged))
    # ... and with a random signature instead.
    with pytest.raises(BadSignature):
        decode_envelope(pack([*items, bytes(range(64))]))


def test_limits_are_inclusive() -> None:
    suffix = f"/p2p/{ALICE.peer_id}"
    ok = presence_body(
        addrs=["/" + "a" * (MAX_ADDR_LEN - 1 - len(suffix)) + suffix] * MAX_ADDRS,
        agents=MAX_AGENTS,
        version="v" * 64,
        seq=2**63 - 1,
        ttl_s=86_400.0,
        load=1e6,
    )
    decoded = presence_from_envelope(wire(ALICE, ok))
    assert len(decoded.addrs) == MAX_ADDRS and decoded.agents == MAX_AGENTS
    low = presence_from_envelope(wire(ALICE, presence_body(ttl_s=1, load=0, seq=0)))
    assert (low.ttl_s, low.load, low.seq) == (1.0, 0.0, 0)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"addrs": ["/ip4/1.2.3.4/tcp/1"] * (MAX_ADDRS + 1)}, id="too-many-addrs"),
        pytest.param({"addrs": ["/" + "a" * MAX_ADDR_LEN]}, id="addr-too-long"),
        pytest.param({"addrs": ["127.0.0.1:4001"]}, id="host-port"),
        pytest.param({"addrs": ["ip4/1.2.3.4/tcp/1"]}, id="no-leading-slash"),
        pytest.param({"addrs": [""]}, id="empty-addr"),
        pytest.param({"addrs": ["/ip4/1.2.3.4/tcp/1", "tcp://x"]}, id="one-bad-addr"),
        pytest.param({"addrs": [b"/ip4/1.2.3.4"]}, id="addr-bytes"),
        pytest.param({"addrs": [4001]}, id="addr-int"),
        pytest.param({"addrs": "/ip4/1.2.3.4/tcp/1"}, id="addrs-not-a-list"),
        pytest.param({"addrs": ["/ip4/1.2.3.4/tcp/1"]}, id="addr-without-p2p"),
        pytest.param({"addrs": [own("/ip4/1.2.3.4/tcp/1", BOB)]}, id="addr-of-another-peer"),
        pytest.param({"agents": MAX_AGENTS + 1}, id="too-many-agents"),
        pytest.param({"agents": [CARD]}, id="agents-cards-inline"),
        pytest.param({"agents": 0}, id="digest-without-agents"),
        pytest.param({"cards": "", "agents": 1}, id="agents-without-digest"),
        pytest.param({"cards": "ab" * 31}, id="digest-too-short"),
        pytest.param({"cards": "AB" * 32}, id="digest-uppercase"),
        pytest.param({"cards": "zz" * 32}, id="digest-not-hex"),
        pytest.param({"cards": b"\0" * 32}, id="digest-bytes"),
        pytest.param({"leaving": 1}, id="leaving-int"),
        pytest.param({"version": "v" * 65}, id="version-too-long"),
        pytest.param({"version": 1}, id="version-int"),
        pytest.param({"seq": -1}, id="seq-negative"),
        pytest.param({"seq": True}, id="seq-bool"),
        pytest.param({"seq": 1.0}, id="seq-float"),
        pytest.param({"seq": 2**63}, id="seq-too-big"),
        pytest.param({"ttl_s": 0.5}, id="ttl-too-short"),
        pytest.param({"ttl_s": 86_401}, id="ttl-too-long"),
        pytest.param({"ttl_s": float("nan")}, id="ttl-nan"),
        pytest.param({"ttl_s": float("inf")}, id="ttl-inf"),
        pytest.param({"ttl_s": "60"}, id="ttl-str"),
        pytest.param({"load": -0.1}, id="load-negative"),
        pytest.param({"load": 1e7}, id="load-too-big"),
        pytest.param({"load": float("nan")}, id="load-nan"),
        pytest.param({"load": False}, id="load-bool"),
        pytest.param({"peer_id": "not-a-peer-id"}, id="peer-id-garbage"),
        pytest.param({"peer_id": b"12D3KooW"}, id="peer-id-bytes"),
        pytest.param({"peer_id": "x" * 65}, id="peer-id-too-long"),
    ],
)
def test_invalid_presence_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        presence_from_envelope(wire(ALICE, presence_body(**changes)))


@pytest.mark.parametrize("field", ["peer_id", "addrs", "version", "seq", "ttl_s", "load",
                                   "cards", "agents", "leaving"])
def test_missing_presence_fields(field: str) -> None:
    body = presence_body()
    del body[field]
    with pytest.raises(DecodeError, match=field):
        presence_from_envelope(wire(ALICE, body))


@pytest.mark.parametrize("body", [None, [], "presence", b"", 1, [presence_body()]])
def test_presence_body_must_be_a_map(body: Any) -> None:
    with pytest.raises(DecodeError):
        presence_from_envelope(wire(ALICE, body))


def test_presence_body_is_raw_msgpack_checked() -> None:
    env = wire(ALICE, None)
    for raw in (b"", b"\xc1", pack(presence_body()) + b"\x00", b"\x81\x01\x02"):
        bad = Envelope(env.network_id, PRESENCE, env.sender, env.ts, env.nonce, raw, b"\0" * 64)
        with pytest.raises(DecodeError):
            presence_from_envelope(bad)


def padded_body(size: int) -> dict[str, Any]:
    """A valid presence body whose msgpack encoding is exactly ``size`` bytes."""
    body = presence_body(pad="")  # unknown fields are ignored, but they count
    pad = size - len(pack(body))
    for _ in range(3):  # the string's header grows with its length (1, 2, 3 or 5 bytes)
        body["pad"] = "x" * pad
        pad -= len(pack(body)) - size
    assert len(pack(body)) == size
    return body


def test_presence_size_limit() -> None:
    at_limit = padded_body(MAX_PRESENCE_SIZE)
    assert presence_from_envelope(wire(ALICE, at_limit)).cards == DIGEST
    with pytest.raises(FrameTooLarge):
        presence_from_envelope(wire(ALICE, padded_body(MAX_PRESENCE_SIZE + 1)))
    with pytest.raises(FrameTooLarge):
        presence_from_envelope(wire(ALICE, padded_body(MAX_PRESENCE_SIZE * 4)))


def test_envelope_types_are_not_interchangeable() -> None:
    with pytest.raises(DecodeError, match="presence"):
        presence_from_envelope(wire(ALICE, presence_body(), type_=HELLO))
    with pytest.raises(DecodeError, match="hello"):
        hello_from_envelope(wire(ALICE, Hello(("/ip4/1.2.3.4/tcp/1",), "v").to_body()))
    with pytest.raises(DecodeError):
        presence_from_envelope(wire(ALICE, presence_body(), type_="Presence"))


field_values = {
    "peer_id": st.sampled_from([s.peer_id for s in SIGNERS]) | json_like,
    "addrs": st.lists(addrs | json_like, max_size=MAX_ADDRS + 2) | json_like,
    "version": st.text(max_size=70) | json_like,
    "seq": st.integers(-5, 2**64 - 1) | json_like,
    "ttl_s": st.floats(allow_nan=True) | st.integers(-5, 100_000) | json_like,
    "load": st.floats(allow_nan=True) | st.integers(-5, 2_000_000) | json_like,
    "cards": digests | st.just("") | json_like,
    "agents": st.integers(-2, MAX_AGENTS + 2) | json_like,
    "leaving": st.booleans() | json_like,
}


@st.composite
def mutated_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid presence body with a few fields replaced by anything, deleted, or added."""
    _, presence = draw(presences())
    body = presence.to_body()
    for name in draw(st.sets(st.sampled_from(sorted(field_values)), max_size=3)):
        if draw(st.booleans()):
            body[name] = draw(field_values[name])
        else:
            del body[name]
    body.update(draw(st.dictionaries(st.text(max_size=5), json_like, max_size=2)))
    return body


@FUZZ
@given(mutated_bodies())
def test_random_presence_bodies(body: dict[str, Any]) -> None:
    """Any body: a Presence within every bound that says what the body says, or DecodeError."""
    signer = next((s for s in SIGNERS if s.peer_id == body.get("peer_id")), ALICE)
    try:
        p = presence_from_envelope(wire(signer, body))
    except DecodeError:
        event("refused")
        return
    event("accepted")
    assert p.peer_id == signer.peer_id == body["peer_id"]
    assert list(p.addrs) == body["addrs"] and len(p.addrs) <= MAX_ADDRS
    assert all(type(a) is str and a.startswith("/") and len(a) <= MAX_ADDR_LEN for a in p.addrs)
    assert p.version == body["version"] and type(p.version) is str and len(p.version) <= 64
    assert p.seq == body["seq"] and type(p.seq) is int and 0 <= p.seq < 2**63
    assert p.ttl_s == body["ttl_s"] and type(p.ttl_s) is float and 1.0 <= p.ttl_s <= 86_400.0
    assert p.load == body["load"] and type(p.load) is float and 0.0 <= p.load <= 1e6
    assert p.cards == body["cards"] and (len(p.cards) == 64 or p.cards == "")
    assert p.agents == body["agents"] and 0 <= p.agents <= MAX_AGENTS
    assert bool(p.cards) == bool(p.agents)
    assert p.leaving is body["leaving"]
    assert all(a.endswith(f"/p2p/{signer.peer_id}") for a in p.addrs)


# -- hello -------------------------------------------------------------------------------


@FUZZ
@given(st.sampled_from(SIGNERS), st.lists(addrs, max_size=MAX_ADDRS), st.text(max_size=64))
def test_hello_roundtrip(signer: Signer, addr_list: list[str], version: str) -> None:
    hello = Hello(tuple(addr_list), version)
    env = wire(signer, hello.to_body(), type_=HELLO)
    assert hello_from_envelope(env) == hello


@pytest.mark.parametrize(
    "body",
    [
        {"addrs": ["1.2.3.4:5"], "version": "v"},
        {"addrs": ["/a"] * (MAX_ADDRS + 1), "version": "v"},
        {"addrs": ["/a"], "version": "v" * 65},
        {"addrs": ["/a"]},
        {"version": "v"},
        {"addrs": ["/a"], "version": "v", "pad": "x" * 8 * 1024},  # over the 8 KiB limit
        ["/a"],
        None,
    ],
)
def test_invalid_hellos(body: Any) -> None:
    with pytest.raises(DecodeError):
        hello_from_envelope(wire(ALICE, body, type_=HELLO))


# -- topics ------------------------------------------------------------------------------


def test_topic_format() -> None:
    assert topic("dev-support", "presence") == "/meshnode/dev-support/presence/1"


@FUZZ
@given(network_ids, network_ids, st.sampled_from(KINDS), st.sampled_from(KINDS))
def test_two_networks_never_share_a_topic(n1: str, n2: str, k1: str, k2: str) -> None:
    validate_network_id(n1)
    validate_network_id(n2)
    if (n1, k1) != (n2, k2):
        assert topic(n1, k1) != topic(n2, k2)
    else:
        assert topic(n1, k1) == topic(n2, k2)


@FUZZ
@given(network_ids, network_ids, st.text(max_size=20), st.text(max_size=20))
def test_networks_never_share_a_topic_whatever_the_kind(n1: str, n2: str, k1: str, k2: str) -> None:
    # Valid network IDs contain no '/', so the ID is recoverable from any topic string.
    if n1 != n2:
        assert topic(n1, k1) != topic(n2, k2)
    assert topic(n1, k1).split("/")[2] == n1


def test_network_ids_that_could_collide_are_invalid() -> None:
    # topic() relies on validated IDs: "a/b" + "c" and "a" + "b/c" would name one topic.
    for bad in ("a/b", "/", ""):
        with pytest.raises(DecodeError):
            validate_network_id(bad)


# -- agent cards by digest ---------------------------------------------------------------


def test_cards_come_back_only_for_their_digest() -> None:
    packed = pack_cards([CARD])
    assert unpack_cards(packed, DIGEST) == (CARD,)
    assert cards_digest(pack_cards([])) == ""  # no agents, no digest
    with pytest.raises(DecodeError, match="digest"):
        unpack_cards(pack_cards([CARD, CARD]), DIGEST)  # another node's cards
    with pytest.raises(DecodeError, match="digest"):
        unpack_cards(packed, "00" * 32)


@pytest.mark.parametrize("cards", [[], [1], [CARD, "x"], {"name": "x"}, [{}] * (MAX_AGENTS + 1)])
def test_bad_card_sets_are_refused(cards: Any) -> None:
    packed = pack(cards)
    with pytest.raises(DecodeError):
        unpack_cards(packed, cards_digest(packed) or "00" * 32)


def test_card_sets_are_bounded_in_size() -> None:
    packed = pack_cards([{"pad": "x" * MAX_CARDS_SIZE}])
    with pytest.raises(FrameTooLarge):
        unpack_cards(packed, cards_digest(packed))


# -- suspicion ----------------------------------------------------------------------------


def test_suspicion_roundtrip_and_dispatch() -> None:
    env = wire(ALICE, Suspect(BOB.peer_id, 42).to_body(), type_=SUSPECT)
    assert suspect_from_envelope(env) == Suspect(BOB.peer_id, 42)
    assert membership_from_envelope(env) == Suspect(BOB.peer_id, 42)
    assert isinstance(membership_from_envelope(wire(ALICE, presence_body())), Presence)
    with pytest.raises(DecodeError, match="itself"):
        suspect_from_envelope(wire(ALICE, Suspect(ALICE.peer_id, 1).to_body(), type_=SUSPECT))
    for bad in ({"peer_id": "x", "seq": 1}, {"peer_id": BOB.peer_id, "seq": -1}, {}, [1]):
        with pytest.raises(DecodeError):
            suspect_from_envelope(wire(ALICE, bad, type_=SUSPECT))
    with pytest.raises(DecodeError):
        membership_from_envelope(wire(ALICE, presence_body(), type_=HELLO))


def test_a_death_notice_roundtrips_and_older_suspicions_still_decode() -> None:
    notice = Suspect(BOB.peer_id, 42, dead=True)
    assert suspect_from_envelope(wire(ALICE, notice.to_body(), type_=SUSPECT)) == notice
    # A suspicion from a node that predates death notices: a plain suspicion.
    old = {"peer_id": BOB.peer_id, "seq": 42}
    assert suspect_from_envelope(wire(ALICE, old, type_=SUSPECT)) == Suspect(BOB.peer_id, 42)
    for bad in (1, "yes", None, [True]):
        body = {**old, "dead": bad}
        if bad is None:
            assert not suspect_from_envelope(wire(ALICE, body, type_=SUSPECT)).dead
            continue
        with pytest.raises(DecodeError, match="dead"):
            suspect_from_envelope(wire(ALICE, body, type_=SUSPECT))


def test_local_health_rises_on_own_trouble_and_falls_on_answers() -> None:
    health = LocalHealth()
    assert health.score == 0 and health.may_accuse and health.scale(2.0) == 2.0
    health.probe_answered()
    assert health.score == 0  # never below healthy
    health.probe_missed()
    health.refuted()
    assert health.score == 2 and health.scale(2.0) == 6.0 and health.may_accuse
    # A timer late by less than a probe period is ordinary jitter; by more, starvation.
    assert not health.woke(0.9, 1.0) and health.score == 2
    assert health.woke(1.5, 1.0) and health.score == 3
    health.probe_missed()
    assert health.score == health.withhold_at and not health.may_accuse
    for _ in range(20):
        health.woke(10.0, 1.0)
    assert health.score == health.max_score == 8 and health.scale(1.0) == 9.0
    for _ in range(health.max_score - health.withhold_at + 1):
        health.probe_answered()
    assert health.may_accuse


def test_suspicion_timeout_follows_lifeguard() -> None:
    # memberlist's numbers: 4 x log10(N) x probe interval, up to 6 times that.
    assert suspicion_timeout(100, 1.0, 0) == pytest.approx(48.0)
    assert suspicion_timeout(100, 1.0, 3) == pytest.approx(8.0)
    assert suspicion_timeout(100, 1.0, 10) == pytest.approx(8.0)  # never below the floor
    times = [suspicion_timeout(100, 1.0, c) for c in range(5)]
    assert times == sorted(times, reverse=True)  # more confirmations, sooner
    assert suspicion_timeout(10_000, 1.0, 0) == 2 * suspicion_timeout(100, 1.0, 0)
    assert suspicion_timeout(3, 1.0, 0) == suspicion_timeout(1, 1.0, 0) == pytest.approx(24.0)


def test_refresh_interval_keeps_the_mesh_wide_rate_bounded() -> None:
    assert refresh_interval(60.0, 25, 1.0) == 60.0
    assert refresh_interval(60.0, 10_000, 1.0) == 10_000.0
    for n in (10, 100, 1000, 10_000):
        assert n / refresh_interval(60.0, n, 1.0) <= 1.0
    # Never so long that announcements (kept three refreshes, at most a day) run out.
    assert refresh_interval(60.0, 10_000, 0.1) == 86_400.0 / 3
